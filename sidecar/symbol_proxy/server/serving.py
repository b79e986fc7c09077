"""Running the application: the lean-path site on the configured address until SIGTERM/SIGINT, and
optionally a probe port (``listen.probe_port``) that answers only health, readiness and metrics on
an address the kubelet and Prometheus can reach while symbols stay on the loopback."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from aiohttp import web

from symbol_proxy.server import handlers
from symbol_proxy.server.fastpath import FastSite
from symbol_proxy.server.state import STATE

__all__ = ["PROBE_PATHS", "SHUTDOWN_SECONDS", "probe_app", "serve"]

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""What the probe port serves: the main application's own routes for these paths."""
SHUTDOWN_SECONDS = 10.0
"""How long requests in progress may take to finish after SIGTERM."""


def probe_app(app: web.Application) -> web.Application:
    """The probe port's application: health, readiness and metrics of ``app``, nothing else."""
    probes = web.Application()
    probes[STATE] = app[STATE]
    probes.add_routes(
        route for route in handlers.routes() if isinstance(route, web.RouteDef) and route.path in PROBE_PATHS
    )
    return probes


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    probe_host: str = "0.0.0.0",
    probe_port: int | None = None,
    unix_path: Path | None = None,
) -> None:
    """Serve ``app`` until SIGTERM/SIGINT; with ``unix_path`` also on that Unix socket (the
    ``--workers`` owner, for the requests its followers hand over)."""
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
    probes: web.AppRunner | None = None
    try:
        if unix_path is not None:
            await web.UnixSite(runner, str(unix_path)).start()
        site = FastSite(runner, host, port, reuse_port=reuse_port)
        await site.start()
        if probe_port is not None:
            probes = web.AppRunner(probe_app(app), access_log=None)
            await probes.setup()
            await web.TCPSite(probes, probe_host, probe_port).start()
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if probes is not None:
            await probes.cleanup()
        await runner.cleanup()
