"""The aiohttp application: construction, startup and shutdown, configuration reloads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from symbol_proxy import loading
from symbol_proxy.breakers import Breakers
from symbol_proxy.cache.inflight import Downloads
from symbol_proxy.cache.store import DiskCache
from symbol_proxy.config import ConfigError, ProxyConfig
from symbol_proxy.metrics import Metrics
from symbol_proxy.runtime import build_runtime
from symbol_proxy.server import handlers
from symbol_proxy.server.state import STATE, State

__all__ = ["create_app", "reload_config"]

log = logging.getLogger(__name__)

OLD_RUNTIME_GRACE_SECONDS = 60.0
"""How long a replaced runtime's backends stay open for requests that already use them."""
_RESTART_ONLY = ("listen", "cache")


def create_app(
    config: ProxyConfig,
    *,
    registry: CollectorRegistry | None = None,
    config_path: Path | None = None,
    handle_sighup: bool = False,
) -> web.Application:
    app = web.Application()
    app.add_routes(handlers.routes())
    metrics = Metrics(registry if registry is not None else CollectorRegistry())

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        cache = DiskCache(Path(config.cache.dir), max_size=config.cache.max_size)
        await loop.run_in_executor(None, cache.open)
        metrics.cache_max_size.set(config.cache.max_size)
        cache.on_evict = lambda _size: metrics.evictions.inc()
        downloads = Downloads(cache, negative_ttl=config.cache.negative_ttl, error_ttl=config.cache.error_ttl)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=config.upstream.max_concurrent_downloads * 2, ttl_dns_cache=300
            ),
            auto_decompress=True,
            trust_env=True,
        )
        breakers = Breakers(
            threshold=config.upstream.breaker_threshold,
            window=config.upstream.breaker_window,
            block_time=config.upstream.breaker_block_time,
        )
        runtime = build_runtime(config, session=session, metrics=metrics, breakers=breakers)
        state = State(
            config=config,
            metrics=metrics,
            cache=cache,
            downloads=downloads,
            breakers=breakers,
            session=session,
            runtime=runtime,
            config_path=config_path,
        )
        app[STATE] = state
        metrics.config_sources.set(len(config.sources))
        metrics.config_loaded.set(time.time())
        polling = config_path is not None and config.reload.poll_interval > 0
        watcher = asyncio.ensure_future(_watch(app)) if polling else None
        if handle_sighup and config_path is not None:
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload_config(app)))
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            if handle_sighup and config_path is not None:
                loop.remove_signal_handler(signal.SIGHUP)
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await downloads.aclose()
            await state.runtime.aclose()
            await session.close()

    app.cleanup_ctx.append(lifecycle)
    return app


def _publications(config: ProxyConfig) -> dict[str, str | None]:
    """The publication generation of each source that has one (see ``publication`` in config.py)."""
    return {s.id: getattr(s, "publication", None) for s in config.sources if getattr(s, "publication", None)}


async def reload_config(app: web.Application) -> bool:
    """Load the config file again; swap it in if valid. Returns whether it was applied."""
    state = app[STATE]
    assert state.config_path is not None
    loop = asyncio.get_running_loop()
    try:
        config = await loop.run_in_executor(None, loading.read_config, state.config_path)
        runtime = build_runtime(config, session=state.session, metrics=state.metrics, breakers=state.breakers)
    except ConfigError as exc:
        state.metrics.reloads.labels("failure").inc()
        log.error("configuration not reloaded, the previous one stays active: %s", exc)
        return False
    for key in _RESTART_ONLY:
        if getattr(config, key) != getattr(state.config, key):
            log.warning("configuration key %r changed: it takes effect after a restart", key)
    if _publications(config) != _publications(state.config):
        dropped = state.cache.forget_misses()
        log.info("a store published new files: %d cached misses dropped", dropped)
    old = state.runtime
    state.runtime = runtime
    state.config = config.model_copy(update={k: getattr(state.config, k) for k in _RESTART_ONLY})
    state.metrics.reloads.labels("success").inc()
    state.metrics.config_sources.set(len(config.sources))
    state.metrics.config_loaded.set(time.time())
    log.info("configuration reloaded: %d sources", len(config.sources))
    loop.call_later(OLD_RUNTIME_GRACE_SECONDS, lambda: asyncio.ensure_future(old.aclose()))
    return True


async def _watch(app: web.Application) -> None:
    state = app[STATE]
    assert state.config_path is not None
    loop = asyncio.get_running_loop()
    current = await loop.run_in_executor(None, loading.version_of, state.config_path)
    while True:
        await asyncio.sleep(state.config.reload.poll_interval or 2.0)
        version = await loop.run_in_executor(None, loading.version_of, state.config_path)
        if version is None or version == current:
            continue
        previous_digest = current.digest if current is not None else None
        current = version
        if version.digest != previous_digest:
            await reload_config(app)
