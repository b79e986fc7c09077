"""The cluster cache tier: a cold sidecar's miss through a warm central cache against a miss from the
upstream, and the upstream requests caused by N cold sidecars asking for one file at once.

    .venv/bin/python bench/cluster_cache.py [--files 20] [--sidecars 50] [--upstream-delay 0.08]

Everything runs in one process on 127.0.0.1: an HTTP symbol store that waits ``--upstream-delay``
seconds before answering (a public symbol server is tens of milliseconds away; loopback is not), one
central proxy, and sidecar proxies whose sources are the store alone, the central cache alone, or the
central cache first with the store as its ``fallback`` (as the operator renders a namespace that opted
in with the chart's ``clusterCache`` SymbolSource); for comparison also both without ``fallback``.
Each miss is a fresh sidecar cache; times are medians.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.net import free_port  # noqa: E402
from tests.support.upstream import UpstreamStore  # noqa: E402

from symbol_proxy.config import load_text  # noqa: E402
from symbol_proxy.server.app import create_app  # noqa: E402

SIZE = 4 * 1024 * 1024


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/"


def source(id_: str, url: str, *, fallback: bool = False) -> dict[str, Any]:
    return {
        "id": id_,
        "type": "http",
        "url": url,
        "layout": {"type": "symstore"},
        "fallback": fallback,
    }


async def proxy(root: Path, *sources: dict[str, Any]) -> tuple[web.AppRunner, str]:
    document: dict[str, Any] = {"cache": {"dir": tempfile.mkdtemp(dir=root)}, "sources": list(sources)}
    return await serve(create_app(load_text(yaml.safe_dump(document)), registry=CollectorRegistry()))


async def miss(root: Path, http: aiohttp.ClientSession, name: str, *sources: dict[str, Any]) -> float:
    """One file asked of a fresh sidecar with ``sources``."""
    runner, sidecar = await proxy(root, *sources)
    try:
        return await timed_get(http, f"{sidecar}symbols/{name}")
    finally:
        await runner.cleanup()


async def at_once(
    root: Path,
    http: aiohttp.ClientSession,
    store: UpstreamStore,
    upstream: str,
    name: str,
    sidecars: int,
    fallback: bool | None,
) -> int:
    """Upstream requests for ``name`` when ``sidecars`` cold sidecars ask for it at once through a cold
    central cache (``fallback`` None: the central cache is their only source; else the store follows
    it, marked ``fallback`` or not)."""
    before = store.requests[name]
    central_runner, central = await proxy(root, source("upstream", upstream))
    listed = [source("cluster-cache", f"{central}symbols/")]
    if fallback is not None:
        listed.append(source("upstream", upstream, fallback=fallback))
    started = [await proxy(root, *listed) for _ in range(sidecars)]
    await asyncio.gather(*(timed_get(http, f"{url}symbols/{name}") for _, url in started))
    for runner, _ in [*started, (central_runner, central)]:
        await runner.cleanup()
    return store.requests[name] - before


async def timed_get(http: aiohttp.ClientSession, url: str) -> float:
    start = time.perf_counter()
    async with http.get(url) as response:
        assert response.status == 200, (url, response.status)
        await response.read()
    return time.perf_counter() - start


async def main(args: argparse.Namespace) -> None:
    # The proxies probe a file's compressed twin at the same time and drop that request once the file
    # is found; the store then logs a write to a closed connection. Not a result, so not printed.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    rng = random.Random(1)
    store = UpstreamStore()
    store.app.middlewares.append(web.middleware(_delay(args.upstream_delay)))
    # Canonical PE ids (timestamp, then the image size without leading zeros), as debuggers send them.
    names = [f"f{i}.exe/5AB38077{i + 1:x}000/f{i}.exe" for i in range(args.files)]
    for name in names:
        store.put(name, b"MZ" + rng.randbytes(SIZE))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        upstream_runner, upstream = await serve(store.app)
        central_runner, central = await proxy(root, source("upstream", upstream))
        down_runner, down = await proxy(root, source("upstream", upstream))
        await down_runner.cleanup()  # a central cache that is down: its port refuses connections
        async with aiohttp.ClientSession() as http:
            for name in names:  # warm the central cache
                await timed_get(http, f"{central}symbols/{name}")
            through_central = source("cluster-cache", f"{central}symbols/")
            times: dict[str, list[float]] = {key: [] for key in LABELS}
            for name in names:
                times["direct"].append(await miss(root, http, name, source("upstream", upstream)))
                times["through"].append(await miss(root, http, name, through_central))
                times["tiered"].append(
                    await miss(root, http, name, through_central, source("upstream", upstream, fallback=True))
                )
                times["down"].append(
                    await miss(
                        root,
                        http,
                        name,
                        source("cluster-cache", f"{down}symbols/"),
                        source("upstream", upstream, fallback=True),
                    )
                )
            downloads = {
                mode: await at_once(root, http, store, upstream, names[0], args.sidecars, fallback)
                for mode, fallback in (("only", None), ("fallback", True), ("both", False))
            }
        await central_runner.cleanup()
        await upstream_runner.cleanup()
    ms = 1000
    print(
        f"file size {SIZE // 1024 // 1024} MiB, upstream delay {args.upstream_delay * ms:.0f} ms,",
        f"{args.files} files",
    )
    for key, label in LABELS.items():
        print(f"cold sidecar miss {label + ':':<58} median {statistics.median(times[key]) * ms:.1f} ms")
    for mode, label in AT_ONCE.items():
        print(
            f"{args.sidecars} cold sidecars, one file at once, cold central cache, {label}:", downloads[mode]
        )


LABELS = {
    "direct": "from the upstream",
    "through": "through the warm central cache",
    "tiered": "through the warm central cache, upstream as fallback",
    "down": "central cache down, from the fallback upstream",
}
AT_ONCE = {
    "only": "central cache only",
    "fallback": "upstream as fallback",
    "both": "upstream without fallback",
}


def _delay(seconds: float) -> Any:
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return await handler(request)  # type: ignore[no-any-return]

    return middleware


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--sidecars", type=int, default=50)
    parser.add_argument("--upstream-delay", type=float, default=0.08)
    asyncio.run(main(parser.parse_args()))
