"""The lifecycle refuses a SymbolRequest whose ``spec.store`` is not the store it was given.

Covered, with a recording API and publisher (the real API server and store: ``k8s/
test_publishing_gcs.py``): a sealed request of another store is not published, and says so once (a
``Published=False`` condition with reason ``StoreMismatch`` and one Warning event, not again for the
snapshot that carries the condition); an expired one of another store is neither marked nor
deleted; deleting one withdraws and forgets nothing, with a Warning event; requests of the
operator's store, and requests without ``spec.store`` (made before the field), are published.
And the lifecycle's kopf setting that lets an expired request go within seconds once its timer
exits (not a minute later).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from symbol_operator.lifecycle import PUBLISHED, STORE_MISMATCH, Lifecycle, register


class RecordingApi:
    def __init__(self) -> None:
        self.patches: list[Mapping[str, Any]] = []
        self.events: list[dict[str, str]] = []
        self.deleted: list[str] = []

    async def patch_request(
        self, namespace: str, name: str, patch: Mapping[str, Any], *, status: bool = False
    ) -> None:
        self.patches.append(patch)

    async def delete_request(self, namespace: str, name: str, uid: str) -> None:
        self.deleted.append(name)

    async def list_requests(self, namespace: str) -> list[dict[str, Any]]:
        return []

    async def post_event(self, namespace: str, involved: Mapping[str, str], **event: str) -> None:
        self.events.append({"name": involved["name"], **event})


class RecordingPublisher:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def publish(self, request_id: str, segments: int) -> int:
        self.calls.append(("publish", request_id))
        return 1

    async def withdraw(self, request_id: str, segments: int | None, others: Iterable[tuple[str, int]]) -> int:
        self.calls.append(("withdraw", request_id))
        return 1

    async def forget(self, request_id: str) -> None:
        self.calls.append(("forget", request_id))


def request(name: str, store: str | None, *, expired: bool = False) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    stamp = (now - datetime.timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    expiry = now + datetime.timedelta(days=-1 if expired else 1)
    spec = {
        "name": name,
        "requestId": f"id-{name}",
        "sealed": True,
        "expirationTime": expiry.isoformat().replace("+00:00", "Z"),
        "createdDate": stamp,
    }
    if store is not None:
        spec["store"] = store
    return {
        "metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}", "resourceVersion": "7"},
        "spec": spec,
        "status": {"requestStatus": "Sealed", "sealedSegments": 1, "sealedTime": stamp, "debugEntries": 1},
    }


def lifecycle() -> tuple[Lifecycle, RecordingApi, RecordingPublisher]:
    api, publisher = RecordingApi(), RecordingPublisher()
    return Lifecycle(api, publisher, store="publish"), api, publisher  # type: ignore[arg-type]


async def test_a_sealed_request_of_another_store_is_refused_once_and_not_published() -> None:
    operator, api, publisher = lifecycle()
    body = request("elsewhere", "other-store")
    await operator.reconcile(body)
    assert publisher.calls == []
    (patch,) = api.patches
    (condition,) = patch["status"]["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        PUBLISHED,
        "False",
        STORE_MISMATCH,
    )
    assert "'other-store'" in condition["message"] and "'publish'" in condition["message"]
    assert [(e["kind"], e["type_"], e["reason"]) for e in api.events] == [
        ("SymbolRequest", "Warning", STORE_MISMATCH)
    ]
    # The next event or timer tick sees the condition: nothing is written again.
    await operator.reconcile(body | {"status": {**body["status"], "conditions": [condition]}})
    assert len(api.patches) == 1 and len(api.events) == 1 and publisher.calls == []


async def test_an_expired_request_of_another_store_is_neither_marked_nor_deleted() -> None:
    operator, api, publisher = lifecycle()
    await operator.reconcile(request("old", "other-store", expired=True))
    assert api.deleted == [] and publisher.calls == []
    assert all(p["status"].get("requestStatus") is None for p in api.patches)


async def test_deleting_a_request_of_another_store_touches_nothing_in_ours() -> None:
    operator, api, publisher = lifecycle()
    await operator.finalize(request("elsewhere", "other-store"))
    assert publisher.calls == []
    assert [(e["name"], e["reason"]) for e in api.events] == [("elsewhere", STORE_MISMATCH)]


async def test_requests_of_our_store_and_without_a_store_are_published_and_withdrawn() -> None:
    operator, api, publisher = lifecycle()
    await operator.reconcile(request("ours", "publish"))
    await operator.reconcile(request("legacy", None))
    await operator.finalize(request("ours", "publish"))
    assert publisher.calls == [
        ("publish", "id-ours"),
        ("publish", "id-legacy"),
        ("withdraw", "id-ours"),
        ("forget", "id-ours"),
    ]
    assert api.events == []


def test_the_lifecycle_makes_kopf_check_an_exiting_timer_every_second() -> None:
    """kopf keeps a deleted request's finalizer until its timer exits, and checks an exiting timer
    again after ``cancellation_polling`` (60 s by default): a timer call under way when the expiry's
    deletion arrived held a loaded machine's expiry for a minute (seen in the k8s expiry tests)."""
    registry = kopf.OperatorRegistry()
    register(registry, lifecycle()[0], interval=30)
    settings = kopf.OperatorSettings()
    assert settings.background.cancellation_polling == 60
    for handler in registry._activities.get_all_handlers():
        if handler.activity is not None and handler.activity.value == "startup":
            handler.fn(settings=settings)
    assert settings.background.cancellation_polling <= 1.0
