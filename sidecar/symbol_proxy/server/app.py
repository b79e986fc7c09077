"""The aiohttp application: construction, startup and shutdown, configuration reloads.

A reload that changes the sources drops every remembered miss: a source added or fixed (a path,
credentials) can turn a remembered "not found" into a file, and nothing else may keep answering
the old way for ``negative_ttl``. The watcher survives any file it finds (not UTF-8, unreadable,
invalid): each is one logged, counted rejection, and the next valid version is applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry

from symbol_proxy import loading
from symbol_proxy.breakers import Breakers
from symbol_proxy.cache.inflight import Downloads
from symbol_proxy.cache.store import DiskCache
from symbol_proxy.config import ConfigError, ProxyConfig
from symbol_proxy.metrics import Metrics
from symbol_proxy.runtime import Runtime, build_runtime
from symbol_proxy.server import handlers, slashes
from symbol_proxy.server.files import HotFiles
from symbol_proxy.server.state import STATE, State

__all__ = ["create_app", "make_breakers", "reload_config", "watch_config"]

log = logging.getLogger(__name__)

OLD_RUNTIME_GRACE_SECONDS = 60.0
"""How long a replaced runtime's backends stay open for requests that already use them."""
_RESTART_ONLY = ("listen", "cache")


class _ClientFaults(logging.Filter):
    """aiohttp logs a request it cannot parse, and a client that went away mid-response, as an
    ERROR with a traceback: thousands of lines for a scanner or a fuzzer. Those are the client's
    doing; they become one short DEBUG line (dropped unless debug logging is on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        client_fault = isinstance(exc, ConnectionError | asyncio.CancelledError) or (
            isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500
        )
        if not client_fault:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.msg, record.args = "client error: %s", (type(exc).__name__,)
        record.exc_info, record.exc_text = None, None
        return True


_CLIENT_FAULTS = _ClientFaults()


def create_app(
    config: ProxyConfig,
    *,
    registry: CollectorRegistry | None = None,
    config_path: Path | None = None,
    handle_sighup: bool = False,
    shared_cache: bool = False,
) -> web.Application:
    logging.getLogger("aiohttp.server").addFilter(_CLIENT_FAULTS)  # once: the same filter object
    app = web.Application(middlewares=[slashes.merge_slashes])  # keep merge_slashes last
    app.add_routes(handlers.routes())
    metrics = Metrics(registry if registry is not None else CollectorRegistry())

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        cache = DiskCache(Path(config.cache.dir), max_size=config.cache.max_size, shared=shared_cache)
        await loop.run_in_executor(None, cache.open)
        metrics.cache_max_size.set(config.cache.max_size)
        cache.on_evict = lambda _size: metrics.evictions.inc()
        hot = HotFiles()
        cache.on_unlink = hot.forget
        downloads = Downloads(cache, negative_ttl=config.cache.negative_ttl, error_ttl=config.cache.error_ttl)
        downloads.on_cancel = metrics.downloads_cancelled.inc
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=config.upstream.max_concurrent_downloads * 2, ttl_dns_cache=300
            ),
            auto_decompress=True,
            trust_env=True,
        )
        breakers = make_breakers(config)
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
            hot=hot,
            admin_token=await loop.run_in_executor(None, _admin_token, config),
        )
        app[STATE] = state
        metrics.config_sources.set(len(config.sources))
        metrics.config_loaded.set(time.time())
        _announce_problems(state, runtime)
        polling = config_path is not None and config.reload.poll_interval > 0
        watcher = asyncio.ensure_future(watch_config(app)) if polling else None
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


def make_breakers(config: ProxyConfig) -> Breakers:
    """The per-host circuit breakers ``upstream`` configures."""
    return Breakers(
        threshold=config.upstream.breaker_threshold,
        window=config.upstream.breaker_window,
        block_time=config.upstream.breaker_block_time,
    )


ADMIN_TOKEN_FILE = "admin-token"
"""Where a generated admin token is written, in the cache directory (mode 0600)."""


def _admin_token(config: ProxyConfig) -> str | None:
    """The admin token, or ``None`` when the admin endpoint is off. With none configured, one is
    generated and written to a file only the proxy's user can read; the log says where, never
    the token itself."""
    if not config.admin.enabled:
        return None
    if config.admin.token is not None and config.admin.token.get_secret_value():
        return config.admin.token.get_secret_value()
    token = secrets.token_urlsafe(32)
    path = Path(config.cache.dir) / ADMIN_TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    log.warning("admin endpoint enabled without admin.token: generated one, written to %s", path)
    return token


def _announce_problems(state: State, runtime: Runtime) -> None:
    state.metrics.sources_unavailable.set(len(runtime.problems))
    for problem in runtime.problems:
        log.warning("%s", problem)


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
    except Exception as exc:  # anything else about the file: one line, no traceback, no values
        state.metrics.reloads.labels("failure").inc()
        log.error("configuration not reloaded, the previous one stays active: %s", type(exc).__name__)
        return False
    if config.sources != state.config.sources:
        # A source added, fixed or re-credentialed, or a store that published new files (its
        # ``publication`` generation moved): any remembered miss may now be wrong.
        dropped = state.cache.forget_misses()
        log.info("sources changed: %d remembered misses dropped", dropped)
    for key in _RESTART_ONLY:
        if getattr(config, key) != getattr(state.config, key):
            log.warning("configuration key %r changed: it takes effect after a restart", key)
    old = state.runtime
    state.runtime = runtime
    state.config = config.model_copy(update={k: getattr(state.config, k) for k in _RESTART_ONLY})
    state.metrics.reloads.labels("success").inc()
    state.metrics.config_sources.set(len(config.sources))
    state.metrics.config_loaded.set(time.time())
    log.info("configuration reloaded: %d sources", len(config.sources))
    _announce_problems(state, runtime)
    loop.call_later(OLD_RUNTIME_GRACE_SECONDS, lambda: asyncio.ensure_future(old.aclose()))
    return True


async def watch_config(app: web.Application) -> None:
    """Apply each new valid version of the configuration file (``reload.poll_interval``)."""
    state = app[STATE]
    assert state.config_path is not None
    loop = asyncio.get_running_loop()
    current = await loop.run_in_executor(None, loading.version_of, state.config_path)
    while True:
        await asyncio.sleep(state.config.reload.poll_interval or 2.0)
        try:
            version = await loop.run_in_executor(None, loading.version_of, state.config_path)
            if version is None or version == current:
                continue
            previous_digest = current.digest if current is not None else None
            current = version
            if version.digest != previous_digest:
                await reload_config(app)
        except Exception:  # the watcher must outlive whatever it meets
            state.metrics.reloads.labels("failure").inc()
            log.exception("configuration watcher: unexpected failure, still watching")
