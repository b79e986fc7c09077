"""The lifecycle refuses a SymbolRequest whose ``spec.store`` is not the store it was given.

Covered, with a recording API and publisher (the real API server and store: ``k8s/
test_publishing_gcs.py``): a sealed request of another store is not published, and says so once (a
``Published=False`` condition with reason ``StoreMismatch`` and one Warning event, not again for the
snapshot that carries the condition); an expired one of another store is neither marked nor
deleted; deleting one withdraws and forgets nothing, with a Warning event; requests of the
operator's store, and requests without ``spec.store`` (made before the field), are published.
A publish the store refuses says why in a ``PublishFailed`` condition and one Warning event per
distinct error, is tried again, and ends ``Published=True`` once the store works; a withdraw the
store refuses is one line for kopf to retry, not a traceback.
And the lifecycle's kopf setting that lets an expired request go within seconds once its timer
exits (not a minute later).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from symbol_operator.lifecycle import PUBLISH_FAILED, PUBLISHED, STORE_MISMATCH, Lifecycle, register
from symbol_proxy.backends.base import PermissionDenied, UpstreamError
from tests.operator_tests.lifecycle_fakes import RecordingApi, RecordingPublisher, request


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
    assert api.events[0]["message"].startswith("deleted; the request was written to store 'other-store'")


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


def with_conditions(body: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """The next snapshot of ``body``: the conditions of the status ``patch`` written."""
    return body | {"status": {**body["status"], "conditions": patch["status"]["conditions"]}}


async def test_a_publish_the_store_refuses_says_why_once_per_error_and_is_tried_again() -> None:
    operator, api, publisher = lifecycle()
    denied = PermissionDenied("s3 bucket 'symbols': AccessDenied on PutObject")
    publisher.failures = [denied, PermissionDenied(str(denied)), OSError(28, "No space left on device")]
    body = request("ours", "publish")

    await operator.reconcile(body)
    (patch,) = api.patches
    (condition,) = patch["status"]["conditions"]
    expected = (PUBLISHED, "False", PUBLISH_FAILED)
    assert (condition["type"], condition["status"], condition["reason"]) == expected
    assert "AccessDenied on PutObject" in condition["message"]
    assert [(e["type_"], e["reason"], e["message"]) for e in api.events] == [
        ("Warning", PUBLISH_FAILED, condition["message"])
    ]

    # The timer's next try fails the same way: tried, but nothing said again.
    body = with_conditions(body, patch)
    await operator.reconcile(body)
    assert publisher.calls == [("publish", "id-ours")] * 2
    assert len(api.patches) == 1 and len(api.events) == 1

    # Another error is news.
    await operator.reconcile(body)
    assert "No space left on device" in api.patches[-1]["status"]["conditions"][0]["message"]
    assert len(api.patches) == 2 and len(api.events) == 2

    # The store works again: published.
    await operator.reconcile(with_conditions(body, api.patches[-1]))
    assert publisher.calls == [("publish", "id-ours")] * 4
    final = api.patches[-1]["status"]["conditions"][0]
    assert (final["type"], final["status"]) == (PUBLISHED, "True")


async def test_a_withdraw_the_store_refuses_is_one_line_for_kopf_to_retry() -> None:
    operator, _, publisher = lifecycle()
    publisher.failures = [UpstreamError("gcs bucket 'symbols': 503 Service Unavailable")]
    registry = kopf.OperatorRegistry()
    register(registry, operator, interval=7)
    handlers = registry._changing.get_all_handlers()
    (deleted,) = [h for h in handlers if h.reason is not None and h.reason.value == "delete"]
    try:
        await deleted.fn(body=request("ours", "publish"), memo=kopf.Memo())
    except kopf.TemporaryError as exc:
        assert "503 Service Unavailable" in str(exc) and exc.delay == 7
        assert exc.__cause__ is None and exc.__suppress_context__
    else:
        raise AssertionError("the refused withdraw was not reported to kopf")
    assert publisher.calls == [("withdraw", "id-ours")]
