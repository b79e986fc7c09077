"""A running publishing service on 127.0.0.1 over a filesystem store, and clients that speak to it
as Azure DevOps clients do (Basic with an empty user and the PAT as password, ``api-version`` in the
Accept header, ``X-TFS-FedAuthRedirect: Suppress``)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from symbol_proxy.backends import base
from symbol_proxy.backends.filesystem import FilesystemBackend
from symbol_proxy.backends.gcs import GcsBackend
from symbol_proxy.backends.s3 import S3Backend
from symbol_proxy.config import FilesystemSource, GcsSource, UpstreamSettings
from symbol_service import tokens
from symbol_service.app import create_app
from symbol_service.config import Limits
from symbol_service.requeststore import MemoryRequestStore, RequestStore

# The S3 worlds (moto's server, MinIO) and the guard against real cloud endpoints, shared with the
# backends' tests.
from tests.sidecar.backends.conftest import (  # noqa: F401
    S3World,
    _no_real_aws,
    fake_gcs,
    minio_world,
    s3_world,
    settings,
)
from tests.support.objectstores import FakeGcs

ORG = "fabrikam"


@dataclasses.dataclass
class Service:
    url: str
    """``http://127.0.0.1:<port>/<organization>``"""
    store: Path | None
    """The filesystem store's root (``None`` for other stores)."""
    session: aiohttp.ClientSession
    tokens: dict[str, str]
    """Token of each role: reader, writer, manager."""
    app: web.Application | None = None

    def headers(self, role: str | None = "writer", **extra: str) -> dict[str, str]:
        headers = {"Accept": "application/json; api-version=2.0-preview", "X-TFS-FedAuthRedirect": "Suppress"}
        if role is not None:
            credential = base64.b64encode(f":{self.tokens[role]}".encode()).decode()
            headers["Authorization"] = f"Basic {credential}"
        headers.update(extra)
        return headers

    async def call(
        self,
        method: str,
        path: str,
        *,
        role: str | None = "writer",
        json: Any = None,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
        expect: int | None = None,
        absolute: bool = False,
    ) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
        url = path if absolute else f"{self.url}{path}"
        headers = self.headers(role)
        if data is not None:
            headers["Content-Type"] = "application/octet-stream"
        payload = io.BytesIO(data) if data is not None else None
        async with self.session.request(
            method, url, headers=headers, json=json, data=payload, params=params
        ) as response:
            raw = await response.read()
            body: Any = raw
            if response.content_type == "application/json":
                body = await response.json()
            if expect is not None:
                assert response.status == expect, (method, path, response.status, body)
            return response.status, body, response.headers


@pytest.fixture
def limits() -> Limits:
    return Limits(max_json_body=64 * 1024, max_blob_size=16 * 1024**2, max_entries_per_batch=50)


def role_tokens() -> tuple[dict[str, str], tokens.TokenTable]:
    """A new token for each role (reader, writer, manager) and the table that knows them."""
    made = {role: tokens.new_token() for role in ("reader", "writer", "manager")}
    scopes = {"reader": "vso.symbols", "writer": "vso.symbols_write", "manager": "vso.symbols_manage"}
    table = tokens.TokenTable(
        [
            {"name": role, "hash": tokens.hash_token(token), "scopes": [scopes[role]]}
            for role, token in made.items()
        ]
    )
    return made, table


@contextlib.asynccontextmanager
async def running_service(
    backend: base.WritableBackend,
    requests: RequestStore,
    *,
    store: Path | None = None,
    limits: Limits | None = None,
) -> AsyncIterator[Service]:
    """The service over ``backend`` and ``requests``, listening on 127.0.0.1, with a client session."""
    made, table = role_tokens()
    app = create_app(backend, requests, table, limits=limits)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Service(f"http://127.0.0.1:{server.port}/{ORG}", store, session, made, app)
    finally:
        await server.close()


@pytest.fixture
async def service(tmp_path: Path, limits: Limits) -> AsyncIterator[Service]:
    store = tmp_path / "store"
    store.mkdir()
    backend = FilesystemBackend(
        FilesystemSource.model_validate({"id": "publish", "type": "filesystem", "path": str(store)})
    )
    async with running_service(backend, MemoryRequestStore(), store=store, limits=limits) as running:
        yield running


class Store:
    """The store under test, and how to make and see an unfinished write in it."""

    def __init__(
        self,
        backend: base.ListableBackend,
        root: Path | None,
        world: S3World | None,
        prefix: str,
        gcs: FakeGcs | None = None,
    ):
        self.backend = backend
        self.root = root
        self.world = world
        self.prefix = prefix
        self.gcs = gcs
        self.lists_unfinished = gcs is None
        """Whether the store can list unfinished writes (GCS cannot list resumable upload sessions;
        they expire by themselves)."""

    def start_unfinished_write(self, name: str) -> None:
        if self.gcs is not None:
            self.gcs.start_resumable("symbols", f"{self.prefix}/{name}", b"x")
        elif self.world is not None:
            client = self.world.client()
            key = f"{self.prefix}/{name}"
            upload = client.create_multipart_upload(Bucket="symbols", Key=key)
            client.upload_part(
                Bucket="symbols", Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x"
            )
        else:
            assert self.root is not None
            (self.root / f".{name}.tmp-{uuid.uuid4().hex[:16]}").write_bytes(b"half a file")

    def unfinished_writes(self) -> set[str]:
        if self.gcs is not None:
            return set()
        if self.world is not None:
            found = self.world.client().list_multipart_uploads(Bucket="symbols")  # MinIO: no folder prefix
            keys = [u["Key"] for u in found.get("Uploads") or []]
            return {key.rpartition("/")[2] for key in keys if key.startswith(f"{self.prefix}/")}
        assert self.root is not None
        return {p.name.split(".tmp-")[0][1:] for p in self.root.glob(".*.tmp-*")}

    async def exists(self, location: str) -> bool:
        try:
            await self.backend.head(location)
        except base.NotFound:
            return False
        return True


@pytest.fixture(params=["filesystem", "minio", "gcs"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each store the service writes to: a directory, a prefix of MinIO's ``symbols`` bucket, and a
    prefix of fake-gcs-server's."""
    if request.param == "filesystem":
        root = tmp_path / "store"
        root.mkdir()
        source = FilesystemSource.model_validate({"id": "publish", "type": "filesystem", "path": str(root)})
        yield Store(FilesystemBackend(source), root, None, "")
        return
    prefix = f"publish-{uuid.uuid4().hex}"
    upstream: UpstreamSettings = request.getfixturevalue("settings")
    if request.param == "gcs":
        server: FakeGcs = request.getfixturevalue("fake_gcs")
        gcs = GcsSource.model_validate(
            {"id": "publish", "type": "gcs", "bucket": "symbols", "prefix": prefix, "bearer_token": "ya29.x"}
        )
        backend = GcsBackend(gcs, upstream, api_root=server.endpoint)
        yield Store(backend, None, None, prefix, gcs=server)
        await backend.aclose()
        return
    world: S3World = request.getfixturevalue("minio_world")
    yield Store(S3Backend(world.source(prefix=prefix), upstream), None, world, prefix)


@pytest.fixture
async def any_requests() -> MemoryRequestStore:
    return MemoryRequestStore()


@pytest.fixture
async def any_service(any_store: Store, any_requests: MemoryRequestStore) -> AsyncIterator[Service]:
    """The service over ``any_store`` and ``any_requests``."""
    async with running_service(any_store.backend, any_requests) as running:
        yield running
