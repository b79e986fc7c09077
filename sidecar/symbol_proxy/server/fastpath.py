"""The lean path: cache hits, remembered 404s and health checks answered below aiohttp's routing.

Most of what a symbol proxy answers is the same few thousand files and misses, asked for again and
again. aiohttp's general request path (a request object, routing, middlewares, a response object,
header serialisation) costs several times what the answer itself does, so every connection starts
on ``FastProtocol``, a plain ``asyncio.Protocol`` that reads requests itself and answers those it
can answer exactly as the full handlers would, from memory:

- ``GET``/``HEAD`` of ``/symbols/``, ``/proxy/``, ``/unified/`` and ``/buildid/<id>/<kind>`` whose
  answer is a cached file (small files from the in-memory ``HotFiles``, larger ones with
  ``sendfile`` from a handle ``HotFiles`` keeps open) or a remembered "not found";
- a path that is not a lookup (the same fast 404 the handlers give), ``/healthz``, ``/healthcheck``;
- each also with ``Connection: close``: answered as aiohttp answers it, then the connection closes.

Anything else (a miss, a CAB, a range or conditional request, a ``SymbolChecksum``, a query string,
escapes, repeated slashes, a body, HTTP/1.0, ``Expect``, an upgrade, a header block it cannot
read) goes to an aiohttp handler attached to the connection, with every byte not yet
answered; once that handler has answered everything and waits, the lean path takes the
connection back (``FastProtocol``). So the full
handlers remain the reference: the lean path answers a request only when it knows their answer,
and the tests run against this path (``tests/sidecar/test_fastpath.py`` compares the two).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import logging
import socket
import time
import weakref
from collections.abc import Callable
from typing import BinaryIO, cast

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.web_protocol import RequestHandler

from symbol_proxy import keys
from symbol_proxy.cache.follower import FollowerCache
from symbol_proxy.cache.store import CachedFile, Miss
from symbol_proxy.server import handlers
from symbol_proxy.server.state import STATE, State

__all__ = ["Answer", "FastProtocol", "FastSite"]

log = logging.getLogger(__name__)

MAX_HEAD = 8190
"""A request head longer than this is left to aiohttp, whose limit for one line is the same: it
answers 400 or 431 as it should, or serves a long but valid head."""
KEEPALIVE_SECONDS = 75.0
"""Idle keep-alive connections are closed after this long, as aiohttp does."""
_REQUEST_END = b"\r\n\r\n"
_HANDED_OVER_HEADERS = frozenset(
    {
        "range",
        "if-range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "symbolchecksum",
        "x-debuginfod-maxsize",
        "content-length",
        "transfer-encoding",
        "expect",
        "upgrade",
    }
)
"""Request headers that can change the answer or the framing: such requests take the full path."""
_CLOSE_LINE = b"Connection: close\r\n"
"""What aiohttp adds to the answer of a request that asked to close the connection."""
_STATUS_LINES = {200: b"HTTP/1.1 200 OK\r\n", 404: b"HTTP/1.1 404 Not Found\r\n"}
SERVER = SERVER_SOFTWARE
"""The ``Server`` header aiohttp sends on the full path: the two paths answer alike."""


class _Dates:
    """The ``Date`` header, formatted once a second."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = f"Date: {email.utils.formatdate(now, usegmt=True)}\r\n".encode()
        return self._line


_DATES = _Dates()


class Answer:
    """What the lean path answers one request with: a head (without ``Date``), then either a body
    in memory or ``length`` bytes of an open file sent with ``sendfile`` while the file is pinned."""

    __slots__ = ("body", "handle", "head", "key", "length")

    def __init__(
        self,
        head: bytes,
        body: bytes = b"",
        *,
        handle: BinaryIO | None = None,
        length: int = 0,
        key: str = "",
    ) -> None:
        self.head = head
        self.body = body
        self.handle = handle
        self.length = length
        self.key = key


def _head(status: int, headers: dict[str, str], length: int) -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return _STATUS_LINES[status] + f"Server: {SERVER}\r\n{lines}Content-Length: {length}\r\n".encode()


@functools.lru_cache(maxsize=1024)
def _text(status: int, text: str, head_only: bool) -> Answer:
    """A text answer; the same few (404s, health) are built once. Answers are never modified."""
    body = text.encode()
    head = _head(status, {"Content-Type": "text/plain; charset=utf-8"}, len(body))
    return Answer(head, b"" if head_only else body)


_PROTOCOLS: tuple[tuple[str, str, Callable[[str], keys.Lookup]], ...] = (
    ("/symbols/", "symsrv", handlers.parse_symsrv),
    ("/proxy/", "symsrv", handlers.parse_symsrv),
    ("/unified/", "unified", handlers.parse_unified),
)


class Answers:
    """Decides, from the application's state, whether the lean path can answer a request."""

    __slots__ = ("_app", "_follower", "_heads", "_sendfile")

    MAX_HEADS = 8192

    def __init__(self, app: web.Application, *, sendfile: bool) -> None:
        self._app = app
        self._sendfile = sendfile
        self._heads: dict[tuple[str, str, int, int, str], bytes] = {}
        cache = app[STATE].cache if STATE in app else None
        self._follower = cache if isinstance(cache, FollowerCache) else None
        """Set in a ``--workers`` follower, whose full path is the owner: the lean path fills
        ``HotFiles`` itself, since no full handler here ever reads a file."""

    @property
    def state(self) -> State:
        return self._app[STATE]

    def answer(self, method: str, path: str) -> Answer | None:
        head_only = method == "HEAD"
        if path == "/healthz":
            return _text(200, "ok\n", head_only)
        if path == "/healthcheck":
            return _text(200, "ok", head_only)
        for prefix, protocol, parse in _PROTOCOLS:
            if path.startswith(prefix):
                rest = path[len(prefix) :]
                if not rest:
                    return None
                return self._lookup(protocol, parse, (rest,), head_only)
        if path.startswith("/buildid/"):
            parts = path[len("/buildid/") :].split("/")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                return None
            build_id, kind = parts
            return self._lookup("debuginfod", handlers.parse_debuginfod, (build_id, kind), head_only)
        return None

    def _lookup(
        self,
        protocol: str,
        parse: Callable[..., keys.Lookup],
        args: tuple[str, ...],
        head_only: bool,
    ) -> Answer | None:
        state = self.state
        started = time.monotonic()
        try:
            lookup = parse(*args)
        except keys.NotALookup as exc:
            state.metrics.count_request(protocol, "invalid")
            state.metrics.observe_request(protocol, time.monotonic() - started)
            return _text(404, f"not found: {exc}\n", head_only)
        if lookup.variant is keys.Variant.COMPRESSED:
            return None
        lookup = handlers.keyed(state, lookup)
        entry = state.cache.get(lookup.cache_key)
        if isinstance(entry, Miss):
            if entry.kind not in ("not_found", "denied"):
                return None  # a remembered upstream failure: its Retry-After is worked out there
            state.metrics.count_request(protocol, "negative_hit")
            state.metrics.observe_request(protocol, time.monotonic() - started)
            return _text(404, "not found: no configured source has this file\n", head_only)
        if not isinstance(entry, CachedFile):
            return None
        follower = self._follower is not None
        if follower and protocol == "debuginfod" and lookup.cache_key not in state.locations:
            return None  # X-DEBUGINFOD-FILE: where upstream it was; the owner knows, and tells
        hot = state.hot
        body = b""
        handle: BinaryIO | None = None
        if head_only:
            pass
        elif entry.size <= hot.max_file:
            body = hot.get(entry)  # type: ignore[assignment]
            if body is None and self._follower is not None:
                body = self._follower.read_small(entry)
                if body is not None:
                    hot.put(entry, body)
            if body is None:
                return None  # the full path reads it (once) into HotFiles
        elif not self._sendfile:
            return None  # uvloop has no sendfile: the full path copies through the loop
        else:
            handle = hot.borrow(entry)
            if handle is None and self._follower is not None:
                opened = self._follower.open_shared(entry)
                if opened is not None:
                    handle = hot.keep_handle(entry, opened)
            if handle is None:
                return None  # the full path opens it (once) and keeps the handle
        head = self._hit_head(state, protocol, lookup, entry)
        state.metrics.count_request(protocol, "hit")
        state.metrics.observe_request(protocol, time.monotonic() - started)
        return Answer(head, body, handle=handle, length=entry.size, key=lookup.cache_key)

    def _hit_head(self, state: State, protocol: str, lookup: keys.Lookup, entry: CachedFile) -> bytes:
        location = handlers.debuginfod_file(state, lookup) if protocol == "debuginfod" else ""
        memo = (entry.key, protocol, entry.mtime_ns, entry.size, location)
        head = self._heads.get(memo)
        if head is None:
            headers = handlers.file_headers(state, protocol, lookup, entry)
            head = _head(200, headers, entry.size)
            if len(self._heads) >= self.MAX_HEADS:
                self._heads.clear()
            self._heads[memo] = head
        return head


def _parse_head(head: bytes) -> tuple[str, str, bool] | None:
    """(method, path, whether the client asked to close) of a request head the lean path may
    answer, else None: its header names are checked (none that changes the answer or the framing,
    none twice), their values not needed except ``Connection``'s."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] != "HTTP/1.1" or parts[0] not in ("GET", "HEAD"):
        return None
    method, path, _ = parts
    if not path.startswith("/") or any(mark in path for mark in ("?", "%", "//", "/.", "#")):
        return None
    seen: set[str] = set()
    close = False
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or name[0] in " \t":
            return None
        name = name.lower()
        if name in _HANDED_OVER_HEADERS or name in seen:
            return None
        if name == "connection":
            option = value.strip().lower()
            if option not in ("keep-alive", "close"):
                return None  # an upgrade or a list of options: the full path judges it
            close = option == "close"
        seen.add(name)
    return method, path, close


_BODY_HEADERS = (b"\r\ncontent-length:", b"\r\ntransfer-encoding:", b"\r\nupgrade:")


def _bodiless_heads(data: bytes) -> bool:
    """Whether ``data`` is nothing but complete request heads without a body: what an aiohttp
    handler can be given and later let go of without losing bytes it has not parsed yet."""
    for head in data.split(_REQUEST_END)[:-1]:
        lowered = head.lower()
        if any(name in lowered for name in _BODY_HEADERS):
            return False
    return data.endswith(_REQUEST_END)


def _idle(handler: RequestHandler) -> bool:
    """Whether aiohttp's handler has answered everything it was given and waits for more. Read
    from its private state; where that is not what this version of aiohttp has, the answer is
    "not idle", and the connection simply stays with aiohttp."""
    waiter = getattr(handler, "_waiter", None)
    return (
        isinstance(waiter, asyncio.Future)
        and not waiter.done()
        and not getattr(handler, "_messages", True)
        and getattr(handler, "_payload_parser", True) is None
        and getattr(handler, "_upgraded", True) is False
        and getattr(handler, "_current_request", True) is None
    )


class FastProtocol(asyncio.Protocol):
    """One client connection: requests the lean path can answer are answered here; for one it
    cannot, an aiohttp handler is attached to the connection and given every byte not yet
    answered. Once that handler has answered all it was given and waits for more (and was given
    nothing but whole body-less requests), it is let go and the lean path takes over again, so a
    debugger that mixes misses and hits on one connection keeps the fast hits."""

    def __init__(self, server: web.Server, answers: Answers, live: weakref.WeakSet[FastProtocol]) -> None:
        self._server = server
        self._answers = answers
        self._live = live
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._sending: asyncio.Task[None] | None = None
        self._paused = False
        self._child: RequestHandler | None = None
        self._child_clean = False
        """Whether the attached handler was given only whole body-less requests (so it can go)."""
        self.last_active = 0.0

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's, but have the same methods.
        self._transport = cast(asyncio.Transport, transport)
        self.last_active = time.monotonic()
        self._live.add(self)
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        child = self._child
        if child is not None:
            if not (self._child_clean and _idle(child)):
                self._child_clean = self._child_clean and _bodiless_heads(data)
                child.data_received(data)
                return
            self._let_go()
        self._buffer += data
        self._process()

    def eof_received(self) -> bool | None:
        if self._child is not None:
            self._child.eof_received()
        return None  # close once what was asked is answered (the transport closes after writes)

    def connection_lost(self, exc: Exception | None) -> None:
        # A file being sent finds the transport closed, gives its handle back and unpins.
        self._live.discard(self)
        self._transport = None
        if self._child is not None:
            self._child.connection_lost(exc)
            self._child = None

    def pause_writing(self) -> None:
        self._paused = True
        if self._child is not None:
            self._child.pause_writing()
        elif self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self._child is not None:
            self._child.resume_writing()
        elif self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()
            self._process()

    # -- requests -------------------------------------------------------------------------------

    def close_if_idle(self, now: float) -> None:
        idle = self._sending is None and not self._buffer and now - self.last_active > KEEPALIVE_SECONDS
        if idle and self._child is None and self._transport is not None:
            self._transport.close()  # (an attached handler keeps its own keep-alive time)

    def _process(self) -> None:
        transport = self._transport
        while transport is not None and self._child is None and self._sending is None and not self._paused:
            end = self._buffer.find(_REQUEST_END, 0, MAX_HEAD + len(_REQUEST_END))
            if end < 0 and len(self._buffer) <= MAX_HEAD:
                return  # not complete yet
            if end < 0:
                self._hand_over()  # longer than any lookup: aiohttp judges it (400 or 431)
                return
            parsed = _parse_head(bytes(self._buffer[:end]))
            answer = None
            if parsed is not None:
                try:
                    answer = self._answers.answer(parsed[0], parsed[1])
                except Exception:  # never fail a request here: the full path will answer it
                    log.exception("lean path: unexpected failure, handing the request to aiohttp")
                    answer = None
            if answer is None:
                self._hand_over()
                return
            self._answers.state.metrics.lean_answers.inc()
            close = parsed is not None and parsed[2]
            del self._buffer[: end + len(_REQUEST_END)]
            last = _CLOSE_LINE if close else b""
            transport.write(answer.head + _DATES.line() + last + b"\r\n" + answer.body)
            if answer.handle is not None:
                # Pinned now, before anything else runs: the file and its handle stay until sent.
                pin = contextlib.ExitStack()
                pin.enter_context(self._answers.state.cache.pinned(answer.key))
                self._sending = asyncio.ensure_future(self._send_file(answer, pin, transport, close))
            elif close:
                self._buffer.clear()  # what follows a request that closes is never answered
                transport.close()  # once the answer is written
                return

    async def _send_file(
        self, answer: Answer, pin: contextlib.ExitStack, transport: asyncio.Transport, close: bool
    ) -> None:
        assert answer.handle is not None
        loop = asyncio.get_running_loop()
        with pin:
            try:
                await loop.sendfile(transport, answer.handle, 0, answer.length, fallback=True)
            except (OSError, ValueError, RuntimeError):
                # The client went away mid-body: the headers are out, so only cutting the
                # connection keeps a client from taking a short body for a whole file.
                transport.abort()
                return
            finally:
                self._answers.state.hot.give_back(answer.handle)
                self._sending = None
        self.last_active = time.monotonic()
        if close:
            self._buffer.clear()
            transport.close()
            return
        self._process()

    def _hand_over(self) -> None:
        """aiohttp serves the current request and what follows, until it is idle again."""
        transport = self._transport
        assert transport is not None and self._child is None
        self._answers.state.metrics.lean_handovers.inc()
        child = self._server()
        self._child = child
        child.connection_made(transport)
        if self._paused:
            child.pause_writing()
        pending = bytes(self._buffer)
        self._buffer.clear()
        self._child_clean = _bodiless_heads(pending)
        if pending:
            child.data_received(pending)

    def _let_go(self) -> None:
        """Detach the idle aiohttp handler without closing the connection: it forgets the
        transport first, so its clean-up (unregistering, cancelling its task) leaves it open."""
        child = self._child
        assert child is not None
        self._child = None
        child.transport = None
        child.connection_lost(None)


class FastSite(web.BaseSite):
    """A TCP site whose connections start on the lean path (``FastProtocol``).

    ``reuse_port`` lets several processes listen on one port (``--workers``); ``sock`` serves an
    already bound socket instead of ``host``/``port``."""

    __slots__ = ("_host", "_live", "_port", "_reuse_port", "_sock", "_sweeper")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        reuse_port: bool = False,
        sock: socket.socket | None = None,
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._reuse_port = reuse_port
        self._sock = sock
        self._live: weakref.WeakSet[FastProtocol] = weakref.WeakSet()
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        assert isinstance(self._server, asyncio.Server)
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1])

    async def start(self) -> None:
        await super().start()
        runner = self._runner
        server = runner.server
        assert server is not None and isinstance(runner, web.AppRunner)
        loop = asyncio.get_running_loop()
        # asyncio's own loop sends files with sendfile(2); others (uvloop) may not have it at all.
        answers = Answers(runner.app, sendfile=isinstance(loop, asyncio.BaseEventLoop))

        def factory() -> FastProtocol:
            return FastProtocol(server, answers, self._live)

        if self._sock is not None:
            self._server = await loop.create_server(factory, sock=self._sock, backlog=self._backlog)
        else:
            self._server = await loop.create_server(
                factory,
                self._host,
                self._port,
                backlog=self._backlog,
                reuse_address=True,
                reuse_port=self._reuse_port or None,
            )
        self._sweeper = asyncio.ensure_future(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS / 5)
            now = time.monotonic()
            for protocol in list(self._live):
                protocol.close_if_idle(now)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await super().stop()
        for protocol in list(self._live):
            protocol.close_if_idle(float("inf"))
