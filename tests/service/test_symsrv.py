"""``GET``/``HEAD …/_apis/symbol/symsrv/{clientKey}`` against the running service (spec §9).

Covered: an entry of an open request is not served (404 with the WrappedException body, not 403);
once sealed it is, byte-identical, under any case of the key, for GET and HEAD, without and with
the organization; the richest information level wins among sealed requests providing the key; an
expired request no longer provides it; symsrv's probes (``index2.txt``, ``file.ptr``) and invalid
keys are 404; anonymous callers get the 401 challenge; a request that is deleted stops providing.
"""

from __future__ import annotations

import datetime
from typing import Any

from symbol_service.app import API
from tests.service.conftest import Service
from tests.service.test_api import create_request, create_request_expiring, delete_now, entry, keyed_fixture


async def publish(
    service: Service, request: dict[str, Any], key: str, data: bytes, level: str = "binary"
) -> None:
    """Post one entry, upload its blob if missing, re-post: ``created``."""
    path = f"/_apis/symbol/requests/{request['id']}/debugentries"
    batch = {"createBehavior": "skipIfExists", "debugEntries": [entry(key, data, level=level)]}
    _, answer, _ = await service.call("POST", path, json=batch, expect=200)
    if answer["value"][0]["status"] == "blobMissing":
        status, _, _ = await service.call("PUT", answer["value"][0]["blobUri"], data=data, absolute=True)
        assert status in (200, 201)
        _, answer, _ = await service.call("POST", path, json=batch, expect=200)
    assert answer["value"][0]["status"] == "created"


async def seal(service: Service, request: dict[str, Any]) -> None:
    await service.call(
        "PATCH", f"/_apis/symbol/requests/{request['id']}", json={"status": "sealed"}, expect=200
    )


async def symsrv(
    service: Service, key: str, *, method: str = "GET", role: str | None = "reader"
) -> tuple[int, Any]:
    status, body, _ = await service.call(method, f"/_apis/symbol/symsrv/{key}", role=role)
    return status, body


async def test_a_sealed_request_serves_its_files_by_key(service: Service) -> None:
    data, key = keyed_fixture(0)
    request = await create_request(service, "first")
    await publish(service, request, key, data)

    status, error = await symsrv(service, key)
    assert (status, error["typeKey"]) == (404, "DebugEntryNotFoundException")  # open: not yet visible

    await seal(service, request)
    for variant in (key, key.upper(), key.lower()):
        assert await symsrv(service, variant) == (200, data)
    status, _, headers = await service.call("HEAD", f"/_apis/symbol/symsrv/{key}", role="reader")
    assert (status, int(headers["Content-Length"]), headers["Content-Type"]) == (
        200,
        len(data),
        "application/octet-stream",
    )
    without_org = service.url.rsplit("/", 1)[0] + f"/_apis/symbol/symsrv/{key}"
    status, body, _ = await service.call("GET", without_org, role="reader", absolute=True)
    assert (status, body) == (200, data)

    status, _, headers = await service.call("GET", f"/_apis/symbol/symsrv/{key}", role=None)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")

    file_name = key.split("/")[0]
    for probe in ("index2.txt", f"{file_name}/{key.split('/')[1]}/file.ptr", "a/b", "a/../b/c"):
        status, error = await symsrv(service, probe)
        assert status == 404 and error["typeKey"] in (
            "DebugEntryNotFoundException",
            "ResourceNotFoundException",
        ), probe


async def test_the_richest_level_of_a_live_sealed_request_wins(service: Service) -> None:
    data, key = keyed_fixture(1)
    richer = b"a richer file for the same key"
    lasting = await create_request(service, "lasting")
    await publish(service, lasting, key, data, level="binary")
    await seal(service, lasting)

    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    short = await create_request_expiring(service, "short", soon)
    await publish(service, short, key.upper(), richer, level="private")
    assert await symsrv(service, key) == (200, data)  # the richer entry's request is still open
    await seal(service, short)
    assert await symsrv(service, key) == (200, richer)

    service.app[API].clock = lambda: soon + datetime.timedelta(seconds=1)  # ``short`` expires
    assert await symsrv(service, key) == (200, data)

    await delete_now(service, lasting)
    status, error = await symsrv(service, key)
    assert (status, error["typeKey"]) == (404, "DebugEntryNotFoundException")
