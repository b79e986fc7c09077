"""Per-host failure breakers: stop asking a host that keeps failing, for a short while.

Symbolicator's deny list blocks a host after N download errors or timeouts within a window; its
original 24 h block once took a self-hosted server offline for a day (sentry#66543), so our block
time is short and configurable. "Not found" and "permission denied" never count as failures.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

__all__ = ["Breakers"]


class Breakers:
    def __init__(
        self,
        *,
        threshold: int,
        window: float,
        block_time: float,
        clock: Callable[[], float] = time.monotonic,
        max_hosts: int = 10_000,
    ) -> None:
        self._threshold = threshold
        self._window = window
        self._block_time = block_time
        self._clock = clock
        self._max_hosts = max_hosts
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._blocked_until: dict[str, float] = {}

    def is_open(self, host: str) -> bool:
        """True while ``host`` is blocked."""
        until = self._blocked_until.get(host)
        if until is None:
            return False
        if self._clock() >= until:
            del self._blocked_until[host]
            return False
        return True

    def failure(self, host: str) -> bool:
        """Record a failure; returns True when this failure opened the breaker."""
        now = self._clock()
        events = self._failures.get(host)
        if events is None:
            events = self._failures[host] = collections.deque()
            if len(self._failures) > self._max_hosts:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(host)
        events.append(now)
        while events and events[0] <= now - self._window:
            events.popleft()
        if len(events) >= self._threshold and host not in self._blocked_until:
            self._blocked_until[host] = now + self._block_time
            events.clear()
            return True
        return False

    def success(self, host: str) -> None:
        self._failures.pop(host, None)

    @property
    def open_hosts(self) -> int:
        now = self._clock()
        return sum(1 for until in self._blocked_until.values() if until > now)
