"""Request handlers: parse the path, ask the cache or start a download, respond.

Status rules, because debuggers are unforgiving (``shared/specs/clients.md`` §7.1):
- "not found" is always 404, never 403 (symsrv blacklists a server on 403) and never 5xx;
- a path that is not a lookup we understand is also a fast 404;
- an upstream failure with no copy anywhere is 502 (504 for timeouts), remembered only briefly,
  with ``Retry-After`` saying when the remembered failure expires;
- a hit is served from disk with ``sendfile``, ranges and conditional requests.

A request pins its key in the cache while it runs, so the file it is sending (a hit, or the file
its miss just committed) is never evicted under it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import ipaddress
import logging
import math
import socket
import time
from functools import partial

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from symbol_proxy import keys
from symbol_proxy.cache.inflight import Download, DownloadFailed, Sink
from symbol_proxy.cache.store import CachedFile, Miss
from symbol_proxy.fetching import fetch_into
from symbol_proxy.metrics import exposition
from symbol_proxy.server import cabs, contents, files
from symbol_proxy.server.state import STATE, State

__all__ = [
    "WORKER_CLIENT_HEADER",
    "client_address",
    "debuginfod_file",
    "file_headers",
    "keyed",
    "parse_debuginfod",
    "parse_symsrv",
    "parse_unified",
    "routes",
]

log = logging.getLogger(__name__)

OCTET_STREAM = "application/octet-stream"
CAB_SUFFIX = "|cab"
"""Key suffix of the CABs that earlier versions cached for ``_`` requests (purged with the plain file)."""
SMALL_FILE = 4 * 1024 * 1024
"""Misses up to this size are answered once complete; larger ones stream while they download."""
NO_ROOM_PAUSES = (0.2, 0.5, 1.0, 2.0, 4.0)
"""Pauses before a ``_`` request whose plain file found no room in the cache, and has no known
size to stream a CAB of, asks again."""


# --------------------------------------------------------------------------------------------------
# Lookups


# Parsing is pure, and the same keys are asked for again and again: remember recent results
# (including the NotALookup ones, which the wrappers re-raise).
parse_symsrv = functools.lru_cache(maxsize=16384)(keys.parse_symsrv_request)
parse_unified = functools.lru_cache(maxsize=16384)(keys.parse_unified_request)
parse_debuginfod = functools.lru_cache(maxsize=16384)(keys.parse_debuginfod_request)


async def symbols(request: web.Request) -> web.StreamResponse:
    return await _lookup(request, "symsrv", partial(parse_symsrv, request.match_info["path"]))


async def unified(request: web.Request) -> web.StreamResponse:
    return await _lookup(request, "unified", partial(parse_unified, request.match_info["path"]))


async def debuginfod(request: web.Request) -> web.StreamResponse:
    build_id = request.match_info["build_id"]
    kind = request.match_info["kind"]
    return await _lookup(request, "debuginfod", partial(parse_debuginfod, build_id, kind))


async def debuginfod_unsupported(request: web.Request) -> web.StreamResponse:
    """Other ``/buildid/<id>/<kind>/…`` queries: a plain 404 keeps clients happy."""
    state = request.app[STATE]
    state.metrics.count_request("debuginfod", "invalid")
    return _not_found("not served by this proxy")


def _not_found(reason: str) -> web.Response:
    return web.Response(status=404, text=f"not found: {reason}\n")


async def _lookup(request: web.Request, protocol: str, parse: partial[keys.Lookup]) -> web.StreamResponse:
    state = request.app[STATE]
    metrics = state.metrics
    started = time.monotonic()
    try:
        try:
            lookup = parse()
        except keys.NotALookup as exc:
            metrics.count_request(protocol, "invalid")
            return _not_found(str(exc))
        try:
            lookup = _keyed(request, state, lookup)
        except keys.BadChecksum as exc:
            metrics.count_request(protocol, "invalid")
            return web.Response(status=400, text=f"{exc}\n")
        if protocol == "debuginfod" and "X-DEBUGINFOD-MAXSIZE" in request.headers:
            return await _debuginfod_lookup(request, state, lookup)
        return await _serve(request, state, protocol, lookup)
    finally:
        metrics.observe_request(protocol, time.monotonic() - started)


def _keyed(request: web.Request, state: State, lookup: keys.Lookup) -> keys.Lookup:
    """The lookup with what the request adds to it (its ``SymbolChecksum``) and the cache key its
    answer is shared under (``docs/caching.md``); raises ``keys.BadChecksum``."""
    return keyed(state, lookup, request.headers.get("SymbolChecksum"))


def keyed(state: State, lookup: keys.Lookup, checksum: str | None = None) -> keys.Lookup:
    """``lookup`` with ``checksum`` (a ``SymbolChecksum`` header) and its shared cache key."""
    if checksum is not None:
        lookup = keys.with_checksum(lookup, checksum)
    key = state.runtime.resolver.cache_key(lookup)
    return lookup if key == lookup.cache_key else dataclasses.replace(lookup, cache_key=key)


MAX_LOCATIONS = 100_000
"""Upstream locations remembered for ``X-DEBUGINFOD-FILE`` (about 200 bytes each)."""


def _remember_location(state: State, key: str, location: str) -> None:
    locations = state.locations
    locations[key] = location
    locations.move_to_end(key)
    while len(locations) > MAX_LOCATIONS:
        locations.popitem(last=False)


async def _debuginfod_lookup(request: web.Request, state: State, lookup: keys.Lookup) -> web.StreamResponse:
    try:
        maxsize = int(request.headers["X-DEBUGINFOD-MAXSIZE"])
    except ValueError:
        return web.Response(status=400, text="invalid X-DEBUGINFOD-MAXSIZE\n")
    entry = state.cache.get(lookup.cache_key)
    if isinstance(entry, CachedFile) and entry.size > maxsize:
        return web.Response(status=406, text="file larger than X-DEBUGINFOD-MAXSIZE\n")
    return await _serve(request, state, "debuginfod", lookup, maxsize=maxsize)


def debuginfod_file(state: State, lookup: keys.Lookup) -> str:
    """What elfutils' server puts in ``X-DEBUGINFOD-FILE``: the file's path where it is stored. Here
    that is its location in the source that had it; after a restart (locations are not kept on
    disk) the request's own path, ``/buildid/<id>/<kind>``."""
    location = state.locations.get(lookup.cache_key)
    if location is not None:
        return location
    ident = lookup.alternatives[0].query.code_id or ""
    return f"/buildid/{ident}/{lookup.file_name}"


def _extra_headers(state: State, protocol: str, lookup: keys.Lookup, size: int | None) -> dict[str, str]:
    headers = {"Content-Type": OCTET_STREAM}
    if protocol == "debuginfod":
        headers["Cache-Control"] = "public"
        headers["X-DEBUGINFOD-FILE"] = debuginfod_file(state, lookup)
        if size is not None:
            headers["X-DEBUGINFOD-SIZE"] = str(size)
    return headers


def file_headers(state: State, protocol: str, lookup: keys.Lookup, entry: CachedFile) -> dict[str, str]:
    """The headers of a whole cached file sent as ``lookup``'s answer (the lean path sends the same)."""
    return {**_extra_headers(state, protocol, lookup, entry.size), **files.validators(entry)}


async def _serve(
    request: web.Request, state: State, protocol: str, lookup: keys.Lookup, *, maxsize: int | None = None
) -> web.StreamResponse:
    with state.cache.pinned(lookup.cache_key):
        for pause in (*NO_ROOM_PAUSES, None):
            try:
                return await _serve_pinned(request, state, protocol, lookup, maxsize)
            except FileNotFoundError:
                # Purged between the index lookup and the open: forget it and look again.
                state.cache.forget(lookup.cache_key)
            except _NoRoom:
                # The plain file was passed through uncached without a size, so there is nothing
                # to stream a CAB from: ask again once other responses and downloads let go.
                if pause is None:
                    break
                await asyncio.sleep(pause)
        return _unavailable("no room in the cache right now")


class _NoRoom(Exception):
    """A ``_`` request found no room for the plain file its CAB is streamed from."""


async def _serve_pinned(
    request: web.Request, state: State, protocol: str, lookup: keys.Lookup, maxsize: int | None
) -> web.StreamResponse:
    metrics = state.metrics
    entry = state.cache.get(lookup.cache_key)
    if isinstance(entry, Miss):
        metrics.count_request(protocol, "negative_hit")
        return _missed(entry.kind, entry.detail, max(1.0, entry.expires_at - state.cache.now()))
    if isinstance(entry, CachedFile):
        metrics.count_request(protocol, "hit")
        if lookup.variant is keys.Variant.COMPRESSED:
            return await _serve_cab(request, state, protocol, lookup, entry)
        return await files.send_file(request, entry, file_headers(state, protocol, lookup, entry), state.hot)

    download = _start_download(state, lookup)
    with state.downloads.attending(download):
        try:
            started = await download.started()
        except DownloadFailed as failed:
            result = "not_found" if failed.kind in ("not_found", "denied") else "error"
            metrics.count_request(protocol, result)
            return _failed(state, failed)
        metrics.count_request(protocol, "miss")
        if maxsize is not None and started.size is not None and started.size > maxsize:
            return web.Response(status=406, text="file larger than X-DEBUGINFOD-MAXSIZE\n")
        compressed = lookup.variant is keys.Variant.COMPRESSED
        small = started.size is not None and started.size <= SMALL_FILE
        if (small or (compressed and started.size is None)) and not download.uncached:
            # Small files are complete within milliseconds: wait for the verified file and answer
            # from the cache, so a body that breaks off upstream becomes a clean 502 instead of a
            # cut connection, and ranges and conditional requests work on the first request too. A
            # CAB's headers need the file's size: without it, the whole file is awaited too.
            try:
                cached = await download.finished()
            except DownloadFailed as failed:
                if failed.kind != "space" or not download.uncached:
                    return _failed(state, failed)
                # Passed through while it downloaded: the bytes are still in memory, stream them.
            else:
                if compressed:
                    return await _serve_cab(request, state, protocol, lookup, cached)
                return await files.send_file(
                    request, cached, file_headers(state, protocol, lookup, cached), state.hot
                )
        if compressed:
            if started.size is None:
                # Passed through uncached, with no size for the CAB's headers: nothing to stream a
                # CAB from. Ask again once other responses and downloads have let go of the cap.
                raise _NoRoom
            # The stored CAB follows the download (cached or passed through) as its bytes arrive.
            return await cabs.send(
                request,
                name=lookup.file_name,
                file_size=started.size,
                mtime=time.time(),
                headers=_extra_headers(state, protocol, lookup, None),
                chunks=download.read(),
            )
        headers = _extra_headers(state, protocol, lookup, started.size)
        if request.method == "HEAD":
            return await files.head_response(request, 200, headers, started.size)
        return await _stream(request, download, headers, started.size)


def _start_download(state: State, lookup: keys.Lookup) -> Download:
    runtime = state.runtime

    async def producer(sink: Sink) -> None:
        await fetch_into(
            sink,
            lookup,
            resolver=runtime.resolver,
            max_file_size=state.config.cache.max_file_size,
            metrics=state.metrics,
            on_found=partial(_remember_location, state, lookup.cache_key),
        )

    before = state.downloads.in_flight
    download = state.downloads.fetch(lookup.cache_key, producer)
    if state.downloads.in_flight == before:
        state.metrics.coalesced.inc()
    return download


def _missed(kind: str, detail: str, retry_after: float) -> web.Response:
    """The answer for a remembered or fresh miss of ``kind``; ``retry_after``: seconds until it
    is asked upstream again."""
    if kind in ("not_found", "denied"):
        return _not_found("no configured source has this file")
    status = 504 if kind == "timeout" else 502
    headers = {"Retry-After": str(math.ceil(retry_after))}
    return web.Response(status=status, text=f"upstream error: {detail}\n", headers=headers)


def _failed(state: State, failed: DownloadFailed) -> web.Response:
    if failed.kind == "space":
        return _unavailable("no room in the cache right now")
    return _missed(failed.kind, failed.detail, max(1.0, state.config.cache.error_ttl))


def _unavailable(reason: str) -> web.Response:
    """The proxy itself cannot answer now (not the upstream): 503, ask again shortly."""
    return web.Response(status=503, text=f"unavailable: {reason}\n", headers={"Retry-After": "1"})


async def _stream(
    request: web.Request, download: Download, headers: dict[str, str], size: int | None
) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers=headers)
    if size is not None:
        response.content_length = size
    await response.prepare(request)
    try:
        async for chunk in download.read():
            await response.write(chunk)
    except DownloadFailed as failed:
        # Headers are gone already: the only honest signal left is to cut the connection, so the
        # client sees a truncated body instead of a complete-looking wrong file.
        log.warning("download of %s failed mid-stream: %s", download.key, failed.detail)
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


# --------------------------------------------------------------------------------------------------
# `_` requests: a single-file CAB streamed from the plain file (server/cabs.py).


async def _serve_cab(
    request: web.Request, state: State, protocol: str, lookup: keys.Lookup, plain: CachedFile
) -> web.StreamResponse:
    return await cabs.send(
        request,
        name=lookup.file_name,
        file_size=plain.size,
        mtime=plain.mtime_ns / 1e9,
        headers=_extra_headers(state, protocol, lookup, None),
        chunks=cabs.file_chunks(plain),
    )


# --------------------------------------------------------------------------------------------------
# Health, metrics, admin


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """Ready once started; sources that cannot work (a missing directory) are listed as warnings
    but do not make the proxy unready: the other sources keep serving."""
    state = request.app[STATE]
    if not state.ready:
        return web.Response(status=503, text="starting\n")
    warnings = "".join(f"warning: {problem}\n" for problem in state.runtime.problems)
    return web.Response(text="ok\n" + warnings)


async def healthcheck(request: web.Request) -> web.Response:
    """Symbolicator's health endpoint answers a bare ``ok``."""
    return web.Response(text="ok")


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.metrics.cache_size.set(state.cache.size)
    state.metrics.cache_entries.set(state.cache.count)
    state.metrics.in_flight.set(state.downloads.in_flight)
    body = exposition(state.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


WORKER_CLIENT_HEADER = "X-Symbol-Proxy-Worker-Client"
"""With ``--workers``, a follower hands a request to the owner over the owner's Unix socket and
says in this header whom it came from. Believed on that socket only (its directory is the
proxy's own, mode 0700); from TCP the header means nothing."""


def client_address(request: web.Request) -> str:
    """The client's address: the TCP peer, or for a request a follower handed over, its client."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and sock.family == socket.AF_UNIX:
        return request.headers.get(WORKER_CLIENT_HEADER, "")
    return request.remote or ""


def _admin_allowed(request: web.Request, state: State) -> web.Response | None:
    """Off: every admin path is an unknown path (404, whatever the method). On: loopback clients
    with the token only; there is always a token (``app`` generates one when none is configured)."""
    if state.admin_token is None:
        return web.Response(status=404, text="not found\n")
    if request.method != "DELETE":
        return web.Response(status=405, text="method not allowed\n", headers={"Allow": "DELETE"})
    remote = client_address(request)
    try:
        loopback = ipaddress.ip_address(remote).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return web.Response(status=403, text="admin endpoints answer loopback clients only\n")
    expected = f"Bearer {state.admin_token}"
    if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected.encode()):
        return web.Response(status=401, text="missing or wrong admin token\n")
    return None


async def purge_all(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if (denied := _admin_allowed(request, state)) is not None:
        return denied
    removed = await asyncio.get_running_loop().run_in_executor(None, state.cache.clear)
    state.hot.clear()
    return web.json_response({"removed": removed})


_PARSERS = {
    "symbols": keys.parse_symsrv_request,
    "unified": keys.parse_unified_request,
}


async def purge_one(request: web.Request) -> web.Response:
    """``DELETE /admin/cache/{symbols|unified|buildid}/<path>``: forget one file (and its miss)."""
    state = request.app[STATE]
    if (denied := _admin_allowed(request, state)) is not None:
        return denied
    protocol = request.match_info["protocol"]
    path = request.match_info["path"]
    try:
        if protocol == "buildid":
            build_id, _, kind = path.partition("/")
            lookup = keys.parse_debuginfod_request(build_id, kind)
        elif protocol in _PARSERS:
            lookup = _PARSERS[protocol](path)
        else:
            return web.Response(status=404, text="unknown protocol\n")
        keyed = _keyed(request, state, lookup)  # with a SymbolChecksum header: that checksum's entry
    except (keys.NotALookup, keys.BadChecksum) as exc:
        return web.Response(status=400, text=f"not a lookup: {exc}\n")
    loop = asyncio.get_running_loop()
    removed = 0
    # The canonical key and, when it differs, the key of this very spelling (``docs/caching.md``).
    for key in dict.fromkeys((lookup.cache_key, keyed.cache_key)):
        for entry in (key, key + CAB_SUFFIX):
            removed += int(await loop.run_in_executor(None, state.cache.forget, entry))
    return web.json_response({"removed": removed})


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/symbols/{path:.+}", symbols),
        web.get("/proxy/{path:.+}", symbols),
        web.get("/unified/{path:.+}", unified),
        web.get("/buildid/{build_id}/{kind}", debuginfod),
        web.get("/buildid/{build_id}/section/{name}", contents.section),
        web.get("/buildid/{build_id}/source/{path:.+}", contents.source),
        web.get("/buildid/{build_id}/{kind}/{rest:.*}", debuginfod_unsupported),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/healthcheck", healthcheck),
        web.get("/metrics", metrics),
        web.route("*", "/admin/cache", purge_all),
        web.route("*", "/admin/cache/{protocol}/{path:.+}", purge_one),
    ]
