"""``symbol-proxy serve --workers N``: N processes on one port, one cache.

Each worker listens on the configured port with ``SO_REUSEPORT``, so the kernel spreads new
connections over them. Worker 0, the **owner**, is the proxy as it runs alone: it downloads,
commits, evicts, remembers misses, answers the admin endpoints and ``/metrics``, and reloads the
configuration. The others, **followers**, answer cache hits themselves on the lean path, from the
owner's directory (``cache.follower``), and hand every other request to the owner over a Unix
socket (``owner.sock`` in the workers' private directory), streaming its answer back. So:

- one download per file across the processes, one cap, one negative cache: only the owner has them;
- one LRU: followers report the keys they served (``/_workers/touch``, every ``HANDLE_SECONDS``);
- one set of metrics: every worker writes its values under ``PROMETHEUS_MULTIPROC_DIR``, and the
  owner's ``/metrics`` reports their sum (gauges: the latest value a live worker set).

The parent process only supervises (:func:`supervise`): it starts the owner, waits until its socket
answers, starts the followers, restarts a follower that dies, passes SIGHUP on, and on SIGTERM or
the owner's end stops them all. Workers die with the parent (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from yarl import URL

from symbol_proxy import keys
from symbol_proxy.cache.follower import HANDLE_SECONDS, FollowerCache
from symbol_proxy.cache.inflight import Downloads
from symbol_proxy.config import ProxyConfig
from symbol_proxy.metrics import MULTIPROCESS_ENV, Metrics
from symbol_proxy.runtime import build_runtime
from symbol_proxy.server import handlers
from symbol_proxy.server.app import make_breakers, reload_config, watch_config
from symbol_proxy.server.files import HotFiles
from symbol_proxy.server.state import STATE, State

__all__ = [
    "OWNER_SOCKET",
    "TOUCH_PATH",
    "add_owner_routes",
    "create_follower_app",
    "die_with_parent",
    "supervise",
]

log = logging.getLogger(__name__)

OWNER_SOCKET = "owner.sock"
TOUCH_PATH = "/_workers/touch"
OWNER_WAIT_SECONDS = 60.0
"""How long the parent waits for the owner's socket before giving up."""
RESTART_PAUSE_SECONDS = 1.0
STOP_SECONDS = 20.0
"""After SIGTERM, how long workers get to finish their requests before they are killed."""
FORWARD_CHUNK = 256 * 1024
FOLLOWER_MISS_SECONDS = 5.0
"""How long a follower answers a "not found" the owner gave it by itself (at most the configured
``negative_ttl``). Kept short: a reload drops it in every worker, but an admin purge reaches only
the owner, so a follower may answer 404 for this long after a purge that would change it."""
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_PASSED_BACK = _HOP_BY_HOP | {"date", "server"}  # the follower's own aiohttp writes these

OWNER = web.AppKey("owner", aiohttp.ClientSession)


def _over_unix_socket(request: web.Request) -> bool:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock is not None and sock.family == socket.AF_UNIX


# -- the owner ---------------------------------------------------------------------------------------


def add_owner_routes(app: web.Application) -> None:
    """The owner's side of the followers' reports (before the application starts)."""
    app.router.add_post(TOUCH_PATH, _touch)


async def _touch(request: web.Request) -> web.Response:
    if not _over_unix_socket(request):
        return web.Response(status=404, text="not found\n")  # not an endpoint for clients
    try:
        touched = await request.json()
    except ValueError:
        touched = None
    if not isinstance(touched, list) or not all(isinstance(key, str) for key in touched):
        return web.Response(status=400, text="expected a JSON list of cache keys\n")
    found = request.app[STATE].cache.touch(touched)
    return web.json_response({"found": found})


# -- a follower ----------------------------------------------------------------------------------------


def create_follower_app(
    config: ProxyConfig, *, config_path: Path | None, owner_socket: Path
) -> web.Application:
    """A follower's application: what the lean path does not answer is passed to the owner."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _forward)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        cache = FollowerCache(Path(config.cache.dir), max_size=config.cache.max_size)
        metrics = Metrics(CollectorRegistry())
        owner = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(owner_socket), limit=0),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        breakers = make_breakers(config)
        # The runtime gives cache keys (the resolver), as in the owner; its backends stay unused.
        runtime = build_runtime(config, session=owner, metrics=metrics, breakers=breakers)
        state = State(
            config=config,
            metrics=metrics,
            cache=cache,
            downloads=Downloads(cache, negative_ttl=0, error_ttl=0),
            breakers=breakers,
            session=owner,
            runtime=runtime,
            config_path=config_path,
            hot=HotFiles(),
        )
        app[STATE] = state
        app[OWNER] = owner
        polling = config_path is not None and config.reload.poll_interval > 0
        tasks = [asyncio.ensure_future(_report(app))]
        if polling:
            tasks.append(asyncio.ensure_future(watch_config(app)))
        loop = asyncio.get_running_loop()
        if config_path is not None:
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload_config(app)))
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            if config_path is not None:
                loop.remove_signal_handler(signal.SIGHUP)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await _send_touches(app)
            await state.runtime.aclose()
            await owner.close()
            state.hot.clear()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _report(app: web.Application) -> None:
    """Every ``HANDLE_SECONDS``: give kept handles up (their files become evictable again) and
    tell the owner which keys were served."""
    state = app[STATE]
    while True:
        await asyncio.sleep(HANDLE_SECONDS)
        state.hot.drop_handles()
        await _send_touches(app)


async def _send_touches(app: web.Application) -> None:
    cache = app[STATE].cache
    assert isinstance(cache, FollowerCache)
    touched = cache.take_touches()
    if not touched:
        return
    try:
        async with app[OWNER].post(f"http://owner{TOUCH_PATH}", json=touched) as response:
            await response.read()
    except (aiohttp.ClientError, OSError) as exc:
        log.debug("could not report %d hits to the owner: %s", len(touched), exc)


async def _forward(request: web.Request) -> web.StreamResponse:
    """The owner's answer to ``request``, streamed back as it comes."""
    state = request.app[STATE]
    headers = [(name, value) for name, value in request.headers.items() if name.lower() not in _HOP_BY_HOP]
    headers.append((handlers.WORKER_CLIENT_HEADER, request.remote or ""))
    url = URL("http://owner" + request.raw_path, encoded=True)
    body = request.content if request.body_exists else None
    try:
        async with request.app[OWNER].request(
            request.method,
            url,
            headers=headers,
            data=body,
            allow_redirects=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        ) as upstream:
            _learn(state, request, upstream)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _NOT_PASSED_BACK:
                    response.headers.add(name, value)
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_chunked(FORWARD_CHUNK):
                    await response.write(chunk)
            await response.write_eof()
            return response
    except (aiohttp.ClientConnectionError, OSError) as exc:
        if request.transport is None or request.transport.is_closing():
            raise  # the client is gone; nothing to answer
        log.warning("the owner worker did not answer: %s", type(exc).__name__)
        return web.Response(
            status=503, text="the proxy is restarting; try again\n", headers={"Retry-After": "1"}
        )


_LOOKUP_PREFIXES = (
    ("/symbols/", handlers.parse_symsrv),
    ("/proxy/", handlers.parse_symsrv),
    ("/unified/", handlers.parse_unified),
)


def _lookup_of(state: State, path: str) -> keys.Lookup | None:
    """The lookup a request path asks for, keyed as the lean path keys it; ``None`` for others."""
    try:
        for prefix, parse in _LOOKUP_PREFIXES:
            if path.startswith(prefix) and len(path) > len(prefix):
                return handlers.keyed(state, parse(path[len(prefix) :]))
        if path.startswith("/buildid/"):
            parts = path[len("/buildid/") :].split("/")
            if len(parts) == 2:
                return handlers.keyed(state, handlers.parse_debuginfod(*parts))
    except keys.NotALookup:
        return None
    return None


def _learn(state: State, request: web.Request, upstream: aiohttp.ClientResponse) -> None:
    """What this worker's lean path may answer next time from the owner's answer: a debuginfod
    file's ``X-DEBUGINFOD-FILE`` (where upstream it was), or a "not found" for a few seconds."""
    if upstream.status not in (200, 404) or request.method not in ("GET", "HEAD") or request.query_string:
        return
    lookup = _lookup_of(state, request.path)
    if lookup is None or lookup.variant is keys.Variant.COMPRESSED or "SymbolChecksum" in request.headers:
        return
    if upstream.status == 404:
        ttl = min(FOLLOWER_MISS_SECONDS, state.config.cache.negative_ttl)
        state.cache.remember_miss(lookup.cache_key, "not_found", ttl)
        return
    location = upstream.headers.get("X-DEBUGINFOD-FILE")
    if location is not None and request.path.startswith("/buildid/"):
        state.locations[lookup.cache_key] = location
        while len(state.locations) > handlers.MAX_LOCATIONS:
            state.locations.popitem(last=False)


# -- the parent ----------------------------------------------------------------------------------------


def die_with_parent() -> None:
    """In a worker: end with SIGTERM when the supervising parent dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent was already gone before the line above
        sys.exit(1)


def _owner_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def supervise(child_args: Sequence[str], workers: int) -> int:
    """Run ``workers`` worker processes (``child_args`` is the command line without ``--workers``)
    until SIGTERM/SIGINT or the owner's end; returns the exit status."""
    from prometheus_client import multiprocess

    directory = Path(tempfile.mkdtemp(prefix="symbol-proxy-workers-"))  # mode 0700
    metrics_dir = directory / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, MULTIPROCESS_ENV: str(metrics_dir)}
    stopping = False
    children: dict[int, tuple[int, subprocess.Popen[bytes]]] = {}

    def start(index: int) -> subprocess.Popen[bytes]:
        role = "owner" if index == 0 else "follower"
        command = [sys.executable, "-m", "symbol_proxy.cli", *child_args]
        command += ["--worker-role", role, "--worker-dir", str(directory)]
        child = subprocess.Popen(command, env=env)
        children[child.pid] = (index, child)
        return child

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum != signal.SIGHUP:
            stopping = True
        for _, child in list(children.values()):
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM if signum != signal.SIGHUP else signal.SIGHUP)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        owner = start(0)
        deadline = time.monotonic() + OWNER_WAIT_SECONDS
        while not _owner_answers(directory / OWNER_SOCKET):
            if owner.poll() is not None:
                return owner.returncode
            if stopping:
                return 0
            if time.monotonic() > deadline:
                log.error("the owner worker did not start listening")
                return 1
            time.sleep(0.05)
        for index in range(1, workers):
            start(index)
        log.info("%d workers serving (owner pid %d)", workers, owner.pid)
        while True:
            pid, status = os.wait()
            entry = children.pop(pid, None)
            if entry is None:
                continue
            index, child = entry
            child.returncode = os.waitstatus_to_exitcode(status)
            multiprocess.mark_process_dead(pid, str(metrics_dir))  # type: ignore[no-untyped-call]
            if index == 0:
                if not stopping:
                    log.error("the owner worker ended (status %s): stopping", child.returncode)
                return child.returncode if not stopping else 0
            if not stopping:
                log.error("worker %d ended (status %s): starting it again", index, child.returncode)
                time.sleep(RESTART_PAUSE_SECONDS)
                if not stopping:
                    start(index)
    finally:
        for _, child in list(children.values()):
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
        for _, child in list(children.values()):
            try:
                child.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        shutil.rmtree(directory, ignore_errors=True)
