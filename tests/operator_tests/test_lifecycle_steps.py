"""Each step of a SymbolRequest's life in the operator, with a recording API and publisher: what the
lifecycle asks of the Kubernetes API and the store, exactly, and what it logs and counts.

The same steps run against the real API server and stores in ``k8s/test_request_lifecycle.py``
(slow; here every argument is checked, which those tests cannot afford to):

- an expired request, or one the service marked unavailable, is marked ``UnavailableReadOnly`` and
  deleted as the object it was (its uid), at the very second of its expiry;
- a request being deleted, an open one, one whose seal is under way, one already published, and an
  object the service did not make are left alone;
- a sealed one is published with its segments, its ``Published`` condition written, the SymbolSource
  the sidecars read it through announced (a missing one is a warning, not a failure), the
  seal-to-publish latency observed;
- the finalizer withdraws the request's files keeping what every other *live sealed* request of
  its namespace provides, forgets its manifest, and lets a re-created object be published again;
- Warning events name the object (name and uid), and an event the API refuses is only logged;
- the ``requests`` gauge counts each phase; kopf's handlers call all of this.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Mapping
from typing import Any

import kopf
import pytest
from prometheus_client import CollectorRegistry

from symbol_operator import kubeapi, lifecycle
from symbol_operator.lifecycle import PUBLISHED, STORE_MISMATCH, Lifecycle, phase, register
from symbol_operator.metrics import Metrics
from symbol_operator.models import PUBLICATION_ANNOTATION
from symbol_proxy.backends.base import UpstreamError
from tests.operator_tests.lifecycle_fakes import RecordingApi, RecordingPublisher, request, stamp

LOGGER = "symbol_operator.lifecycle"
NOW = datetime.datetime(2026, 12, 6, 17, 0, 0, 123456, tzinfo=datetime.UTC)


def operator(**options: Any) -> tuple[Lifecycle, RecordingApi, RecordingPublisher]:
    api, publisher = RecordingApi(), RecordingPublisher(written=6, removed=4)
    return Lifecycle(api, publisher, **options), api, publisher  # type: ignore[arg-type]


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# ---------------------------------------------------------------------------------------------------
# Expiry


@pytest.mark.parametrize("why", ["expired", "unavailable"])
async def test_an_expired_or_unavailable_request_is_marked_and_deleted_as_the_object_it_was(
    why: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    lifecycle_, api, publisher = operator()
    if why == "expired":
        body = request("old", expired=True)
    else:
        body = request("old", requestStatus="UnavailableReadOnly")
    await lifecycle_.reconcile(body)
    assert api.calls == [
        ("patch_request", "ns", "old", {"status": {"requestStatus": "UnavailableReadOnly"}}, True),
        ("delete_request", "ns", "old", "uid-old"),
    ]
    assert publisher.calls == []
    assert messages(caplog, logging.INFO) == [
        "SymbolRequest ns/old expired or was deleted: withdrawing its files"
    ]


async def test_a_request_expires_at_the_second_of_its_expiration_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lifecycle, "_now", lambda: NOW)
    body = request("edge")
    body["spec"]["expirationTime"] = stamp(NOW)
    lifecycle_, api, _ = operator()
    await lifecycle_.reconcile(body)
    assert [call[0] for call in api.calls] == ["patch_request", "delete_request"]
    assert phase(body, NOW) == "unavailable"
    assert phase(body, NOW - datetime.timedelta(seconds=1)) == "sealed"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            request("going", expired=True)
            | {
                "metadata": {
                    "namespace": "ns",
                    "name": "going",
                    "uid": "uid-going",
                    "deletionTimestamp": "2026-12-06T00:00:00Z",
                }
            },
            id="being-deleted",
        ),
        pytest.param(request("open", sealed=False), id="open"),
        pytest.param(request("sealing", segments=None), id="seal-under-way"),
        pytest.param(
            request("done", conditions=[{"type": PUBLISHED, "status": "True", "reason": "Sealed"}]),
            id="published",
        ),
        pytest.param(
            {"metadata": {"namespace": "ns", "name": "hand-made", "uid": "u"}, "spec": {}}, id="not-ours"
        ),
    ],
)
async def test_requests_with_nothing_to_do_are_left_alone(body: dict[str, Any]) -> None:
    lifecycle_, api, publisher = operator(source="symbols")
    await lifecycle_.reconcile(body)
    assert api.calls == [] and publisher.calls == []


@pytest.mark.parametrize(
    ("conditions", "published"),
    [
        ([{"type": PUBLISHED, "status": "False", "reason": "PublishFailed"}], False),
        ([{"type": "Ready", "status": "True"}], False),
        ([{"type": PUBLISHED}], False),
        ([{"type": "Ready", "status": "False"}, {"type": PUBLISHED, "status": "True"}], True),
    ],
)
async def test_only_a_true_published_condition_means_published(
    conditions: list[dict[str, str]], published: bool
) -> None:
    body = request("r", conditions=conditions)
    assert phase(body, datetime.datetime.now(datetime.UTC)) == ("published" if published else "sealed")
    lifecycle_, _, publisher = operator()
    await lifecycle_.reconcile(body)
    assert publisher.calls == ([] if published else [("publish", "id-r")])


# ---------------------------------------------------------------------------------------------------
# Publishing


async def test_a_sealed_request_is_published_announced_and_marked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    monkeypatch.setattr(lifecycle, "_now", lambda: NOW)
    metrics = Metrics(CollectorRegistry())
    lifecycle_, api, publisher = operator(source="symbols", metrics=metrics)
    body = request("build-42", segments=3, debugEntries=5)
    body["status"]["sealedTime"] = stamp(NOW - datetime.timedelta(seconds=90))
    await lifecycle_.reconcile(body)

    assert publisher.arguments == [("publish", "id-build-42", 3)]
    generation = f"20261206T170000.123456Z-{'id-build-42'[:12]}"
    assert api.calls == [
        (
            "patch_source",
            "ns",
            "symbols",
            {"metadata": {"annotations": {PUBLICATION_ANNOTATION: generation}}},
        ),
        (
            "patch_request",
            "ns",
            "build-42",
            {
                "status": {
                    "requestStatus": "Sealed",
                    "conditions": [
                        {
                            "type": PUBLISHED,
                            "status": "True",
                            "lastTransitionTime": "2026-12-06T17:00:00Z",
                            "reason": "Sealed",
                            "message": "5 entries published at 6 paths",
                        }
                    ],
                }
            },
            True,
        ),
    ]
    assert messages(caplog, logging.INFO) == ["SymbolRequest ns/build-42 published: 6 paths"]
    assert sample(metrics, "symbol_operator_request_seal_to_publish_seconds_count") == 1
    assert sample(metrics, "symbol_operator_request_seal_to_publish_seconds_sum") == 90.0


async def test_a_seal_time_ahead_of_the_operators_clock_counts_as_no_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lifecycle, "_now", lambda: NOW)
    metrics = Metrics(CollectorRegistry())
    lifecycle_, _, _ = operator(metrics=metrics)
    body = request("ahead")
    body["status"]["sealedTime"] = stamp(NOW + datetime.timedelta(seconds=5))  # the service's clock is ahead
    await lifecycle_.reconcile(body)
    assert sample(metrics, "symbol_operator_request_seal_to_publish_seconds_count") == 1
    assert sample(metrics, "symbol_operator_request_seal_to_publish_seconds_sum") == 0.0


async def test_the_announcement_names_the_request_and_a_time_that_sorts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The annotation changes with every publish (the sidecars drop their remembered 404s on a
    change): a UTC time to the microsecond, then the first 12 characters of the request id."""
    lifecycle_, api, _ = operator(source="symbols")
    await lifecycle_.reconcile(request("a-request-with-a-long-name"))
    ((_, _, _, patch),) = [call for call in api.calls if call[0] == "patch_source"]
    generation = patch["metadata"]["annotations"][PUBLICATION_ANNOTATION]
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-id-a-request", generation), generation


async def test_without_a_publish_source_nothing_is_announced() -> None:
    lifecycle_, api, publisher = operator()
    await lifecycle_.reconcile(request("quiet"))
    assert publisher.calls == [("publish", "id-quiet")]
    assert [call[0] for call in api.calls] == ["patch_request"]


async def test_a_missing_publish_source_is_a_warning_and_the_request_is_still_published(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lifecycle_, api, _ = operator(source="gone")
    api.fail_sources = kubeapi.NotFound(404, "NotFound", "symbolsources gone not found")
    await lifecycle_.reconcile(request("r"))
    assert messages(caplog, logging.WARNING) == [
        "publish source ns/gone does not exist: sidecars keep cached 404s"
    ]
    assert api.patches[-1]["status"]["conditions"][0]["status"] == "True"


async def test_another_api_error_while_announcing_is_left_to_the_timer() -> None:
    lifecycle_, api, _ = operator(source="symbols")
    api.fail_sources = kubeapi.Forbidden(403, "Forbidden", "cannot patch symbolsources")
    with pytest.raises(kubeapi.Forbidden):
        await lifecycle_.reconcile(request("r"))
    assert api.patches == []  # not marked published: the next reconcile announces again


async def test_a_published_request_is_not_published_again_from_a_stale_snapshot_until_it_is_recreated() -> (
    None
):
    lifecycle_, api, publisher = operator()
    body = request("r")
    await lifecycle_.reconcile(body)
    await lifecycle_.reconcile(body)  # the timer's snapshot from before the condition
    assert publisher.calls == [("publish", "id-r")]
    api.requests = []
    await lifecycle_.finalize(body)
    await lifecycle_.reconcile(body)  # the same uid again: only after a finalize (tests reuse it)
    assert publisher.calls == [
        ("publish", "id-r"),
        ("withdraw", "id-r"),
        ("forget", "id-r"),
        ("publish", "id-r"),
    ]


# ---------------------------------------------------------------------------------------------------
# Withdrawing


async def test_the_finalizer_keeps_what_other_live_sealed_requests_provide(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    metrics = Metrics(CollectorRegistry())
    lifecycle_, api, publisher = operator(metrics=metrics)
    api.requests = [
        request("leaving", segments=2),  # itself
        request("live", segments=3),
        request("live-too", segments=1),
        request("expired", expired=True),
        request("open", sealed=False),
        request("sealing", segments=None),
        request("unavailable", requestStatus="UnavailableReadOnly"),
        {"metadata": {"namespace": "ns", "name": "hand-made"}, "spec": {}},
    ]
    await lifecycle_.finalize(request("leaving", segments=2, namespace="ns"))
    assert api.calls == [("list_requests", "ns")]
    assert publisher.arguments == [
        ("withdraw", "id-leaving", 2, [("id-live", 3), ("id-live-too", 1)]),
        ("forget", "id-leaving"),
    ]
    assert messages(caplog, logging.INFO) == ["SymbolRequest leaving withdrawn: 4 paths removed"]
    assert sample(metrics, "symbol_operator_request_withdraw_seconds_count") == 1
    assert 0 <= (sample(metrics, "symbol_operator_request_withdraw_seconds_sum") or 0) < 60


async def test_a_request_expiring_at_this_second_provides_nothing_to_keep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lifecycle, "_now", lambda: NOW)
    lifecycle_, api, publisher = operator()
    at_the_edge, later = request("edge"), request("later")
    at_the_edge["spec"]["expirationTime"] = stamp(NOW)
    later["spec"]["expirationTime"] = stamp(NOW + datetime.timedelta(seconds=1))
    api.requests = [at_the_edge, later]
    await lifecycle_.finalize(request("leaving"))
    assert publisher.arguments[0] == ("withdraw", "id-leaving", 1, [("id-later", 1)])


async def test_a_request_deleted_before_its_seal_finished_withdraws_with_no_segments() -> None:
    lifecycle_, _, publisher = operator()
    await lifecycle_.finalize(request("half", segments=None))
    assert publisher.arguments[0] == ("withdraw", "id-half", None, [])


async def test_finalizing_an_object_the_service_did_not_make_does_nothing() -> None:
    lifecycle_, api, publisher = operator()
    await lifecycle_.finalize({"metadata": {"namespace": "ns", "name": "x"}, "spec": {}})
    assert api.calls == [] and publisher.calls == []


# ---------------------------------------------------------------------------------------------------
# Events


async def test_a_warning_event_names_the_object_and_a_refused_event_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    lifecycle_, api, _ = operator(store="publish")
    body = request("elsewhere", "other-store", namespace="team")
    await lifecycle_.reconcile(body)
    ((_, namespace, involved, event),) = [call for call in api.calls if call[0] == "post_event"]
    ((_, *where, patch, status),) = [call for call in api.calls if call[0] == "patch_request"]
    (condition,) = patch["status"]["conditions"]
    assert (where, status) == (["team", "elsewhere"], True)  # the status subresource
    assert (condition["type"], condition["status"], condition["reason"]) == (
        PUBLISHED,
        "False",
        STORE_MISMATCH,
    )
    message = condition["message"]
    assert (namespace, involved) == ("team", {"name": "elsewhere", "uid": "uid-elsewhere"})
    assert event == {
        "type_": "Warning",
        "reason": STORE_MISMATCH,
        "message": message,
        "kind": "SymbolRequest",
    }
    assert messages(caplog, logging.WARNING) == [f"SymbolRequest team/elsewhere: {message}"]

    caplog.clear()
    refused = kubeapi.Forbidden(403, "Forbidden", "events is forbidden")
    lifecycle_, api, _ = operator(store="publish")
    api.fail_events = refused
    await lifecycle_.reconcile(body)
    assert len(api.patches) == 1  # the condition is written all the same
    assert messages(caplog, logging.INFO) == [f"SymbolRequest team/elsewhere: event not posted: {refused}"]


# ---------------------------------------------------------------------------------------------------
# The requests gauge


def test_the_requests_gauge_counts_each_phase() -> None:
    metrics = Metrics(CollectorRegistry())
    lifecycle_, _, _ = operator(metrics=metrics)
    published = request("p", conditions=[{"type": PUBLISHED, "status": "True"}])
    bodies = [
        request("c", sealed=False),
        request("c2", sealed=False),
        request("s"),
        published,
        request("x", expired=True),
        request("u", requestStatus="UnavailableReadOnly"),
        request("d")
        | {"metadata": {"name": "d", "uid": "uid-d", "deletionTimestamp": "2026-12-06T00:00:00Z"}},
        {"metadata": {"uid": "hand-made"}, "spec": {}},  # not the service's: not counted
    ]
    for body in bodies:
        lifecycle_.count(body)
    counts = {p: sample(metrics, "symbol_operator_requests", phase=p) for p in lifecycle.REQUEST_PHASES}
    assert counts == {"created": 2, "sealed": 1, "published": 1, "unavailable": 3}

    lifecycle_.count(published, gone=True)
    lifecycle_.count(request("c", sealed=True))  # the same object, now sealed
    counts = {p: sample(metrics, "symbol_operator_requests", phase=p) for p in lifecycle.REQUEST_PHASES}
    assert counts == {"created": 1, "sealed": 2, "published": 0, "unavailable": 3}


# ---------------------------------------------------------------------------------------------------
# kopf's handlers


def _handlers(registry: kopf.OperatorRegistry) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for handler in registry._watching.get_all_handlers():
        found["event"] = handler.fn
    for handler in registry._spawning.get_all_handlers():
        found["timer"] = handler.fn
    for handler in registry._changing.get_all_handlers():
        if handler.reason is not None and handler.reason.value == "delete":
            found["delete"] = handler.fn
    return found


async def test_kopfs_handlers_count_publish_retry_and_finalize(caplog: pytest.LogCaptureFixture) -> None:
    lifecycle_, api, publisher = operator()
    registry = kopf.OperatorRegistry()
    register(registry, lifecycle_, interval=11)
    handlers = _handlers(registry)
    metrics = Metrics(CollectorRegistry())
    memo = kopf.Memo(metrics=metrics)

    body = request("r")
    await handlers["event"](event={"type": "ADDED", "object": body}, memo=memo)
    assert publisher.calls == [("publish", "id-r")]
    assert lifecycle_.metrics is metrics  # found in kopf's memo
    assert sample(metrics, "symbol_operator_requests", phase="sealed") == 1

    await handlers["event"](event={"type": "DELETED", "object": request("s")}, memo=memo)
    assert publisher.calls == [("publish", "id-r")]  # a deleted object is only uncounted
    assert sample(metrics, "symbol_operator_requests", phase="sealed") == 1

    publisher.failures = [UpstreamError("s3 bucket 'symbols': SlowDown")]
    await handlers["timer"](body=request("t"), memo=kopf.Memo())
    assert publisher.calls[-1] == ("publish", "id-t")
    assert (
        "the store refused the publish (tried again): s3 bucket 'symbols': SlowDown"
        in api.events[-1]["message"]
    )

    lifecycle_.source = "symbols"
    api.fail_sources = kubeapi.Forbidden(403, "Forbidden", "cannot patch symbolsources")
    await handlers["timer"](body=request("u"), memo=kopf.Memo())
    assert messages(caplog, logging.WARNING)[-1] == (
        "SymbolRequest u: 403 Forbidden: cannot patch symbolsources (will retry)"
    )
    lifecycle_.source = None
    broken: Mapping[str, Any] = request("bad") | {
        "spec": {"requestId": "id-bad", "name": "bad", "expirationTime": "?"}
    }
    await handlers["timer"](body=broken, memo=kopf.Memo())  # a malformed time: one line, retried
    assert [m for m in messages(caplog, logging.WARNING) if m.startswith("SymbolRequest bad: ")]
    assert all(
        "(will retry)" in m for m in messages(caplog, logging.WARNING) if m.startswith("SymbolRequest bad")
    )

    await handlers["delete"](body=request("r"), memo=memo)
    assert publisher.calls[-2:] == [("withdraw", "id-r"), ("forget", "id-r")]
