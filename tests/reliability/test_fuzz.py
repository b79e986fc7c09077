"""A bounded fuzzer over every route of a real proxy process.

20,000 requests built from a seeded grammar: real keys of every protocol and their mutations
(percent-encodings, ``..`` and ``..;`` segments, NULs, backslashes, long and non-ASCII names,
empty segments), every route including health, metrics and the (disabled) admin endpoint, every
method, and hostile headers (ranges, conditionals, ``X-DEBUGINFOD-MAXSIZE``). Some clients hang
up in the middle of large hits. Asserted: no 5xx, no byte from outside the store (a marker file
beside it and beside the cache is never served), and a bounded, traceback-free log.
"""

from __future__ import annotations

import asyncio
import collections
import random
import socket
from pathlib import Path

import aiohttp
from yarl import URL

from tests.reliability.harness import running_proxy
from tests.support.shared import keyed_objects

REQUESTS = 20_000
CONCURRENCY = 32
MARKER = b"OUTSIDE-THE-STORE-7f3a9c"
MiB = 1024 * 1024

OBJECTS = keyed_objects()
PLAIN_KEYS = [key for o in OBJECTS for key in o.keys.get("symsrv", [])][:20]
UNIFIED_KEYS = [key for o in OBJECTS for key in o.keys.get("unified", [])][:20]
BUILD_IDS = [key for o in OBJECTS for key in o.keys.get("debuginfod", [])][:20]
BIG = "big.exe/5AB3807710000/big.exe"

SEGMENTS = [
    "..",
    "..;",
    ".",
    "..%2f",
    "%2e%2e",
    "%2e%2e%3b",
    "%00",
    "a%00b",
    "\\..\\",
    "%5c..%5c",
    "",
    "~",
    "x" * 300,
    "ä" * 40,
    "%ff%fe",
    "%",
    "%zz",
    ";",
    "..;x=1",
    "*",
    "$",
    "..%252f",
]
ROUTES = [
    "/symbols/",
    "/proxy/",
    "/unified/",
    "/buildid/",
    "/admin/cache/symbols/",
    "/admin/cache",
    "/healthz",
    "/readyz",
    "/healthcheck",
    "/metrics",
    "/",
    "/symbols",
    "/buildid/x/",
]
METHODS = ["GET"] * 8 + ["HEAD"] * 3 + ["POST", "DELETE", "PUT", "OPTIONS", "PATCH"]


def mutate(rng: random.Random, path: str) -> str:
    parts = path.split("/")
    for _ in range(rng.randint(1, 3)):
        choice = rng.random()
        i = rng.randrange(len(parts))
        if choice < 0.4:
            parts.insert(i, rng.choice(SEGMENTS))
        elif choice < 0.6:
            parts[i] = rng.choice(SEGMENTS)
        elif choice < 0.8:
            parts[i] = parts[i].upper() if rng.random() < 0.5 else parts[i][::-1]
        else:
            parts[i] = "".join(f"%{b:02x}" for b in parts[i].encode()[:60])
    return "/".join(parts)


def request_line(rng: random.Random) -> tuple[str, str, dict[str, str]]:
    kind = rng.random()
    if kind < 0.25:
        path = "/symbols/" + rng.choice([*PLAIN_KEYS, BIG])
    elif kind < 0.35:
        key = rng.choice(PLAIN_KEYS)
        path = "/symbols/" + key[:-1] + "_"
    elif kind < 0.45:
        path = "/unified/" + rng.choice(UNIFIED_KEYS) if UNIFIED_KEYS else "/unified/x"
    elif kind < 0.55:
        build = rng.choice(BUILD_IDS) if BUILD_IDS else "buildid/00/debuginfo"
        path = "/" + build if build.startswith("buildid") else f"/buildid/{build}"
    else:
        path = rng.choice(ROUTES) + mutate(rng, rng.choice(PLAIN_KEYS + UNIFIED_KEYS + ["a/b/c"]))
    if rng.random() < 0.5 and not path.startswith(("/healthz", "/metrics")):
        path = mutate(rng, path)
    headers: dict[str, str] = {}
    if rng.random() < 0.2:
        headers["Range"] = rng.choice(
            [
                "bytes=0-0",
                "bytes=-1",
                "bytes=5-2",
                "bytes=0-99999999999",
                "bytes=x",
                "bytes=1-2,3-4",
                "lines=1",
            ]
        )
    if rng.random() < 0.1:
        headers["If-None-Match"] = rng.choice(['"x"', "*", 'W/"1"'])
    if rng.random() < 0.1:
        headers["If-Modified-Since"] = rng.choice(["yesterday", "Thu, 01 Jan 1970 00:00:00 GMT", "0"])
    if rng.random() < 0.1:
        headers["X-DEBUGINFOD-MAXSIZE"] = rng.choice(["-1", "0", "abc", "99999999999999999999", "1e3"])
    return rng.choice(METHODS), path, headers


def hang_up_mid_body(port: int, path: str) -> None:
    """A client that reads part of a large response and disconnects (resets the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = 0
        while received < 256 * 1024:
            data = sock.recv(65536)
            if not data:
                break
            received += len(data)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


async def test_twenty_thousand_fuzzed_requests_get_no_5xx_and_nothing_from_outside(tmp_path: Path) -> None:
    store = tmp_path / "store"
    for o in OBJECTS:
        for key in o.keys.get("symsrv", [])[:1]:
            (store / key).parent.mkdir(parents=True, exist_ok=True)
            (store / key).write_bytes(o.data)
    (store / BIG).parent.mkdir(parents=True, exist_ok=True)
    (store / BIG).write_bytes(b"MZ" + random.Random(1).randbytes(8 * MiB))
    (tmp_path / "secret.txt").write_bytes(MARKER)  # beside the store
    cache = tmp_path / "cache"
    config = {
        "cache": {"dir": str(cache), "max_size": "64MiB"},
        "sources": [
            {"id": "store", "type": "filesystem", "path": str(store), "layout": {"type": "symstore"}},
            {"id": "unified", "type": "filesystem", "path": str(store), "layout": {"type": "unified"}},
            {"id": "debuginfod", "type": "filesystem", "path": str(store), "layout": {"type": "debuginfod"}},
        ],
    }
    with running_proxy(tmp_path, config) as proxy:
        cache.mkdir(exist_ok=True)
        (cache / "secret.txt").write_bytes(MARKER)  # beside the cache's own directories
        rng = random.Random(20_000)
        lines = [request_line(rng) for _ in range(REQUESTS)]
        statuses: dict[int, int] = {}
        leaks: list[str] = []
        server_errors: list[str] = []
        client_errors = 0
        kinds: collections.Counter[str] = collections.Counter()
        queue: asyncio.Queue[tuple[str, str, dict[str, str]]] = asyncio.Queue()
        for line in lines:
            queue.put_nowait(line)

        async def worker(http: aiohttp.ClientSession) -> None:
            nonlocal client_errors
            while not queue.empty():
                method, path, headers = queue.get_nowait()
                try:
                    url = URL.build(scheme="http", host="127.0.0.1", port=proxy.port, path=path, encoded=True)
                    async with http.request(method, url, headers=headers, allow_redirects=False) as response:
                        body = await response.read()
                except aiohttp.ClientResponseError as exc:
                    # The server's HTTP parser refused the request line (400) and closed.
                    statuses[exc.status] = statuses.get(exc.status, 0) + 1
                    continue
                except (aiohttp.ClientError, ValueError) as exc:
                    kinds[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                    client_errors += 1  # a request the client library itself refuses to send
                    continue
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if response.status >= 500:
                    server_errors.append(f"{method} {path}: {response.status} {body[:200]!r}")
                if MARKER in body:
                    leaks.append(f"{method} {path}")

        async def hang_ups() -> None:
            for _ in range(200):
                await asyncio.to_thread(hang_up_mid_body, proxy.port, f"/symbols/{BIG}")

        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as http:
            await asyncio.gather(hang_ups(), *(worker(http) for _ in range(CONCURRENCY)))

        assert not server_errors, (len(server_errors), server_errors[:10])
        assert not leaks, leaks[:10]
        assert sum(statuses.values()) + client_errors == REQUESTS
        assert client_errors < REQUESTS // 100, kinds.most_common(8)
        assert statuses.get(200, 0) > REQUESTS // 20 and statuses.get(404, 0) > REQUESTS // 5, statuses
        log = proxy.log()
        assert "Traceback" not in log and " ERROR " not in log, log[-5000:]
        assert len(log) < 64 * 1024, f"{len(log)} bytes of log for {REQUESTS} requests"
