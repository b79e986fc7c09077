"""Publishing into a GCS store, end to end: the service and the operator's lifecycle both configured
with ``store: {type: gcs}`` (fake-gcs-server, reached as any GCS emulator is, through
``STORAGE_EMULATOR_HOST``), SymbolRequests in a real API server, and a real proxy reading the bucket
as an ordinary ``gcs`` source with the ``symstore`` layout.

Covered: a request created, filled (single-PUT uploads) and sealed through REST records its store
(``spec.store``, the ``Store`` column of ``kubectl get``) and is published by the operator,
registered from the service's configuration file as ``symbol-operator run --publish-config`` does:
every path of every entry is in the bucket byte-identical, and the proxy serves each file
byte-identical by its SymSrv key; two requests share a file and one expires: its own file and its
manifest leave the bucket, the shared file stays and is still served. An operator given another
store (another id, the same bucket) refuses the request: ``Published=False`` with reason
``StoreMismatch`` and a Warning event, nothing published; ``kubectl delete`` lets it go and the
file at its path stays.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer

from symbol_operator.kubeapi import KubeApi
from symbol_proxy.backends import base
from symbol_proxy.backends.gcs import GcsBackend
from symbol_service import tokens
from symbol_service.app import create_app
from symbol_service.cli import store_backend
from symbol_service.config import Limits, load_config
from symbol_service.kuberequests import KubeRequestStore, object_name
from symbol_service.publication import entry_paths
from tests.conftest import StartProxy
from tests.operator_tests.k8s.kube import Kube
from tests.operator_tests.k8s.test_request_lifecycle import lifecycle_operator, publish, shorten
from tests.service.conftest import ORG, Service
from tests.service.test_api import keyed_fixture
from tests.support.objectstores import FakeGcs, start_fake_gcs

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(180)]

BUCKET = "published-symbols"


@pytest.fixture(scope="module")
def gcs_server() -> Iterator[FakeGcs]:
    with start_fake_gcs() as server:
        server.create_bucket(BUCKET)
        yield server


class GcsStore:
    """The bucket prefix the service and the operator publish into, read back as a proxy would."""

    def __init__(self, source: dict[str, Any], config: Path, reader: GcsBackend) -> None:
        self.source = source
        self.config = config
        self.reader = reader

    async def read(self, path: str) -> bytes | None:
        try:
            stream = await self.reader.open(path)
        except base.NotFound:
            return None
        try:
            return b"".join([chunk async for chunk in stream.chunks()])
        finally:
            await stream.aclose()

    async def published(self, key: str, data: bytes) -> bool:
        return all([await self.read(path) == data for path in entry_paths(key)])

    async def withdrawn(self, key: str) -> bool:
        return all([await self.read(path) is None for path in entry_paths(key)])

    async def manifests(self) -> set[str]:
        """The request ids that have a manifest in the store."""
        listed = [item.location async for item in self.reader.list("_publish/requests/")]
        return {location.split("/")[2] for location in listed}


@pytest.fixture
async def gcs_service(
    kube: Kube, namespace: str, tmp_path: Path, gcs_server: FakeGcs, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Service, GcsStore]]:
    """The service over the GCS store of its configuration file (made as ``serve`` makes it)."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.endpoint)
    made = {role: tokens.new_token() for role in ("writer", "manager", "reader")}
    scopes = {"writer": "vso.symbols_write", "manager": "vso.symbols_manage", "reader": "vso.symbols"}
    table = tokens.TokenTable(
        [{"name": r, "hash": tokens.hash_token(t), "scopes": [scopes[r]]} for r, t in made.items()]
    )
    source = {"id": "publish", "type": "gcs", "bucket": BUCKET, "prefix": f"store-{uuid.uuid4().hex[:8]}"}
    (tmp_path / "tokens.yaml").write_text(yaml.safe_dump([]))
    config_path = tmp_path / "service.yaml"  # what the operator reads too
    config_path.write_text(yaml.safe_dump({"store": source, "tokens_file": str(tmp_path / "tokens.yaml")}))
    config = load_config(config_path)
    backend = store_backend(config.store, config.upstream)
    assert isinstance(backend, GcsBackend)
    reader = store_backend(config.store, config.upstream)
    assert isinstance(reader, GcsBackend)
    api = KubeApi()
    requests = KubeRequestStore(api, namespace, store=config.store.id)  # as ``serve`` makes it
    server = TestServer(create_app(backend, requests, table, limits=Limits()), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            service = Service(f"http://127.0.0.1:{server.port}/{ORG}", None, session, made)
            yield service, GcsStore(source, config_path, reader)
    finally:
        await server.close()
        await reader.aclose()
        await api.close()


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def fetch(proxy: TestServer, key: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession(auto_decompress=False) as http,
        http.get(proxy.make_url(f"/symbols/{key}")) as response,
    ):
        return response.status, await response.read()


async def test_a_sealed_request_is_published_into_gcs_and_served_by_a_proxy(
    gcs_service: tuple[Service, GcsStore], kube: Kube, namespace: str, start_proxy: StartProxy
) -> None:
    service, store = gcs_service
    files = [keyed_fixture(0), keyed_fixture(1)]
    with lifecycle_operator(store.config, namespace):  # the operator's store from service.yaml
        await publish(service, "gcs/build/1", [(key, data) for data, key in files])
        for data, key in files:
            await until(lambda: store.published(key, data), f"{key} in the bucket")  # noqa: B023

        async def condition() -> bool:  # written after the copies
            stored = kube.get("SymbolRequest", object_name("gcs/build/1"), namespace) or {}
            return bool((stored.get("status") or {}).get("conditions"))

        await until(condition, "the Published condition")
        stored = kube.get("SymbolRequest", object_name("gcs/build/1"), namespace)
        assert stored is not None and stored["spec"]["store"] == "publish"
        table = kube.table("SymbolRequest", namespace)
        columns = [c["name"] for c in table["columnDefinitions"]]
        rows = [dict(zip(columns, row["cells"], strict=True)) for row in table["rows"]]
        assert [(row["Request"], row["Store"]) for row in rows] == [("gcs/build/1", "publish")]
        published = [c for c in stored["status"]["conditions"] if c["type"] == "Published"]
        assert [c["status"] for c in published] == ["True"]
    proxy = await start_proxy([{**store.source, "id": "published", "layout": {"type": "symstore"}}])
    for data, key in files:
        assert await fetch(proxy, key) == (200, data)


async def test_an_expiry_withdraws_from_gcs_what_no_other_request_provides(
    gcs_service: tuple[Service, GcsStore], kube: Kube, namespace: str, start_proxy: StartProxy
) -> None:
    service, store = gcs_service
    (shared_data, shared_key), (own_data, own_key) = keyed_fixture(0), keyed_fixture(1)
    with lifecycle_operator(store.config, namespace):
        keeps = await publish(service, "gcs/keeps", [(shared_key, shared_data)])
        expires = await publish(service, "gcs/expires", [(shared_key, shared_data), (own_key, own_data)])
        await until(lambda: store.published(own_key, own_data), "the short-lived request's file")
        await until(lambda: store.published(shared_key, shared_data), "the shared file")
        await shorten(service, expires, seconds=2)

        async def gone() -> bool:
            return kube.get("SymbolRequest", object_name("gcs/expires"), namespace) is None

        await until(gone, "the expired request to go")
    assert await store.withdrawn(own_key)
    assert await store.published(shared_key, shared_data)
    assert await store.manifests() == {keeps}
    proxy = await start_proxy([{**store.source, "id": "published", "layout": {"type": "symstore"}}])
    assert await fetch(proxy, shared_key) == (200, shared_data)
    assert (await fetch(proxy, own_key))[0] == 404


async def test_an_operator_given_another_store_refuses_the_request_and_touches_nothing(
    gcs_service: tuple[Service, GcsStore], kube: Kube, namespace: str, tmp_path: Path
) -> None:
    service, store = gcs_service
    data, key = keyed_fixture(0)
    # Another store id, though the same bucket and prefix: a publish would be seen here.
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"store": {**store.source, "id": "elsewhere"}, "tokens_file": "unused"}))
    name = object_name("gcs/foreign")
    placed = entry_paths(key)[0]
    await store.reader.put(placed, _once(b"another request's file"))

    async def refused() -> bool:
        stored = kube.get("SymbolRequest", name, namespace) or {}
        conditions = (stored.get("status") or {}).get("conditions") or []
        return [(c["type"], c["status"], c["reason"]) for c in conditions] == [
            ("Published", "False", "StoreMismatch")
        ]

    with lifecycle_operator(other, namespace):
        await publish(service, "gcs/foreign", [(key, data)])
        await until(refused, "the StoreMismatch condition")

        async def warned() -> bool:
            events = kube.list("Event", namespace)
            return any(
                e["involvedObject"]["name"] == name
                and e["reason"] == "StoreMismatch"
                and e["type"] == "Warning"
                for e in events
            )

        await until(warned, "the Warning event")
        assert all([await store.read(path) is None for path in entry_paths(key)[1:]])
        kube.delete("SymbolRequest", name, namespace)

        async def gone() -> bool:
            return kube.get("SymbolRequest", name, namespace) is None

        await until(gone, "the deleted request to go")
    assert await store.read(placed) == b"another request's file"
    assert all([await store.read(path) is None for path in entry_paths(key)[1:]])


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
