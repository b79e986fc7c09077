"""The live form of a configuration: one backend per source, and the resolver over them.

A ``Runtime`` is built from a validated ``ProxyConfig`` and replaced as a whole on reload, so a
request always sees one consistent set of sources. Cloud backends are imported lazily: their SDKs
are optional and heavy.

A source that cannot work as configured, but may start working without a new configuration (a
filesystem source whose directory is not mounted yet), is accepted and listed in ``problems``:
the caller warns about it, counts it in a metric and shows it on ``/readyz``, and the other sources
keep serving.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os

import aiohttp
from yarl import URL

from symbol_proxy.backends import base
from symbol_proxy.backends.filesystem import FilesystemBackend
from symbol_proxy.backends.http import HttpBackend
from symbol_proxy.breakers import Breakers
from symbol_proxy.config import (
    ConfigError,
    FilesystemSource,
    GcsSource,
    HttpSource,
    ProxyConfig,
    S3Source,
    SentrySource,
    SourceConfig,
    UpstreamSettings,
)
from symbol_proxy.metrics import Metrics
from symbol_proxy.resolving import ConfiguredSource, Resolver

__all__ = ["Runtime", "build_runtime", "create_backend"]

log = logging.getLogger(__name__)


def create_backend(
    source: SourceConfig, settings: UpstreamSettings, session: aiohttp.ClientSession
) -> base.Backend:
    """The backend for one source configuration."""
    if isinstance(source, FilesystemSource):
        return FilesystemBackend(source)
    if isinstance(source, HttpSource):
        return HttpBackend(source, settings, session=session)
    try:
        if isinstance(source, S3Source):
            from symbol_proxy.backends.s3 import S3Backend

            return S3Backend(source, settings)
        if isinstance(source, GcsSource):
            from symbol_proxy.backends.gcs import GcsBackend

            return GcsBackend(source, settings, session=session)
        if isinstance(source, SentrySource):
            from symbol_proxy.backends.sentry import SentryBackend

            return SentryBackend(source, settings, session=session)
    except ImportError as exc:
        raise ConfigError(
            f"sources: source {source.id!r} of type {source.type!r} needs an optional dependency "
            f"({exc.name}); install symbol-operator[cloud]"
        ) from None
    raise ConfigError(f"sources: unsupported source type {source.type!r}")


def _breaker_host(source: SourceConfig) -> str | None:
    # Only custom HTTP servers are blocked, as in Symbolicator: buckets and local paths are ours.
    if isinstance(source, HttpSource):
        return URL(source.url).host
    return None


@dataclasses.dataclass(slots=True)
class Runtime:
    config: ProxyConfig
    resolver: Resolver
    backends: list[base.Backend]
    problems: list[str] = dataclasses.field(default_factory=list)
    """One line per source that cannot work as configured; no secrets, only ids and paths."""

    async def aclose(self) -> None:
        await asyncio.gather(*(b.aclose() for b in self.backends), return_exceptions=True)


def build_runtime(
    config: ProxyConfig, *, session: aiohttp.ClientSession, metrics: Metrics, breakers: Breakers
) -> Runtime:
    sources = []
    backends = []
    for source in config.sources:
        backend = create_backend(source, config.upstream, session)
        backends.append(backend)
        sources.append(ConfiguredSource(source, backend, _breaker_host(source)))
    resolver = Resolver(sources, config.upstream, metrics, breakers)
    return Runtime(config, resolver, backends, problems=source_problems(config))


def source_problems(config: ProxyConfig) -> list[str]:
    """What is wrong with the configured sources on this machine right now."""
    return [
        f"source {source.id!r}: directory {source.path!r} does not exist; every lookup there misses"
        for source in config.sources
        if isinstance(source, FilesystemSource) and not os.path.isdir(source.path)
    ]
