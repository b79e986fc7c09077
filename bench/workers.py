"""``symbol-proxy serve --workers N`` for N = 1, 2, 4, side by side in one run, with wrk.

    .venv/bin/python bench/workers.py [--duration 8] [--connections 32] [--workers 1 2 4]

Each run serves the same ELF files (distinct GNU build ids) from a local debuginfod-layout store
(a filesystem source, so a miss costs a disk copy and no network): hits of a 16 KiB and a 1 MiB
file and cached 404s with wrk, whose own two threads share the machine with the workers, then
misses: ``--misses`` distinct 256 KiB files, 32 at a time, each on a new connection. Reported per
N: req/s, CPU µs per request of every worker (the process group), misses/s. The report goes to
stdout as Markdown and to ``bench/results/workers.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import build_elf, cpu_seconds, free_port, process, wait_http, wrk

REPO = Path(__file__).resolve().parents[1]
MISSING = "0123456789abcdef0123456789abcdef01234567"


async def misses(base: str, paths: list[str], parallel: int = 32) -> float:
    """Misses per second: every path once, ``parallel`` at a time, each on a new connection."""
    gate = asyncio.Semaphore(parallel)
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(path: str) -> None:
            async with gate, http.get(base + path) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{path}: {response.status}")

        started = time.perf_counter()
        await asyncio.gather(*(one(path) for path in paths))
        return len(paths) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--misses", type=int, default=120)
    parser.add_argument("--proxy", default=str(REPO / ".venv" / "bin" / "symbol-proxy"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "workers.json"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is needed (scripts/setup --bench)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="symbol-proxy-workers-bench-"))
    store = work / "store"
    ids: dict[str, str] = {}
    for label, size in (("16KiB", 16 * 1024), ("1MiB", 1024 * 1024)):
        exe, build_id = build_elf(work, label, size)
        (store / build_id).mkdir(parents=True)
        shutil.move(str(exe), store / build_id / "executable")
        ids[label] = build_id
    miss_paths = []
    for i in range(args.misses):
        exe, build_id = build_elf(work, f"m{i}", 256 * 1024)
        (store / build_id).mkdir(parents=True)
        shutil.move(str(exe), store / build_id / "executable")
        miss_paths.append(f"/buildid/{build_id}/executable")

    results: dict[str, dict[str, float]] = {}
    try:
        for workers in args.workers:
            port = free_port()
            config = work / f"proxy-{workers}.json"
            config.write_text(
                json.dumps(
                    {
                        "listen": {"host": "127.0.0.1", "port": port},
                        "cache": {"dir": str(work / f"cache-{workers}"), "max_size": "4GiB"},
                        "sources": [
                            {
                                "id": "store",
                                "type": "filesystem",
                                "path": str(store),
                                "layout": {"type": "debuginfod"},
                            }
                        ],
                    }
                )
            )
            base = f"http://127.0.0.1:{port}"
            argv = [args.proxy, "--log-level", "warning", "serve", "--config", str(config)]
            argv += ["--workers", str(workers)]
            with process(argv, work / f"proxy-{workers}.log") as proxy:
                wait_http(base + "/healthz")
                time.sleep(2.0)  # every worker up
                row: dict[str, float] = {}
                for label, build_id in ids.items():
                    url = f"{base}/buildid/{build_id}/executable"
                    wait_http(url)
                    row[f"hit_{label}_rps"], row[f"hit_{label}_cpu_us"] = wrk(
                        url, args.duration, args.connections, proxy.pid
                    )
                url = f"{base}/buildid/{MISSING}/executable"
                wait_http(url)
                row["404_rps"], row["404_cpu_us"] = wrk(url, args.duration, args.connections, proxy.pid)
                before = cpu_seconds(proxy.pid)
                row["misses_per_s"] = asyncio.run(misses(base, miss_paths))
                row["miss_cpu_us"] = (cpu_seconds(proxy.pid) - before) / len(miss_paths) * 1e6
                results[str(workers)] = row
    finally:
        shutil.rmtree(work, ignore_errors=True)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    first = results[str(args.workers[0])]
    print(f"| measure | {' | '.join(f'{w} worker(s)' for w in args.workers)} |")
    print(f"|---|{'---|' * len(args.workers)}")
    for key, name in (
        ("hit_16KiB_rps", "hit req/s, 16 KiB"),
        ("hit_1MiB_rps", "hit req/s, 1 MiB"),
        ("404_rps", "cached 404 req/s"),
        ("misses_per_s", f"misses/s ({args.misses} × 256 KiB, 32 at a time)"),
        ("hit_16KiB_cpu_us", "CPU µs per 16 KiB hit"),
        ("404_cpu_us", "CPU µs per cached 404"),
        ("miss_cpu_us", "CPU µs per miss"),
    ):
        values = [results[str(w)][key] for w in args.workers]
        cells = [f"{value:.0f} ({value / first[key]:.2f}×)" for value in values]
        print(f"| {name} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
