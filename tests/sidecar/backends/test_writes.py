"""The write side of the backend interface (``WritableBackend``), one contract for every store.

Each contract test runs against the filesystem backend (a temporary directory), the S3 backend
(moto's server on 127.0.0.1 with IAM checks on, as in ``test_s3.py``) and the GCS backend
(fake-gcs-server, the JSON API emulator); every test below its own prefix, so the three behave the
same. Covered: put then read byte-identical, put replaces; a body of the wrong declared size or one
that breaks off (past one S3 multipart part / GCS resumable chunk) stores nothing and leaves the old
object; conditional create wins once, a second create (and one of several racing creates) gets
``AlreadyExists`` and leaves the first object alone; head; copy; delete (twice); bodies larger than
one part; listing below a prefix (complete objects only, sizes, times); no temporary file left
behind; a user without write permission gets ``PermissionDenied`` (moto's IAM; for GCS a small
server answering as GCS does, fake-gcs-server accepts any token), and GCS's answers to writes
(403, 412 outside a create, 429, 400) become the right errors; a resumable upload goes on from
what GCS kept after a chunk kept in part or failed with 503 (a server answering as GCS does), and
one that cannot go on is cancelled.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from symbol_proxy.backends import base, gcs, s3
from symbol_proxy.backends.filesystem import FilesystemBackend
from symbol_proxy.backends.gcs import GcsBackend
from symbol_proxy.backends.s3 import S3Backend
from symbol_proxy.config import FilesystemSource, GcsSource, UpstreamSettings
from tests.sidecar.backends.conftest import S3World
from tests.support.objectstores import FakeGcs

Factory = Callable[[], base.ListableBackend]
PART = max(s3.WRITE_PART_SIZE, gcs.WRITE_PART_SIZE)
"""Past this, S3 writes a multipart upload and GCS a resumable one."""


async def body(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        await asyncio.sleep(0)
        yield piece


async def broken(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece
    raise base.UpstreamError("the client went away")


async def read(backend: base.Backend, location: str) -> bytes:
    stream = await backend.open(location)
    try:
        return b"".join([chunk async for chunk in stream.chunks()])
    finally:
        await stream.aclose()


def gcs_source(prefix: str = "", **fields: str) -> GcsSource:
    values = {"id": "gcs-test", "type": "gcs", "bucket": "symbols", "bearer_token": "ya29.any", **fields}
    return GcsSource.model_validate({"prefix": prefix, **values})


@pytest.fixture(params=["filesystem", "s3", "gcs"])
async def make_backend(
    request: pytest.FixtureRequest, tmp_path: Path, settings: UpstreamSettings
) -> AsyncIterator[Factory]:
    made: list[base.ListableBackend] = []
    prefix = f"writes-{uuid.uuid4().hex}"

    def make() -> base.ListableBackend:
        backend: base.ListableBackend
        if request.param == "filesystem":
            source = FilesystemSource.model_validate(
                {"id": "fs", "type": "filesystem", "path": str(tmp_path)}
            )
            backend = FilesystemBackend(source)
        elif request.param == "s3":
            world: S3World = request.getfixturevalue("s3_world")
            backend = S3Backend(world.source(prefix=prefix), settings)
        else:
            server: FakeGcs = request.getfixturevalue("fake_gcs")
            backend = GcsBackend(gcs_source(prefix), settings, api_root=server.endpoint)  # its own session
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()


async def test_put_stores_the_bytes_and_replaces_what_was_there(make_backend: Factory) -> None:
    backend = make_backend()
    assert isinstance(backend, base.WritableBackend)
    await backend.put("a/b/one.bin", body(b"hello ", b"world"), size=11)
    assert await read(backend, "a/b/one.bin") == b"hello world"
    assert (await backend.head("a/b/one.bin")).size == 11
    await backend.put("a/b/one.bin", body(b"second"))
    assert await read(backend, "a/b/one.bin") == b"second"


@pytest.mark.parametrize("declared", [3, 100])
async def test_a_body_of_another_size_than_declared_stores_nothing(
    make_backend: Factory, declared: int
) -> None:
    backend = make_backend()
    await backend.put("x/old.bin", body(b"old"))
    with pytest.raises(base.Malformed):
        await backend.put("x/old.bin", body(b"new content"), size=declared)
    with pytest.raises(base.Malformed):
        await backend.put("x/never.bin", body(b"new content"), size=declared)
    assert await read(backend, "x/old.bin") == b"old"
    with pytest.raises(base.NotFound):
        await backend.head("x/never.bin")


async def test_a_body_that_breaks_off_stores_nothing(make_backend: Factory) -> None:
    backend = make_backend()
    await backend.put("x/kept.bin", body(b"kept"))
    big = os.urandom(PART + 1024)  # past one part: S3 must abort a multipart upload, GCS cancel one
    for location in ("x/kept.bin", "x/new.bin"):
        with pytest.raises(base.UpstreamError):
            await backend.put(location, broken(big, b"tail"))
    assert await read(backend, "x/kept.bin") == b"kept"
    with pytest.raises(base.NotFound):
        await backend.head("x/new.bin")


async def test_create_succeeds_once_and_never_replaces(make_backend: Factory) -> None:
    backend = make_backend()
    await backend.create("c/first.bin", body(b"first"), size=5)
    with pytest.raises(base.AlreadyExists):
        await backend.create("c/first.bin", body(b"second"))
    assert await read(backend, "c/first.bin") == b"first"


async def test_of_racing_creates_exactly_one_wins(make_backend: Factory) -> None:
    backend = make_backend()
    contents = [f"writer {n}".encode() * 1000 for n in range(6)]
    results = await asyncio.gather(
        *(backend.create("race/one.bin", body(data)) for data in contents), return_exceptions=True
    )
    winners = [n for n, result in enumerate(results) if result is None]
    assert len(winners) == 1, results
    assert all(isinstance(r, base.AlreadyExists) for n, r in enumerate(results) if n not in winners)
    assert await read(backend, "race/one.bin") == contents[winners[0]]


@pytest.mark.parametrize("extra", [12345, 0])
async def test_a_multipart_sized_body_round_trips(make_backend: Factory, extra: int) -> None:
    backend = make_backend()
    data = os.urandom(2 * PART + extra)  # also exactly two parts: the last request still has bytes
    pieces = [data[start : start + 1_000_000] for start in range(0, len(data), 1_000_000)]
    await backend.create("big/blob.bin", body(*pieces), size=len(data))
    assert await read(backend, "big/blob.bin") == data
    with pytest.raises(base.AlreadyExists):
        await backend.create("big/blob.bin", body(*pieces), size=len(data))


async def test_copy_and_delete(make_backend: Factory) -> None:
    backend = make_backend()
    await backend.put("src/file.bin", body(b"payload"))
    await backend.copy("src/file.bin", "dst/deeper/file.bin")
    assert await read(backend, "dst/deeper/file.bin") == b"payload"
    await backend.put("src/file.bin", body(b"replaced"))  # the copy is not the source's file
    assert await read(backend, "dst/deeper/file.bin") == b"payload"
    await backend.copy("src/file.bin", "dst/deeper/file.bin")  # over an existing copy
    assert await read(backend, "dst/deeper/file.bin") == b"replaced"
    with pytest.raises(base.NotFound):
        await backend.copy("src/missing.bin", "dst/missing.bin")
    await backend.delete("src/file.bin")
    await backend.delete("src/file.bin")  # absent: not an error
    with pytest.raises(base.NotFound):
        await backend.head("src/file.bin")
    assert await read(backend, "dst/deeper/file.bin") == b"replaced"


async def test_list_reports_the_complete_objects_below_a_prefix(make_backend: Factory) -> None:
    backend = make_backend()
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    await backend.put("l/a/one.bin", body(b"1"))
    await backend.put("l/a/deeper/two.bin", body(b"22"))
    await backend.create("l/b/three.bin", body(b"333"))
    with pytest.raises(base.Malformed):
        await backend.put("l/a/never.bin", body(b"x"), size=5)
    with pytest.raises(base.UpstreamError):
        await backend.put("l/a/broken.bin", broken(os.urandom(PART + 1), b"tail"))
    listed = [item async for item in backend.list("l/a/")]
    assert sorted((item.location, item.size) for item in listed) == [
        ("l/a/deeper/two.bin", 2),
        ("l/a/one.bin", 1),
    ]
    after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)
    assert all(before < item.modified < after for item in listed)
    assert sorted([item.location async for item in backend.list("l/")]) == [
        "l/a/deeper/two.bin",
        "l/a/one.bin",
        "l/b/three.bin",
    ]
    assert await backend.remove_incomplete(after) >= 0  # whatever the store keeps of broken writes
    assert [item async for item in backend.list("l/c/")] == []


async def test_the_filesystem_leaves_no_temporary_files(tmp_path: Path) -> None:
    backend = FilesystemBackend(
        FilesystemSource.model_validate({"id": "fs", "type": "filesystem", "path": str(tmp_path)})
    )
    await backend.put("d/a.bin", body(b"a"))
    await backend.create("d/b.bin", body(b"b"))
    with pytest.raises(base.AlreadyExists):
        await backend.create("d/b.bin", body(b"c"))
    with pytest.raises(base.Malformed):
        await backend.put("d/c.bin", body(b"c"), size=9)
    await backend.copy("d/a.bin", "d/copy.bin")
    await backend.copy("d/a.bin", "d/copy.bin")  # again (a repeated publish): already the same file
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["a.bin", "b.bin", "copy.bin"]


async def test_s3_writes_without_permission_are_refused(
    s3_world: S3World, settings: UpstreamSettings
) -> None:
    key_id, secret = s3_world.powerless
    backend = S3Backend(s3_world.source(access_key=key_id, secret_key=secret), settings)
    try:
        with pytest.raises(base.PermissionDenied):
            await backend.put("denied.bin", body(b"x"))
        with pytest.raises(base.PermissionDenied):
            await backend.create("denied.bin", body(b"x"))
    finally:
        await backend.aclose()


# -------------------------------------------------------------------------------------------------
# GCS's answers to writes, from a small server that answers as GCS does (error paths only)


def _gcs_error(status: int, reason: str) -> web.Response:
    body = {"error": {"code": status, "message": reason, "errors": [{"reason": reason, "message": reason}]}}
    return web.json_response(body, status=status)


@pytest.mark.parametrize(
    ("status", "reason", "create", "expected", "retryable"),
    [
        (403, "forbidden", False, base.PermissionDenied, False),
        (401, "required", True, base.PermissionDenied, False),
        (412, "conditionNotMet", True, base.AlreadyExists, False),
        (412, "conditionNotMet", False, base.UpstreamError, False),  # no precondition was sent
        (429, "rateLimitExceeded", False, base.UpstreamError, True),
        (503, "backendError", True, base.UpstreamError, True),
        (400, "invalid", False, base.UpstreamError, False),
        (404, "notFound", False, base.NotFound, False),  # the bucket does not exist
    ],
)
async def test_gcs_answers_to_an_upload_become_our_errors(
    aiohttp_server: Callable[..., Any],
    settings: UpstreamSettings,
    status: int,
    reason: str,
    create: bool,
    expected: type[base.BackendError],
    retryable: bool,
) -> None:
    hits: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        hits.append(request.method)
        return _gcs_error(status, reason)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    server = await aiohttp_server(app)
    backend = GcsBackend(gcs_source(), settings, api_root=str(server.make_url("")).rstrip("/"))
    try:
        write = backend.create if create else backend.put
        with pytest.raises(expected) as caught:
            await write("a/b.bin", body(b"data"))
        assert type(caught.value) is expected
        assert caught.value.retryable is retryable
        assert "ya29" not in str(caught.value)  # the token is never in an error
    finally:
        await backend.aclose()
    # Retryable answers are tried again (``retries`` times), as botocore does for S3; 401 once more
    # only with a refreshable token, which a bearer token is not.
    assert hits == ["POST"] * (settings.retries + 1 if retryable else 1)


async def test_a_gcs_write_that_fails_once_succeeds_on_the_retry(
    aiohttp_server: Callable[..., Any], settings: UpstreamSettings
) -> None:
    answers = [503]
    stored: dict[str, bytes] = {}

    async def upload(request: web.Request) -> web.Response:
        if answers:
            return _gcs_error(answers.pop(), "backendError")
        stored[request.query["name"]] = await request.read()
        return web.json_response({"name": request.query["name"]})

    app = web.Application()
    app.router.add_post("/upload/storage/v1/b/symbols/o", upload)
    server = await aiohttp_server(app)
    backend = GcsBackend(gcs_source(), settings, api_root=str(server.make_url("")).rstrip("/"))
    try:
        await backend.create("a/b.bin", body(b"da", b"ta"), size=4)
    finally:
        await backend.aclose()
    assert stored == {"a/b.bin": b"data"}


class ResumableGcs:
    """A resumable upload endpoint answering as GCS does, with scripted faults.

    ``faults`` says, per request that carries bytes (in turn; none left: no fault), what goes wrong:
    ``"half"`` keeps half of the chunk (its 308 says so), ``"lost-answer"`` keeps the whole chunk
    and answers 503 (the answer is lost), ``"refused"`` keeps nothing and answers 503, ``"fatal"``
    keeps nothing and answers 400. A request without bytes asks how much is kept (``bytes */*``),
    or with the total finishes the object if every byte is there."""

    def __init__(self, *faults: str) -> None:
        self.faults = list(faults)
        self.stored = bytearray()
        self.spans: list[str] = []
        self.sessions = 0
        self.cancelled = 0
        self.complete = False

    def app(self) -> web.Application:
        app = web.Application(client_max_size=2 * gcs.WRITE_PART_SIZE)
        app.router.add_post("/upload/storage/v1/b/symbols/o", self.start)
        app.router.add_put("/session", self.chunk)
        app.router.add_delete("/session", self.cancel)
        return app

    async def start(self, request: web.Request) -> web.Response:
        assert request.query["uploadType"] == "resumable" and request.query["ifGenerationMatch"] == "0"
        self.sessions += 1
        location = request.url.with_path("/session").with_query({"id": str(self.sessions)})
        return web.json_response({}, headers={"Location": str(location)})

    async def cancel(self, request: web.Request) -> web.Response:
        self.cancelled += 1
        return web.Response(status=499)

    def _kept(self) -> web.Response:
        if self.complete:
            return web.json_response({"name": "big.bin", "size": str(len(self.stored))})
        headers = {"Range": f"bytes=0-{len(self.stored) - 1}"} if self.stored else {}
        return web.Response(status=308, headers=headers)

    async def chunk(self, request: web.Request) -> web.Response:
        span = request.headers["Content-Range"].removeprefix("bytes ")
        self.spans.append(span)
        first, _, total = span.partition("/")
        data = await request.read()
        if not data:  # a status request, or the finish of an upload whose bytes are all there
            assert first == "*"
            self.complete = self.complete or (total != "*" and len(self.stored) == int(total))
            return self._kept()
        if int(first.partition("-")[0]) != len(self.stored):
            return _gcs_error(400, "invalid")
        fault = self.faults.pop(0) if self.faults else None
        if fault in ("refused", "fatal"):
            return _gcs_error(503 if fault == "refused" else 400, "backendError")
        self.stored.extend(data[: len(data) // 2] if fault == "half" else data)
        self.complete = total != "*" and len(self.stored) == int(total)
        if fault == "lost-answer":
            return _gcs_error(503, "backendError")
        return self._kept()


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param(["half", "half", "half"], id="chunks-kept-in-part"),
        pytest.param(["lost-answer", "refused", "refused"], id="chunks-failed-after-and-before-keeping"),
        pytest.param(["none", "none", "lost-answer"], id="the-last-chunk-kept-answer-lost"),
        pytest.param(["none", "none", "refused", "half"], id="the-last-chunk-refused-then-kept-in-part"),
    ],
)
async def test_a_gcs_upload_goes_on_from_what_gcs_kept_without_starting_again(
    aiohttp_server: Callable[..., Any], faults: list[str]
) -> None:
    """GCS may keep less of a chunk than it was sent (its 308's ``Range`` says how much), and a chunk
    may fail with 503 before or after GCS kept it. Either way the upload goes on from what GCS says
    it has, in the same session, and the object is exactly the bytes sent."""
    gcs_server = ResumableGcs(*faults)
    server = await aiohttp_server(gcs_server.app())
    settings = UpstreamSettings(
        connect_timeout=2, head_timeout=10, read_timeout=10, total_timeout=60, retries=3
    )
    backend = GcsBackend(gcs_source(), settings, api_root=str(server.make_url("")).rstrip("/"))
    data = os.urandom(2 * gcs.WRITE_PART_SIZE + 99)
    try:
        await backend.create(
            "big.bin", body(*[data[i : i + 1_000_000] for i in range(0, len(data), 1_000_000)])
        )
    finally:
        await backend.aclose()
    assert gcs_server.complete and bytes(gcs_server.stored) == data
    assert (gcs_server.sessions, gcs_server.cancelled) == (1, 0)
    assert gcs_server.faults == []  # every scripted fault happened


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        pytest.param(["none", "fatal"], "400", id="a-chunk-refused-for-good"),
        pytest.param(["none"] + ["refused"] * 4, "503", id="a-chunk-refused-every-time"),
    ],
)
async def test_a_gcs_upload_that_cannot_go_on_is_cancelled_and_stores_nothing(
    aiohttp_server: Callable[..., Any], faults: list[str], expected: str
) -> None:
    gcs_server = ResumableGcs(*faults)
    server = await aiohttp_server(gcs_server.app())
    settings = UpstreamSettings(
        connect_timeout=2, head_timeout=10, read_timeout=10, total_timeout=60, retries=3
    )
    backend = GcsBackend(gcs_source(), settings, api_root=str(server.make_url("")).rstrip("/"))
    try:
        with pytest.raises(base.UpstreamError, match=expected):
            await backend.create("big.bin", body(os.urandom(2 * gcs.WRITE_PART_SIZE + 99)))
    finally:
        await backend.aclose()
    assert not gcs_server.complete and gcs_server.cancelled == 1
    assert gcs_server.faults == []  # a chunk is tried retries + 1 times, no more
