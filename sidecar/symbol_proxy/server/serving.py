"""Running the application: the lean-path site on the configured address until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from symbol_proxy.server.fastpath import FastSite

__all__ = ["SHUTDOWN_SECONDS", "serve"]

SHUTDOWN_SECONDS = 10.0
"""How long requests in progress may take to finish after SIGTERM."""


async def serve(app: web.Application, host: str, port: int, *, reuse_port: bool = False) -> None:
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=SHUTDOWN_SECONDS,
        # A client that goes away stops waiting: its handler is cancelled, so a download nobody
        # waits for any more can be cancelled too (``Downloads.attending``).
        handler_cancellation=True,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        site = FastSite(runner, host, port, reuse_port=reuse_port)
        await site.start()
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await runner.cleanup()
