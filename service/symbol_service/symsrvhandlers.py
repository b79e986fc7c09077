"""``GET``/``HEAD …/_apis/symbol/symsrv/{clientKey}``: the debugger's endpoint (spec §9).

WinDbg, symchk and the dotnet ``HttpSymbolStore`` append ``<file>/<id>/<file>`` to
``…/_apis/symbol/symsrv`` and expect the file or a 404. The lookup is case-insensitive on the whole
key. **Live** entries are the ``created`` entries of requests that are *sealed* and not expired: the
spec leaves it open whether Azure serves unsealed requests, and this product makes a request visible
at its seal everywhere else (the operator publishes it to the sidecars' paths then), so symsrv
agrees with the sidecars. Among the live entries of the key the richest ``informationLevel`` wins,
ties go to the newest entry (spec §9, our choice).

The answer is 200 streaming the blob (``application/octet-stream``), never a 302: the spec prefers
that for the sidecar, and a redirect would need a pre-authenticated URL we do not mint. Nothing
found is a 404 with the WrappedException body, never a 403 (symsrv gives up on a server that answers
403); a key that is not a valid client key, such as the ``index2.txt`` probe, is nothing found too.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from symbol_service import entries, errors, handlers, routes, tokens, vsohash, wire

__all__ = ["SymsrvHandlers"]


def _not_found(key: str) -> errors.ServiceError:
    return errors.ServiceError("DebugEntryNotFoundException", f"No sealed request provides {key!r}.")


class SymsrvHandlers(handlers.ApiBase):
    """The symsrv operation."""

    async def _symsrv(
        self, request: web.Request, op: routes.Operation, who: tokens.Principal | None
    ) -> web.StreamResponse:
        key = op.client_key or ""
        try:
            entries.check_client_key(key)
        except errors.ServiceError:
            raise _not_found(key) from None
        best: tuple[int, str] | None = None
        found: dict[str, Any] | None = None
        now = self.clock()
        for record in await self.requests.list():
            if (
                record.status != wire.RequestStatus.SEALED
                or record.sealed_segments is None
                or record.expiration_date <= now
            ):
                continue
            for entry in await self.manifest_store.for_key(record.id, key, segments=record.sealed_segments):
                if entry["status"] != wire.DebugEntryStatus.CREATED:
                    continue
                rank = (int(entry["informationLevel"]), str(entry.get("createdDate") or ""))
                if best is None or rank > best:
                    best, found = rank, entry
        if found is None:
            raise _not_found(key)
        try:
            return await self._stream_blob(request, vsohash.BlobId.from_hex(found["blobId"]))
        except errors.ServiceError as exc:
            if exc.type_key == "BlobNotFoundException":
                raise _not_found(key) from None
            raise
