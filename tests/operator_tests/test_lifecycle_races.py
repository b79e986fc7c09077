"""The lifecycle's publish step when the watch event and the timer reconcile the same sealed
request at once, each with a snapshot from before the ``Published`` condition was written."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from symbol_operator.lifecycle import PUBLISHED, Lifecycle
from symbol_operator.metrics import Metrics


class SlowPublisher:
    """Counts publishes; each takes a moment, so a second reconcile queues on the lock."""

    def __init__(self) -> None:
        self.publishes: list[str] = []

    async def publish(self, request_id: str, segments: int) -> int:
        self.publishes.append(request_id)
        await asyncio.sleep(0.05)
        return 3


class StatusApi:
    def __init__(self) -> None:
        self.patches: list[Mapping[str, Any]] = []

    async def patch_request(
        self, namespace: str, name: str, patch: Mapping[str, Any], *, status: bool = False
    ) -> None:
        self.patches.append(patch)


def sealed_body(uid: str) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    stamp = (now - datetime.timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    later = (now + datetime.timedelta(days=1)).isoformat().replace("+00:00", "Z")
    return {
        "metadata": {"namespace": "ns", "name": uid, "uid": uid, "resourceVersion": "7"},
        "spec": {
            "name": uid,
            "requestId": f"id-{uid}",
            "sealed": True,
            "expirationTime": later,
            "createdDate": stamp,
        },
        "status": {"requestStatus": "Sealed", "sealedSegments": 1, "sealedTime": stamp, "debugEntries": 1},
    }


async def test_two_reconciles_of_one_stale_snapshot_publish_once() -> None:
    api, publisher = StatusApi(), SlowPublisher()
    metrics = Metrics(CollectorRegistry())
    lifecycle = Lifecycle(api, publisher, metrics=metrics)  # type: ignore[arg-type]
    body = sealed_body("a")
    await asyncio.gather(lifecycle.reconcile(body), lifecycle.reconcile(body))
    assert publisher.publishes == ["id-a"]
    assert [p["status"]["conditions"][0]["type"] for p in api.patches] == [PUBLISHED]
    count = metrics.registry.get_sample_value("symbol_operator_request_seal_to_publish_seconds_count")
    assert count == 1


async def test_another_request_and_a_recreated_one_are_still_published() -> None:
    api, publisher = StatusApi(), SlowPublisher()
    lifecycle = Lifecycle(api, publisher)  # type: ignore[arg-type]
    await lifecycle.reconcile(sealed_body("a"))
    await lifecycle.reconcile(sealed_body("b"))
    assert publisher.publishes == ["id-a", "id-b"]
    # A request deleted and made again under the same name is a new object (a new uid).
    await lifecycle.reconcile(sealed_body("a2") | {"spec": sealed_body("a")["spec"]})
    assert publisher.publishes == ["id-a", "id-b", "id-a"]
