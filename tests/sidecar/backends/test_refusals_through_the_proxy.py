"""A bucket that refuses us is a miss for the client: S3 answers ``AccessDenied`` also for a key that
does not exist when the credentials lack ``s3:ListBucket``, so a refusal must be a 404 through the
running proxy (``shared/specs/clients.md`` §7.1: "not found" is always 404), never a 5xx."""

from __future__ import annotations

import aiohttp

from tests.conftest import StartProxy
from tests.sidecar.backends.conftest import S3World
from tests.sidecar.backends.test_mixed_sources import KEY, PDB, get, s3_source


async def test_an_s3_access_denied_is_a_404_for_the_client(
    s3_world: S3World, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    nobody = s3_source(s3_world, access_key=s3_world.powerless[0], secret_key=s3_world.powerless[1])
    proxy = await start_proxy([nobody], cache={"negative_ttl": 0, "error_ttl": 0}, upstream={"retries": 0})
    s3_world.server.clear_requests()
    status, body = await get(http, proxy, f"/symbols/{KEY}")
    assert status == 404, body
    refused = [r for r in s3_world.server.requests() if r["status"] == 403]
    assert refused, "the bucket was asked and refused the read"
    # The same bucket with a reader's keys serves the file: the 404 came from the refusal.
    proxy = await start_proxy([s3_source(s3_world)])
    assert await get(http, proxy, f"/symbols/{KEY}") == (200, PDB.data)
