"""The ``sentry`` backend: debug files uploaded to a Sentry project, found by search, not by path.

Sentry has no directory layout to probe. Its debug-file endpoint
(``…/api/0/projects/{org}/{project}/files/dsyms/``) answers ``?debug_id=`` or ``?code_id=`` with a JSON
list of ``{id, symbolType, …}``, and ``?id=<id>`` with the file itself. So this backend is a
``SearchableBackend``: ``search`` lists the candidates and ``open`` takes one of the returned ids.

Choices, and why:

- Only the debug id is sent when the query has one, else the code id: Sentry's endpoint itself
  ignores ``code_id`` when a ``debug_id`` is given, and Symbolicator queries the same way.
- File types are filtered here, from ``symbolType``, not by the server: one cached listing then
  answers every file-type combination the resolver asks about. Sentry does not tell code from debug
  companions for ELF, Mach-O and Wasm (``elf`` covers ``elf_code`` and ``elf_debug``), so such a file
  is offered as the first of those types the lookup asks for. Results are ranked by the requested
  file-type order, then by Sentry's order (newest upload first). ``dartsymbolmap`` and unknown types
  are skipped.
- Listings are cached in memory for ``listing_ttl`` (60 s: uploads become visible quickly, a burst of
  lookups for one crash costs one request), bounded to ``listing_capacity`` entries, and concurrent
  identical searches share one request. Errors are never cached: a failing Sentry must not turn into
  "no such file" for a minute.
- Symbolicator ignores pagination and logs at 20 results; we follow ``Link: rel="next"`` pages (same
  origin only, at most ``MAX_PAGES``).
- No retries here: aiohttp retries nothing by default and the resolver's retry loop wraps every
  backend. Redirects of downloads (to blob storage) are followed; aiohttp drops ``Authorization`` and
  ``Cookie`` when a redirect leaves the origin.
- The token (``Authorization: Bearer``) or the cookies (``Cookie``) never appear in a message, a log
  line or a repr; refusals are logged once per backend, operation and status.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from typing import Any

import aiohttp
from yarl import URL

from symbol_proxy.backends import base
from symbol_proxy.backends.httpio import HttpBodyStream, error_detail, send
from symbol_proxy.config import SentrySource, UpstreamSettings
from symbol_proxy.objects import FileType, ObjectQuery

__all__ = ["SYMBOL_TYPES", "SentryBackend"]

log = logging.getLogger(__name__)

SYMBOL_TYPES: dict[str, tuple[FileType, ...]] = {
    "pe": (FileType.PE,),
    "pdb": (FileType.PDB,),
    "portablepdb": (FileType.PORTABLEPDB,),
    "macho": (FileType.MACH_DEBUG, FileType.MACH_CODE),
    "elf": (FileType.ELF_DEBUG, FileType.ELF_CODE),
    "wasm": (FileType.WASM_DEBUG, FileType.WASM_CODE),
    "breakpad": (FileType.BREAKPAD,),
    "sourcebundle": (FileType.SOURCEBUNDLE,),
    "uuidmap": (FileType.UUIDMAP,),
    "bcsymbolmap": (FileType.BCSYMBOLMAP,),
    "il2cpp": (FileType.IL2CPP,),
    "proguard": (FileType.PROGUARD,),
}
"""Sentry's ``symbolType`` values and the file types each may serve."""

MAX_PAGES = 10
"""Pages of one listing followed at most (Sentry pages by 20; 200 uploads for one id is plenty)."""
MAX_LISTING_BYTES = 4 * 1024 * 1024

Listing = tuple[tuple[str, str], ...]
"""(file id, symbolType) pairs in Sentry's order."""


class SentryBackend:
    """Search and download the debug files of one Sentry project."""

    kind = "sentry"

    def __init__(
        self,
        source: SentrySource,
        settings: UpstreamSettings,
        *,
        session: aiohttp.ClientSession,
        listing_ttl: float = 60.0,
        listing_capacity: int = 10_000,
    ) -> None:
        self._source = source
        self._settings = settings
        self._session = session
        self._url = URL(source.url)
        self.listing_ttl = listing_ttl
        self.listing_capacity = listing_capacity
        self._listings: collections.OrderedDict[tuple[str, str], tuple[float, Listing]] = (
            collections.OrderedDict()
        )
        self._pending: dict[tuple[str, str], asyncio.Task[Listing]] = {}
        self._reported: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"<SentryBackend source={self._source.id!r} url={self._source.url!r}>"

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": self._settings.user_agent}
        if self._source.token is not None:
            headers["Authorization"] = f"Bearer {self._source.token.get_secret_value()}"
        elif self._source.cookies is not None:
            headers["Cookie"] = self._source.cookies.get_secret_value()
        return headers

    def _report(self, operation: str, code: str) -> None:
        first = (operation, code) not in self._reported
        self._reported.add((operation, code))
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "source %s: Sentry refused the debug-file %s (%s)%s",
            self._source.id,
            operation,
            code,
            "; check the source's token or cookies and the project in its url" if first else "",
        )

    async def _refused(
        self, response: aiohttp.ClientResponse, operation: str, where: str
    ) -> base.BackendError:
        """Translate a non-200 answer (releasing the response)."""
        status = response.status
        if status in (401, 403):
            code = f"{status} {await error_detail(response)}"
            self._report(operation, code)
            return base.PermissionDenied(f"source {self._source.id}: Sentry {operation} refused ({status})")
        response.release()
        if status == 429 or status >= 500:
            return base.UpstreamError(f"{where}: Sentry answered {status}", status=status)
        return base.NotFound(f"{where}: Sentry answered {status}")

    # ---------------------------------------------------------------------------------------------
    # Searching

    async def search(self, query: ObjectQuery, filetypes: tuple[FileType, ...]) -> list[tuple[str, FileType]]:
        """Candidates for ``query`` among ``filetypes``, best first, as (file id, file type)."""
        if query.debug_id is not None and not query.debug_id.is_nil():
            key = ("debug_id", str(query.debug_id))
        elif query.code_id:
            key = ("code_id", query.code_id)
        else:
            return []  # without an id Sentry would list every file of the project
        ranked: list[tuple[int, int, str, FileType]] = []
        for position, (file_id, symbol_type) in enumerate(await self._listing(key)):
            for filetype in filetypes:
                if filetype in SYMBOL_TYPES.get(symbol_type, ()):
                    ranked.append((filetypes.index(filetype), position, file_id, filetype))
                    break
        ranked.sort(key=lambda item: (item[0], item[1]))
        return [(file_id, filetype) for _, _, file_id, filetype in ranked]

    async def _listing(self, key: tuple[str, str]) -> Listing:
        loop = asyncio.get_running_loop()
        cached = self._listings.get(key)
        if cached is not None:
            if cached[0] > loop.time():
                self._listings.move_to_end(key)
                return cached[1]
            del self._listings[key]
        task = self._pending.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch_listing(key))
            self._pending[key] = task
            task.add_done_callback(lambda done: self._settle(key, done))
        # Shielded: one caller giving up does not cancel the request the others wait for.
        return await asyncio.shield(task)

    def _settle(self, key: tuple[str, str], task: asyncio.Task[Listing]) -> None:
        self._pending.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return  # errors are never cached
        self._listings[key] = (asyncio.get_running_loop().time() + self.listing_ttl, task.result())
        self._listings.move_to_end(key)
        while len(self._listings) > self.listing_capacity:
            self._listings.popitem(last=False)

    async def _fetch_listing(self, key: tuple[str, str]) -> Listing:
        url: URL | None = self._url.update_query({key[0]: key[1]})
        where = f"{self._source.id}: debug-file listing for {key[0]} {key[1]}"
        headers = self._headers() | {"Accept": "application/json", "Accept-Encoding": "identity"}
        entries: list[tuple[str, str]] = []
        pages = 0
        while url is not None and pages < MAX_PAGES:
            pages += 1
            deadline = (
                asyncio.get_running_loop().time() + self._settings.head_timeout + self._settings.read_timeout
            )
            response = await send(self._session, url, self._settings, deadline, headers=headers, where=where)
            if response.status != 200:
                raise await self._refused(response, "listing", where)
            try:
                async with asyncio.timeout(max(deadline - asyncio.get_running_loop().time(), 0.001)):
                    body = await response.content.read(MAX_LISTING_BYTES + 1)
            except TimeoutError:
                raise base.UpstreamTimeout(f"{where}: the listing stalled") from None
            except aiohttp.ClientError as exc:
                raise base.UpstreamError(f"{where}: the listing broke off ({type(exc).__name__})") from None
            finally:
                response.release()
            entries.extend(self._parse(body, where))
            url = self._next_page(response, url)
        if url is not None:
            log.warning("%s: more than %d pages of debug files; the rest is ignored", where, MAX_PAGES)
        return tuple(entries)

    @staticmethod
    def _parse(body: bytes, where: str) -> list[tuple[str, str]]:
        if len(body) > MAX_LISTING_BYTES:
            raise base.UpstreamError(f"{where}: the listing is too large", retryable=False)
        try:
            payload: Any = json.loads(body)
        except ValueError:
            raise base.UpstreamError(f"{where}: the listing is not JSON", retryable=False) from None
        if not isinstance(payload, list):
            raise base.UpstreamError(f"{where}: the listing is not a JSON list", retryable=False)
        entries = []
        for item in payload:
            if not isinstance(item, dict):
                continue
            file_id, symbol_type = item.get("id"), item.get("symbolType")
            if (
                isinstance(file_id, str | int)
                and not isinstance(file_id, bool)
                and isinstance(symbol_type, str)
            ):
                entries.append((str(file_id), symbol_type.lower()))
        return entries

    def _next_page(self, response: aiohttp.ClientResponse, current: URL) -> URL | None:
        link = response.links.get("next")
        if link is None or str(link.get("results", "true")).lower() != "true":
            return None
        target = link.get("url")
        if not isinstance(target, URL):
            return None
        target = current.join(target)
        # Credentials go along, so only to the same origin.
        return target if target.origin() == self._url.origin() else None

    # ---------------------------------------------------------------------------------------------
    # Downloading

    async def open(self, location: str, *, checksum: str | None = None) -> base.ObjectStream:
        """Download the debug file with id ``location`` (as returned by ``search``)."""
        where = f"sentry://project_debug_file/{location}"
        if not location or len(location) > 200 or any(c in location for c in "/?#&= \\"):
            raise base.NotFound(f"{where}: not a Sentry debug-file id")
        deadline = asyncio.get_running_loop().time() + self._settings.total_timeout
        url = self._url.update_query(id=location)
        response = await send(
            self._session, url, self._settings, deadline, headers=self._headers(), where=where
        )
        if response.status != 200:
            raise await self._refused(response, "download", where)
        size = response.content_length if not response.headers.get("Content-Encoding") else None
        info = base.ObjectInfo(size=size, etag=response.headers.get("ETag"))
        return HttpBodyStream(response, info, self._settings, deadline, where=where)

    async def aclose(self) -> None:
        pending = list(self._pending.values())
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._listings.clear()
