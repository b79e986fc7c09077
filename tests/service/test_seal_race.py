"""A batch of debug entries racing a seal: the client's answer and the sealed request agree.

The seal has two steps (status ``sealed``, then the count of manifest segments that belong to the
request). A batch that passed its "not sealed" check before the seal began may still write its
segment. Covered, with the batch held at each point by a gate around the manifest write:
- held before writing, the seal completes: the batch's segment comes after the count, the client
  gets 403 ``RequestSealedException`` and the sealed request does not list the entries;
- held after writing, the seal completes: the count includes the segment, the client gets 200 and
  the request lists the entries;
- a seal interrupted between its steps is finished by sealing again.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from symbol_service import vsohash
from symbol_service.app import API
from symbol_service.wire import RequestStatus
from tests.service.conftest import Service
from tests.service.test_api import create_request, entry


def gate_appends(service: Service, *, before_write: bool) -> tuple[asyncio.Event, asyncio.Event]:
    """Hold the next manifest append before or after it writes; returns (reached, release)."""
    assert service.app is not None
    manifests = service.app[API].manifest_store
    real = manifests.append
    reached, release = asyncio.Event(), asyncio.Event()

    async def gated(request_id: str, records: list[dict[str, Any]]) -> int | None:
        if before_write:
            reached.set()
            await release.wait()
            return await real(request_id, records)
        number = await real(request_id, records)
        reached.set()
        await release.wait()
        return number

    manifests.append = gated  # type: ignore[method-assign]
    return reached, release


async def race(service: Service, *, before_write: bool) -> tuple[int, Any, dict[str, Any]]:
    data = b"racing file"
    await service.call("PUT", f"/_apis/blob/blobs/{vsohash.vso_hash(data).hex}", data=data, expect=201)
    request = await create_request(service, f"race-{before_write}")
    path = f"/_apis/symbol/requests/{request['id']}/debugentries"
    reached, release = gate_appends(service, before_write=before_write)
    batch = asyncio.create_task(
        service.call("POST", path, json={"debugEntries": [entry("r.dll/1/r.dll", data)]})
    )
    await asyncio.wait_for(reached.wait(), 30)
    _, sealed, _ = await service.call(
        "PATCH", f"/_apis/symbol/requests/{request['id']}", json={"status": "sealed"}, expect=200
    )
    release.set()
    status, body, _ = await batch
    _, listed, _ = await service.call("GET", path, expect=200)
    return status, body, {"sealed": sealed, "listed": listed}


async def test_a_batch_that_writes_after_the_seal_is_refused_and_not_part_of_the_request(
    service: Service,
) -> None:
    status, body, seen = await race(service, before_write=True)
    assert (status, body["typeKey"]) == (403, "RequestSealedException")
    assert seen["listed"]["count"] == 0
    assert seen["sealed"]["size"] == 0


async def test_a_batch_that_wrote_before_the_seal_is_part_of_the_request(service: Service) -> None:
    status, body, seen = await race(service, before_write=False)
    assert status == 200 and body["value"][0]["status"] == "created"
    assert seen["listed"]["count"] == 1
    assert seen["sealed"]["size"] == len(b"racing file")


async def test_an_interrupted_seal_is_finished_by_sealing_again(service: Service) -> None:
    assert service.app is not None
    requests = service.app[API].requests
    request = await create_request(service, "interrupted")
    record = await requests.get(request["id"])
    assert record is not None
    await requests.replace(dataclasses.replace(record, status=RequestStatus.SEALED))  # step one only
    path = f"/_apis/symbol/requests/{request['id']}"
    status, body, _ = await service.call(
        "POST", f"{path}/debugentries", json={"debugEntries": [entry("a.b/1/a.b", b"x")]}
    )
    assert (status, body["typeKey"]) == (403, "RequestSealedException")
    await service.call("PATCH", path, json={"status": "sealed"}, expect=200)
    finished = await requests.get(request["id"])
    assert finished is not None and finished.sealed_segments == 0
