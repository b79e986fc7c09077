"""The lean path (``server/fastpath.py``) answers exactly as the full request path would.

Every connection starts on the lean path; a request with a query string (which the handlers
ignore) or anything else the lean path leaves alone hands its connection to aiohttp's full
routing. So the same request sent twice, with and without ``?full``, gets one answer from each
path: they must be the same, byte for byte, apart from ``Date``. The lean path's counters say
which path answered. Raw sockets drive the sequences real clients produce: pipelined requests, a
request split across writes, a connection that returns to the lean path after the full one, a file
evicted while it is being sent.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from symbol_proxy.cache.store import CachedFile
from symbol_proxy.server.files import HotFiles
from symbol_proxy.server.state import STATE
from tests.conftest import StartProxy, app_of
from tests.support.shared import FIXTURES, manifest

SMALL_ELF = "elf/crash"  # kept in memory (HotFiles)
LARGE_ELF = "elf/crash.debug"  # sent with sendfile from a kept handle
PDB = "pdb/crash.pdb"
PE = "pe/crash.exe"
Answer = tuple[int, dict[str, str], bytes]


def _keys(path: str, kind: str) -> list[str]:
    entry = next(e for e in manifest()["files"] if e["path"] == path)
    found: list[str] = entry["objects"][0]["keys"][kind]
    return found


def _store(root: Path) -> list[dict[str, Any]]:
    """Two real stores laid out with the manifest's keys: debuginfod for ELF, symstore for PE/PDB."""
    for path in (SMALL_ELF, LARGE_ELF):
        target = root / "debuginfod" / _keys(path, "debuginfod")[0].removeprefix("buildid/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((FIXTURES / path).read_bytes())
    for path in (PDB, PE):
        target = root / "symstore" / _keys(path, "symsrv")[0]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((FIXTURES / path).read_bytes())
    return [
        {
            "id": "elf",
            "type": "filesystem",
            "path": str(root / "debuginfod"),
            "layout": {"type": "debuginfod"},
        },
        {"id": "pe", "type": "filesystem", "path": str(root / "symstore"), "layout": {"type": "symstore"}},
    ]


class Raw:
    """One keep-alive connection that writes bytes and reads whole HTTP/1.1 responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: TestServer, *, receive_buffer: int | None = None) -> Raw:
        if receive_buffer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            return cls(reader, writer)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connect
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, *, head_request: bool = False) -> tuple[int, dict[str, str], bytes]:
        # Generous: a 48 MiB answer read through a 4 KiB receive buffer took over 10 s on a loaded
        # 2-core machine (the old limit), which failed a test that was right.
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 120)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                assert name.lower() not in headers, f"header {name} sent twice"
                headers[name.lower()] = value.strip()
        length = 0 if head_request else int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), 120)
        return status, headers, body

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def request(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: proxy\r\nUser-Agent: test\r\n{extra}\r\n".encode()


def counted(server: TestServer) -> tuple[float, float]:
    metrics = app_of(server)[STATE].metrics
    return metrics.lean_answers._value.get(), metrics.lean_handovers._value.get()


async def ask_both(server: TestServer, path: str, method: str = "GET") -> tuple[Answer, Answer]:
    """The answer of the full path, then of the lean path, to the same request."""
    full = await Raw.open(server)
    await full.send(request(path + "?full", method))
    full_answer = await full.response(head_request=method == "HEAD")
    await full.close()
    lean = await Raw.open(server)
    before = counted(server)
    await lean.send(request(path, method, "Connection: keep-alive\r\n"))  # as requests sends
    lean_answer = await lean.response(head_request=method == "HEAD")
    after = counted(server)
    await lean.close()
    assert after[0] == before[0] + 1 and after[1] == before[1], f"{path}: not answered on the lean path"
    return full_answer, lean_answer


def _comparable(answer: Answer) -> Answer:
    status, headers, body = answer
    return status, {k: v for k, v in headers.items() if k not in ("date", "keep-alive")}, body


LOOKUPS = [
    pytest.param(lambda: "/" + _keys(SMALL_ELF, "debuginfod")[0], SMALL_ELF, id="debuginfod-small"),
    pytest.param(lambda: "/" + _keys(LARGE_ELF, "debuginfod")[0], LARGE_ELF, id="debuginfod-sendfile"),
    pytest.param(lambda: "/symbols/" + _keys(PDB, "symsrv")[0], PDB, id="symsrv-pdb-sendfile"),
    pytest.param(lambda: "/symbols/" + _keys(PE, "symsrv")[0], PE, id="symsrv-pe"),
    pytest.param(lambda: "/symbols/" + _keys(PE, "symsrv")[0].lower(), PE, id="symsrv-pe-lowercase"),
    pytest.param(lambda: "/unified/not/a/key", None, id="unified-invalid"),
]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(("make_path", "fixture"), LOOKUPS)
async def test_lean_and_full_paths_give_the_same_answer(
    make_path: Any, fixture: str | None, method: str, tmp_path: Path, start_proxy: StartProxy
) -> None:
    server = await start_proxy(_store(tmp_path))
    path = make_path()
    # The first request fills the cache (and HotFiles) through the full path.
    warm = await Raw.open(server)
    await warm.send(request(path))
    await warm.response()
    await warm.close()
    full, lean = await ask_both(server, path, method)
    assert _comparable(lean) == _comparable(full)
    status, headers, body = lean
    if fixture is None:
        assert status == 404
    else:
        assert status == 200
        assert int(headers["content-length"]) == (FIXTURES / fixture).stat().st_size
        if method == "GET":
            assert body == (FIXTURES / fixture).read_bytes()


async def test_a_remembered_miss_and_health_checks_are_lean_answers(
    tmp_path: Path, start_proxy: StartProxy
) -> None:
    server = await start_proxy(_store(tmp_path))
    missing = "/buildid/" + "ab" * 20 + "/debuginfo"
    first = await Raw.open(server)
    await first.send(request(missing))
    assert (await first.response())[0] == 404
    await first.close()
    for path in (missing, "/healthz", "/healthcheck", "/symbols/not-a-key"):
        full, lean = await ask_both(server, path)
        assert _comparable(lean) == _comparable(full), path
    assert lean[0] == 404


async def test_pipelined_requests_are_answered_in_order_across_the_hand_over(
    tmp_path: Path, start_proxy: StartProxy
) -> None:
    server = await start_proxy(_store(tmp_path))
    small = "/" + _keys(SMALL_ELF, "debuginfod")[0]
    large = "/" + _keys(LARGE_ELF, "debuginfod")[0]
    warm = await Raw.open(server)
    for path in (small, large):
        await warm.send(request(path))
        await warm.response()
    await warm.close()
    pdb = "/symbols/" + _keys(PDB, "symsrv")[0]  # never asked: a miss, which only the full path serves
    conn = await Raw.open(server)
    # Six requests in one write: lean ones, then a miss (the hand-over), then hits on the full path.
    await conn.send(b"".join(request(p) for p in (small, large, "/healthz", pdb, small, large)))
    expected = [SMALL_ELF, LARGE_ELF, None, PDB, SMALL_ELF, LARGE_ELF]
    for fixture in expected:
        status, _, body = await conn.response()
        assert status == 200
        if fixture is None:
            assert body == b"ok\n"
        else:
            assert body == (FIXTURES / fixture).read_bytes(), fixture
    await conn.close()


async def test_a_request_split_into_single_bytes_is_answered_once_complete(
    tmp_path: Path, start_proxy: StartProxy
) -> None:
    server = await start_proxy(_store(tmp_path))
    conn = await Raw.open(server)
    for _ in range(2):  # the first fills the cache, the second is a lean hit
        for byte in request("/" + _keys(SMALL_ELF, "debuginfod")[0]):
            await conn.send(bytes([byte]))
        status, _, body = await conn.response()
        assert status == 200 and body == (FIXTURES / SMALL_ELF).read_bytes()
    await conn.close()


async def test_a_head_too_long_for_the_lean_path_gets_aiohttps_answer(
    tmp_path: Path, start_proxy: StartProxy
) -> None:
    server = await start_proxy(_store(tmp_path))
    conn = await Raw.open(server)
    await conn.send(b"GET /healthz HTTP/1.1\r\nX-Long: " + b"a" * 40_000 + b"\r\n\r\n")
    status, _, _ = await conn.response()
    assert status in (400, 431)
    await conn.close()


@pytest.mark.parametrize(
    "extra",
    ["Range: bytes=0-9\r\n", "If-None-Match: *\r\n", "Connection: Upgrade\r\n"],
    ids=["range", "conditional", "connection-upgrade"],
)
async def test_requests_that_change_the_answer_take_the_full_path(
    extra: str, tmp_path: Path, start_proxy: StartProxy
) -> None:
    server = await start_proxy(_store(tmp_path))
    path = "/" + _keys(SMALL_ELF, "debuginfod")[0]
    conn = await Raw.open(server)
    await conn.send(request(path))
    await conn.response()
    await conn.close()
    before = counted(server)
    conn = await Raw.open(server)
    await conn.send(request(path, extra=extra))
    status, _, body = await conn.response()
    data = (FIXTURES / SMALL_ELF).read_bytes()
    if extra.startswith("Range"):
        assert status == 206 and body == data[:10]
    elif extra.startswith("If-None-Match"):
        assert status == 304
    else:
        assert status == 200 and body == data
    after = counted(server)
    assert after == (before[0], before[1] + 1)
    await conn.close()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("which", ["small", "large", "missing", "health"])
async def test_a_request_that_closes_is_answered_on_the_lean_path_then_the_connection_closes(
    method: str, which: str, tmp_path: Path, start_proxy: StartProxy
) -> None:
    server = await start_proxy(_store(tmp_path))
    path = {
        "small": "/" + _keys(SMALL_ELF, "debuginfod")[0],
        "large": "/symbols/" + _keys(PDB, "symsrv")[0],
        "missing": "/symbols/nothing.pdb/0123456789ABCDEF0123456789ABCDEF1/nothing.pdb",
        "health": "/healthz",
    }[which]
    warm = await Raw.open(server)
    for _ in range(2):  # cached (and for the missing file, remembered) and read into memory
        await warm.send(request(path))
        await warm.response()
    await warm.close()
    answers = []
    for suffix, lean in (("?full", False), ("", True)):
        conn = await Raw.open(server)
        before = counted(server)
        await conn.send(request(path + suffix, method, "Connection: close\r\n"))
        answers.append(_comparable(await conn.response(head_request=method == "HEAD")))
        assert await asyncio.wait_for(conn.reader.read(), 10) == b"", "the connection stays open"
        after = counted(server)
        assert (after[0] > before[0]) == lean, "lean path" if lean else "full path"
        await conn.close()
    full, lean_answer = answers
    assert lean_answer == full and full[1]["connection"] == "close"


async def test_a_file_evicted_while_the_lean_path_sends_it_arrives_whole(
    tmp_path: Path, start_proxy: StartProxy
) -> None:
    # A debug file far larger than the socket buffers (the fixture with zeros after it: the same
    # ELF header and build id), so that its sendfile is still running when the cache is purged.
    sources = _store(tmp_path)
    key = _keys(LARGE_ELF, "debuginfod")[0].removeprefix("buildid/")
    data = (FIXTURES / LARGE_ELF).read_bytes() + bytes(48 * 1024 * 1024)
    (Path(sources[0]["path"]) / key).write_bytes(data)
    server = await start_proxy(sources)
    state = app_of(server)[STATE]
    path = "/buildid/" + key
    conn = await Raw.open(server)
    for _ in range(2):  # the miss, then a hit that opens and keeps the handle
        await conn.send(request(path))
        await conn.response()
    # A reader that does not read yet: the lean answer's sendfile stalls on a full socket, and
    # meanwhile the whole cache is purged (as the admin endpoint or the cap would).
    slow = await Raw.open(server, receive_buffer=4096)
    lean_before, _ = counted(server)
    await slow.send(request(path))
    while counted(server)[0] == lean_before:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert state.cache.clear() == 1
    state.hot.clear()
    status, _, body = await slow.response()
    assert status == 200 and len(body) == len(data) and body == data
    await slow.close()
    await conn.close()


def test_a_kept_handle_is_closed_only_when_no_response_uses_it(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"x" * 1000)
    entry = CachedFile("k", path, 1000, path.stat().st_mtime_ns)
    hot = HotFiles()
    hot.max_handles = 1
    handle = hot.keep_handle(entry, open(path, "rb"))  # noqa: SIM115 (borrowed once by the caller)
    assert hot.borrow(entry) is handle  # a second response
    hot.forget(path)  # the file left the cache
    assert not handle.closed
    hot.give_back(handle)
    assert not handle.closed
    hot.give_back(handle)
    assert handle.closed
    # Pushed out of the table by a newer handle while in use: closed once given back.
    first = hot.keep_handle(entry, open(path, "rb"))  # noqa: SIM115
    other = tmp_path / "other"
    other.write_bytes(b"y")
    other_entry = CachedFile("o", other, 1, other.stat().st_mtime_ns)
    second = hot.keep_handle(other_entry, open(other, "rb"))  # noqa: SIM115
    assert not first.closed
    hot.give_back(first)
    assert first.closed
    hot.give_back(second)
    assert not second.closed  # still kept
    hot.clear()
    assert second.closed


async def test_a_connection_returns_to_the_lean_path_once_aiohttp_has_answered(
    tmp_path: Path, start_proxy: StartProxy
) -> None:
    """A debugger keeps one connection and mixes misses with hits: after each request the full
    path answered, the next hit is a lean answer again."""
    server = await start_proxy(_store(tmp_path))
    small = "/" + _keys(SMALL_ELF, "debuginfod")[0]
    pdb = "/symbols/" + _keys(PDB, "symsrv")[0]
    conn = await Raw.open(server)
    steps = [
        (small, "", "full", SMALL_ELF),  # a miss (its answer also keeps the file in memory)
        (small, "", "lean", SMALL_ELF),
        (pdb, "", "full", PDB),  # another miss on the same connection
        (small, "", "lean", SMALL_ELF),
        (small, "Range: bytes=0-99\r\n", "full", SMALL_ELF),
        (small, "", "lean", SMALL_ELF),
    ]
    for path, extra, where, fixture in steps:
        before = counted(server)
        await conn.send(request(path, extra=extra))
        status, _, body = await conn.response()
        data = (FIXTURES / fixture).read_bytes()
        assert (status, body) == ((206, data[:100]) if extra else (200, data)), (path, extra)
        lean, handed = counted(server)
        assert (lean - before[0], handed - before[1]) == ((1, 0) if where == "lean" else (0, 1)), (
            path,
            where,
        )
    await conn.close()


async def test_after_a_request_with_a_body_the_connection_stays_with_aiohttp(
    tmp_path: Path, start_proxy: StartProxy
) -> None:
    server = await start_proxy(_store(tmp_path))
    small = "/" + _keys(SMALL_ELF, "debuginfod")[0]
    conn = await Raw.open(server)
    for _ in range(2):
        await conn.send(request(small))
        await conn.response()
    await conn.send(b"POST /healthz HTTP/1.1\r\nHost: proxy\r\nContent-Length: 5\r\n\r\nhello")
    status, _, _ = await conn.response()
    assert status == 405
    before = counted(server)
    for _ in range(2):
        await conn.send(request(small))
        status, _, body = await conn.response()
        assert status == 200 and body == (FIXTURES / SMALL_ELF).read_bytes()
    assert counted(server) == before  # answered by the handler that read the body
    await conn.close()
