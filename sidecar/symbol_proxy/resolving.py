"""From a parsed lookup to an open upstream object: candidates, fan-out, priority.

For each configured source, in order, the lookup's alternatives are turned into that source's own
locations (its layout, casing and filters), or, for a searchable source (Sentry), into the results
of its search. Every source is probed concurrently, and within a source every candidate too, but
the answer keeps the configured priority: the first source in order that has the file wins, even
when a later one answered sooner. A source marked ``fallback`` waits: it is probed only once every
earlier source that is not a fallback has answered without the file or failed, so a central cache
listed first spares the real sources behind it on a hit and still leaves them to answer when it is
down.

A candidate only counts as found once its first bytes look like the file type that was asked for
(an HTML login page with status 200 is not a PDB) or like a compressed container we can unpack.
Retries of idempotent failures and the per-host breaker are applied here, once, around every
backend, and so are the bounds on upstream requests: ``max_concurrent_downloads`` over all sources
and half of it per source, so one stuck source cannot take every slot from the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar

from symbol_proxy import filters, keys, layouts, magic
from symbol_proxy.backends import base
from symbol_proxy.breakers import Breakers
from symbol_proxy.config import SentrySource, SourceConfig, UpstreamSettings
from symbol_proxy.metrics import Metrics
from symbol_proxy.objects import FileType

__all__ = ["Candidate", "ConfiguredSource", "Found", "LookupMissed", "Resolver"]

log = logging.getLogger(__name__)

MEMO_SIZE = 16384
"""Cache keys remembered per resolver (the spelling decision), cleared when full."""
HEAD_BYTES = 64
"""How many leading bytes are read before a candidate is accepted (enough for every magic)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ConfiguredSource:
    config: SourceConfig
    backend: base.Backend
    host: str | None = None
    """The breaker key (a host name); ``None`` for sources that are never blocked (filesystem)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    source: ConfiguredSource
    location: str
    filetypes: tuple[FileType, ...]
    """Every file type the location was generated for (a unified path can be an ELF or a PE)."""
    checksum: str | None = None

    @property
    def filetype(self) -> FileType:
        return self.filetypes[0]

    def accepts(self, head: bytes) -> bool:
        return any(magic.looks_like(filetype, head) for filetype in self.filetypes)


@dataclasses.dataclass(slots=True)
class Found:
    candidate: Candidate
    stream: base.ObjectStream
    head: bytes
    rest: AsyncIterator[bytes]
    container: magic.Container | None

    async def body(self) -> AsyncIterator[bytes]:
        """The whole body: the bytes already peeked, then the rest."""
        if self.head:
            yield self.head
        async for chunk in self.rest:
            yield chunk

    async def aclose(self) -> None:
        await self.stream.aclose()


class LookupMissed(Exception):
    """No source has the file (``not_found``; ``denied`` when a source refused, 401/403, or sent
    something else, which is remembered only briefly: fixed credentials must not wait for the
    negative TTL) or none could answer (``error``/``timeout``)."""

    def __init__(self, kind: Literal["not_found", "denied", "error", "timeout"], detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


_RESULT_OF = {
    base.NotFound: "not_found",
    base.PermissionDenied: "denied",
    base.UpstreamTimeout: "timeout",
    base.Malformed: "malformed",
}


def _result_label(exc: base.BackendError) -> str:
    for cls, label in _RESULT_OF.items():
        if isinstance(exc, cls):
            return label
    return "error"


@dataclasses.dataclass(slots=True)
class _Outcome:
    found: Found | None = None
    errors: list[base.BackendError] = dataclasses.field(default_factory=list)


_Plan = Callable[[ConfiguredSource], Awaitable[list[Candidate]]]
"""Which candidates to probe on a source."""


class Resolver:
    def __init__(
        self,
        sources: Sequence[ConfiguredSource],
        settings: UpstreamSettings,
        metrics: Metrics,
        breakers: Breakers,
    ) -> None:
        self.sources = tuple(sources)
        self._settings = settings
        self._metrics = metrics
        self._breakers = breakers
        self._limit = asyncio.Semaphore(settings.max_concurrent_downloads)
        per_source = max(1, (settings.max_concurrent_downloads + 1) // 2)
        self._source_limits = {s.config.id: asyncio.Semaphore(per_source) for s in self.sources}
        # Pure in the lookup for a given set of sources; a reload builds a new resolver.
        self._keys: dict[tuple[str, str], str] = {}

    # ---------------------------------------------------------------------------------------------
    # Candidates

    def candidates(self, source: ConfiguredSource, lookup: keys.Lookup) -> list[Candidate]:
        """The locations to probe on a path-addressed source, best first, without duplicates."""
        config = source.config
        if isinstance(config, SentrySource):
            return []
        found: dict[str, tuple[list[FileType], str | None]] = {}
        required = lookup.name_required
        for alternative in lookup.alternatives:
            query = alternative.query
            for filetype in alternative.filetypes:
                if not filters.is_allowed(config.filters, query, filetype):
                    continue
                # The last path of a layout's list is the preferred one (plain before ``_``).
                for location in reversed(layouts.store_paths(config.layout, filetype, query)):
                    if required is not None and required not in location.lower():
                        continue  # a nil id alone would match any module stored under it
                    entry = found.setdefault(location, ([], query.debug_checksum))
                    if filetype not in entry[0]:
                        entry[0].append(filetype)
        return [Candidate(source, loc, tuple(types), checksum) for loc, (types, checksum) in found.items()]

    async def _search(self, source: ConfiguredSource, lookup: keys.Lookup) -> list[Candidate]:
        backend = source.backend
        assert isinstance(backend, base.SearchableBackend)
        result: list[Candidate] = []
        if lookup.name_required is not None:
            return result  # a search by a nil id matches any module
        seen: set[str] = set()
        for alternative in lookup.alternatives:
            for location, filetype in await backend.search(alternative.query, alternative.filetypes):
                if location not in seen:
                    seen.add(location)
                    result.append(Candidate(source, location, (filetype,)))
        return result

    def cache_key(self, lookup: keys.Lookup) -> str:
        """The key under which ``lookup``'s answer (file or miss) is cached and downloaded.

        An answer is only shared by requests that probe the same upstream locations. The lookup's
        key is canonical (lowercase); when some path-addressed source would probe other locations
        for the request's spelling than for its lowercase spelling (a case-keeping layout on a
        case-sensitive store), the spelling joins the key. So a miss for ``case26379.pdb`` never
        hides ``Case26379.pdb``, and the answer never depends on which spelling came first.
        """
        # The canonical key and the spelling determine the candidates (ids are normalised, and a
        # checksum is part of the key), and two short strings hash much faster than the lookup.
        memo = (lookup.cache_key, lookup.spelling)
        key = self._keys.get(memo)
        if key is None:
            key = self._spelled_key(lookup)
            if len(self._keys) >= MEMO_SIZE:
                self._keys.clear()
            self._keys[memo] = key
        return key

    def _spelled_key(self, lookup: keys.Lookup) -> str:
        folded = lookup.casefolded()
        if folded is lookup:
            return lookup.cache_key
        for source in self.sources:
            if isinstance(source.backend, base.SearchableBackend):
                continue  # searches match names case-insensitively
            spelled = [c.location for c in self.candidates(source, lookup)]
            if spelled != [c.location for c in self.candidates(source, folded)]:
                return f"{lookup.cache_key}|spelled={lookup.spelling}"
        return lookup.cache_key

    # ---------------------------------------------------------------------------------------------
    # Probing

    async def find(self, lookup: keys.Lookup) -> Found:
        """Open the best available file for ``lookup`` or raise ``LookupMissed``."""
        return await self._find(functools.partial(self._plan, lookup=lookup))

    async def find_at(self, location_of: Callable[[ConfiguredSource], str | None]) -> Found:
        """Open the file at ``location_of(source)`` on the first source that has it, whatever its
        content: a pass-through to sources that compute the answer themselves (a debuginfod server's
        ``section`` and ``source`` requests). Sources for which it gives ``None`` are skipped."""

        async def plan(source: ConfiguredSource) -> list[Candidate]:
            location = None if isinstance(source.config, SentrySource) else location_of(source)
            return [] if location is None else [Candidate(source, location, ())]

        return await self._find(plan)

    async def _plan(self, source: ConfiguredSource, lookup: keys.Lookup) -> list[Candidate]:
        if isinstance(source.backend, base.SearchableBackend):
            return await self._search(source, lookup)
        candidates = self.candidates(source, lookup)
        if not candidates and not isinstance(source.config, SentrySource):
            layout = source.config.layout
            if not any(
                layouts.get_directory_paths(layout, filetype, alternative.query)
                for alternative in lookup.alternatives
                for filetype in alternative.filetypes
            ):
                filetype = lookup.alternatives[0].filetypes[0] if lookup.alternatives else "unknown"
                self._metrics.unanswerable.labels(layout.type.value, str(filetype)).inc()
        return candidates

    async def _find(self, plan: _Plan) -> Found:
        tasks: list[asyncio.Future[_Outcome]] = []
        for source in self.sources:
            if source.config.fallback:
                first = [t for s, t in zip(self.sources, tasks, strict=False) if not s.config.fallback]
                tasks.append(asyncio.ensure_future(self._probe_fallback(source, plan, first)))
            else:
                tasks.append(asyncio.ensure_future(self._probe_source(source, plan)))
        errors: list[base.BackendError] = []
        winner: _Outcome | None = None
        try:
            for task in tasks:
                outcome = await task
                errors.extend(outcome.errors)
                if outcome.found is not None:
                    winner = outcome
                    return outcome.found
        finally:
            for settled in await _cancel_and_settle(tasks):
                if settled is not winner and settled.found is not None:
                    await settled.found.aclose()
        # A source that answers with something that is not the file (an HTML login page with status
        # 200) does not have it: for the client that is a miss, not an upstream failure.
        failures = [
            e for e in errors if not isinstance(e, base.NotFound | base.PermissionDenied | base.Malformed)
        ]
        if failures:
            kind: Literal["error", "timeout"] = (
                "timeout" if all(isinstance(e, base.UpstreamTimeout) for e in failures) else "error"
            )
            raise LookupMissed(kind, "; ".join(sorted({str(e) or type(e).__name__ for e in failures}))[:500])
        # A refusal (401/403) or a page that is not the file (a sign-in page with status 200) is
        # usually a credentials problem: a miss for the client, remembered only as long as an error.
        denied = [e for e in errors if isinstance(e, base.PermissionDenied | base.Malformed)]
        if denied:
            raise LookupMissed("denied", "; ".join(sorted({str(e) for e in denied}))[:500])
        raise LookupMissed("not_found", "no source has the file")

    async def _probe_fallback(
        self, source: ConfiguredSource, plan: _Plan, first: Sequence[asyncio.Future[_Outcome]]
    ) -> _Outcome:
        """Probe a fallback source once the earlier sources it backs up have all answered without
        the file (missed or failed); when one of them has it, that earlier answer wins anyway."""
        if first:
            await asyncio.wait(first)
            if any(not t.cancelled() and t.exception() is None and t.result().found for t in first):
                return _Outcome()
        return await self._probe_source(source, plan)

    async def _probe_source(self, source: ConfiguredSource, plan: _Plan) -> _Outcome:
        outcome = _Outcome()
        try:
            candidates = await plan(source)
        except base.BackendError as exc:
            self._metrics.upstream_requests.labels(source.backend.kind, _result_label(exc)).inc()
            outcome.errors.append(exc)
            return outcome
        if not candidates:
            return outcome
        tasks = [asyncio.ensure_future(self._probe(candidate)) for candidate in candidates]
        try:
            for task in tasks:
                try:
                    outcome.found = await task
                    return outcome
                except base.BackendError as exc:
                    outcome.errors.append(exc)
            return outcome
        finally:
            for found in await _cancel_and_settle(tasks):
                if found is not outcome.found:
                    await found.aclose()

    async def _probe(self, candidate: Candidate) -> Found:
        source = candidate.source
        kind = source.backend.kind
        if source.host is not None and self._breakers.is_open(source.host):
            self._metrics.upstream_requests.labels(kind, "breaker_open").inc()
            raise base.UpstreamError(f"{source.config.id}: host is failing, skipped for now", retryable=False)
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                async with self._source_limits[source.config.id], self._limit:
                    found = await self._open_and_check(candidate)
            except base.BackendError as exc:
                self._metrics.upstream_latency.labels(kind).observe(time.monotonic() - started)
                self._metrics.upstream_requests.labels(kind, _result_label(exc)).inc()
                failed = isinstance(exc, base.UpstreamError | base.UpstreamTimeout)
                if failed and source.host is not None and self._breakers.failure(source.host):
                    log.warning(
                        "source %s: host failing repeatedly, pausing requests to it", source.config.id
                    )
                if exc.retryable and attempt < self._settings.retries:
                    attempt += 1
                    await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
                    continue
                raise
            self._metrics.upstream_latency.labels(kind).observe(time.monotonic() - started)
            self._metrics.upstream_requests.labels(kind, "ok").inc()
            if source.host is not None:
                self._breakers.success(source.host)
            return found

    async def _open_and_check(self, candidate: Candidate) -> Found:
        stream = await candidate.source.backend.open(candidate.location, checksum=candidate.checksum)
        try:
            rest = stream.chunks()
            if not candidate.filetypes:  # a pass-through: the source vouches for the content
                return Found(candidate, stream, b"", rest, None)
            head = b""
            async for chunk in rest:
                head += chunk
                if len(head) >= HEAD_BYTES:
                    break
            container = magic.sniff(head)
            if container is None and not candidate.accepts(head):
                raise base.Malformed(f"{candidate.source.config.id}: not a {candidate.filetype} file")
            if container is not None and FileType.SOURCEBUNDLE in candidate.filetypes:
                container = None  # a source bundle *is* a zip archive
        except BaseException:
            await stream.aclose()
            raise
        return Found(candidate, stream, head, rest, container)


_T = TypeVar("_T")


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _cancel_and_settle(tasks: Sequence[asyncio.Future[_T]]) -> list[_T]:
    """Cancel what still runs, wait for everything, and return the results that did arrive.

    The caller closes every result it does not keep, so no upstream connection is left open. Every
    task's exception is retrieved even if this wait is itself cancelled (a download nobody waits
    for), so a source's "not found" never surfaces as "Task exception was never retrieved".
    """
    for task in tasks:
        task.add_done_callback(_retrieve)
        if not task.done():
            task.cancel()
    if tasks:
        await asyncio.wait(tasks)
    return [t.result() for t in tasks if not t.cancelled() and t.exception() is None]
