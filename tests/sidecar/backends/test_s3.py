"""The S3 backend against real S3 APIs on 127.0.0.1: moto's server (with IAM checks switched on and a
request log) and MinIO (the tests marked by the ``world`` fixture run against both).

Covered: fixture files byte-identical from SymStore keys and from lowercased SSQP keys below a
prefix; the ``[name, endpoint]`` region with path-style requests; missing keys, buckets and empty
objects as ``NotFound``; unknown keys, wrong secrets, IAM refusals and an empty credential chain as
``PermissionDenied`` with the S3 error code, reported once per source and operation, and never with
a credential in a message, a log line or a repr; container credentials; a 200 MiB object fetched
with one GET below the parallel threshold and in parallel ranged parts from it, with flat memory
both ways; an object replaced mid-download; a store that lies about the ETag or cuts a body short
(a small aiohttp server speaking just enough S3).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import tempfile
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from symbol_proxy.backends import base
from symbol_proxy.backends.s3 import S3Backend
from symbol_proxy.config import ConfigError, S3Source, UpstreamSettings
from tests.sidecar.backends.conftest import ALLOW_ALL, REGION, S3World
from tests.support.s3server import S3Server

MiB = 1024 * 1024


async def read_all(stream: base.ObjectStream) -> bytes:
    try:
        return b"".join([chunk async for chunk in stream.chunks()])
    finally:
        await stream.aclose()


@pytest.fixture(params=["moto", "minio"])
def world(request: pytest.FixtureRequest) -> S3World:
    """The S3 API a test runs against: moto (with IAM and a request log), and MinIO, a server that
    stores objects on disk and serves ranges from them as S3 does."""
    name = "s3_world" if request.param == "moto" else "minio_world"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
async def backend_for(settings: UpstreamSettings) -> AsyncIterator[Callable[..., S3Backend]]:
    """Build backends that are closed after the test."""
    made: list[S3Backend] = []

    def make(source: S3Source, **options: Any) -> S3Backend:
        backend = S3Backend(source, settings, **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()


async def test_fixture_files_come_back_byte_identical_from_their_symstore_keys(
    world: S3World, backend_for: Callable[..., S3Backend]
) -> None:
    backend = backend_for(world.source())
    assert len(world.files) >= 10
    for stored in world.files:
        stream = await backend.open(stored.symstore_key)
        assert stream.info.size == stored.path.stat().st_size
        assert await read_all(stream) == stored.data, stored.symstore_key


async def test_lowercase_ssqp_keys_are_found_below_a_prefix_whose_slashes_are_trimmed(
    world: S3World, backend_for: Callable[..., S3Backend]
) -> None:
    backend = backend_for(world.source(bucket="team-symbols", prefix="//team-a//"))
    for stored in world.files[:5]:
        assert await read_all(await backend.open(stored.ssqp_key)) == stored.data
    with pytest.raises(base.NotFound):
        await backend.open(world.files[0].symstore_key)  # not below the prefix in this bucket


async def test_a_small_object_costs_one_path_style_request_to_the_configured_endpoint(
    s3_world: S3World, backend_for: Callable[..., S3Backend]
) -> None:
    stored = s3_world.files[0]
    backend = backend_for(s3_world.source())
    s3_world.server.clear_requests()
    await read_all(await backend.open(stored.symstore_key))
    gets = [r for r in s3_world.server.requests() if r["method"] == "GET"]
    assert len(gets) == 1
    assert gets[0]["path"] == f"/symbols/{stored.symstore_key}"
    assert gets[0]["range"] is None  # one plain GET: no store re-reads the object for a range


async def test_a_missing_key_is_not_found(world: S3World, backend_for: Callable[..., S3Backend]) -> None:
    with pytest.raises(base.NotFound):
        await backend_for(world.source()).open("crash.pdb/0000/crash.pdb")


async def test_a_missing_bucket_is_not_found(world: S3World, backend_for: Callable[..., S3Backend]) -> None:
    with pytest.raises(base.NotFound):
        await backend_for(world.source(bucket="no-such-bucket")).open("crash.pdb/0000/crash.pdb")


async def test_an_empty_object_is_not_found(world: S3World, backend_for: Callable[..., S3Backend]) -> None:
    with pytest.raises(base.NotFound):
        await backend_for(world.source()).open("empty/object")


async def test_an_unknown_access_key_is_denied_and_reported_once_with_its_s3_code(
    world: S3World, backend_for: Callable[..., S3Backend], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="symbol_proxy.backends.s3")
    source = world.source(id="s3-wrong-key", access_key="AKIANOSUCHKEY0000000", secret_key="no-such-secret-1")
    backend = backend_for(source)
    for _ in range(3):
        with pytest.raises(base.PermissionDenied) as caught:
            await backend.open(world.files[0].symstore_key)
        assert "InvalidAccessKeyId" in str(caught.value)
        assert caught.value.retryable is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "s3-wrong-key" in message and "GetObject" in message and "InvalidAccessKeyId" in message
    for secret in ("AKIANOSUCHKEY0000000", "no-such-secret-1"):
        assert secret not in caplog.text
        assert secret not in str(caught.value)
        assert secret not in repr(backend)


async def test_a_wrong_secret_is_denied_as_a_signature_mismatch(
    world: S3World, backend_for: Callable[..., S3Backend]
) -> None:
    source = world.source(access_key=world.admin[0], secret_key="not-the-secret")
    with pytest.raises(base.PermissionDenied, match="SignatureDoesNotMatch"):
        await backend_for(source).open(world.files[0].symstore_key)


async def test_a_user_without_read_permission_is_denied_as_access_denied(
    s3_world: S3World, backend_for: Callable[..., S3Backend]
) -> None:
    source = s3_world.source(access_key=s3_world.powerless[0], secret_key=s3_world.powerless[1])
    with pytest.raises(base.PermissionDenied, match="AccessDenied"):
        await backend_for(source).open(s3_world.files[0].symstore_key)


async def test_an_empty_credential_chain_is_denied_without_touching_the_network(
    s3_world: S3World, backend_for: Callable[..., S3Backend]
) -> None:
    source = s3_world.source(access_key="", secret_key="", aws_credentials_provider="default")
    s3_world.server.clear_requests()
    with pytest.raises(base.PermissionDenied, match="credentials"):
        await backend_for(source).open(s3_world.files[0].symstore_key)
    assert s3_world.server.requests() == []


async def test_the_default_chain_picks_up_credentials_from_the_environment(
    world: S3World, backend_for: Callable[..., S3Backend], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", world.admin[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", world.admin[1])
    stored = world.files[0]
    backend = backend_for(world.source(access_key="", secret_key=""))
    assert await read_all(await backend.open(stored.symstore_key)) == stored.data


async def test_container_credentials_come_from_the_container_endpoint(
    s3_world: S3World,
    backend_for: Callable[..., S3Backend],
    monkeypatch: pytest.MonkeyPatch,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    calls: list[str | None] = []
    # Temporary credentials, as the container endpoint hands out: moto checks the session token.
    admin = {
        "region_name": REGION,
        "endpoint_url": s3_world.server.endpoint,
        "aws_access_key_id": s3_world.admin[0],
        "aws_secret_access_key": s3_world.admin[1],
    }
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    role = boto3.client("iam", **admin).create_role(
        RoleName="task-role", AssumeRolePolicyDocument=json.dumps(trust)
    )
    boto3.client("iam", **admin).put_role_policy(
        RoleName="task-role", PolicyName="all", PolicyDocument=ALLOW_ALL
    )
    temporary = boto3.client("sts", **admin).assume_role(RoleArn=role["Role"]["Arn"], RoleSessionName="task")[
        "Credentials"
    ]

    async def credentials(request: web.Request) -> web.Response:
        calls.append(request.headers.get("Authorization"))
        return web.json_response(
            {
                "AccessKeyId": temporary["AccessKeyId"],
                "SecretAccessKey": temporary["SecretAccessKey"],
                "Token": temporary["SessionToken"],
                "Expiration": "2999-01-01T00:00:00Z",
            }
        )

    app = web.Application()
    app.router.add_get("/creds", credentials)
    server = await aiohttp_server(app)
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", str(server.make_url("/creds")))
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod-identity-token")
    # Static keys in the environment must not win over the container provider.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "environment-secret")
    stored = s3_world.files[0]
    backend = backend_for(s3_world.source(access_key="", secret_key="", aws_credentials_provider="container"))
    assert await read_all(await backend.open(stored.symstore_key)) == stored.data
    assert calls == ["pod-identity-token"]


async def test_only_half_of_a_static_key_pair_is_a_configuration_error(
    s3_world: S3World, settings: UpstreamSettings
) -> None:
    with pytest.raises(ConfigError, match="together"):
        S3Backend(s3_world.source(secret_key=""), settings)


async def test_a_region_given_by_name_talks_to_aws_style_virtual_hosts(settings: UpstreamSettings) -> None:
    backend = S3Backend(S3Source(id="aws", type="s3", bucket="b", region="eu-west-1"), settings)
    arguments = backend._client_arguments()
    assert arguments["region_name"] == "eu-west-1"
    assert "endpoint_url" not in arguments
    assert "aws_access_key_id" not in arguments  # empty keys: the default chain
    await backend.aclose()


# ------------------------------------------------------------------------------------------------
# Large objects


_large_objects: dict[str, tuple[str, int, str]] = {}


@pytest.fixture
def large_object(world: S3World) -> tuple[str, int, str]:
    """A 200 MiB object written from a generated file (never held in memory), once per store: key,
    size, sha256."""
    if world.server.endpoint in _large_objects:
        return _large_objects[world.server.endpoint]
    size = 200 * MiB
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as spool:
        for index in range(size // MiB):
            block = hashlib.sha256(index.to_bytes(4, "big")).digest() * (MiB // 32)
            digest.update(block)
            spool.write(block)
        spool.seek(0)
        world.client().put_object(Bucket="symbols", Key="large/object", Body=spool, ContentLength=size)
    _large_objects[world.server.endpoint] = ("large/object", size, digest.hexdigest())
    return _large_objects[world.server.endpoint]


async def test_a_large_object_streams_in_parallel_ranged_parts_with_flat_memory(
    world: S3World, backend_for: Callable[..., S3Backend], large_object: tuple[str, int, str]
) -> None:
    key, size, expected = large_object
    part_size = 16 * MiB
    backend = backend_for(
        world.source(), part_size=part_size, concurrency=4, part_buffer=4 * MiB, parallel_threshold=size
    )
    if isinstance(world.server, S3Server):
        world.server.clear_requests()
    digest = hashlib.sha256()
    received = 0
    tracemalloc.start()
    try:
        stream = await backend.open(key)
        assert stream.info.size == size
        assert stream.info.etag is not None and "-" not in stream.info.etag  # an MD5 ETag: checked
        async for chunk in stream.chunks():
            digest.update(chunk)
            received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == size
    assert digest.hexdigest() == expected
    assert peak < 48 * MiB, f"peak {peak / MiB:.1f} MiB"
    if not isinstance(world.server, S3Server):
        return  # MinIO keeps no request log; the parts were checked by the bytes and the ETag
    gets = [r for r in world.server.requests() if r["method"] == "GET"]
    assert len(gets) == math.ceil(size / part_size)
    # The first part comes from the opening GET (no range); the others are ranged.
    assert gets[0]["range"] is None
    starts = sorted(int(r["range"].split("=")[1].split("-")[0]) for r in gets[1:])
    assert starts == list(range(part_size, size, part_size))
    # Parallel: the second part was requested before the opening GET had been read to its end.
    by_start = {int(r["range"].split("=")[1].split("-")[0]): r for r in gets[1:]}
    assert by_start[part_size]["started"] < gets[0]["ended"]


async def test_a_large_object_below_the_parallel_threshold_streams_from_one_get_with_flat_memory(
    world: S3World, backend_for: Callable[..., S3Backend], large_object: tuple[str, int, str]
) -> None:
    key, size, expected = large_object
    backend = backend_for(world.source(), parallel_threshold=size + 1)
    if isinstance(world.server, S3Server):
        world.server.clear_requests()
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        stream = await backend.open(key)
        async for chunk in stream.chunks():
            digest.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == expected
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB"
    if isinstance(world.server, S3Server):
        gets = [r for r in world.server.requests() if r["method"] == "GET"]
        assert [r["range"] for r in gets] == [None]


async def test_an_object_replaced_during_a_ranged_download_fails_instead_of_mixing_versions(
    world: S3World, backend_for: Callable[..., S3Backend]
) -> None:
    client = world.client()
    client.put_object(Bucket="symbols", Key="changing/object", Body=b"a" * (3 * MiB))
    backend = backend_for(world.source(), part_size=1 * MiB, concurrency=1, parallel_threshold=0)
    stream = await backend.open("changing/object")
    chunks = stream.chunks()
    first = await chunks.__anext__()
    assert first.startswith(b"a")
    client.put_object(Bucket="symbols", Key="changing/object", Body=b"b" * (3 * MiB))
    with pytest.raises(base.UpstreamError, match="changed"):
        async for _ in chunks:
            pass
    await stream.aclose()


# ------------------------------------------------------------------------------------------------
# A store that misbehaves


class LyingStore:
    """Just enough of S3's GetObject for one object, misbehaving on request: a wrong ETag, a first
    body cut short or stalled, a first answer that is a 503 ``SlowDown``, headers that never come."""

    def __init__(
        self,
        data: bytes,
        etag: str,
        cut_first_response: bool = False,
        stall_first_response: bool = False,
        fail_first: bool = False,
        hang: bool = False,
    ) -> None:
        self.data = data
        self.etag = etag
        self.cut_first_response = cut_first_response
        self.stall_first_response = stall_first_response
        self.fail_first = fail_first
        self.hang = hang
        self.ranges: list[str | None] = []
        self.app = web.Application()
        self.app.router.add_get("/{bucket}/{key:.*}", self.get)

    async def get(self, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Range")
        self.ranges.append(header)
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail_first and len(self.ranges) == 1:
            error = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            return web.Response(status=503, text=error, content_type="application/xml")
        start, end = 0, len(self.data) - 1
        if header:
            first, _, last = header.removeprefix("bytes=").partition("-")
            start, end = int(first), min(int(last), len(self.data) - 1)
        response = web.StreamResponse(status=206 if header else 200)
        response.headers["ETag"] = f'"{self.etag}"'
        response.headers["Content-Length"] = str(end - start + 1)
        if header:
            response.headers["Content-Range"] = f"bytes {start}-{end}/{len(self.data)}"
        await response.prepare(request)
        body = self.data[start : end + 1]
        if self.cut_first_response and len(self.ranges) == 1:
            await response.write(body[: len(body) // 3])
            assert request.transport is not None
            request.transport.close()
            return response
        if self.stall_first_response and len(self.ranges) == 1:
            await response.write(body[: len(body) // 3])
            await asyncio.sleep(3600)
        await response.write(body)
        await response.write_eof()
        return response


def lying_source(name: str, server: TestServer) -> S3Source:
    return S3Source.model_validate(
        {
            "id": name,
            "type": "s3",
            "bucket": "b",
            "region": [REGION, str(server.make_url(""))],
            "access_key": "AKIAEXAMPLE",
            "secret_key": "secret",
        }
    )


async def test_a_body_that_does_not_match_its_md5_etag_is_malformed(
    aiohttp_server: Callable[..., Awaitable[TestServer]], backend_for: Callable[..., S3Backend]
) -> None:
    store = LyingStore(b"x" * 100_000, etag="0" * 32)
    server = await aiohttp_server(store.app)
    source = lying_source("liar", server)
    stream = await backend_for(source).open("some/key")
    with pytest.raises(base.Malformed, match="ETag"):
        await read_all(stream)


async def test_a_deferred_md5_check_is_handed_to_the_caller(
    aiohttp_server: Callable[..., Awaitable[TestServer]], backend_for: Callable[..., S3Backend]
) -> None:
    store = LyingStore(b"x" * 100_000, etag="0" * 32)
    server = await aiohttp_server(store.app)
    stream = await backend_for(lying_source("liar", server)).open("some/key")
    assert isinstance(stream, base.DeferrableMd5)
    chunks = stream.chunks()
    head = await anext(chunks)  # the resolver peeks before the cache takes the check over
    assert stream.defer_md5() == "0" * 32
    assert head + b"".join([chunk async for chunk in chunks]) == b"x" * 100_000
    await stream.aclose()


async def test_a_body_cut_short_is_resumed_from_where_it_stopped(
    aiohttp_server: Callable[..., Awaitable[TestServer]], backend_for: Callable[..., S3Backend]
) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    store = LyingStore(data, etag=hashlib.md5(data).hexdigest(), cut_first_response=True)
    server = await aiohttp_server(store.app)
    source = lying_source("flaky", server)
    backend = backend_for(source, part_size=512 * 1024, parallel_threshold=0)
    assert await read_all(await backend.open("some/key")) == data
    assert store.ranges[0] is None
    assert len(store.ranges) == 3  # the opening GET (the first part), its resumption, the second part
    resumed = [r for r in store.ranges[1:] if r != "bytes=524288-1048575"]
    assert len(resumed) == 1 and resumed[0] is not None and resumed[0].endswith("-524287")


async def test_a_single_get_cut_short_is_resumed_to_the_end_of_the_object(
    aiohttp_server: Callable[..., Awaitable[TestServer]], backend_for: Callable[..., S3Backend]
) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    store = LyingStore(data, etag=hashlib.md5(data).hexdigest(), cut_first_response=True)
    server = await aiohttp_server(store.app)
    backend = backend_for(lying_source("flaky", server))
    assert await read_all(await backend.open("some/key")) == data
    assert len(store.ranges) == 2 and store.ranges[0] is None
    assert store.ranges[1] is not None and store.ranges[1].endswith(f"-{len(data) - 1}")
    assert not store.ranges[1].startswith("bytes=0-")


async def test_a_body_that_stalls_is_resumed_after_the_read_timeout(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    data = bytes(range(256)) * 1024
    store = LyingStore(data, etag=hashlib.md5(data).hexdigest(), stall_first_response=True)
    server = await aiohttp_server(store.app)
    settings = UpstreamSettings(
        connect_timeout=2, head_timeout=5, read_timeout=0.3, total_timeout=30, retries=1
    )
    backend = S3Backend(lying_source("stalling", server), settings)
    try:
        assert await read_all(await backend.open("some/key")) == data
    finally:
        await backend.aclose()
    assert (
        len(store.ranges) == 2 and store.ranges[1] is not None and not store.ranges[1].startswith("bytes=0-")
    )


async def test_headers_that_never_come_are_a_timeout_after_the_head_timeout(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    store = LyingStore(b"x", etag="0" * 32, hang=True)
    server = await aiohttp_server(store.app)
    settings = UpstreamSettings(
        connect_timeout=2, head_timeout=0.3, read_timeout=5, total_timeout=30, retries=1
    )
    backend = S3Backend(lying_source("hanging", server), settings)
    try:
        with pytest.raises(base.UpstreamTimeout) as caught:
            await backend.open("some/key")
    finally:
        await backend.aclose()
    assert caught.value.retryable is False  # the SDK's retries ran inside the head timeout


async def test_a_throttled_request_is_retried_by_the_sdk(
    aiohttp_server: Callable[..., Awaitable[TestServer]], backend_for: Callable[..., S3Backend]
) -> None:
    data = b"symbols" * 100
    store = LyingStore(data, etag=hashlib.md5(data).hexdigest(), fail_first=True)
    server = await aiohttp_server(store.app)
    assert await read_all(await backend_for(lying_source("throttled", server)).open("some/key")) == data
    assert len(store.ranges) == 2


async def test_a_missing_key_is_asked_for_once(
    s3_world: S3World, backend_for: Callable[..., S3Backend]
) -> None:
    s3_world.server.clear_requests()
    with pytest.raises(base.NotFound):
        await backend_for(s3_world.source()).open("crash.pdb/0001/crash.pdb")
    assert len(s3_world.server.requests()) == 1


async def test_one_client_serves_every_download_until_the_backend_is_closed(
    s3_world: S3World, backend_for: Callable[..., S3Backend]
) -> None:
    backend = backend_for(s3_world.source())
    stored = s3_world.files[0]
    await read_all(await backend.open(stored.symstore_key))
    client = backend._client
    await read_all(await backend.open(stored.symstore_key))
    assert backend._client is client is not None
    await backend.aclose()
    assert backend._client is None
    assert await read_all(await backend.open(stored.symstore_key)) == stored.data  # a new client, lazily
