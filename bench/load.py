"""Load on the proxy process: many connections on hits and misses, a stuck source beside a fast one.

    .venv/bin/python bench/load.py [--connections 100 500 1000] [--duration 20]

For each number of connections, for ``--duration`` seconds, 90 % of the connections loop over
requests, 75 % hits (files cached during a warm-up) and 25 % misses on a fast filesystem source
(each a file never asked for before); the other 10 % keep asking for files only a stuck HTTP source
might have (it sends its headers after 15 s; those clients give up after ``--client-timeout`` and
ask for the next). Reported per phase: requests per second of hits and fast misses, their p50/p99
latency, client timeouts, errors (5xx or a broken connection) and the proxy's RSS at the end. The
fast source comes first in priority order, so a fast miss never waits for the stuck source's
answer; it only competes with it for upstream slots and the event loop. The client is Python
(aiohttp) on the same machine as the proxy, so req/s are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.reliability.harness import FaultyUpstream, ProxyProcess  # noqa: E402

HITS = 200
FILE_SIZE = 4 * 1024
MAX_MISSES = 30_000


def name(prefix: str, i: int) -> str:
    return f"{prefix}{i}.exe/5AB38077{i:x}000/{prefix}{i}.exe"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def p(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def phase(
    url: str, connections: int, duration: float, client_timeout: float, next_miss: list[int]
) -> dict:
    latencies: dict[str, list[float]] = {"hit": [], "fast_miss": [], "slow_miss": []}
    timeouts = {"hit": 0, "fast_miss": 0, "slow_miss": 0}
    errors = 0
    slow_counter = [0]
    stop = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=client_timeout)

    async def loop(n: int) -> None:
        nonlocal errors
        rng = random.Random(n)
        stuck = n % 10 == 0
        while time.monotonic() < stop:
            if stuck:
                slow_counter[0] += 1
                kind, path = "slow_miss", name(f"slow{connections}x", slow_counter[0])
            elif rng.random() < 0.75:
                kind, path = "hit", name("hit", rng.randrange(HITS))
            else:
                next_miss[0] += 1
                kind, path = "fast_miss", name("miss", next_miss[0])
            started = time.monotonic()
            try:
                async with session.get(f"{url}/symbols/{path}") as response:
                    await response.read()
                    if response.status >= 500 and kind != "slow_miss":
                        errors += 1
                latencies[kind].append(time.monotonic() - started)
            except TimeoutError:
                timeouts[kind] += 1
            except aiohttp.ClientError:
                errors += 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.monotonic()
        stuck = [asyncio.ensure_future(loop(n)) for n in range(0, connections, 10)]
        await asyncio.gather(*(loop(n) for n in range(connections) if n % 10))
        elapsed = time.monotonic() - began
        await asyncio.gather(*stuck)
    done = len(latencies["hit"]) + len(latencies["fast_miss"])
    return {
        "connections": connections,
        "req_per_s": round(done / elapsed),
        "hit_p50_ms": round(p(latencies["hit"], 0.5), 1),
        "hit_p99_ms": round(p(latencies["hit"], 0.99), 1),
        "fast_miss_p50_ms": round(p(latencies["fast_miss"], 0.5), 1),
        "fast_miss_p99_ms": round(p(latencies["fast_miss"], 0.99), 1),
        "fast_misses": len(latencies["fast_miss"]),
        "timeouts_hit_and_fast_miss": timeouts["hit"] + timeouts["fast_miss"],
        "timeouts_slow_miss": timeouts["slow_miss"],
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--client-timeout", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, FaultyUpstream() as slow:
        workdir = Path(work)
        store = workdir / "store"
        # Distinct files for the misses of every phase (a miss asks for a file never asked before).
        misses = min(MAX_MISSES, int(sum(args.connections) * args.duration * 2) + 1000)
        for prefix, count in (("hit", HITS), ("miss", misses)):
            for i in range(count + 1):
                path = store / name(prefix, i)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"MZ" + bytes(FILE_SIZE - 2))
        slow.slow_headers_delay = 15.0
        slow.default_fault = "slow_headers"
        config = {
            "cache": {"dir": str(workdir / "cache"), "max_size": "2GiB"},
            "sources": [
                {"id": "fast", "type": "filesystem", "path": str(store), "layout": {"type": "symstore"}},
                {"id": "slow", "type": "http", "url": slow.url, "layout": {"type": "symstore"}},
            ],
        }
        proxy = ProxyProcess(workdir, config).start()
        try:
            import requests

            for i in range(HITS):  # warm-up: every hit file cached
                requests.get(f"{proxy.url}/symbols/{name('hit', i)}", timeout=60)
            results = {"idle_rss_mib": round(rss_mib(proxy.pid), 1), "phases": []}
            next_miss = [0]
            for connections in args.connections:
                result = asyncio.run(
                    phase(proxy.url, connections, args.duration, args.client_timeout, next_miss)
                )
                result["rss_mib"] = round(rss_mib(proxy.pid), 1)
                results["phases"].append(result)
                print(json.dumps(result), flush=True)
            if next_miss[0] > misses:
                print(f"warning: {next_miss[0] - misses} fast misses asked for files that do not exist")
            print(json.dumps(results, indent=2))
        finally:
            proxy.stop()


if __name__ == "__main__":
    main()
