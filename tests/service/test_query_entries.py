"""``GET …/_apis/symbol/debugentries[/{clientKey}]``: the cross-request query (spec §4.3), against
the running service: entries of every live request (open or sealed, not expired, not deleted), by
key in any case, paged with ``startEntry``/``maxEntries``, ordered by ``sortOrder``; malformed
parameters and keys are 400s that name what is wrong."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from symbol_service import entries
from symbol_service.app import API
from tests.service.conftest import Service
from tests.service.test_api import create_request, create_request_expiring, delete_now, keyed_fixture
from tests.service.test_symsrv import publish, seal


async def query(service: Service, key: str = "", **params: Any) -> tuple[int, Any]:
    path = "/_apis/symbol/debugentries" + (f"/{key}" if key else "")
    status, body, _ = await service.call("GET", path, role="reader", params=params or None)
    return status, body


def levels(body: Any) -> list[str]:
    return [item["informationLevel"] for item in body["value"]]


async def test_entries_of_every_live_request_are_found_by_key_in_any_case(service: Service) -> None:
    data, key = keyed_fixture(0)
    other_data, other_key = keyed_fixture(1)
    first = await create_request(service, "query/first")
    await publish(service, first, key, data, level="binary")
    await seal(service, first)
    second = await create_request(service, "query/second")  # open requests count too
    await publish(service, second, key, data, level="publics")
    await publish(service, second, other_key, other_data)
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    expiring = await create_request_expiring(service, "query/expiring", soon)
    await publish(service, expiring, key, data, level="private")
    gone = await create_request(service, "query/gone")
    await publish(service, gone, key, data, level="typeInfo")
    await delete_now(service, gone)

    status, body = await query(service, key.upper())
    assert status == 200 and body["count"] == 3
    assert {item["requestId"] for item in body["value"]} == {first["id"], second["id"], expiring["id"]}
    assert {item["clientKey"].lower() for item in body["value"]} == {key.lower()}

    status, body = await query(service)
    assert status == 200 and body["count"] == 4  # every entry of the three live requests

    service.app[API].clock = lambda: soon + datetime.timedelta(seconds=1)  # ``expiring`` expires
    status, body = await query(service, key)
    assert {item["requestId"] for item in body["value"]} == {first["id"], second["id"]}

    status, body = await query(service, "nothing.pdb/0123456789ABCDEF0123456789ABCDEF1/nothing.pdb")
    assert (status, body["count"]) == (200, 0)


async def test_pages_and_orders_by_information_level(service: Service) -> None:
    data, key = keyed_fixture(0)
    for name, level in (("a", "publics"), ("b", "binary"), ("c", "private")):
        request = await create_request(service, f"order/{name}")
        await publish(service, request, key, data, level=level)
    _, body = await query(service, key)
    assert levels(body) == ["publics", "binary", "private"]  # server default: by request creation
    _, most = await query(service, key, sortOrder="MostInformationFirst")
    _, least = await query(service, key, sortOrder="1")
    assert levels(least) == list(reversed(levels(most)))
    assert levels(most)[0] == "private" and levels(least)[0] == "binary"
    _, page = await query(service, key, sortOrder="leastinformationfirst", startEntry="1", maxEntries="1")
    assert levels(page) == levels(least)[1:2]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"maxEntries": "0"}, "maxEntries"),
        ({"maxEntries": str(entries.MAX_QUERY_ENTRIES + 1)}, "maxEntries"),
        ({"startEntry": "-1"}, "startEntry"),
        ({"sortOrder": "newest"}, "sortOrder"),
    ],
)
async def test_malformed_parameters_are_a_400_naming_the_parameter(
    service: Service, params: dict[str, str], named: str
) -> None:
    status, body = await query(service, **params)
    assert status == 400 and body["typeKey"] == "InvalidEndpointParameterException"
    assert named in body["message"]


async def test_a_malformed_key_is_a_400_and_anonymous_callers_are_challenged(service: Service) -> None:
    status, body = await query(service, "a/b")
    assert status == 400 and body["typeKey"] == "InvalidEndpointParameterException"
    status, _, headers = await service.call("GET", "/_apis/symbol/debugentries", role=None)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
