"""A small Sentry for tests: a project's debug-file endpoint, as the Sentry backend uses it.

``GET /api/0/projects/{org}/{project}/files/dsyms/``
- with ``?id=<id>``: the file's bytes (404 for an unknown id);
- with ``?debug_id=`` (or, only when there is none, ``?code_id=``): a JSON list of
  ``{id, uuid, debugId, codeId, objectName, symbolType, size, data}``, newest upload first, in pages of
  ``per_page`` with a ``Link`` header (``rel="next"; results="true"; cursor=…``) as Sentry sends it.

Authentication is a bearer token or a cookie, whichever the test configures; anything else gets
Sentry's 401 body. ``fail_listing`` makes listings answer that status. Every request is recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from aiohttp import web

__all__ = ["DebugFile", "SentryServer"]

ENDPOINT = "/api/0/projects/{org}/{project}/files/dsyms/"


@dataclasses.dataclass
class DebugFile:
    id: str
    symbol_type: str
    debug_id: str | None
    code_id: str | None
    name: str
    data: bytes

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "uuid": (self.debug_id or "")[:36],
            "debugId": self.debug_id,
            "codeId": self.code_id,
            "objectName": self.name,
            "symbolType": self.symbol_type,
            "size": len(self.data),
            "sha1": hashlib.sha1(self.data).hexdigest(),
            "data": {"features": ["debug", "symtab"]},
        }


class SentryServer:
    def __init__(self, *, token: str | None = None, cookie: str | None = None, per_page: int = 20) -> None:
        self.token = token
        self.cookie = cookie
        self.per_page = per_page
        self.files: list[DebugFile] = []
        self.listings: list[dict[str, str]] = []
        self.downloads: list[str] = []
        self.headers_seen: list[dict[str, str]] = []
        self.fail_listing: int | None = None
        self.app = web.Application()
        self.app.router.add_get(ENDPOINT, self.handle)

    def add(self, symbol_type: str, debug_id: str | None, code_id: str | None, name: str, data: bytes) -> str:
        file_id = str(1000 + len(self.files))
        self.files.insert(0, DebugFile(file_id, symbol_type, debug_id, code_id, name, data))  # newest first
        return file_id

    def _authorized(self, request: web.Request) -> bool:
        if self.token is not None and request.headers.get("Authorization") == f"Bearer {self.token}":
            return True
        return self.cookie is not None and request.headers.get("Cookie") == self.cookie

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.headers_seen.append(dict(request.headers))
        if not self._authorized(request):
            return web.json_response({"detail": "Authentication credentials were not provided."}, status=401)
        if "id" in request.query:
            self.downloads.append(request.query["id"])
            for item in self.files:
                if item.id == request.query["id"]:
                    return web.Response(body=item.data, content_type="application/octet-stream")
            return web.json_response({"detail": "The requested resource does not exist"}, status=404)
        self.listings.append(dict(request.query))
        if self.fail_listing is not None:
            return web.json_response({"detail": "Internal Error"}, status=self.fail_listing)
        debug_id = request.query.get("debug_id", "").lower()
        code_id = request.query.get("code_id", "").lower()
        if debug_id:
            found = [f for f in self.files if (f.debug_id or "").lower() == debug_id]
        elif code_id:
            found = [f for f in self.files if (f.code_id or "").lower() == code_id]
        else:
            found = list(self.files)
        start = int(request.query.get("cursor", "0:0:0").split(":")[1])
        page = found[start : start + self.per_page]
        more = start + self.per_page < len(found)
        base_url = request.url.with_query({k: v for k, v in request.query.items() if k != "cursor"})
        links = [
            f'<{base_url.update_query(cursor=f"0:{max(start - self.per_page, 0)}:1")}>; rel="previous"; '
            f'results="{str(start > 0).lower()}"; cursor="0:{max(start - self.per_page, 0)}:1"',
            f'<{base_url.update_query(cursor=f"0:{start + self.per_page}:0")}>; rel="next"; '
            f'results="{str(more).lower()}"; cursor="0:{start + self.per_page}:0"',
        ]
        return web.Response(
            text=json.dumps([f.describe() for f in page]),
            content_type="application/json",
            headers={"Link": ", ".join(links)},
        )
