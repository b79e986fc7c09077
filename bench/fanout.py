"""Fan-out over slow sources: five ``http`` sources that each take 50 ms to answer any request.

    .venv/bin/python bench/fanout.py [--latency 0.05] [--rounds 10]

A miss for a file only the last source has should take about one round trip of probing plus the
download, not five round trips; a miss for a file no source has should come back in one round trip
(every source asked at once) plus the slowest source's answer. Both are compared with one request
sent straight to the last source (one round trip and the body). Every proxy request is a miss
(a new build id each round). Medians of ``--rounds``; the report goes to stdout as Markdown and to
``bench/results/fanout.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.run import process, wait_http  # noqa: E402
from tests.support.net import free_port  # noqa: E402

SOURCES = 5


async def _upstreams(root: Path, ports: list[int], latency: float) -> None:
    """Serve ``root/<i>/`` on ``ports[i]``, each answer held back ``latency`` seconds."""
    from aiohttp import web

    async def start(folder: Path, port: int) -> None:
        async def handle(request: web.Request) -> web.StreamResponse:
            await asyncio.sleep(latency)
            path = (folder / request.match_info["path"]).resolve()
            if folder.resolve() not in path.parents or not path.is_file():
                return web.Response(status=404)
            return web.FileResponse(path)

        app = web.Application()
        app.router.add_route("*", "/{path:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    for i, port in enumerate(ports):
        await start(root / str(i), port)
    await asyncio.Event().wait()


def _curl(url: str) -> tuple[int, float]:
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    code, total = out.split()
    return int(code), float(total)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--serve-upstreams", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstreams:  # the child process: five slow stores
        root, *ports = args.serve_upstreams
        asyncio.run(_upstreams(Path(root), [int(p) for p in ports], args.latency))
        return 0

    work = Path(tempfile.mkdtemp(prefix="fanout-"))
    try:
        stores = work / "stores"
        for i in range(SOURCES):
            (stores / str(i)).mkdir(parents=True)
        source = work / "main.c"
        source.write_text("int main(void) { return 0; }\n")
        present = [f"{r + 1:02x}" * 20 for r in range(args.rounds)]  # never all zeros (a nil id)
        absent = [f"{r + 128:02x}" * 20 for r in range(args.rounds)]
        direct = [f"{r + 64:02x}" * 20 for r in range(args.rounds)]
        for build_id in present + direct:  # only the last source has them
            target = stores / str(SOURCES - 1) / build_id / "executable"
            target.parent.mkdir(parents=True)
            subprocess.run(
                ["gcc", f"-Wl,--build-id=0x{build_id}", "-o", str(target), str(source)], check=True
            )
        ports = [free_port() for _ in range(SOURCES)]
        proxy_port = free_port()
        config = work / "proxy.json"
        config.write_text(
            json.dumps(
                {
                    "listen": {"host": "127.0.0.1", "port": proxy_port},
                    "cache": {"dir": str(work / "cache")},
                    "sources": [
                        {
                            "id": f"slow{i}",
                            "type": "http",
                            "url": f"http://127.0.0.1:{port}/",
                            "layout": {"type": "debuginfod"},
                        }
                        for i, port in enumerate(ports)
                    ],
                }
            )
        )
        argv = [sys.executable, __file__, "--latency", str(args.latency), "--serve-upstreams"]
        with contextlib.ExitStack() as stack:
            stack.enter_context(process([*argv, str(stores), *map(str, ports)], work / "upstreams.log"))
            stack.enter_context(
                process(
                    [
                        str(REPO / ".venv/bin/symbol-proxy"),
                        "--log-level",
                        "warning",
                        "serve",
                        "--config",
                        str(config),
                    ],
                    work / "proxy.log",
                )
            )
            for port in (*ports, proxy_port):
                wait_http(f"http://127.0.0.1:{port}/healthz")
            base = f"http://127.0.0.1:{proxy_port}/buildid"
            last = f"http://127.0.0.1:{ports[-1]}"
            results: dict[str, float] = {}
            samples: dict[str, list[float]] = {"direct": [], "found_in_last": [], "found_nowhere": []}
            for r in range(args.rounds):
                code, total = _curl(f"{last}/{direct[r]}/executable")
                assert code == 200
                samples["direct"].append(total)
                code, total = _curl(f"{base}/{present[r]}/executable")
                assert code == 200, code
                samples["found_in_last"].append(total)
                code, total = _curl(f"{base}/{absent[r]}/executable")
                assert code == 404, code
                samples["found_nowhere"].append(total)
                time.sleep(0.05)
            for name, values in samples.items():
                results[f"{name}_ms"] = statistics.median(values) * 1000
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["latency_ms"] = args.latency * 1000
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "fanout.json").write_text(json.dumps(results, indent=2))
    rtt = results["direct_ms"]
    print(f"five http sources, {args.latency * 1000:.0f} ms each; medians of {args.rounds} misses\n")
    print("| request | time | in round trips of one source |")
    print("|---|---|---|")
    print(f"| straight to the last source | {rtt:.0f} ms | 1.00 |")
    for name, label in (
        ("found_in_last", "miss, only the last source has it"),
        ("found_nowhere", "miss, no source has it"),
    ):
        print(f"| {label} | {results[name + '_ms']:.0f} ms | {results[name + '_ms'] / rtt:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
