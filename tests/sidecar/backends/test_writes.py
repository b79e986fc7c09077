"""The write side of the backend interface (``WritableBackend``), one contract for every store.

Each test runs against the filesystem backend (a temporary directory) and the S3 backend (moto's
server on 127.0.0.1 with IAM checks on, as in ``test_s3.py``; every test below its own prefix).
Covered: put then read byte-identical, put replaces; a body of the wrong declared size or one that
breaks off stores nothing and leaves the old object; conditional create wins once, a second create
(and one of several racing creates) gets ``AlreadyExists`` and leaves the first object alone; head;
copy; delete (twice); bodies larger than one S3 multipart part; no temporary file left behind; a
user without write permission gets ``PermissionDenied``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from symbol_proxy.backends import base, s3
from symbol_proxy.backends.filesystem import FilesystemBackend
from symbol_proxy.backends.s3 import S3Backend
from symbol_proxy.config import FilesystemSource, UpstreamSettings
from tests.sidecar.backends.conftest import S3World

Factory = Callable[[], base.WritableBackend]


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


@pytest.fixture(params=["filesystem", "s3"])
async def make_backend(
    request: pytest.FixtureRequest, tmp_path: Path, settings: UpstreamSettings
) -> AsyncIterator[Factory]:
    made: list[base.WritableBackend] = []
    prefix = f"writes-{uuid.uuid4().hex}"

    def make() -> base.WritableBackend:
        backend: base.WritableBackend
        if request.param == "filesystem":
            source = FilesystemSource.model_validate(
                {"id": "fs", "type": "filesystem", "path": str(tmp_path)}
            )
            backend = FilesystemBackend(source)
        else:
            world: S3World = request.getfixturevalue("s3_world")
            backend = S3Backend(world.source(prefix=prefix), settings)
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
    big = os.urandom(s3.WRITE_PART_SIZE + 1024)  # past one multipart part, so S3 must abort an upload
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


async def test_a_multipart_sized_body_round_trips(make_backend: Factory) -> None:
    backend = make_backend()
    data = os.urandom(2 * s3.WRITE_PART_SIZE + 12345)
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
