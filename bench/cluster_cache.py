"""The cluster cache tier: a cold sidecar's miss through a warm central cache against a miss from the
upstream, and the upstream requests caused by N cold sidecars asking for one file at once.

    .venv/bin/python bench/cluster_cache.py [--files 20] [--sidecars 50] [--upstream-delay 0.08]

Everything runs in one process on 127.0.0.1: an HTTP symbol store that waits ``--upstream-delay``
seconds before answering (a public symbol server is tens of milliseconds away; loopback is not), one
central proxy, and sidecar proxies whose only source is either the store or the central cache, as the
chart's opt-in SymbolSource renders it. Each miss is a fresh sidecar cache; times are medians.
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


async def proxy(root: Path, url: str) -> tuple[web.AppRunner, str]:
    document: dict[str, Any] = {
        "cache": {"dir": tempfile.mkdtemp(dir=root)},
        "sources": [{"id": "s", "type": "http", "url": url, "layout": {"type": "symstore"}}],
    }
    return await serve(create_app(load_text(yaml.safe_dump(document)), registry=CollectorRegistry()))


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
    names = [f"f{i}.exe/5AB38077{i:x}000/f{i}.exe" for i in range(args.files)]
    for name in names:
        store.put(name, b"MZ" + rng.randbytes(SIZE))
    runners = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        upstream_runner, upstream = await serve(store.app)
        central_runner, central = await proxy(root, upstream)
        runners += [upstream_runner, central_runner]
        async with aiohttp.ClientSession() as http:
            for name in names:  # warm the central cache
                await timed_get(http, f"{central}symbols/{name}")
            direct, through = [], []
            for name in names:
                runner, sidecar = await proxy(root, upstream)
                direct.append(await timed_get(http, f"{sidecar}symbols/{name}"))
                await runner.cleanup()
                runner, sidecar = await proxy(root, f"{central}symbols/")
                through.append(await timed_get(http, f"{sidecar}symbols/{name}"))
                await runner.cleanup()
            before = store.requests[names[0]]
            fresh_central, fresh_url = await proxy(root, upstream)
            sidecars = [await proxy(root, f"{fresh_url}symbols/") for _ in range(args.sidecars)]
            await asyncio.gather(*(timed_get(http, f"{url}symbols/{names[0]}") for _, url in sidecars))
            downloads = store.requests[names[0]] - before
            for runner, _ in [*sidecars, (fresh_central, fresh_url)]:
                await runner.cleanup()
        for runner in runners:
            await runner.cleanup()
    ms = 1000
    print(
        f"file size {SIZE // 1024 // 1024} MiB, upstream delay {args.upstream_delay * ms:.0f} ms,",
        f"{args.files} files",
    )
    print(f"cold sidecar miss from the upstream:              median {statistics.median(direct) * ms:.1f} ms")
    print(
        f"cold sidecar miss through the warm central cache: median {statistics.median(through) * ms:.1f} ms"
    )
    print(
        f"{args.sidecars} cold sidecars, one file at once, cold central cache:",
        f"{downloads} upstream request(s)",
    )


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
