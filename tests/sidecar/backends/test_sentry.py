"""The Sentry backend against a small Sentry debug-file endpoint on 127.0.0.1.

Covered: searches by debug id and by code id over real fixture files, ranked by the requested file
types and filtered client-side; downloads byte-identical; token and cookie authentication; the
listing cache (a second search makes no request, entries expire, concurrent searches share one
request, errors are not cached); pagination; refusals reported once; unknown ids; no credential in
messages, logs or reprs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from symbol_proxy.backends import base
from symbol_proxy.backends.sentry import SentryBackend
from symbol_proxy.config import SentrySource, UpstreamSettings
from symbol_proxy.objects import FileType, ObjectQuery
from tests.support import shared
from tests.support.sentryserver import SentryServer

TOKEN = "sntrys_test-token-value"
COOKIE = "sentrysid=test-cookie-value; sudo=1"
PE_ORDER = (FileType.PE, FileType.BREAKPAD, FileType.MACH_DEBUG, FileType.PDB, FileType.ELF_DEBUG)
SYMBOL_TYPE = {
    "pe": "pe",
    "pdb": "pdb",
    "portablepdb": "portablepdb",
    "elf": "elf",
    "macho": "macho",
    "breakpad": "breakpad",
}


def fixture(path: str) -> shared.FixtureObject:
    (found,) = [o for o in shared.keyed_objects() if o.entry["path"] == path]
    return found


@pytest.fixture
async def sentry(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> tuple[SentryServer, str]:
    """A Sentry with the Windows ``crash`` build (exe, pdb, Breakpad) and the Linux ``crash`` build."""
    store = SentryServer(token=TOKEN, cookie=COOKIE)
    for path in (
        "pe/crash.exe",
        "pdb/crash.pdb",
        "breakpad/windows/crash.sym",
        "elf/crash",
        "elf/crash.debug",
    ):
        item = fixture(path)
        store.add(SYMBOL_TYPE[item.format], item.obj["debug_id"], item.obj.get("code_id"), path, item.data)
    server = await aiohttp_server(store.app)
    return store, str(server.make_url("/api/0/projects/acme/native/files/dsyms/"))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def make(
    sentry: tuple[SentryServer, str], session: aiohttp.ClientSession, settings: UpstreamSettings
) -> AsyncIterator[Callable[..., SentryBackend]]:
    made: list[SentryBackend] = []

    def build(**fields: Any) -> SentryBackend:
        options = {k: fields.pop(k) for k in ("listing_ttl", "listing_capacity") if k in fields}
        values: dict[str, Any] = {"id": "sentry:project", "type": "sentry", "url": sentry[1], "token": TOKEN}
        values.update(fields)
        backend = SentryBackend(SentrySource.model_validate(values), settings, session=session, **options)
        made.append(backend)
        return backend

    yield build
    for backend in made:
        await backend.aclose()


async def read_all(stream: base.ObjectStream) -> bytes:
    try:
        return b"".join([chunk async for chunk in stream.chunks()])
    finally:
        await stream.aclose()


async def test_a_search_by_debug_id_finds_the_build_best_file_type_first_and_downloads_it(
    sentry: tuple[SentryServer, str], make: Callable[..., SentryBackend]
) -> None:
    store, _ = sentry
    exe = fixture("pe/crash.exe")
    backend = make()
    found = await backend.search(exe.query, PE_ORDER)
    assert [filetype for _, filetype in found] == [FileType.PE, FileType.BREAKPAD, FileType.PDB]
    assert store.listings == [{"debug_id": exe.obj["debug_id"]}]
    for (file_id, _), path in zip(
        found, ("pe/crash.exe", "breakpad/windows/crash.sym", "pdb/crash.pdb"), strict=True
    ):
        stream = await backend.open(file_id)
        assert stream.info.size == len(fixture(path).data)
        assert await read_all(stream) == fixture(path).data
    assert store.downloads == [file_id for file_id, _ in found]


async def test_a_search_by_code_id_is_used_when_there_is_no_debug_id(
    sentry: tuple[SentryServer, str], make: Callable[..., SentryBackend]
) -> None:
    store, _ = sentry
    elf = fixture("elf/crash")
    query = ObjectQuery.create(code_id=elf.obj["code_id"], code_file="crash", object_type="elf")
    found = await make().search(query, (FileType.ELF_CODE, FileType.BREAKPAD, FileType.ELF_DEBUG))
    assert store.listings == [{"code_id": elf.obj["code_id"]}]
    assert len(found) == 2 and {t for _, t in found} == {FileType.ELF_CODE}
    bodies = {await read_all(await make().open(file_id)) for file_id, _ in found}
    assert bodies == {elf.data, fixture("elf/crash.debug").data}


async def test_file_types_that_were_not_asked_for_are_filtered_out(
    sentry: tuple[SentryServer, str], make: Callable[..., SentryBackend]
) -> None:
    found = await make().search(fixture("pe/crash.exe").query, (FileType.PDB,))
    assert len(found) == 1 and found[0][1] is FileType.PDB
    assert await read_all(await make().open(found[0][0])) == fixture("pdb/crash.pdb").data


async def test_unknown_symbol_types_are_skipped(
    sentry: tuple[SentryServer, str], make: Callable[..., SentryBackend]
) -> None:
    store, _ = sentry
    exe = fixture("pe/crash.exe")
    store.add("dartsymbolmap", exe.obj["debug_id"], None, "map.json", b"{}")
    found = await make().search(exe.query, tuple(FileType))
    assert len(found) == 3


async def test_a_query_without_ids_makes_no_request(
    sentry: tuple[SentryServer, str], make: Callable[..., SentryBackend]
) -> None:
    store, _ = sentry
    assert await make().search(ObjectQuery.create(code_file="crash.exe"), PE_ORDER) == []
    assert store.listings == []


async def test_the_token_travels_as_a_bearer_header(
    sentry: tuple[SentryServer, str], make: Callable[..., SentryBackend]
) -> None:
    store, _ = sentry
    backend = make()
    (file_id, _), *_ = await backend.search(fixture("pe/crash.exe").query, PE_ORDER)
    await read_all(await backend.open(file_id))
    assert [h.get("Authorization") for h in store.headers_seen] == [f"Bearer {TOKEN}"] * 2
    assert all("Cookie" not in h for h in store.headers_seen)
    assert store.headers_seen[0].get("Accept-Encoding") == "identity"


async def test_cookies_travel_as_a_cookie_header(
    sentry: tuple[SentryServer, str], make: Callable[..., SentryBackend]
) -> None:
    store, _ = sentry
    backend = make(token=None, cookies=COOKIE)
    (file_id, _), *_ = await backend.search(fixture("pe/crash.exe").query, PE_ORDER)
    assert await read_all(await backend.open(file_id)) == fixture("pe/crash.exe").data
    assert [h.get("Cookie") for h in store.headers_seen] == [COOKIE] * 2
    assert all("Authorization" not in h for h in store.headers_seen)


async def test_a_second_search_is_answered_from_the_listing_cache(
    sentry: tuple[SentryServer, str], make: Callable[..., SentryBackend]
) -> None:
    store, _ = sentry
    backend = make()
    query = fixture("pe/crash.exe").query
    first = await backend.search(query, PE_ORDER)
    second = await backend.search(query, PE_ORDER)
    only_pdb = await backend.search(query, (FileType.PDB,))
    assert first == second and only_pdb == [f for f in first if f[1] is FileType.PDB]
    assert len(store.listings) == 1


async def test_a_cached_listing_expires(
    sentry: tuple[SentryServer, str], make: Callable[..., SentryBackend]
) -> None:
    store, _ = sentry
    backend = make(listing_ttl=0.2)
    query = fixture("pe/crash.exe").query
    await backend.search(query, PE_ORDER)
    await asyncio.sleep(0.3)
    await backend.search(query, PE_ORDER)
    assert len(store.listings) == 2


async def test_the_listing_cache_is_bounded(
    sentry: tuple[SentryServer, str], make: Callable[..., SentryBackend]
) -> None:
    store, _ = sentry
    backend = make(listing_capacity=1)
    exe, elf = fixture("pe/crash.exe").query, ObjectQuery.create(code_id=fixture("elf/crash").obj["code_id"])
    await backend.search(exe, PE_ORDER)
    await backend.search(elf, (FileType.ELF_CODE,))
    await backend.search(exe, PE_ORDER)
    assert len(store.listings) == 3


async def test_concurrent_identical_searches_share_one_listing_request(
    sentry: tuple[SentryServer, str], make: Callable[..., SentryBackend]
) -> None:
    store, _ = sentry
    backend = make()
    query = fixture("pe/crash.exe").query
    results = await asyncio.gather(*(backend.search(query, PE_ORDER) for _ in range(10)))
    assert all(r == results[0] for r in results) and len(results[0]) == 3
    assert len(store.listings) == 1


async def test_a_failing_listing_is_an_upstream_error_and_is_not_cached(
    sentry: tuple[SentryServer, str], make: Callable[..., SentryBackend]
) -> None:
    store, _ = sentry
    backend = make()
    query = fixture("pe/crash.exe").query
    store.fail_listing = 500
    with pytest.raises(base.UpstreamError) as caught:
        await backend.search(query, PE_ORDER)
    assert caught.value.status == 500 and caught.value.retryable
    assert not isinstance(caught.value, base.NotFound)
    store.fail_listing = None
    assert len(await backend.search(query, PE_ORDER)) == 3
    assert len(store.listings) == 2


async def test_long_listings_are_followed_across_pages(
    sentry: tuple[SentryServer, str], make: Callable[..., SentryBackend]
) -> None:
    store, _ = sentry
    store.per_page = 2
    exe = fixture("pe/crash.exe")
    for n in range(3):
        store.add("breakpad", exe.obj["debug_id"], None, f"extra-{n}.sym", b"MODULE extra")
    found = await make().search(exe.query, PE_ORDER)
    assert len(found) == 6
    assert len(store.listings) == 3


async def test_wrong_credentials_are_denied_and_reported_once(
    sentry: tuple[SentryServer, str], make: Callable[..., SentryBackend], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="symbol_proxy.backends.sentry")
    backend = make(id="sentry:wrong", token="sntrys_wrong-token")
    query = fixture("pe/crash.exe").query
    for _ in range(3):
        with pytest.raises(base.PermissionDenied, match="401") as caught:
            await backend.search(query, PE_ORDER)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "sentry:wrong" in warnings[0] and "listing" in warnings[0]
    for text in (caplog.text, str(caught.value), repr(backend)):
        assert "sntrys_wrong-token" not in text
    with pytest.raises(base.PermissionDenied):
        await backend.open("1000")
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2  # a new operation


async def test_an_unknown_file_id_is_not_found(
    sentry: tuple[SentryServer, str], make: Callable[..., SentryBackend]
) -> None:
    with pytest.raises(base.NotFound):
        await make().open("999999")
    with pytest.raises(base.NotFound):
        await make().open("../../etc/passwd")
