"""The resolver's rule for ``fallback`` sources, with in-memory backends (unit tests of the order in
which sources are asked; the same rule with real proxies is in tests/e2e/test_cluster_cache.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import yaml
from prometheus_client import CollectorRegistry

from symbol_proxy.backends import base
from symbol_proxy.breakers import Breakers
from symbol_proxy.config import load_text
from symbol_proxy.metrics import Metrics
from symbol_proxy.resolving import ConfiguredSource, LookupMissed, Resolver

LOCATION = "app.pdb/0123456789ABCDEF0123456789ABCDEF1/app.pdb"


class _Stream:
    def __init__(self, data: bytes) -> None:
        self.data = data

    @property
    def info(self) -> base.ObjectInfo:
        return base.ObjectInfo(size=len(self.data))

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self.data

    async def aclose(self) -> None:
        pass


class Store:
    """A backend answering from memory: ``has`` the file, misses it, or is ``down``; ``gate`` holds
    every answer until it is set."""

    kind = "memory"

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.opened: list[str] = []
        self.asked = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()

    async def open(self, location: str, *, checksum: str | None = None) -> base.ObjectStream:
        self.opened.append(location)
        self.asked.set()
        await self.gate.wait()
        if self.answer == "down":
            raise base.UpstreamError("connection refused", retryable=False)
        if self.answer == "missing":
            raise base.NotFound(location)
        return _Stream(self.answer.encode())

    async def aclose(self) -> None:
        pass


def resolver(*stores: tuple[Store, bool]) -> Resolver:
    document = {
        "sources": [
            {"id": f"s{i}", "type": "http", "url": f"http://127.0.0.1:9/{i}/", "fallback": fallback}
            for i, (_, fallback) in enumerate(stores)
        ]
    }
    config = load_text(yaml.safe_dump(document))
    sources = [ConfiguredSource(c, store) for c, (store, _) in zip(config.sources, stores, strict=True)]
    return Resolver(
        sources,
        config.upstream,
        Metrics(CollectorRegistry()),
        Breakers(threshold=5, window=60, block_time=60),
    )


async def fetch(resolver: Resolver) -> bytes:
    found = await resolver.find_at(lambda source: LOCATION)
    try:
        return b"".join([chunk async for chunk in found.body()])
    finally:
        await found.aclose()


async def test_a_fallback_is_not_asked_when_an_earlier_source_has_the_file() -> None:
    central, real = Store("central"), Store("real")
    assert await fetch(resolver((central, False), (real, True))) == b"central"
    assert real.opened == []


@pytest.mark.parametrize("answer", ["missing", "down"])
async def test_a_fallback_answers_when_the_earlier_sources_miss_or_fail(answer: str) -> None:
    central, real = Store(answer), Store("real")
    assert await fetch(resolver((central, False), (real, True))) == b"real"
    assert central.opened == real.opened == [LOCATION]


async def test_a_fallback_waits_for_the_earlier_answer_and_other_sources_do_not() -> None:
    central, real, other = Store("missing"), Store("real"), Store("other")
    central.gate.clear()
    lookup = asyncio.ensure_future(fetch(resolver((central, False), (real, True), (other, False))))
    await asyncio.wait_for(other.asked.wait(), 30)  # a later non-fallback source is asked at once
    await asyncio.sleep(0.05)
    assert real.opened == []
    central.gate.set()
    assert await lookup == b"real"  # the fallback keeps its place in the order
    assert real.opened == [LOCATION]


async def test_without_fallbacks_every_source_is_asked_at_once() -> None:
    central, real = Store("central"), Store("real")
    central.gate.clear()
    lookup = asyncio.ensure_future(fetch(resolver((central, False), (real, False))))
    await asyncio.wait_for(real.asked.wait(), 30)
    central.gate.set()
    assert await lookup == b"central"


async def test_fallbacks_backing_up_the_same_sources_are_asked_together() -> None:
    central, first, second = Store("missing"), Store("missing"), Store("second")
    assert await fetch(resolver((central, False), (first, True), (second, True))) == b"second"
    assert first.opened == second.opened == [LOCATION]


@pytest.mark.parametrize(
    ("central", "real", "kind"),
    [("missing", "missing", "not_found"), ("down", "missing", "error"), ("missing", "down", "error")],
)
async def test_a_miss_everywhere_keeps_its_kind(central: str, real: str, kind: str) -> None:
    with pytest.raises(LookupMissed) as missed:
        await fetch(resolver((Store(central), False), (Store(real), True)))
    assert missed.value.kind == kind


async def test_a_cancelled_lookup_cancels_the_waiting_fallback() -> None:
    central, real = Store("missing"), Store("real")
    central.gate.clear()
    lookup = asyncio.ensure_future(fetch(resolver((central, False), (real, True))))
    await asyncio.wait_for(central.asked.wait(), 30)
    lookup.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lookup
    central.gate.set()
    await asyncio.sleep(0.05)
    assert real.opened == []


async def test_a_fallback_is_not_asked_when_a_later_source_it_backs_up_has_the_file() -> None:
    # The last fallback backs up the first and third sources; the third has the file while the
    # lookup still waits for the first fallback, so the last one is never asked.
    central, first_fallback, later, last_fallback = (
        Store("missing"),
        Store("missing"),
        Store("later"),
        Store("last"),
    )
    first_fallback.gate.clear()
    lookup = asyncio.ensure_future(
        fetch(resolver((central, False), (first_fallback, True), (later, False), (last_fallback, True)))
    )
    await asyncio.wait_for(first_fallback.asked.wait(), 60)  # the central cache missed
    assert later.opened == [LOCATION]
    for _ in range(50):  # every source that backs up the last fallback has answered by now
        await asyncio.sleep(0)
    assert last_fallback.opened == []
    first_fallback.gate.set()
    assert await lookup == b"later"
    assert last_fallback.opened == []
