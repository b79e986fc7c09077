"""Repeated slashes in a request path count as one.

elfutils' ``debuginfod`` and many clients configured with a base URL that ends in ``/`` send
``//buildid/…`` or ``/symbols//crash.pdb/…``. A redirect would cost a round trip and not every
client follows one, so the path is merged in place and routed again, the way aiohttp's own
``normalize_path_middleware`` checks its candidates (without answering with a redirect).

Keep this middleware the last (innermost) one: it calls the merged route's handler itself, so
every middleware before it runs once, as for any request (aiohttp's ``router=`` argument, the other
way to change routing, is deprecated).
"""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ["merge_slashes"]

_REPEATED = re.compile(r"//+")


@web.middleware
async def merge_slashes(request: web.Request, handler: Handler) -> web.StreamResponse:
    raw_path = request.raw_path
    path, question, query = raw_path.partition("?")
    if "//" not in path:
        return await handler(request)
    merged = request.clone(rel_url=_REPEATED.sub("/", path) + question + query)
    match_info = await request.app.router.resolve(merged)
    match_info.add_app(request.app)
    match_info.freeze()
    merged._match_info = match_info  # what aiohttp's dispatcher sets before calling a handler
    return await match_info.handler(merged)
