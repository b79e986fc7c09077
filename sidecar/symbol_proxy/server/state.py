"""What the handlers share, behind one typed application key."""

from __future__ import annotations

import collections
import dataclasses
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from symbol_proxy.breakers import Breakers
from symbol_proxy.cache.inflight import Downloads
from symbol_proxy.cache.store import DiskCache
from symbol_proxy.config import ProxyConfig
from symbol_proxy.metrics import Metrics
from symbol_proxy.runtime import Runtime
from symbol_proxy.server.files import HotFiles

__all__ = ["STATE", "State"]


@dataclasses.dataclass(slots=True)
class State:
    config: ProxyConfig
    metrics: Metrics
    cache: DiskCache
    downloads: Downloads
    breakers: Breakers
    session: aiohttp.ClientSession
    runtime: Runtime
    config_path: Path | None = None
    ready: bool = False
    started_at: float = dataclasses.field(default_factory=time.time)
    hot: HotFiles = dataclasses.field(default_factory=HotFiles)
    locations: collections.OrderedDict[str, str] = dataclasses.field(default_factory=collections.OrderedDict)
    """Cache key → where upstream the file was found (its source-relative path), most recent last;
    what debuginfod's ``X-DEBUGINFOD-FILE`` reports. Memory only, bounded by the handlers."""
    admin_token: str | None = None
    """The token admin requests need; ``None`` while the admin endpoint is off."""


STATE = web.AppKey("state", State)
