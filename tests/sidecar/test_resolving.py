"""The resolver's own rules, with in-memory backends (fast unit tests of what it asks and answers).

Covered: retries of retryable failures only, with a doubling backoff capped at two seconds; the
per-host breaker (opened by failures, not by misses; its log line; closed again by a success; never
for sources without a host); the ``symproxy_upstream_requests_total`` result labels and the latency
histogram; ``LookupMissed`` kinds and details (sorted, deduplicated, capped); priority between and
within sources, and every losing stream closed; the ``SymbolChecksum`` handed to the backend;
searchable (Sentry) sources: deduplicated results, no search for a nil id, failing searches counted;
``find_at`` pass-through; content checks on the first bytes; the concurrency bounds over all sources
and per source. The same rules over real sockets are in tests/e2e/test_client_answers.py,
tests/e2e/test_proxy_behaviour.py and tests/e2e/test_cluster_cache.py.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from symbol_proxy import keys, layouts, magic, resolving
from symbol_proxy.backends import base
from symbol_proxy.breakers import Breakers
from symbol_proxy.config import Layout, LayoutType, load_text
from symbol_proxy.metrics import Metrics
from symbol_proxy.objects import FileType, ObjectQuery
from symbol_proxy.resolving import ConfiguredSource, Found, LookupMissed, Resolver
from tests.support.shared import keyed_objects

PDB = next(o for o in keyed_objects() if o.filetype.value == "pdb")
PDB_KEY = PDB.keys["symsrv"][0]
LOCATION = "some/location"

Answer = bytes | base.BackendError


class _Stream:
    def __init__(self, store: Store, data: bytes, chunk: int) -> None:
        self.store = store
        self.data = data
        self.chunk = chunk
        self.pulled = 0
        self.closed = False

    @property
    def info(self) -> base.ObjectInfo:
        return base.ObjectInfo(size=len(self.data))

    async def chunks(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.chunk):
            if self.closed:
                raise base.UpstreamError("read after close")  # as a real connection would
            self.pulled += 1
            yield self.data[start : start + self.chunk]

    async def aclose(self) -> None:
        self.closed = True


class Store:
    """A backend answering from memory. ``answers`` maps a location to its answers, one per request
    (the last one repeats); a location without answers is a miss. ``gate`` holds every request."""

    kind = "memory"

    def __init__(self, answers: dict[str, Sequence[Answer]] | None = None, *, chunk: int = 1 << 20) -> None:
        self.answers = dict(answers or {})
        self.chunk = chunk
        self.opened: list[tuple[str, str | None]] = []
        self.streams: list[_Stream] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_flight = 0
        self.most_in_flight = 0
        self.asked = asyncio.Event()

    async def open(self, location: str, *, checksum: str | None = None) -> base.ObjectStream:
        self.opened.append((location, checksum))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.asked.set()
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        answers = self.answers.get(location)
        if not answers:
            raise base.NotFound(location)
        answer = answers[min(len(self.opened_at(location)) - 1, len(answers) - 1)]
        if isinstance(answer, base.BackendError):
            raise answer
        stream = _Stream(self, answer, self.chunk)
        self.streams.append(stream)
        return stream

    def opened_at(self, location: str) -> list[tuple[str, str | None]]:
        return [o for o in self.opened if o[0] == location]

    async def aclose(self) -> None:
        pass


class SearchStore(Store):
    """A searchable backend (like Sentry): ``results`` are what every search returns."""

    kind = "searchable"

    def __init__(self, results: list[tuple[str, FileType]] | base.BackendError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results = results
        self.searches: list[tuple[ObjectQuery, tuple[FileType, ...]]] = []

    async def search(self, query: ObjectQuery, filetypes: tuple[FileType, ...]) -> list[tuple[str, FileType]]:
        self.searches.append((query, filetypes))
        if isinstance(self.results, base.BackendError):
            raise self.results
        return list(self.results)


def build(
    *stores: Store,
    hosts: Sequence[str | None] | None = None,
    upstream: dict[str, Any] | None = None,
    breakers: Breakers | None = None,
    layout: dict[str, str] | None = None,
    filters: dict[str, Any] | None = None,
    each_layout: Sequence[dict[str, str]] | None = None,
) -> tuple[Resolver, Metrics]:
    document = {
        "upstream": upstream or {"retries": 0},
        "sources": [
            {"id": f"s{i}", "type": "sentry", "url": "http://127.0.0.1:9/", "token": "t"}
            if isinstance(store, SearchStore)
            else {
                "id": f"s{i}",
                "type": "http",
                "url": f"http://127.0.0.1:9/{i}/",
                "layout": each_layout[i] if each_layout else layout or {},
                "filters": filters or {},
            }
            for i, store in enumerate(stores)
        ],
    }
    config = load_text(yaml.safe_dump(document))
    hosts = hosts or [None] * len(stores)
    sources = [
        ConfiguredSource(c, store, host) for c, store, host in zip(config.sources, stores, hosts, strict=True)
    ]
    metrics = Metrics(CollectorRegistry())
    return Resolver(
        sources, config.upstream, metrics, breakers or Breakers(threshold=5, window=600, block_time=600)
    ), metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def requests(metrics: Metrics, result: str, kind: str = "memory") -> float:
    return sample(metrics, "symproxy_upstream_requests_total", source_type=kind, result=result)


async def read(found: Found) -> bytes:
    try:
        return b"".join([chunk async for chunk in found.body()])
    finally:
        await found.aclose()


async def fetch_at(resolver: Resolver, location: str = LOCATION) -> bytes:
    return await read(await resolver.find_at(lambda source: location))


async def fetch(resolver: Resolver, lookup: keys.Lookup | None = None) -> bytes:
    return await read(await resolver.find(lookup or keys.parse_symsrv_request(PDB_KEY)))


async def missed(lookup: Coroutine[Any, Any, bytes]) -> LookupMissed:
    with pytest.raises(LookupMissed) as raised:
        await lookup
    return raised.value


# -------------------------------------------------------------------------------------------------
# Retries and backoff


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays the resolver waits between attempts (the waits themselves are skipped)."""
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float, *args: Any) -> Any:
        if delay > 0:
            delays.append(delay)
            assert len(delays) <= 20, "retrying without end"
        return await real_sleep(0, *args)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return delays


async def test_a_retryable_failure_is_retried_with_a_doubling_backoff_capped_at_two_seconds(
    backoff: list[float],
) -> None:
    store = Store({LOCATION: [base.UpstreamError("503 from upstream", status=503)]})
    resolver, metrics = build(store, upstream={"retries": 5})
    miss = await missed(fetch_at(resolver))
    assert (miss.kind, miss.detail, str(miss)) == ("error", "503 from upstream", "503 from upstream")
    assert len(store.opened) == 6
    assert backoff == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0])
    assert requests(metrics, "error") == 6
    assert sample(metrics, "symproxy_upstream_latency_seconds_count", source_type="memory") == 6


@pytest.mark.parametrize("retries", [0, 2])
async def test_timeouts_are_retried_as_configured_and_reported_as_a_timeout(
    backoff: list[float], retries: int
) -> None:
    store = Store({LOCATION: [base.UpstreamTimeout("no answer within 1s")]})
    resolver, metrics = build(store, upstream={"retries": retries})
    miss = await missed(fetch_at(resolver))
    assert (miss.kind, miss.detail) == ("timeout", "no answer within 1s")
    assert len(store.opened) == retries + 1
    assert backoff == pytest.approx([0.2, 0.4][:retries])
    assert requests(metrics, "timeout") == retries + 1


@pytest.mark.parametrize(
    "answer",
    [
        base.UpstreamError("redirect loop", retryable=False),
        base.NotFound("gone"),
        base.PermissionDenied("refused"),
        base.Malformed("not a file"),
    ],
    ids=type,
)
async def test_failures_that_are_not_retryable_are_asked_once(backoff: list[float], answer: Answer) -> None:
    store = Store({LOCATION: [answer]})
    resolver, _ = build(store, upstream={"retries": 3})
    await missed(fetch_at(resolver))
    assert len(store.opened) == 1
    assert backoff == []


async def test_a_retry_that_succeeds_answers_with_the_file(backoff: list[float]) -> None:
    store = Store({LOCATION: [base.UpstreamError("reset"), base.UpstreamError("reset"), b"file"]})
    resolver, metrics = build(store, upstream={"retries": 2})
    assert await fetch_at(resolver) == b"file"
    assert backoff == pytest.approx([0.2, 0.4])
    assert (requests(metrics, "error"), requests(metrics, "ok")) == (2, 1)
    assert sample(metrics, "symproxy_upstream_latency_seconds_count", source_type="memory") == 3


async def test_upstream_latency_is_the_time_an_attempt_took_whether_it_found_the_file_or_not() -> None:
    store = Store({LOCATION: [b"file"]})
    resolver, metrics = build(store)
    assert await fetch_at(resolver) == b"file"
    await missed(fetch_at(resolver, "elsewhere"))
    assert sample(metrics, "symproxy_upstream_latency_seconds_count", source_type="memory") == 2
    seconds = sample(metrics, "symproxy_upstream_latency_seconds_sum", source_type="memory")
    assert 0 <= seconds < 120  # not a clock reading: an in-memory answer takes no time at all


# -------------------------------------------------------------------------------------------------
# The per-host breaker


@pytest.mark.parametrize(
    "failure",
    [base.UpstreamError("500 from upstream", retryable=False), base.UpstreamTimeout("slow")],
    ids=type,
)
async def test_a_failing_host_opens_its_breaker_once_says_so_and_is_skipped(
    caplog: pytest.LogCaptureFixture, failure: base.BackendError
) -> None:
    failing = Store({LOCATION: [failure]})
    other = Store()
    resolver, metrics = build(
        failing,
        other,
        hosts=["bad.example", "good.example"],
        breakers=Breakers(threshold=2, window=600, block_time=600),
    )
    with caplog.at_level(logging.WARNING, logger="symbol_proxy.resolving"):
        await missed(fetch_at(resolver))
        assert not caplog.records
        await missed(fetch_at(resolver))
        assert [r.getMessage() for r in caplog.records] == [
            "source s0: host failing repeatedly, pausing requests to it"
        ]
        assert [r.levelno for r in caplog.records] == [logging.WARNING]
        miss = await missed(fetch_at(resolver))
    assert len(failing.opened) == 2  # the third lookup did not ask the host
    assert len(other.opened) == 3  # another host is not blocked
    assert (miss.kind, miss.detail) == ("error", "s0: host is failing, skipped for now")
    assert requests(metrics, "breaker_open") == 1
    assert len(caplog.records) == 1


@pytest.mark.parametrize(
    "answer", [base.NotFound("gone"), base.PermissionDenied("refused"), base.Malformed("a page")], ids=type
)
async def test_misses_and_refusals_never_open_a_breaker(answer: Answer) -> None:
    store = Store({LOCATION: [answer]})
    resolver, metrics = build(
        store, hosts=["h.example"], breakers=Breakers(threshold=1, window=600, block_time=600)
    )
    for _ in range(3):
        await missed(fetch_at(resolver))
    assert len(store.opened) == 3
    assert requests(metrics, "breaker_open") == 0


async def test_a_success_forgets_the_failures_before_it() -> None:
    store = Store(
        {
            LOCATION: [
                base.UpstreamError("500", retryable=False),
                b"file",
                base.UpstreamError("500", retryable=False),
            ]
        }
    )
    resolver, _ = build(
        store, hosts=["h.example"], breakers=Breakers(threshold=2, window=600, block_time=600)
    )
    await missed(fetch_at(resolver))
    assert await fetch_at(resolver) == b"file"
    await missed(fetch_at(resolver))
    await missed(fetch_at(resolver))  # the second failure since the success opens the breaker ...
    assert len(store.opened) == 4
    await missed(fetch_at(resolver))  # ... so this one is not asked
    assert len(store.opened) == 4


async def test_a_source_without_a_host_is_never_blocked() -> None:
    store = Store({LOCATION: [base.UpstreamError("disk error", retryable=False)]})
    resolver, metrics = build(store, hosts=[None], breakers=Breakers(threshold=1, window=600, block_time=600))
    for _ in range(3):
        await missed(fetch_at(resolver))
    assert len(store.opened) == 3
    assert requests(metrics, "breaker_open") == 0


# -------------------------------------------------------------------------------------------------
# Result labels and the reasons of a miss


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        (b"file", "ok"),
        (base.NotFound("gone"), "not_found"),
        (base.PermissionDenied("refused"), "denied"),
        (base.UpstreamTimeout("slow"), "timeout"),
        (base.Malformed("a page"), "malformed"),
        (base.UpstreamError("500"), "error"),
        (base.AlreadyExists("taken"), "error"),
    ],
)
async def test_each_upstream_answer_is_counted_under_its_result(answer: Answer, label: str) -> None:
    resolver, metrics = build(Store({LOCATION: [answer]}))
    try:
        await fetch_at(resolver)
    except LookupMissed:
        pass
    counted = {
        s.labels["result"]: s.value
        for family in metrics.registry.collect()
        if family.name == "symproxy_upstream_requests"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert counted == {label: 1}


async def test_a_miss_everywhere_says_so() -> None:
    resolver, _ = build(Store(), Store())
    miss = await missed(fetch_at(resolver))
    assert (miss.kind, miss.detail) == ("not_found", "no source has the file")


async def test_the_failures_are_listed_sorted_once_each_and_a_failure_without_message_by_its_type() -> None:
    resolver, _ = build(
        Store({LOCATION: [base.UpstreamError("b: 502")]}),
        Store({LOCATION: [base.UpstreamError("a: reset")]}),
        Store({LOCATION: [base.UpstreamError("b: 502")]}),
        Store({LOCATION: [base.UpstreamError("")]}),
        Store({LOCATION: [base.PermissionDenied("c: 403")]}),
        Store(),
    )
    miss = await missed(fetch_at(resolver))
    assert (miss.kind, miss.detail) == ("error", "UpstreamError; a: reset; b: 502")


async def test_a_timeout_among_other_failures_is_an_error() -> None:
    resolver, _ = build(
        Store({LOCATION: [base.UpstreamTimeout("a: slow")]}),
        Store({LOCATION: [base.UpstreamError("b: 500")]}),
    )
    miss = await missed(fetch_at(resolver))
    assert (miss.kind, miss.detail) == ("error", "a: slow; b: 500")


async def test_only_timeouts_are_a_timeout() -> None:
    resolver, _ = build(
        Store({LOCATION: [base.UpstreamTimeout("a: slow")]}),
        Store({LOCATION: [base.UpstreamTimeout("b: slow")]}),
        Store(),
    )
    miss = await missed(fetch_at(resolver))
    assert (miss.kind, miss.detail) == ("timeout", "a: slow; b: slow")


async def test_refusals_and_pages_that_are_not_the_file_are_a_denial() -> None:
    resolver, _ = build(
        Store({LOCATION: [base.PermissionDenied("b: 403")]}),
        Store(),
        Store({LOCATION: [base.Malformed("a: not a pdb file")]}),
        Store({LOCATION: [base.PermissionDenied("b: 403")]}),
    )
    miss = await missed(fetch_at(resolver))
    assert (miss.kind, miss.detail) == ("denied", "a: not a pdb file; b: 403")


@pytest.mark.parametrize("kind", ["error", "denied"])
async def test_a_long_reason_is_cut_at_500_characters(kind: str) -> None:
    make = base.UpstreamError if kind == "error" else base.PermissionDenied
    resolver, _ = build(Store({LOCATION: [make("a" * 400)]}), Store({LOCATION: [make("b" * 400)]}))
    miss = await missed(fetch_at(resolver))
    assert miss.kind == kind
    assert miss.detail == ("a" * 400 + "; " + "b" * 400)[:500]


# -------------------------------------------------------------------------------------------------
# Content checks, priority and closing what is not used


async def test_a_page_that_is_not_the_file_asked_for_is_refused_and_closed() -> None:
    store = Store({PDB_KEY: [b"<html><body>Sign in</body></html>" * 4]})
    resolver, metrics = build(store)
    miss = await missed(fetch(resolver))
    assert (miss.kind, miss.detail) == ("denied", "s0: not a pdb file")
    assert [s.closed for s in store.streams] == [True]
    assert requests(metrics, "malformed") == 1


@pytest.mark.parametrize("chunk", [1, 7, 64, 65])
async def test_the_whole_file_comes_through_whatever_its_chunks(chunk: int) -> None:
    data = PDB.data
    store = Store({PDB_KEY: [data]}, chunk=chunk)
    resolver, _ = build(store)
    found = await resolver.find(keys.parse_symsrv_request(PDB_KEY))
    needed = -(-resolving.HEAD_BYTES // chunk)  # chunks to hold the first HEAD_BYTES, and no more
    assert store.streams[0].pulled == needed
    assert found.head == data[: needed * chunk]
    assert found.container is None
    assert await read(found) == data


async def test_a_file_shorter_than_the_peek_comes_through_whole() -> None:
    store = Store({LOCATION: [b"tiny"]}, chunk=1)
    resolver, _ = build(store)
    assert await fetch_at(resolver) == b"tiny"


async def test_an_empty_pass_through_answer_is_empty() -> None:
    resolver, _ = build(Store({LOCATION: [b""]}))
    found = await resolver.find_at(lambda source: LOCATION)
    assert found.head == b""
    assert await read(found) == b""


async def test_a_compressed_answer_is_marked_as_such_except_for_a_source_bundle() -> None:
    zipped = b"PK\x03\x04" + bytes(100)
    assert magic.sniff(zipped) is magic.Container.ZIP
    store = Store({PDB_KEY: [zipped]})
    resolver, _ = build(store)
    found = await resolver.find(keys.parse_symsrv_request(PDB_KEY))
    assert found.container is magic.Container.ZIP
    assert await read(found) == zipped

    build_id = "ab" * 20
    bundle = keys.parse_unified_request(f"{build_id[:2]}/{build_id[2:]}/sourcebundle")
    store = Store()
    resolver, _ = build(store, layout={"type": "unified"})
    [location] = [c.location for c in resolver.candidates(resolver.sources[0], bundle)]
    store.answers[location] = [zipped]
    found = await resolver.find(bundle)
    assert found.container is None  # a source bundle is itself a zip archive
    assert await read(found) == zipped


async def test_the_first_source_in_order_wins_and_the_others_answers_are_closed() -> None:
    first, second = Store({LOCATION: [b"first"]}), Store({LOCATION: [b"second"]})
    first.gate.clear()
    lookup = asyncio.ensure_future(fetch_at(build(first, second)[0]))
    await asyncio.wait_for(second.asked.wait(), 60)
    while not second.streams:
        await asyncio.sleep(0.01)
    first.gate.set()
    assert await lookup == b"first"
    assert [s.closed for s in first.streams + second.streams] == [True, True]


async def test_within_a_source_the_first_candidate_wins_and_the_others_are_closed() -> None:
    lookup = keys.parse_symsrv_request(PDB_KEY)
    probe = Store()
    resolver, _ = build(probe)
    locations = [c.location for c in resolver.candidates(resolver.sources[0], lookup)]
    assert len(locations) >= 2
    store = Store({location: [PDB.data] for location in locations})
    resolver, _ = build(store)
    found = await resolver.find(lookup)
    assert found.candidate.location == locations[0]
    assert await read(found) == PDB.data
    assert all(s.closed for s in store.streams)
    assert len(store.streams) == len(locations)


async def test_the_symbol_checksum_reaches_the_backend_with_every_candidate() -> None:
    checksum = "SHA256:" + "ab" * 32
    lookup = keys.with_checksum(keys.parse_symsrv_request(PDB_KEY), checksum)
    store = Store()
    resolver, _ = build(store)
    await missed(fetch(resolver, lookup))
    assert store.opened
    assert {c for _, c in store.opened} == {checksum}
    plain = Store()
    await missed(fetch(build(plain)[0]))
    assert {c for _, c in plain.opened} == {None}


async def test_a_source_is_asked_for_the_file_types_its_filters_allow_even_after_one_they_refuse() -> None:
    build_id = "ab" * 20
    lookup = keys.parse_unified_request(f"{build_id[:2]}/{build_id[2:]}/debuginfo")
    pe = next(a for a in lookup.alternatives if FileType.PORTABLEPDB in a.filetypes)
    assert pe.filetypes.index(FileType.PDB) < pe.filetypes.index(FileType.PORTABLEPDB)
    resolver, _ = build(Store(), layout={"type": "unified"}, filters={"filetypes": ["portablepdb"]})
    candidates = resolver.candidates(resolver.sources[0], lookup)
    assert [(c.location, c.filetypes) for c in candidates] == [
        (f"{build_id[:2]}/{build_id[2:]}/debuginfo", (FileType.PORTABLEPDB,))
    ]


@pytest.mark.parametrize("kind", ["breakpad", "pdb"])
async def test_a_nil_id_is_only_looked_for_at_locations_that_name_the_file(kind: str) -> None:
    zeros = "0" * 33
    key = {"breakpad": f"app.dll/{zeros}/app.dll.sym", "pdb": f"App.pdb/{zeros}/App.pdb"}[kind]
    lookup = keys.parse_symsrv_request(key)
    assert lookup.name_required is not None
    naming, unnamed = Store(), Store()
    resolver, _ = build(naming, unnamed, each_layout=[{"type": "native"}, {"type": "unified"}])
    unified = Layout(type=LayoutType.UNIFIED)
    unnamed_paths = [
        path
        for a in lookup.alternatives
        for filetype in a.filetypes
        for path in layouts.store_paths(unified, filetype, a.query)
    ]
    assert unnamed_paths  # a unified store files it under the id alone ...
    assert resolver.candidates(resolver.sources[1], lookup) == []  # ... so it is not asked
    named = [c.location for c in resolver.candidates(resolver.sources[0], lookup)]
    assert key in named
    await missed(fetch(resolver, lookup))
    assert unnamed.opened == []
    assert {location for location, _ in naming.opened} == set(named)


async def test_an_answer_is_keyed_by_spelling_when_a_case_keeping_source_follows_a_searchable_one() -> None:
    name, ident, _ = PDB_KEY.split("/")
    mixed = keys.parse_symsrv_request(f"{name.title()}/{ident}/{name.title()}")
    resolver, _ = build(SearchStore([]), Store(), layout={"type": "symstore"})
    assert resolver.cache_key(mixed) != mixed.cache_key
    assert name.title() in resolver.cache_key(mixed)
    folding, _ = build(SearchStore([]), Store(), layout={"type": "symstore", "casing": "lowercase"})
    assert folding.cache_key(mixed) == mixed.cache_key


async def test_a_source_whose_filters_refuse_a_lookup_is_not_counted_as_unanswerable() -> None:
    resolver, metrics = build(Store(), filters={"filetypes": ["pe"]})
    miss = await missed(fetch(resolver))
    assert miss.kind == "not_found"
    assert _unanswerable(metrics) == {}
    executable = keys.parse_debuginfod_request("ab" * 20, "executable")
    await missed(fetch(resolver, executable))
    assert _unanswerable(metrics) == {}  # refused by the filters, not by the layout
    open_to_all, metrics = build(Store(), layout={"type": "symstore"})
    await missed(fetch(open_to_all, executable))
    assert _unanswerable(metrics) == {("symstore", "elf_code"): 1}


def _unanswerable(metrics: Metrics) -> dict[tuple[str, str], float]:
    return {
        (s.labels["layout"], s.labels["filetype"]): s.value
        for family in metrics.registry.collect()
        if family.name == "symproxy_unanswerable_lookups"
        for s in family.samples
        if s.name.endswith("_total")
    }


# -------------------------------------------------------------------------------------------------
# Searchable sources


async def test_a_searched_location_is_opened_once_and_checked_against_its_own_file_type() -> None:
    results = [("found/1", FileType.PDB), ("found/2", FileType.PDB), ("found/1", FileType.PDB)]
    store = SearchStore(results, answers={"found/2": [PDB.data]})
    resolver, _ = build(store)
    lookup = keys.parse_symsrv_request(PDB_KEY)
    found = await resolver.find(lookup)
    assert found.candidate.location == "found/2"
    assert found.candidate.filetypes == (FileType.PDB,)
    assert await read(found) == PDB.data
    assert sorted(location for location, _ in store.opened) == ["found/1", "found/2"]
    assert len(store.searches) == len(lookup.alternatives)
    assert [(q, f) for q, f in store.searches] == [(a.query, a.filetypes) for a in lookup.alternatives]


async def test_a_searched_answer_of_another_file_type_is_not_the_file() -> None:
    store = SearchStore([("found/1", FileType.PE)], answers={"found/1": [PDB.data]})
    resolver, _ = build(store)
    miss = await missed(fetch(resolver))
    assert (miss.kind, miss.detail) == ("denied", "s0: not a pe file")


async def test_a_lookup_by_a_nil_id_never_searches() -> None:
    nil_key = next(
        k for o in keyed_objects() for k in o.keys.get("breakpad", []) if not k.split("/")[1].strip("0")
    )
    lookup = keys.parse_symsrv_request(nil_key)
    assert lookup.name_required is not None
    store = SearchStore([("found/1", FileType.BREAKPAD)], answers={"found/1": [b"MODULE Linux x86_64 0 a\n"]})
    resolver, _ = build(store)
    miss = await missed(fetch(resolver, lookup))
    assert miss.kind == "not_found"
    assert store.searches == [] and store.opened == []


@pytest.mark.parametrize(
    ("failure", "label", "kind"),
    [
        (base.UpstreamError("search failed: 500"), "error", "error"),
        (base.PermissionDenied("search refused"), "denied", "denied"),
    ],
)
async def test_a_failing_search_is_counted_and_reported(
    failure: base.BackendError, label: str, kind: str
) -> None:
    store = SearchStore(failure)
    resolver, metrics = build(store)
    miss = await missed(fetch(resolver))
    assert (miss.kind, miss.detail) == (kind, str(failure))
    assert requests(metrics, label, kind="searchable") == 1
    assert store.opened == []


async def test_a_search_that_finds_nothing_is_a_miss() -> None:
    store = SearchStore([])
    resolver, metrics = build(store)
    miss = await missed(fetch(resolver))
    assert miss.kind == "not_found"
    assert requests(metrics, "not_found", kind="searchable") == 0


# -------------------------------------------------------------------------------------------------
# find_at: a pass-through


async def test_find_at_passes_any_content_through_from_the_first_source_that_has_it() -> None:
    page = b"<html>whatever the upstream computed</html>"
    searchable = SearchStore([(LOCATION, FileType.PDB)], answers={LOCATION: [b"never"]})
    skipped, missing, having = Store({LOCATION: [b"skipped"]}), Store(), Store({"elsewhere": [page]})
    asked: list[str] = []

    def location_of(source: ConfiguredSource) -> str | None:
        asked.append(source.config.id)
        return {"s1": None, "s2": LOCATION, "s3": "elsewhere"}[source.config.id]

    resolver, _ = build(searchable, skipped, missing, having)
    found = await resolver.find_at(location_of)
    assert found.candidate.filetypes == ()
    assert found.container is None
    assert await read(found) == page
    assert sorted(asked) == ["s1", "s2", "s3"]  # a searchable source has no locations
    assert searchable.opened == searchable.searches == skipped.opened == []
    assert missing.opened == [(LOCATION, None)]


# -------------------------------------------------------------------------------------------------
# Concurrency bounds


async def _held(resolver: Resolver, stores: list[Store], lookups: list[int]) -> list[asyncio.Future[bytes]]:
    """Start one ``find_at`` per entry of ``lookups`` (the index of the only store that has it)."""
    for store in stores:
        store.answers[LOCATION] = [b"file"]
        store.gate.clear()

    def only(index: int) -> Callable[[ConfiguredSource], str | None]:
        return lambda source: LOCATION if source.config.id == f"s{index}" else None

    async def lookup(index: int) -> bytes:
        return await read(await resolver.find_at(only(index)))

    return [asyncio.ensure_future(lookup(index)) for index in lookups]


@pytest.mark.parametrize(("limit", "per_source"), [(1, 1), (3, 2), (4, 2), (5, 3)])
async def test_one_source_gets_at_most_half_of_the_download_slots(limit: int, per_source: int) -> None:
    stores = [Store(), Store()]
    resolver, _ = build(*stores, upstream={"retries": 0, "max_concurrent_downloads": limit})
    tasks = await _held(resolver, stores, [0] * (limit + 2) + [1])
    if limit > per_source:
        await asyncio.wait_for(stores[1].asked.wait(), 60)
    for _ in range(20):
        await asyncio.sleep(0)
    assert stores[0].in_flight == per_source
    assert stores[1].in_flight == (1 if limit > per_source else 0)
    for store in stores:
        store.gate.set()
    assert await asyncio.gather(*tasks) == [b"file"] * (limit + 3)
    assert stores[0].most_in_flight == per_source


async def test_all_sources_together_get_at_most_the_download_slots() -> None:
    stores = [Store(), Store(), Store()]
    resolver, _ = build(*stores, upstream={"retries": 0, "max_concurrent_downloads": 4})
    tasks = await _held(resolver, stores, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    for _ in range(20):
        await asyncio.sleep(0)
    assert sum(s.in_flight for s in stores) == 4
    for store in stores:
        store.gate.set()
    assert len(await asyncio.gather(*tasks)) == 9


async def test_with_one_download_slot_a_source_at_its_share_lets_the_other_source_go_next() -> None:
    stores = [Store(), Store()]
    order: list[str] = []
    for index, store in enumerate(stores):
        store.asked = _Recorder(order, f"s{index}")
    resolver, _ = build(*stores, upstream={"retries": 0, "max_concurrent_downloads": 1})
    tasks = await _held(resolver, stores, [0, 0, 1])
    while not order:
        await asyncio.sleep(0.01)
    for _ in range(20):
        await asyncio.sleep(0)
    assert order == ["s0"]
    for store in stores:
        store.gate.set()
    assert await asyncio.gather(*tasks) == [b"file"] * 3
    assert order == ["s0", "s1", "s0"]  # the first source's second request waits for its share


class _Recorder(asyncio.Event):
    """An ``asked`` event that also notes, in one list for all stores, which store was asked."""

    def __init__(self, order: list[str], name: str) -> None:
        super().__init__()
        self.order = order
        self.name = name

    def set(self) -> None:
        self.order.append(self.name)
        super().set()


# -------------------------------------------------------------------------------------------------
# Nothing is left for asyncio to complain about


async def test_abandoned_probes_leave_no_unretrieved_exception_behind() -> None:
    loop = asyncio.get_running_loop()
    complaints: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: complaints.append(context))
    try:
        first, slow, failing = Store({LOCATION: [b"first"]}), Store({LOCATION: [b"slow"]}), Store()
        slow.gate.clear()
        failing.answers[LOCATION] = [base.UpstreamError("broken", retryable=False)]
        failing.gate.clear()
        resolver, _ = build(first, slow, failing)
        lookup = asyncio.ensure_future(fetch_at(resolver))
        await asyncio.wait_for(failing.asked.wait(), 60)
        failing.gate.set()
        assert await lookup == b"first"
        for _ in range(20):
            await asyncio.sleep(0)
        gc.collect()
        for _ in range(20):
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert complaints == []
