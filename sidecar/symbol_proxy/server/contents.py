"""debuginfod ``section`` and ``source`` requests: answers made from a file's contents.

``/buildid/<id>/section/<name>`` and ``/buildid/<id>/source/<absolute path>`` are not store lookups:
a debuginfod server computes them from the files it indexed. The proxy answers them in this order:

1. **Pass-through** to sources with the ``debuginfod`` layout (another debuginfod server, or a tree
   laid out like one), at ``<id>/section/<name>`` / ``<id>/source/<path>``. Their answers are cached
   like any file, under the request's own key.
2. Otherwise, from what the proxy can fetch itself:

   * a **section** is cut out of the debug file, or of the executable when the debug file does
     not have it with content (a ``NOBITS`` placeholder, as ``objcopy --only-keep-debug`` leaves
     for code), both fetched and cached as for ``debuginfo``/``executable`` requests. Only the
     whole files are cached; the section is read from them at each request.
   * a **source** file is read from the object's Symbolicator source bundle (``sourcebundle``
     file type: ``…/sourcebundle`` on unified stores, ``xx/yyyy.src.zip`` on native ones), which
     is fetched and cached once under ``buildid/<id>/sourcebundle``.

Status codes follow elfutils: 404 for an unknown build id, section or file; 503 when the proxy has
the file but cannot read it (not ELF, not a bundle) -- elfutils' client then falls back to
downloading the whole debug file and looking for the section itself, which it does only on 503.
Upstream failures with no answer are 502/504, refusals 404, as for every other request
(``docs/reliability.md``); a file the cache has no room for is a 503 "ask again", since a section
or a source is read from the cached file, which a request pins until it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from symbol_proxy import elfsections, keys, sourcebundles
from symbol_proxy.cache.inflight import DownloadFailed, Sink
from symbol_proxy.cache.store import CachedFile, Miss
from symbol_proxy.config import LayoutType
from symbol_proxy.fetching import fetch_found_into
from symbol_proxy.objects import FileType
from symbol_proxy.resolving import ConfiguredSource, Found, Resolver
from symbol_proxy.server import files
from symbol_proxy.server.state import STATE, State

__all__ = ["bundle_lookup", "section", "source"]

log = logging.getLogger(__name__)

PROTOCOL = "debuginfod"
CHUNK = 1024 * 1024


def _answer(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n")


def _failure_response(state: State, failures: list[DownloadFailed]) -> web.Response:
    """The status rules of every other request (``handlers``): a refusal is a miss, space pressure
    a 503 that is never remembered, a timeout 504, any other upstream failure 502."""
    errors = [f for f in failures if f.kind not in ("not_found", "denied")]
    if not errors:
        return _answer(404, "not found: no configured source has this file")
    upstream = [f for f in errors if f.kind != "space"]
    if not upstream:
        return web.Response(
            status=503, text="unavailable: no room in the cache right now\n", headers={"Retry-After": "1"}
        )
    detail = "; ".join(sorted({f.detail for f in upstream}))[:500]
    status = 504 if all(f.kind == "timeout" for f in upstream) else 502
    headers = {"Retry-After": str(math.ceil(max(1.0, state.config.cache.error_ttl)))}
    return web.Response(status=status, text=f"upstream error: {detail}\n", headers=headers)


def _headers(file_name: str, size: int) -> dict[str, str]:
    return {
        "Content-Type": "application/octet-stream",
        "Cache-Control": "public",
        "X-DEBUGINFOD-FILE": file_name,
        "X-DEBUGINFOD-SIZE": str(size),
    }


async def _obtain(
    state: State, key: str, producer: Callable[[Sink], Awaitable[None]], pins: contextlib.ExitStack
) -> CachedFile:
    """The cached file under ``key``, downloaded by ``producer`` first if need be (one download for
    all concurrent requests), pinned in the cache until ``pins`` closes (the request ends), so it
    is not evicted while it is read. Raises ``DownloadFailed`` for a miss, remembered or new."""
    pins.enter_context(state.cache.pinned(key))
    entry = state.cache.get(key)
    if isinstance(entry, CachedFile):
        return entry
    if isinstance(entry, Miss):
        raise DownloadFailed(entry.kind, entry.detail)
    download = state.downloads.fetch(key, producer)
    with state.downloads.attending(download):  # not cancelled as abandoned while this waits
        return await download.finished()


def _fetching(
    state: State, finding: Callable[[Resolver], Awaitable[Found]]
) -> Callable[[Sink], Awaitable[None]]:
    async def producer(sink: Sink) -> None:
        await fetch_found_into(
            sink,
            finding(state.runtime.resolver),
            max_file_size=state.config.cache.max_file_size,
            metrics=state.metrics,
        )

    return producer


def _has_debuginfod_source(state: State) -> bool:
    return any(_is_debuginfod(source) for source in state.runtime.resolver.sources)


def _is_debuginfod(source: ConfiguredSource) -> bool:
    layout = getattr(source.config, "layout", None)
    return layout is not None and layout.type == LayoutType.DEBUGINFOD


async def _pass_through(
    state: State, ident: str, rest: str, failures: list[DownloadFailed], pins: contextlib.ExitStack
) -> CachedFile | None:
    """``<id>/<rest>`` from the sources with the debuginfod layout; ``None`` (and the reason added to
    ``failures``) when none has it or there is no such source."""
    if not _has_debuginfod_source(state):
        return None
    location = f"{ident}/{rest}"

    def location_of(source: ConfiguredSource) -> str | None:
        return location if _is_debuginfod(source) else None

    producer = _fetching(state, lambda resolver: resolver.find_at(location_of))
    try:
        return await _obtain(state, f"buildid/{location}", producer, pins)
    except DownloadFailed as failed:
        failures.append(failed)
        return None


async def _send_whole(request: web.Request, state: State, entry: CachedFile, name: str) -> web.StreamResponse:
    state.metrics.count_request(PROTOCOL, "hit")
    try:
        return await files.send_file(request, entry, _headers(name, entry.size), state.hot)
    except FileNotFoundError:
        return _answer(503, "cached file went away; try again")


def _invalid(state: State, reason: str) -> web.Response:
    state.metrics.count_request(PROTOCOL, "invalid")
    return _answer(404, f"not found: {reason}")


async def _obtain_lookup(state: State, lookup: keys.Lookup, pins: contextlib.ExitStack) -> CachedFile:
    producer = _fetching(state, lambda resolver: resolver.find(lookup))
    return await _obtain(state, lookup.cache_key, producer, pins)


def _parse(build_id: str) -> tuple[keys.Lookup, keys.Lookup, str]:
    debuginfo = keys.parse_debuginfod_request(build_id, "debuginfo")
    executable = keys.parse_debuginfod_request(build_id, "executable")
    ident = debuginfo.alternatives[0].query.code_id
    assert ident is not None
    return debuginfo, executable, ident


async def _send_range(
    request: web.Request, entry: CachedFile, offset: int, size: int, headers: dict[str, str]
) -> web.StreamResponse:
    if request.method == "HEAD":
        return await files.head_response(request, 200, headers, size)
    loop = asyncio.get_running_loop()
    handle = await loop.run_in_executor(None, open, entry.path, "rb")
    try:
        response = web.StreamResponse(status=200, headers=headers)
        response.content_length = size
        await response.prepare(request)
        position, end = offset, offset + size
        while position < end:
            chunk = await loop.run_in_executor(
                None, os.pread, handle.fileno(), min(CHUNK, end - position), position
            )
            if not chunk:  # the file is shorter than its headers say: cut the connection
                if request.transport is not None:
                    request.transport.abort()
                return response
            await response.write(chunk)
            position += len(chunk)
        await response.write_eof()
        return response
    finally:
        handle.close()


def _locate(path: Path, name: str) -> elfsections.Section | None:
    with open(path, "rb") as handle:
        fd = handle.fileno()
        return elfsections.find_section(lambda offset, size: os.pread(fd, size, offset), name)


async def section(request: web.Request) -> web.StreamResponse:
    """``GET /buildid/<id>/section/<name>``."""
    with contextlib.ExitStack() as pins:
        return await _section(request, pins)


async def _section(request: web.Request, pins: contextlib.ExitStack) -> web.StreamResponse:
    state = request.app[STATE]
    name = request.match_info["name"]
    try:
        debuginfo, executable, ident = _parse(request.match_info["build_id"])
    except keys.NotALookup as exc:
        return _invalid(state, str(exc))
    if not name or "/" in name or "\0" in name:
        return _invalid(state, "not a section name")
    failures: list[DownloadFailed] = []
    if (passed := await _pass_through(state, ident, f"section/{name}", failures, pins)) is not None:
        return await _send_whole(request, state, passed, name)
    loop = asyncio.get_running_loop()
    unreadable = False
    for lookup in (debuginfo, executable):
        try:
            entry = await _obtain_lookup(state, lookup, pins)
        except DownloadFailed as failed:
            failures.append(failed)
            continue
        try:
            found = await loop.run_in_executor(None, _locate, entry.path, name)
        except elfsections.NotElf as exc:
            log.info("cannot read the sections of %s: %s", lookup.cache_key, exc)
            unreadable = True
            continue
        except FileNotFoundError:  # evicted meanwhile: the client may ask again
            return _answer(503, "cached file went away; try again")
        if found is not None and found.has_content:
            state.metrics.count_request(PROTOCOL, "hit")
            return await _send_range(request, entry, found.offset, found.size, _headers(name, found.size))
        failures.append(DownloadFailed("not_found", f"{lookup.file_name} has no section {name}"))
    if unreadable:
        state.metrics.count_request(PROTOCOL, "error")
        return _answer(503, "the file's sections cannot be read here; fetch the whole file")
    response = _failure_response(state, failures)
    state.metrics.count_request(PROTOCOL, "not_found" if response.status == 404 else "error")
    return response


def bundle_lookup(debuginfo: keys.Lookup, ident: str) -> keys.Lookup:
    """The source bundle of the object a debuginfod request names."""
    return keys.Lookup(
        protocol=keys.Protocol.DEBUGINFOD,
        alternatives=tuple(
            keys.Alternative(alternative.query, (FileType.SOURCEBUNDLE,))
            for alternative in debuginfo.alternatives
        ),
        cache_key=f"buildid/{ident}/sourcebundle",
        file_name="sourcebundle",
    )


async def source(request: web.Request) -> web.StreamResponse:
    """``GET /buildid/<id>/source/<absolute path>``."""
    with contextlib.ExitStack() as pins:
        return await _source(request, pins)


async def _source(request: web.Request, pins: contextlib.ExitStack) -> web.StreamResponse:
    state = request.app[STATE]
    path = "/" + request.match_info["path"].lstrip("/")
    try:
        debuginfo, _, ident = _parse(request.match_info["build_id"])
    except keys.NotALookup as exc:
        return _invalid(state, str(exc))
    if path == "/" or "\0" in path:
        return _invalid(state, "expected an absolute source path")
    failures: list[DownloadFailed] = []
    if (passed := await _pass_through(state, ident, f"source{path}", failures, pins)) is not None:
        return await _send_whole(request, state, passed, path)
    try:
        bundle = await _obtain_lookup(state, bundle_lookup(debuginfo, ident), pins)
    except DownloadFailed as failed:
        response = _failure_response(state, [*failures, failed])
        state.metrics.count_request(PROTOCOL, "not_found" if response.status == 404 else "error")
        return response
    loop = asyncio.get_running_loop()
    max_size = state.config.cache.max_file_size
    try:
        data = await loop.run_in_executor(
            None, lambda: sourcebundles.read_source(bundle.path, path, max_size=max_size)
        )
    except sourcebundles.BadBundle as exc:
        log.warning("source bundle %s is unreadable: %s", bundle.key, exc)
        state.metrics.count_request(PROTOCOL, "error")
        return _answer(503, f"the source bundle cannot be read: {exc}")
    except FileNotFoundError:
        return _answer(503, "cached file went away; try again")
    if data is None:
        state.metrics.count_request(PROTOCOL, "not_found")
        return _answer(404, "not found: the source bundle has no such file")
    state.metrics.count_request(PROTOCOL, "hit")
    headers = _headers(path, len(data))
    if request.method == "HEAD":
        return await files.head_response(request, 200, headers, len(data))
    return web.Response(status=200, headers=headers, body=data)
