"""What the full request handlers (``server/handlers.py``) answer at their edges, end to end.

Written for the mutants of ``handlers.py`` that the other tests let live (``docs/testing.md``,
"Mutation testing"): the admin endpoint's rules (off, methods, loopback, the token, a follower's
client over the owner's Unix socket), what a purge forgets, ``/readyz`` with warnings, the
debuginfod routes this proxy does not serve, ``X-DEBUGINFOD-MAXSIZE`` at the limit, upstream
failures (502/504 with ``Retry-After``), a full cache (503), and the metrics each answer counts.
Every server is real and on 127.0.0.1 (or a Unix socket in ``tmp_path``); the proxy is the one
``start_proxy`` starts. A request with a query string is answered by the full handlers, not the
lean path (``server/fastpath.py``), which answers repeated hits and misses from memory.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import logging
import os
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from symbol_proxy.cache.store import CachedFile, Miss
from symbol_proxy.server.handlers import MAX_LOCATIONS, WORKER_CLIENT_HEADER, keyed, parse_symsrv
from symbol_proxy.server.state import STATE, State
from tests.conftest import StartProxy, app_of
from tests.e2e.test_client_answers import (
    COMPRESSED_KEY,
    DEBUGINFOD_KEY,
    ELF_DEBUG,
    PDB,
    PDB_KEY,
    cab_members,
    debuginfod_source,
)
from tests.e2e.test_proxy_behaviour import fetch, symstore
from tests.e2e.test_read_path import CHECKSUM, PORTABLE_PATH, PPDB_KEY, _data, filesystem
from tests.support.shared import keyed_objects
from tests.support.upstream import UpstreamStore

TOKEN = "purge-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
ADMIN_ON = {"enabled": True, "token": TOKEN}
BUILD_ID = DEBUGINFOD_KEY.split("/")[1]
ELF = next(o for o in keyed_objects() if f"buildid/{BUILD_ID}/executable" in o.keys.get("debuginfod", []))
UNIFIED_KEY = f"{BUILD_ID[:2]}/{BUILD_ID[2:]}/debuginfo"  # the same ELF file as a unified path


def state_of(server: TestServer) -> State:
    return app_of(server)[STATE]


def counted(server: TestServer, name: str, labels: dict[str, str] | None = None) -> float:
    return state_of(server).metrics.registry.get_sample_value(name, labels or {}) or 0.0


def requests_counted(server: TestServer, protocol: str, result: str) -> float:
    return counted(server, "symproxy_requests_total", {"protocol": protocol, "result": result})


def samples(exposition: bytes) -> dict[str, float]:
    """The unlabelled samples of a Prometheus text exposition, read by prometheus_client's parser."""
    families = text_string_to_metric_families(exposition.decode())
    return {s.name: s.value for family in families for s in family.samples if not s.labels}


async def until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait for ``condition`` without blocking the servers this loop runs."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def delete(
    http: aiohttp.ClientSession, url: object, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    async with http.delete(str(url), headers=headers) as response:
        return response.status, await response.read(), dict(response.headers)


# --------------------------------------------------------------------------------------------------
# The admin endpoint


async def test_with_the_admin_endpoint_off_every_admin_path_is_an_unknown_path_and_nothing_is_purged(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    proxy = await start_proxy([symstore(url)])  # admin is off unless configured
    assert (await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}")))[0] == 200
    for method in ("DELETE", "GET", "POST"):
        for path in ("/admin/cache", f"/admin/cache/symbols/{PDB_KEY}"):
            async with http.request(method, proxy.make_url(path), headers=BEARER) as response:
                assert response.status == 404, (method, path)
                assert (await response.read()).startswith(b"not found")
                assert "Allow" not in response.headers
    status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}?full"))
    assert status == 200 and body == PDB.data
    assert store.requests[PDB_KEY] == 1  # still cached


@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
async def test_the_admin_endpoint_answers_405_to_other_methods_and_names_delete(
    method: str, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy([], admin=ADMIN_ON)
    for path in ("/admin/cache", f"/admin/cache/symbols/{PDB_KEY}"):
        for headers in ({}, BEARER):  # the method is refused before the token is looked at
            async with http.request(method, proxy.make_url(path), headers=headers) as response:
                assert response.status == 405, (path, headers)
                assert response.headers["Allow"] == "DELETE"
                assert b"not allowed" in await response.read()


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"],
    ids=["absent", "empty", "scheme-only", "scheme-and-space", "no-scheme", "basic", "longer", "shorter"],
)
async def test_the_admin_endpoint_refuses_a_missing_or_wrong_token_and_purges_nothing(
    authorization: str | None,
    start_proxy: StartProxy,
    upstream: tuple[UpstreamStore, str],
    http: aiohttp.ClientSession,
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    proxy = await start_proxy([symstore(url)], admin=ADMIN_ON)
    assert (await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}")))[0] == 200
    headers = {} if authorization is None else {"Authorization": authorization}
    for path in ("/admin/cache", f"/admin/cache/symbols/{PDB_KEY}"):
        status, body, _ = await delete(http, proxy.make_url(path), headers)
        assert status == 401 and b"token" in body, (path, body)
    assert state_of(proxy).cache.count == 1
    status, body, _ = await delete(http, proxy.make_url("/admin/cache"), BEARER)
    assert status == 200 and json.loads(body) == {"removed": 1}
    assert state_of(proxy).cache.count == 0


@pytest.fixture
async def unix_http(tmp_path: Path) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that connects to ``tmp_path/owner.sock``, where a test serves the proxy's app."""
    connector = aiohttp.UnixConnector(path=str(tmp_path / "owner.sock"))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


@pytest.mark.parametrize(
    ("client", "expected"),
    [("127.0.0.1", 200), ("::1", 200), ("10.1.2.3", 403), ("", 403), (None, 403), ("not an address", 403)],
    ids=["loopback", "loopback-v6", "remote", "empty", "absent", "junk"],
)
async def test_over_the_owners_unix_socket_the_admin_endpoint_judges_the_client_a_follower_names(
    client: str | None,
    expected: int,
    tmp_path: Path,
    start_proxy: StartProxy,
    unix_http: aiohttp.ClientSession,
    http: aiohttp.ClientSession,
) -> None:
    """With ``--workers``, followers hand requests to the owner over its Unix socket, naming their
    client in a header (``server/workers.py``); the owner serves the same app there."""
    proxy = await start_proxy([], admin=ADMIN_ON)
    assert proxy.runner is not None
    site = web.UnixSite(proxy.runner, str(tmp_path / "owner.sock"))
    await site.start()
    headers = dict(BEARER)
    if client is not None:
        headers[WORKER_CLIENT_HEADER] = client
    status, body, _ = await delete(unix_http, "http://owner/admin/cache", headers)
    assert status == expected, body
    if expected == 403:
        assert b"loopback" in body
    # Over TCP the header means nothing: the peer (127.0.0.1 here) is what counts.
    status, body, _ = await delete(http, proxy.make_url("/admin/cache"), headers)
    assert status == 200, body


async def test_purging_everything_forgets_files_and_misses_and_the_files_kept_in_memory(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    missing = "missing.pdb/497B72F6390A44FC878E5A2D63B6CC4B1/missing.pdb"
    proxy = await start_proxy([symstore(url)], admin=ADMIN_ON, cache={"negative_ttl": 3600})
    for _ in range(2):  # the second answer comes from memory (the lean path's hot files)
        status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}"))
        assert status == 200 and body == PDB.data
    assert (await fetch(http, proxy.make_url(f"/symbols/{missing}")))[0] == 404
    status, body, headers = await delete(http, proxy.make_url("/admin/cache"), BEARER)
    assert status == 200 and json.loads(body) == {"removed": 2}  # one file, one miss
    assert headers["Content-Type"].startswith("application/json")
    # The store now has other bytes under the same key, and the missing file: both are asked again.
    changed = PDB.data[:-4] + b"new!"
    store.put(PDB_KEY, changed)
    store.put(missing, PDB.data)
    status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}"))
    assert status == 200 and body == changed
    status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{missing}"))
    assert status == 200 and body == store.files[missing]
    assert store.requests[PDB_KEY] == 2


@pytest.mark.parametrize("protocol", ["symbols", "buildid", "unified"])
async def test_purging_one_file_forgets_it_under_each_protocol(
    protocol: str, start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    if protocol == "symbols":
        store.put(PDB_KEY, PDB.data)
        source, request, upstream_key, data = symstore(url), f"/symbols/{PDB_KEY}", PDB_KEY, PDB.data
    else:
        store.put(DEBUGINFOD_KEY, ELF_DEBUG.data)
        source, upstream_key, data = debuginfod_source(url), DEBUGINFOD_KEY, ELF_DEBUG.data
        request = f"/{DEBUGINFOD_KEY}" if protocol == "buildid" else f"/unified/{UNIFIED_KEY}"
    purge = f"/admin/cache{request}"  # the request's own path below /admin/cache
    proxy = await start_proxy([source], admin=ADMIN_ON)
    status, body, _ = await fetch(http, proxy.make_url(request))
    assert status == 200 and body == data
    assert state_of(proxy).cache.count == 1
    status, body, _ = await delete(http, proxy.make_url(purge), BEARER)
    assert status == 200 and json.loads(body) == {"removed": 1}, body
    assert state_of(proxy).cache.count == 0
    status, body, _ = await delete(http, proxy.make_url(purge), BEARER)
    assert status == 200 and json.loads(body) == {"removed": 0}  # nothing left to forget
    status, body, _ = await fetch(http, proxy.make_url(request + "?full"))
    assert status == 200 and body == data
    assert store.requests[upstream_key] == 2


async def test_purging_one_file_also_forgets_the_cabinet_an_earlier_version_cached_beside_it(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    proxy = await start_proxy([symstore(url)], admin=ADMIN_ON)
    assert (await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}")))[0] == 200
    state = state_of(proxy)
    [key] = state.locations  # the cache key the file was stored under
    assert isinstance(state.cache.get(key), CachedFile)
    # Earlier versions kept the CAB of a `_` request under the plain file's key + "|cab".
    temp = state.cache.new_temp()
    temp.reserve(4)
    temp.write(b"MSCF")
    temp.commit(key + "|cab")
    assert state.cache.count == 2
    status, body, _ = await delete(http, proxy.make_url(f"/admin/cache/symbols/{PDB_KEY}"), BEARER)
    assert status == 200 and json.loads(body) == {"removed": 2}
    assert state.cache.count == 0


@pytest.mark.parametrize(
    ("path", "headers", "status", "phrase"),
    [
        ("/admin/cache/unknown/a/b/c", {}, 404, b"unknown protocol"),
        ("/admin/cache/symbols/not/a/valid/key", {}, 400, b"not a lookup"),
        ("/admin/cache/unified/zz/notanid/debuginfo", {}, 400, b"not a lookup"),
        ("/admin/cache/buildid/xyz/debuginfo", {}, 400, b"not a lookup"),
        (f"/admin/cache/symbols/{PDB_KEY}", {"SymbolChecksum": "not a checksum"}, 400, b"SymbolChecksum"),
    ],
    ids=["unknown-protocol", "symbols", "unified", "buildid", "checksum"],
)
async def test_purging_what_is_not_a_lookup_is_refused_clearly(
    path: str,
    headers: dict[str, str],
    status: int,
    phrase: bytes,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
) -> None:
    proxy = await start_proxy([], admin=ADMIN_ON)
    answer, body, _ = await delete(http, proxy.make_url(path), {**BEARER, **headers})
    assert answer == status and phrase in body, body


# --------------------------------------------------------------------------------------------------
# Health and routes this proxy does not serve


async def test_readyz_lists_each_unusable_source_on_its_own_line_and_answers_503_when_not_ready(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    sources = [
        {"id": name, "type": "filesystem", "path": str(tmp_path / name), "layout": {"type": "symstore"}}
        for name in ("first-missing", "second-missing")
    ]
    proxy = await start_proxy(sources)
    status, body, _ = await fetch(http, proxy.make_url("/readyz"))
    lines = body.decode().splitlines(keepends=True)
    assert status == 200 and lines[0] == "ok\n" and len(lines) == 3, body
    for line, name in zip(lines[1:], ("first-missing", "second-missing"), strict=True):
        assert line.startswith("warning: ") and name in line and line.endswith("\n"), line
    # Not ready (as while it shuts down): 503, so no new traffic is sent its way.
    state_of(proxy).ready = False
    status, body, _ = await fetch(http, proxy.make_url("/readyz"))
    assert status == 503 and b"starting" in body


async def test_metrics_answer_in_the_prometheus_text_format_with_the_cache_gauges_current(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    proxy = await start_proxy([symstore(url)])
    assert (await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}")))[0] == 200
    status, body, headers = await fetch(http, proxy.make_url("/metrics"))
    assert status == 200 and headers["Content-Type"] == CONTENT_TYPE_LATEST
    values = samples(body)
    size = state_of(proxy).cache.size
    assert size >= len(PDB.data)
    assert values["symproxy_cache_size_bytes"] == size
    assert values["symproxy_cache_entries"] == 1
    assert values["symproxy_downloads_in_flight"] == 0
    # A download held upstream is in flight while it lasts.
    other = "other.pdb/497B72F6390A44FC878E5A2D63B6CC4B1/other.pdb"
    store.put(other, PDB.data)
    store.hold = True
    waiting = asyncio.ensure_future(fetch(http, proxy.make_url(f"/symbols/{other}")))
    await until(lambda: store.requests[other] >= 1)
    status, body, _ = await fetch(http, proxy.make_url("/metrics"))
    assert status == 200 and samples(body)["symproxy_downloads_in_flight"] == 1
    store.release.set()
    assert (await waiting)[:2] == (200, PDB.data)


@pytest.mark.parametrize(
    "path",
    [f"/{DEBUGINFOD_KEY}/extra", f"/buildid/{BUILD_ID}/debuginfo/a/b", f"/buildid/{BUILD_ID}/executable/"],
)
async def test_other_debuginfod_queries_are_a_plain_404_counted_as_invalid(
    path: str, start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(DEBUGINFOD_KEY, ELF_DEBUG.data)
    proxy = await start_proxy([debuginfod_source(url)])
    status, body, _ = await fetch(http, proxy.make_url(path))
    assert status == 404 and body.startswith(b"not found: ") and b"not served" in body, body
    assert requests_counted(proxy, "debuginfod", "invalid") == 1
    assert store.total_requests == 0


# --------------------------------------------------------------------------------------------------
# debuginfod answers


async def test_after_a_restart_x_debuginfod_file_names_the_request_path_of_a_cached_file(
    tmp_path: Path, start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(DEBUGINFOD_KEY, ELF_DEBUG.data)
    cache = {"dir": str(tmp_path / "shared-cache")}
    first = await start_proxy([debuginfod_source(url)], cache=cache)
    status, _, headers = await fetch(http, first.make_url(f"/{DEBUGINFOD_KEY}"))
    assert status == 200 and headers["X-DEBUGINFOD-FILE"] == DEBUGINFOD_KEY.removeprefix("buildid/")
    await first.close()
    # Where upstream it was found is not kept on disk: the answer names the request's own path.
    second = await start_proxy([debuginfod_source(url)], cache=cache)
    for query in ("", "?full"):
        status, body, headers = await fetch(http, second.make_url(f"/{DEBUGINFOD_KEY}{query}"))
        assert status == 200 and body == ELF_DEBUG.data
        assert headers["X-DEBUGINFOD-FILE"] == f"/{DEBUGINFOD_KEY}", headers
    assert store.requests[DEBUGINFOD_KEY] == 1


async def test_debuginfod_maxsize_equal_to_the_size_is_served_on_a_miss_and_on_a_hit(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(DEBUGINFOD_KEY, ELF_DEBUG.data)
    smaller = {"X-DEBUGINFOD-MAXSIZE": str(len(ELF_DEBUG.data) - 1)}
    cold = await start_proxy([debuginfod_source(url)])
    status, body, _ = await fetch(http, cold.make_url(f"/{DEBUGINFOD_KEY}"), headers=smaller)
    assert status == 406 and b"larger than X-DEBUGINFOD-MAXSIZE" in body, body  # on a miss
    proxy = await start_proxy([debuginfod_source(url)])
    exact = {"X-DEBUGINFOD-MAXSIZE": str(len(ELF_DEBUG.data))}
    for attempt in ("miss", "hit"):
        status, body, headers = await fetch(http, proxy.make_url(f"/{DEBUGINFOD_KEY}"), headers=exact)
        assert status == 200 and body == ELF_DEBUG.data, attempt
        assert headers["X-DEBUGINFOD-SIZE"] == str(len(ELF_DEBUG.data))
    status, body, _ = await fetch(http, proxy.make_url(f"/{DEBUGINFOD_KEY}"), headers=smaller)
    assert status == 406 and b"larger than X-DEBUGINFOD-MAXSIZE" in body, body  # on a hit
    for junk in ("", "ten", "1.5"):
        status, body, _ = await fetch(
            http, proxy.make_url(f"/{DEBUGINFOD_KEY}"), headers={"X-DEBUGINFOD-MAXSIZE": junk}
        )
        assert status == 400 and b"invalid X-DEBUGINFOD-MAXSIZE" in body, junk
    assert requests_counted(proxy, "debuginfod", "miss") == 1


async def test_a_large_debuginfod_file_streams_on_its_first_request_with_the_debuginfod_headers(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    """Above 4 MiB a miss is streamed while it downloads instead of answered once complete."""
    store, url = upstream
    large = ELF_DEBUG.data + bytes(5 * 1024 * 1024)  # still the same ELF file in front
    store.put(DEBUGINFOD_KEY, large)
    cold_for_head = await start_proxy([debuginfod_source(url)])
    async with http.head(cold_for_head.make_url(f"/{DEBUGINFOD_KEY}")) as response:
        assert response.status == 200 and await response.read() == b""
        assert response.headers["Content-Length"] == str(len(large))
        assert response.headers["X-DEBUGINFOD-SIZE"] == str(len(large))
    cold_for_get = await start_proxy([debuginfod_source(url)])
    status, body, headers = await fetch(http, cold_for_get.make_url(f"/{DEBUGINFOD_KEY}"))
    assert status == 200 and body == large
    assert headers["Content-Length"] == headers["X-DEBUGINFOD-SIZE"] == str(len(large))
    assert headers["X-DEBUGINFOD-FILE"] == DEBUGINFOD_KEY.removeprefix("buildid/")
    assert headers["Cache-Control"] == "public" and headers["Content-Type"] == "application/octet-stream"
    for proxy in (cold_for_head, cold_for_get):
        assert requests_counted(proxy, "debuginfod", "miss") == 1


def chunked_store(files: dict[str, bytes], asked: list[str] | None = None) -> web.Application:
    """A store that sends its files chunked, without a Content-Length (so their size is unknown)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if asked is not None:
            asked.append(request.path)
        data = files.get(request.path.removeprefix("/"))
        if data is None:
            return web.Response(status=404)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(data)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/{path:.*}", handle)
    return app


# --------------------------------------------------------------------------------------------------
# Failures: 502/504 with Retry-After, 503 when the cache has no room


@pytest.mark.parametrize(("error_ttl", "retry_after"), [(30, "30"), (2.5, "3"), (0, "1")])
async def test_an_upstream_failure_is_a_502_whose_retry_after_is_the_error_ttl_rounded_up(
    error_ttl: float,
    retry_after: str,
    start_proxy: StartProxy,
    upstream: tuple[UpstreamStore, str],
    http: aiohttp.ClientSession,
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    store.faults[PDB_KEY] = "500"
    proxy = await start_proxy([symstore(url)], cache={"error_ttl": error_ttl}, upstream={"retries": 0})
    status, body, headers = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}"))
    assert status == 502 and body.startswith(b"upstream error: ") and b"500" in body, body
    assert headers["Retry-After"] == retry_after  # at least a second, even when not remembered
    assert requests_counted(proxy, "symsrv", "error") == 1


async def test_a_remembered_upstream_failure_says_when_it_expires_and_asks_nobody(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    store.faults[PDB_KEY] = "500"
    proxy = await start_proxy([symstore(url)], cache={"error_ttl": 3600}, upstream={"retries": 0})
    assert (await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}")))[0] == 502
    asked = store.total_requests
    for query in ("", "?full"):
        status, body, headers = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}{query}"))
        assert status == 502 and body.startswith(b"upstream error: ") and b"500" in body, body
        assert 3000 < int(headers["Retry-After"]) <= 3600, headers  # what is left of the hour
    assert store.total_requests == asked
    assert requests_counted(proxy, "symsrv", "negative_hit") >= 1


async def test_an_upstream_that_never_answers_is_a_504_with_retry_after(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    store.faults[PDB_KEY] = "timeout"
    proxy = await start_proxy(
        [symstore(url)], cache={"error_ttl": 3600}, upstream={"head_timeout": 0.5, "retries": 0}
    )
    for query in ("", "?full"):  # fresh, then remembered
        status, body, headers = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}{query}"))
        assert status == 504 and body.startswith(b"upstream error: "), body
        assert 3000 < int(headers["Retry-After"]) <= 3600, headers
    assert requests_counted(proxy, "symsrv", "error") == 1


@pytest.mark.parametrize("fault", ["401", "403"])
async def test_a_refusal_is_counted_as_not_found_and_remembered_as_a_404(
    fault: str, start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    store.faults[PDB_KEY] = fault  # type: ignore[assignment]
    proxy = await start_proxy([symstore(url)], cache={"error_ttl": 3600}, upstream={"retries": 0})
    for query in ("", "?full"):
        status, body, headers = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}{query}"))
        assert status == 404 and body.startswith(b"not found: ") and "Retry-After" not in headers, body
    assert requests_counted(proxy, "symsrv", "not_found") == 1
    assert requests_counted(proxy, "symsrv", "error") == 0


async def test_a_cabinet_of_a_file_without_a_known_size_and_no_room_in_the_cache_is_a_503_ask_again(
    start_proxy: StartProxy, aiohttp_server: Callable[..., Awaitable[TestServer]], http: aiohttp.ClientSession
) -> None:
    """A `_` request is answered with a CAB made from the plain file, whose headers need its size.
    An upstream that sends the plain file without a length (chunked), too large for the cache,
    leaves nothing to make it from: after a few pauses the client is told to ask again."""
    asked: list[str] = []
    server = await aiohttp_server(chunked_store({PDB_KEY: PDB.data}, asked))
    proxy = await start_proxy(
        [symstore(str(server.make_url("/")))], cache={"max_size": len(PDB.data) // 2, "error_ttl": 3600}
    )
    status, body, headers = await fetch(http, proxy.make_url(f"/symbols/{COMPRESSED_KEY}"))
    assert status == 503 and body.startswith(b"unavailable: ") and b"no room" in body, body
    assert headers["Retry-After"] == "1"
    assert asked.count(f"/{PDB_KEY}") > 1  # asked again after each pause
    # The plain name is passed through as it arrives.
    status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}"))
    assert status == 200 and body == PDB.data


# --------------------------------------------------------------------------------------------------
# `_` requests on a cache hit


def cab_member_time(cab: bytes) -> tuple[int, int, int, int, int, int]:
    """The date and time (FAT fields) of the first file in ``cab``, read from its CFFILE entry."""
    assert cab[:4] == b"MSCF"
    (first_file,) = struct.unpack_from("<I", cab, 16)  # coffFiles
    date, clock = struct.unpack_from("<HH", cab, first_file + 10)
    return (1980 + (date >> 9), (date >> 5) & 15, date & 31, clock >> 11, (clock >> 5) & 63, (clock & 31) * 2)


async def test_the_cabinet_of_a_cached_file_carries_the_date_of_that_file(
    tmp_path: Path,
    start_proxy: StartProxy,
    upstream: tuple[UpstreamStore, str],
    http: aiohttp.ClientSession,
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    cache = {"dir": str(tmp_path / "shared-cache")}
    first = await start_proxy([symstore(url)], cache=cache)
    assert (await fetch(http, first.make_url(f"/symbols/{PDB_KEY}")))[0] == 200
    await first.close()
    [stored] = [p for p in (tmp_path / "shared-cache" / "objects").rglob("*") if p.is_file()]
    moment = (2001, 2, 3, 4, 5, 6)
    stamp = calendar.timegm((*moment, 0, 0, 0))
    os.utime(stored, (stamp, stamp))
    second = await start_proxy([symstore(url)], cache=cache)  # indexes the file with that date
    status, body, headers = await fetch(http, second.make_url(f"/symbols/{COMPRESSED_KEY}"))
    assert status == 200 and cab_member_time(body) == moment
    assert headers["Content-Type"] == "application/octet-stream"
    assert cab_members(tmp_path, body) == {PDB_KEY.rsplit("/", 1)[1]: PDB.data}
    assert requests_counted(second, "symsrv", "hit") == 1
    assert store.requests[PDB_KEY] == 1


# --------------------------------------------------------------------------------------------------
# What each answer counts


@pytest.mark.parametrize(
    ("path", "protocol"),
    [
        ("/symbols/not/a/valid/key", "symsrv"),
        ("/proxy/crash.pdb/XYZ/crash.pdb", "symsrv"),
        ("/unified/zz/notanid/debuginfo", "unified"),
        ("/buildid/xyz/debuginfo", "debuginfod"),
    ],
)
async def test_a_path_that_is_not_a_lookup_is_a_404_counted_as_invalid_under_its_protocol(
    path: str, protocol: str, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy([])
    for query in ("", "?full"):  # the lean path and the handlers answer alike
        status, body, _ = await fetch(http, proxy.make_url(path + query))
        assert status == 404 and body.startswith(b"not found: "), body
    assert requests_counted(proxy, protocol, "invalid") >= 1
    durations = "symproxy_request_duration_seconds_count"
    assert counted(proxy, durations, {"protocol": protocol}) >= 1


async def test_a_malformed_checksum_is_a_400_counted_as_invalid(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    proxy = await start_proxy([symstore(url)])
    headers = {"SymbolChecksum": "not a checksum"}
    before = time.monotonic()
    status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}"), headers=headers)
    took = time.monotonic() - before
    assert status == 400 and b"SymbolChecksum" in body and body.endswith(b"\n"), body
    assert requests_counted(proxy, "symsrv", "invalid") == 1
    assert counted(proxy, "symproxy_request_duration_seconds_count", {"protocol": "symsrv"}) == 1
    # The time recorded is the request's own: no more than the client waited for the answer.
    assert 0 <= counted(proxy, "symproxy_request_duration_seconds_sum", {"protocol": "symsrv"}) <= took
    assert store.total_requests == 0


async def test_requests_that_join_a_download_in_progress_are_counted_as_coalesced(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    store.hold = True
    proxy = await start_proxy([symstore(url)])
    waiting = [asyncio.ensure_future(fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}"))) for _ in range(3)]
    await until(lambda: counted(proxy, "symproxy_coalesced_waiters_total") >= 2)  # all three are waiting
    store.release.set()
    for status, body, _ in await asyncio.gather(*waiting):
        assert status == 200 and body == PDB.data
    assert counted(proxy, "symproxy_coalesced_waiters_total") == 2  # the first one started it
    assert store.requests[PDB_KEY] == 1


async def test_a_file_above_the_configured_largest_size_is_not_served(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    limited = await start_proxy([symstore(url)], cache={"max_file_size": len(PDB.data) - 1})
    status, body, _ = await fetch(http, limited.make_url(f"/symbols/{PDB_KEY}"))
    assert status == 502 and b"too large" in body, body
    exact = await start_proxy([symstore(url)], cache={"max_file_size": len(PDB.data)})
    status, body, _ = await fetch(http, exact.make_url(f"/symbols/{PDB_KEY}"))
    assert status == 200 and body == PDB.data


async def test_a_large_file_that_breaks_off_upstream_cuts_the_connection_and_says_why_in_the_log(
    start_proxy: StartProxy,
    upstream: tuple[UpstreamStore, str],
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Above 4 MiB the headers go out before the body is complete: when upstream breaks off, the
    only honest signal left is a cut connection, never a short body that looks complete."""
    store, url = upstream
    large = ELF_DEBUG.data + bytes(5 * 1024 * 1024)
    store.put(DEBUGINFOD_KEY, large)
    store.faults[DEBUGINFOD_KEY] = "truncate"
    proxy = await start_proxy([debuginfod_source(url)], upstream={"retries": 0})
    caplog.set_level(logging.WARNING, logger="symbol_proxy.server.handlers")
    timeout = aiohttp.ClientTimeout(total=60)
    async with http.get(proxy.make_url(f"/{DEBUGINFOD_KEY}"), timeout=timeout) as response:
        assert response.status == 200
        assert response.headers["X-DEBUGINFOD-SIZE"] == str(len(large))
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    [record] = [r for r in caplog.records if r.name == "symbol_proxy.server.handlers"]
    message = record.getMessage()
    assert "failed mid-stream" in message and BUILD_ID in message, message
    assert "broke off" in message.split("failed mid-stream: ", 1)[1], message  # the reason is named
    assert state_of(proxy).cache.count == 0


async def test_a_cached_file_removed_behind_the_caches_back_is_fetched_again(
    tmp_path: Path, start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    cache = {"dir": str(tmp_path / "cache")}
    first = await start_proxy([symstore(url)], cache=cache)
    assert (await fetch(http, first.make_url(f"/symbols/{PDB_KEY}")))[0] == 200
    await first.close()
    proxy = await start_proxy([symstore(url)], cache=cache)  # indexes the file, holds no handle of it
    assert state_of(proxy).cache.count == 1
    [stored] = [p for p in (tmp_path / "cache" / "objects").rglob("*") if p.is_file()]
    stored.unlink()  # as a purge by another worker, between the index lookup and the open
    status, body, _ = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}?full"))
    assert status == 200 and body == PDB.data
    assert store.requests[PDB_KEY] == 2
    assert state_of(proxy).cache.count == 1


async def test_a_file_of_up_to_4_mib_is_answered_complete_so_a_range_works_on_its_first_request(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    """Misses up to 4 MiB are awaited and answered from the cache (ranges, a clean 502 if they
    break off); only larger ones stream as they download."""
    store, url = upstream
    key = "exact.exe/5AB3807710000/exact.exe"
    data = (b"MZ" + bytes(range(256)) * (16 * 1024))[: 4 * 1024 * 1024]  # exactly 4 MiB
    store.put(key, data)
    proxy = await start_proxy([symstore(url)])
    status, body, headers = await fetch(
        http, proxy.make_url(f"/symbols/{key}"), headers={"Range": "bytes=100-199"}
    )
    assert status == 206 and body == data[100:200], headers
    assert headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert requests_counted(proxy, "symsrv", "miss") == 1


async def test_a_cabinet_of_a_file_sent_without_a_length_is_made_once_the_file_is_complete(
    start_proxy: StartProxy,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    server = await aiohttp_server(chunked_store({PDB_KEY: PDB.data}))
    proxy = await start_proxy([symstore(str(server.make_url("/")))])
    status, body, headers = await fetch(http, proxy.make_url(f"/symbols/{COMPRESSED_KEY}"))
    assert status == 200 and cab_members(tmp_path, body) == {PDB_KEY.rsplit("/", 1)[1]: PDB.data}
    assert headers["Content-Length"] == str(len(body))
    assert requests_counted(proxy, "symsrv", "miss") == 1


async def test_x_debuginfod_file_is_remembered_for_the_files_found_most_recently(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    """Where each file was found is kept in memory for ``MAX_LOCATIONS`` files, the least recently
    found dropped first; a dropped one falls back to the request's own path."""
    store, url = upstream
    executable_key = f"buildid/{BUILD_ID}/executable"
    store.put(DEBUGINFOD_KEY, ELF_DEBUG.data)
    store.put(executable_key, ELF.data)
    proxy = await start_proxy([debuginfod_source(url)], admin=ADMIN_ON)
    locations = state_of(proxy).locations
    found_at = DEBUGINFOD_KEY.removeprefix("buildid/")
    assert (await fetch(http, proxy.make_url(f"/{DEBUGINFOD_KEY}")))[2]["X-DEBUGINFOD-FILE"] == found_at
    # As if as many other files were found after it as are remembered, less one.
    locations.update((f"earlier-{n}", f"earlier/{n}") for n in range(MAX_LOCATIONS - 1))
    # Found again (purged, then asked for): now the most recent, nothing dropped.
    assert (await delete(http, proxy.make_url(f"/admin/cache/{DEBUGINFOD_KEY}"), BEARER))[0] == 200
    assert (await fetch(http, proxy.make_url(f"/{DEBUGINFOD_KEY}")))[2]["X-DEBUGINFOD-FILE"] == found_at
    assert len(locations) == MAX_LOCATIONS
    # One more file: the least recently found entry is dropped, not the newest or the re-found one.
    status, _, headers = await fetch(http, proxy.make_url(f"/{executable_key}"))
    assert status == 200 and headers["X-DEBUGINFOD-FILE"] == executable_key.removeprefix("buildid/")
    assert len(locations) == MAX_LOCATIONS and "earlier-0" not in locations and "earlier-1" in locations
    for key, where in ((DEBUGINFOD_KEY, found_at), (executable_key, executable_key.removeprefix("buildid/"))):
        status, _, headers = await fetch(http, proxy.make_url(f"/{key}?full"))
        assert status == 200 and headers["X-DEBUGINFOD-FILE"] == where, key


async def test_a_file_with_no_room_to_check_its_checksum_is_a_503_ask_again(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    """A ``SymbolChecksum`` request spools the whole file to check it before anyone gets a byte;
    with no room for that in the cache, the client is told to ask again (never a 502)."""
    data = _data(PORTABLE_PATH)
    source = filesystem(tmp_path / "store", "symstore", {PPDB_KEY: data})
    proxy = await start_proxy([source], cache={"max_size": len(data) // 2, "error_ttl": 3600})
    url = proxy.make_url(f"/symbols/{PPDB_KEY}")
    status, body, headers = await fetch(http, url, headers={"SymbolChecksum": CHECKSUM})
    assert status == 503 and body.startswith(b"unavailable: ") and b"no room" in body, body
    assert headers["Retry-After"] == "1"
    assert requests_counted(proxy, "symsrv", "error") == 1


async def test_a_remembered_failure_about_to_expire_says_to_ask_again_in_a_second(
    start_proxy: StartProxy, upstream: tuple[UpstreamStore, str], http: aiohttp.ClientSession
) -> None:
    store, url = upstream
    store.faults[PDB_KEY] = "500"
    proxy = await start_proxy([symstore(url)], cache={"error_ttl": 3600}, upstream={"retries": 0})
    assert (await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}")))[0] == 502
    state = state_of(proxy)
    miss = state.cache.get(keyed(state, parse_symsrv(PDB_KEY)).cache_key)
    assert isinstance(miss, Miss)
    # The cache's clock, moved on (it is the one misses expire by): half a second left, then 600.
    for left, retry_after in ((0.5, "1"), (600.0, "600")):
        state.cache._clock = lambda left=left: miss.expires_at - left  # type: ignore[misc]
        status, _, headers = await fetch(http, proxy.make_url(f"/symbols/{PDB_KEY}?full"))
        assert status == 502 and headers["Retry-After"] == retry_after, left
    assert store.requests[PDB_KEY] == 1
