"""The ``RequestStore`` contract, written once for every implementation.

Run here against the development store (``MemoryRequestStore``); the Kubernetes store (SymbolRequest
resources) runs the same tests against a real API server in ``tests/operator_tests/k8s/
test_requeststore_kube.py``, which imports them (one control plane per session). Covered:
create and read back by id and by name (any case); a taken name is ``RequestExistsException`` (also
when two creates race); ``replace`` with the current etag stores and changes the etag, with a stale
one is ``RequestUpdateConflictException`` (also when several changes race: exactly one wins; a replace
that changes nothing may succeed without a new etag, which is why the racers all change something); list;
delete, twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import Callable

import pytest

from symbol_service import errors
from symbol_service.requeststore import MemoryRequestStore, RequestRecord, RequestStore, new_request_id
from symbol_service.wire import RequestStatus

STORES: dict[str, Callable[[], RequestStore]] = {"memory": MemoryRequestStore}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> RequestStore:
    return STORES[request.param]()


def record(name: str) -> RequestRecord:
    now = datetime.datetime.now(datetime.UTC)
    return RequestRecord(
        id=new_request_id(),
        name=name,
        description=None,
        expiration_date=now + datetime.timedelta(days=30),
        status=RequestStatus.CREATED,
        created_by="ci",
        created_date=now,
    )


async def test_create_then_read_by_id_and_name(store: RequestStore) -> None:
    created = await store.create(record("Project/Def/1"))
    assert created.etag
    assert await store.get(created.id) == created
    assert await store.find("project/def/1") == created
    assert await store.find("other") is None
    assert await store.get(new_request_id()) is None
    assert [r.id for r in await store.list()] == [created.id]


async def test_names_are_unique_even_when_creates_race(store: RequestStore) -> None:
    await store.create(record("taken"))
    with pytest.raises(errors.ServiceError) as caught:
        await store.create(record("TAKEN"))
    assert caught.value.type_key == "RequestExistsException"
    results = await asyncio.gather(*(store.create(record("raced")) for _ in range(5)), return_exceptions=True)
    assert sum(isinstance(r, RequestRecord) for r in results) == 1
    assert all(r.type_key == "RequestExistsException" for r in results if isinstance(r, errors.ServiceError))


async def test_replace_needs_the_current_etag(store: RequestStore) -> None:
    created = await store.create(record("r"))
    sealed = await store.replace(dataclasses.replace(created, status=RequestStatus.SEALED))
    assert sealed.status == RequestStatus.SEALED and sealed.etag != created.etag
    with pytest.raises(errors.ServiceError) as caught:
        await store.replace(dataclasses.replace(created, size=1))
    assert caught.value.type_key == "RequestUpdateConflictException"
    results = await asyncio.gather(
        *(store.replace(dataclasses.replace(sealed, size=n)) for n in range(1, 6)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, RequestRecord)]
    assert len(winners) == 1
    assert await store.get(created.id) == winners[0]


async def test_delete_forgets_and_is_idempotent(store: RequestStore) -> None:
    created = await store.create(record("gone"))
    await store.delete(created.id)
    await store.delete(created.id)
    assert await store.get(created.id) is None
    assert await store.find("gone") is None
    await store.create(record("gone"))  # the name is free again
