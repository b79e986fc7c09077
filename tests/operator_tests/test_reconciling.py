"""The namespace reconciler against an in-memory API: what it writes, and above all what it does not.

Covers: first pass (Secret created with label and hash annotation, statuses, events), no write on an
unchanged pass nor after a restart, one update on a Secret rotation, SecretNotFound and recovery,
deleting the last source, refusing to overwrite a foreign Secret, which watch events trigger a pass,
debouncing a burst into one pass, and retrying after an API error.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from symbol_operator import kubeapi, reconciling
from symbol_operator.metrics import Metrics
from symbol_operator.models import PUBLICATION_ANNOTATION
from symbol_operator.options import OperatorOptions
from symbol_operator.reconciling import CONFIG_HASH_ANNOTATION, Reconciler
from symbol_operator.render import RenderError
from symbol_proxy.config import load_text
from tests.operator_tests.fakeapi import FakeApi
from tests.operator_tests.kubemodels import unknown_fields
from tests.operator_tests.manifests import secret, source

NS = "team"
TOKEN_REF = {"secretKeyRef": {"name": "creds", "key": "token"}}


def make(api: FakeApi, **options: Any) -> tuple[Reconciler, Metrics]:
    metrics = Metrics(CollectorRegistry())
    defaults: dict[str, Any] = {"debounce": 0.0, "retry_delay": 0.01}
    return Reconciler(api, metrics, OperatorOptions(**(defaults | options))), metrics  # type: ignore[arg-type]


def rendered(api: FakeApi) -> dict[str, Any]:
    body = api.secrets[(NS, "symbol-proxy-config")]
    return yaml.safe_load(base64.b64decode(body["data"]["proxy.yaml"]))  # type: ignore[no-any-return]


def ready(api: FakeApi, name: str) -> dict[str, Any]:
    conditions = api.sources[(NS, name)]["status"]["conditions"]
    return next(c for c in conditions if c["type"] == "Ready")  # type: ignore[no-any-return]


@pytest.fixture
def api() -> FakeApi:
    api = FakeApi()
    api.put_source(source("fs", {"type": "filesystem", "filesystem": {"path": "/srv"}}, namespace=NS))
    api.put_source(
        source("web", {"type": "gcs", "gcs": {"bucket": "b", "bearerToken": TOKEN_REF}}, namespace=NS)
    )
    api.put_secret(NS, secret("creds", {"token": "t1"}))
    return api


async def test_first_pass_creates_the_secret_and_sets_statuses(api: FakeApi) -> None:
    reconciler, metrics = make(api)
    await reconciler.reconcile(NS)
    body = api.secrets[(NS, "symbol-proxy-config")]
    assert body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "symbol-operator"
    assert body["metadata"]["annotations"][CONFIG_HASH_ANNOTATION].startswith("sha256:")
    document = rendered(api)
    assert [s["id"] for s in document["sources"]] == ["fs", "web"]
    assert (
        load_text(base64.b64decode(body["data"]["proxy.yaml"]).decode()).sources[1].bearer_token is not None
    )
    for name in ("fs", "web"):
        assert ready(api, name)["status"] == "True"
        assert api.sources[(NS, name)]["status"]["observedGeneration"] == 1
    assert [(e["name"], e["reason"]) for e in api.events] == [("fs", "Rendered"), ("web", "Rendered")]
    assert (
        metrics.registry.get_sample_value("symbol_operator_secret_writes_total", {"operation": "create"}) == 1
    )
    assert metrics.registry.get_sample_value("symbol_operator_sources_rendered", {"namespace": NS}) == 2


async def test_an_unchanged_pass_and_a_restart_write_nothing(api: FakeApi) -> None:
    reconciler, _ = make(api)
    await reconciler.reconcile(NS)
    writes = list(api.writes)
    await reconciler.reconcile(NS)
    restarted, metrics = make(api)
    await restarted.reconcile(NS)
    assert api.writes == writes
    assert (
        metrics.registry.get_sample_value(
            "symbol_operator_reconciles_total", {"kind": "ProxyConfig", "outcome": "unchanged"}
        )
        == 1
    )


async def test_a_secret_rotation_is_one_update_and_no_status_write(api: FakeApi) -> None:
    reconciler, _ = make(api)
    await reconciler.reconcile(NS)
    api.writes.clear()
    api.put_secret(NS, secret("creds", {"token": "t2"}))
    await reconciler.reconcile(NS)
    assert api.writes == [("update", NS, "symbol-proxy-config")]
    assert rendered(api)["sources"][1]["bearer_token"] == "t2"


async def test_a_missing_secret_is_reported_and_recovers(api: FakeApi) -> None:
    del api.secrets[(NS, "creds")]
    reconciler, _ = make(api)
    await reconciler.reconcile(NS)
    condition = ready(api, "web")
    assert (condition["status"], condition["reason"]) == ("False", "SecretNotFound")
    assert "configSecret" not in api.sources[(NS, "web")]["status"]
    assert [s["id"] for s in rendered(api)["sources"]] == ["fs"]
    assert ("web", "SecretNotFound") in [(e["name"], e["reason"]) for e in api.events]
    assert next(e for e in api.events if e["name"] == "web")["type"] == "Warning"

    api.put_secret(NS, secret("creds", {"token": "t1"}))
    await reconciler.reconcile(NS)
    assert ready(api, "web")["status"] == "True"
    assert [s["id"] for s in rendered(api)["sources"]] == ["fs", "web"]
    assert api.events[-1] == {"namespace": NS, "name": "web", "type": "Normal", "reason": "Rendered"}


async def test_deleting_the_last_source_deletes_the_secret(api: FakeApi) -> None:
    reconciler, metrics = make(api)
    await reconciler.reconcile(NS)
    del api.sources[(NS, "fs")]
    await reconciler.reconcile(NS)
    assert [s["id"] for s in rendered(api)["sources"]] == ["web"]
    del api.sources[(NS, "web")]
    await reconciler.reconcile(NS)
    assert (NS, "symbol-proxy-config") not in api.secrets
    assert api.writes[-1] == ("delete", NS, "symbol-proxy-config")
    await reconciler.reconcile(NS)
    assert api.writes[-1] == ("delete", NS, "symbol-proxy-config")
    assert metrics.registry.get_sample_value("symbol_operator_sources_rendered", {"namespace": NS}) is None


async def test_a_secret_of_the_same_name_not_managed_by_us_is_never_overwritten(api: FakeApi) -> None:
    api.put_secret(NS, secret("symbol-proxy-config", {"proxy.yaml": "mine"}))
    reconciler, _ = make(api)
    with pytest.raises(RenderError, match="not managed by symbol-operator"):
        await reconciler.reconcile(NS)
    del api.sources[(NS, "fs")], api.sources[(NS, "web")]
    await reconciler.reconcile(NS)
    assert (NS, "symbol-proxy-config") in api.secrets


async def test_which_watch_events_trigger_a_pass(api: FakeApi) -> None:
    reconciler, _ = make(api)
    triggered: list[str] = []
    reconciler.trigger = triggered.append  # type: ignore[method-assign]
    body = api.sources[(NS, "web")]
    assert reconciler.on_source_event(None, body)  # initial listing
    api.sources[(NS, "web")]["status"] = {"observedGeneration": 1}
    assert not reconciler.on_source_event("MODIFIED", api.sources[(NS, "web")])  # our status write
    changed = api.put_source(
        body | {"spec": {"type": "gcs", "gcs": {"bucket": "c", "bearerToken": TOKEN_REF}}}
    )
    assert reconciler.on_source_event("MODIFIED", changed)  # new generation
    assert reconciler.on_source_event("DELETED", changed)
    assert triggered == [NS, NS, NS]

    reconciler.on_source_event(None, api.sources[(NS, "fs")])
    assert not reconciler.wants_secret(NS, "creds", {})  # "web" is gone, nobody references creds
    reconciler.on_source_event(None, changed)
    assert reconciler.wants_secret(NS, "creds", {})
    assert not reconciler.wants_secret("other", "creds", {})
    assert not reconciler.wants_secret(NS, "unrelated", {})
    assert reconciler.wants_secret(
        NS, "symbol-proxy-config", {"app.kubernetes.io/managed-by": "symbol-operator"}
    )


async def test_our_own_secret_write_coming_back_does_not_trigger(api: FakeApi) -> None:
    reconciler, _ = make(api)
    await reconciler.reconcile(NS)
    triggered: list[str] = []
    reconciler.trigger = triggered.append  # type: ignore[method-assign]
    own = api.secrets[(NS, "symbol-proxy-config")]
    assert not reconciler.on_secret_event("MODIFIED", own)
    assert reconciler.on_secret_event("DELETED", own)
    assert reconciler.on_secret_event(None, own)
    assert reconciler.on_secret_event("MODIFIED", api.secrets[(NS, "creds")])


async def poll(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_a_burst_of_triggers_is_one_pass(api: FakeApi) -> None:
    reconciler, _ = make(api, debounce=0.05)
    try:
        for _ in range(50):
            reconciler.trigger(NS)
        await poll(lambda: reconciler.passes == 1 and reconciler.idle)
        await asyncio.sleep(0.1)
        assert reconciler.passes == 1
        assert api.writes.count(("create", NS, "symbol-proxy-config")) == 1
    finally:
        await reconciler.stop()


async def test_a_failed_pass_is_retried(api: FakeApi) -> None:
    reconciler, metrics = make(api)
    api.fail_next = kubeapi.Unavailable(503, "ServiceUnavailable", "etcd is down")
    try:
        reconciler.trigger(NS)
        await poll(lambda: (NS, "symbol-proxy-config") in api.secrets and reconciler.idle)
        assert reconciler.passes == 2
        assert (
            metrics.registry.get_sample_value(
                "symbol_operator_reconciles_total", {"kind": "ProxyConfig", "outcome": "error"}
            )
            == 1
        )
    finally:
        await reconciler.stop()


# -------------------------------------------------------------------------------------------------
# What the reconciler counts and logs, the watch events at the edges, and the retry backoff.


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_watch_events_are_counted_by_kind_and_trigger_their_namespace(api: FakeApi) -> None:
    reconciler, metrics = make(api)
    triggered: list[str] = []
    reconciler.trigger = triggered.append  # type: ignore[method-assign]
    body = api.sources[(NS, "web")]
    assert reconciler.on_source_event(None, body)
    assert reconciler.on_source_event("DELETED", body)
    assert reconciler.on_secret_event("MODIFIED", api.secrets[(NS, "creds")])
    assert triggered == [NS, NS, NS]
    assert sample(metrics, "symbol_operator_triggers_total", kind="SymbolSource") == 2
    assert sample(metrics, "symbol_operator_triggers_total", kind="Secret") == 1


async def test_a_source_deleted_before_it_was_seen_and_created_again_triggers_each_time(api: FakeApi) -> None:
    reconciler, _ = make(api)
    triggered: list[str] = []
    reconciler.trigger = triggered.append  # type: ignore[method-assign]
    body = api.sources[(NS, "fs")]
    assert reconciler.on_source_event("DELETED", body)  # never seen: nothing to forget, no error
    assert reconciler.on_source_event(None, body)
    assert reconciler.on_source_event("DELETED", body)
    # Created again under the same name: generation 1, and a status that already says 1.
    again = body | {"status": {"observedGeneration": body["metadata"]["generation"]}}
    assert reconciler.on_source_event("MODIFIED", again)
    assert triggered == [NS, NS, NS, NS]


async def test_a_publication_annotation_change_triggers_though_the_status_is_current(api: FakeApi) -> None:
    reconciler, _ = make(api)
    triggered: list[str] = []
    reconciler.trigger = triggered.append  # type: ignore[method-assign]
    body = api.sources[(NS, "fs")] | {"status": {"observedGeneration": 1}}
    reconciler.on_source_event(None, body)
    assert not reconciler.on_source_event("MODIFIED", body)
    published = body | {"metadata": body["metadata"] | {"annotations": {PUBLICATION_ANNOTATION: "p"}}}
    assert reconciler.on_source_event("MODIFIED", published)
    # A relisting (ADDED) always triggers, even when nothing changed.
    assert reconciler.on_source_event("ADDED", published)
    assert triggered == [NS, NS, NS]


async def test_only_our_labelled_config_secret_or_a_referenced_one_is_wanted(api: FakeApi) -> None:
    reconciler, _ = make(api)
    ours = {"app.kubernetes.io/managed-by": "symbol-operator"}
    assert not reconciler.wants_secret(NS, "symbol-proxy-config", {})  # a foreign Secret of that name
    assert not reconciler.wants_secret(NS, "other", ours)
    assert reconciler.wants_secret(NS, "symbol-proxy-config", ours)


async def test_our_config_secret_coming_back_different_or_referenced_triggers(api: FakeApi) -> None:
    reconciler, _ = make(api)
    await reconciler.reconcile(NS)
    triggered: list[str] = []
    reconciler.trigger = triggered.append  # type: ignore[method-assign]
    own = api.secrets[(NS, "symbol-proxy-config")]
    assert not reconciler.on_secret_event("MODIFIED", own)
    assert reconciler.on_secret_event("MODIFIED", own | {"data": {}})  # its key removed by someone
    # A source that (oddly) takes its credentials from the config Secret: every change matters.
    reconciler.on_source_event(
        None,
        source(
            "odd",
            {
                "type": "gcs",
                "gcs": {
                    "bucket": "b",
                    "bearerToken": {"secretKeyRef": {"name": "symbol-proxy-config", "key": "t"}},
                },
            },
            namespace=NS,
        ),
    )
    assert reconciler.on_secret_event("MODIFIED", own)
    assert triggered == [NS, NS, NS]  # the second one is the source's own event


async def test_after_the_config_secret_is_deleted_its_old_content_coming_back_triggers(api: FakeApi) -> None:
    reconciler, _ = make(api)
    await reconciler.reconcile(NS)
    own = api.secrets[(NS, "symbol-proxy-config")]
    api.sources.clear()
    await reconciler.reconcile(NS)
    triggered: list[str] = []
    reconciler.trigger = triggered.append  # type: ignore[method-assign]
    assert reconciler.on_secret_event("ADDED", own)  # someone restored it: not ours any more
    assert triggered == [NS]


class DeletedMeanwhile(FakeApi):
    """The rendered Secret disappears between the reconciler's read and its delete."""

    async def delete_secret(self, namespace: str, name: str, resource_version: str) -> None:
        self.secrets.pop((namespace, name), None)
        await super().delete_secret(namespace, name, resource_version)


@pytest.mark.parametrize("api_class", [FakeApi, DeletedMeanwhile])
async def test_removing_the_config_is_counted_and_logged(
    api_class: type[FakeApi], caplog: pytest.LogCaptureFixture
) -> None:
    api = api_class()
    api.put_source(source("fs", {"type": "filesystem", "filesystem": {"path": "/srv"}}, namespace=NS))
    reconciler, metrics = make(api)
    await reconciler.reconcile(NS)
    api.sources.clear()
    with caplog.at_level(logging.INFO, logger="symbol_operator"):
        await reconciler.reconcile(NS)
    assert (NS, "symbol-proxy-config") not in api.secrets
    assert sample(metrics, "symbol_operator_secret_writes_total", operation="delete") == 1
    assert sample(metrics, "symbol_operator_reconciles_total", kind="ProxyConfig", outcome="deleted") == 1
    assert f"namespace {NS} has no SymbolSources: deleted Secret symbol-proxy-config" in caplog.messages
    await reconciler.reconcile(NS)  # nothing left to delete
    assert sample(metrics, "symbol_operator_reconciles_total", kind="ProxyConfig", outcome="unchanged") == 1


class Flaky(FakeApi):
    """Lists fail while ``failures`` is above zero."""

    failures = 0

    async def list_sources(self, namespace: str) -> list[dict[str, Any]]:
        if self.failures > 0:
            self.failures -= 1
            raise kubeapi.Unavailable(503, "ServiceUnavailable", "etcd is down")
        return await super().list_sources(namespace)


class RecordedSleeps:
    """``asyncio`` for the reconciler, with a ``sleep`` that records how long it was asked to wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


async def test_failed_passes_back_off_exponentially_up_to_the_maximum_and_start_over_after_a_success(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = RecordedSleeps()
    monkeypatch.setattr(reconciling, "asyncio", clock)
    api = Flaky()
    api.put_source(source("fs", {"type": "filesystem", "filesystem": {"path": "/srv"}}, namespace=NS))
    api.failures = 4
    reconciler, _ = make(api, debounce=0.0, retry_delay=1.5, retry_max=5.0)
    try:
        with caplog.at_level(logging.WARNING, logger="symbol_operator"):
            reconciler.trigger(NS)
            await poll(lambda: (NS, "symbol-proxy-config") in api.secrets and reconciler.idle)
            retries = [d for d in clock.delays if d > 0]
            assert retries == [1.5, 3.0, 5.0, 5.0]
            api.failures = 1
            reconciler.trigger(NS)
            await poll(lambda: reconciler.passes == 7 and reconciler.idle)
        assert [d for d in clock.delays if d > 0] == [*retries, 1.5]
        failure = f"reconciling namespace {NS} failed, retrying in 2s: 503 ServiceUnavailable: etcd is down"
        assert failure in caplog.messages
        assert any(task.get_name() == f"reconcile {NS}" for task in asyncio.all_tasks())
    finally:
        await reconciler.stop()


class EventLog(FakeApi):
    """Keeps each Event's involved object and message too; ``refuse_events`` makes posting fail."""

    refuse_events = False

    def __init__(self) -> None:
        super().__init__()
        self.posted: list[dict[str, Any]] = []

    async def post_event(
        self, namespace: str, involved: Mapping[str, str], *, type_: str, reason: str, message: str
    ) -> None:
        if self.refuse_events:
            raise kubeapi.Forbidden(403, "Forbidden", "events is forbidden")
        self.posted.append({"involved": dict(involved), "reason": reason, "message": message})
        await super().post_event(namespace, involved, type_=type_, reason=reason, message=message)


def fill(api: FakeApi) -> FakeApi:
    api.put_source(source("fs", {"type": "filesystem", "filesystem": {"path": "/srv"}}, namespace=NS))
    api.put_source(
        source("web", {"type": "gcs", "gcs": {"bucket": "b", "bearerToken": TOKEN_REF}}, namespace=NS)
    )
    return api


async def test_status_events_and_logs_say_what_happened_to_each_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = fill(EventLog())
    reconciler, metrics = make(api, base={"cache": {"max_size": "1G"}})
    with caplog.at_level(logging.INFO, logger="symbol_operator"):
        await reconciler.reconcile(NS)
    assert rendered(api)["cache"]["max_size"] == "1G"  # the operator's base settings are rendered
    body = api.secrets[(NS, "symbol-proxy-config")]
    assert body["metadata"]["labels"]["app.kubernetes.io/name"] == "symbol-proxy-config"
    assert body["metadata"]["labels"]["app.kubernetes.io/part-of"] == "symbol-operator"
    assert api.sources[(NS, "fs")]["status"]["configSecret"] == "symbol-proxy-config"
    fs = next(e for e in api.posted if e["involved"]["name"] == "fs")
    web = next(e for e in api.posted if e["involved"]["name"] == "web")
    assert fs["involved"] == {"name": "fs", "uid": api.sources[(NS, "fs")]["metadata"]["uid"]}
    assert fs["reason"] == "Rendered" and fs["message"] == ready(api, "fs")["message"]
    assert web["reason"] == "SecretNotFound" and web["message"] == ready(api, "web")["message"] != ""
    records = {
        r.getMessage(): r.levelno for r in caplog.records if r.getMessage().startswith("SymbolSource ")
    }
    condition = ready(api, "web")
    assert records == {
        f"SymbolSource {NS}/fs: Ready=True Rendered {ready(api, 'fs')['message']}": logging.INFO,
        f"SymbolSource {NS}/web: Ready=False SecretNotFound {condition['message']}": logging.WARNING,
    }
    assert sample(metrics, "symbol_operator_reconciles_total", kind="SymbolSource", outcome="Rendered") == 1
    assert (
        sample(metrics, "symbol_operator_reconciles_total", kind="SymbolSource", outcome="SecretNotFound")
        == 1
    )


async def test_a_status_write_without_a_change_of_ready_posts_no_event() -> None:
    api = fill(EventLog())
    api.put_secret(NS, secret("creds", {"token": "t1"}))
    reconciler, _ = make(api)
    await reconciler.reconcile(NS)
    posted = len(api.posted)
    api.put_source(
        api.sources[(NS, "fs")] | {"spec": {"type": "filesystem", "filesystem": {"path": "/other"}}}
    )
    await reconciler.reconcile(NS)
    assert api.sources[(NS, "fs")]["status"]["observedGeneration"] == 2
    assert len(api.posted) == posted


async def test_an_event_that_cannot_be_posted_is_logged_and_the_pass_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = fill(EventLog())
    api.refuse_events = True
    reconciler, _ = make(api)
    with caplog.at_level(logging.WARNING, logger="symbol_operator"):
        await reconciler.reconcile(NS)
    assert ready(api, "fs")["status"] == "True" and ready(api, "web")["status"] == "False"
    failures = [m for m in caplog.messages if m.startswith("posting an Event")]
    assert failures == [
        f"posting an Event on SymbolSource {NS}/{name} failed: 403 Forbidden: events is forbidden"
        for name in ("fs", "web")
    ]


async def test_a_source_being_deleted_is_not_rendered_and_a_vanished_one_stops_referencing(
    api: FakeApi,
) -> None:
    reconciler, _ = make(api)
    reconciler.on_source_event(
        None,
        source("x", {"type": "gcs", "gcs": {"bucket": "b", "bearerToken": TOKEN_REF}}, namespace="other"),
    )
    await reconciler.reconcile(NS)
    assert reconciler.wants_secret(NS, "creds", {}) and reconciler.wants_secret("other", "creds", {})
    api.sources[(NS, "web")]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    await reconciler.reconcile(NS)
    assert [s["id"] for s in rendered(api)["sources"]] == ["fs"]
    assert not reconciler.wants_secret(NS, "creds", {})  # gone without a DELETED event seen
    assert reconciler.wants_secret("other", "creds", {})  # another namespace's references stay


async def test_the_ready_condition_is_stamped_in_utc_whatever_the_operators_zone(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "IST-05:30")  # POSIX form: no time zone database needed
    time.tzset()
    try:
        reconciler, _ = make(api)
        await reconciler.reconcile(NS)
        stamp = ready(api, "fs")["lastTransitionTime"]
        parsed = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
        assert abs(parsed - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(hours=1)
    finally:
        monkeypatch.undo()
        time.tzset()


class Broken(FakeApi):
    """The first listing fails with a programming error, not an API error."""

    broken = True

    async def list_sources(self, namespace: str) -> list[dict[str, Any]]:
        if self.broken:
            self.broken = False
            raise RuntimeError("a bug")
        return await super().list_sources(namespace)


async def test_an_unexpected_error_is_logged_with_its_traceback_and_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(reconciling, "asyncio", RecordedSleeps())
    api = Broken()
    api.put_source(source("fs", {"type": "filesystem", "filesystem": {"path": "/srv"}}, namespace=NS))
    reconciler, _ = make(api, retry_delay=2.0)
    try:
        with caplog.at_level(logging.WARNING, logger="symbol_operator"):
            reconciler.trigger(NS)
            await poll(lambda: (NS, "symbol-proxy-config") in api.secrets and reconciler.idle)
        (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert record.getMessage() == f"reconciling namespace {NS} failed, retrying in 2s"
        assert record.exc_info is not None and str(record.exc_info[1]) == "a bug"
    finally:
        await reconciler.stop()


class Patches(FakeApi):
    """Keeps every patch of a Secret as it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.patches: list[dict[str, Any]] = []

    async def patch_secret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self.patches.append(dict(patch))
        return await super().patch_secret(namespace, name, patch)


def config_text(api: FakeApi) -> bytes:
    return base64.b64decode(api.secrets[(NS, "symbol-proxy-config")]["data"]["proxy.yaml"])


async def test_the_secret_is_created_and_patched_as_the_api_reads_it_and_each_write_is_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = fill(Patches())
    api.put_secret(NS, secret("creds", {"token": "t1"}))
    reconciler, metrics = make(api)
    with caplog.at_level(logging.INFO, logger="symbol_operator"):
        await reconciler.reconcile(NS)
        created = dict(api.secrets[(NS, "symbol-proxy-config")])
        assert unknown_fields(created, "V1Secret") == []
        assert (created["apiVersion"], created["kind"], created["type"]) == ("v1", "Secret", "Opaque")
        assert created["metadata"]["namespace"] == NS
        api.put_secret(NS, secret("creds", {"token": "t2"}))
        await reconciler.reconcile(NS)
    (patch,) = api.patches
    assert unknown_fields(patch, "V1Secret") == []
    digest = hashlib.sha256(config_text(api)).hexdigest()
    annotations = api.secrets[(NS, "symbol-proxy-config")]["metadata"]["annotations"]
    assert annotations[CONFIG_HASH_ANNOTATION] == f"sha256:{digest}"
    assert annotations[reconciling.SOURCES_ANNOTATION] == "2"
    # Durations, not clock readings: two renders of two sources take well under a minute.
    assert 0 <= (sample(metrics, "symbol_operator_render_duration_seconds_sum") or 0) < 60
    assert sample(metrics, "symbol_operator_secret_writes_total", operation="create") == 1
    assert sample(metrics, "symbol_operator_secret_writes_total", operation="update") == 1
    assert sample(metrics, "symbol_operator_reconciles_total", kind="ProxyConfig", outcome="written") == 2
    writes = [m for m in caplog.messages if m.startswith(f"namespace {NS}: ")]
    assert (
        writes[-1]
        == f"namespace {NS}: updated Secret symbol-proxy-config with 2 of 2 sources ({digest[:12]})"
    )
    assert writes[0].startswith(f"namespace {NS}: created Secret symbol-proxy-config with 2 of 2 sources (")


@pytest.mark.parametrize("tampering", [{"proxy.yaml": "sources: []\n"}, {}], ids=["edited", "key-removed"])
async def test_our_secret_edited_by_someone_else_is_restored(api: FakeApi, tampering: dict[str, str]) -> None:
    reconciler, _ = make(api)
    await reconciler.reconcile(NS)
    text = config_text(api)
    body = api.secrets[(NS, "symbol-proxy-config")]
    body["data"] = {key: base64.b64encode(value.encode()).decode() for key, value in tampering.items()}
    await reconciler.reconcile(NS)
    assert config_text(api) == text


async def test_after_a_restart_an_unchanged_pass_still_knows_its_own_write_coming_back(api: FakeApi) -> None:
    first, _ = make(api)
    await first.reconcile(NS)
    restarted, _ = make(api)
    await restarted.reconcile(NS)
    triggered: list[str] = []
    restarted.trigger = triggered.append  # type: ignore[method-assign]
    assert not restarted.on_secret_event("MODIFIED", api.secrets[(NS, "symbol-proxy-config")])
    assert triggered == []


async def test_refusing_a_foreign_secret_names_the_label_it_lacks(api: FakeApi) -> None:
    api.put_secret(NS, secret("symbol-proxy-config", {"proxy.yaml": "mine"}))
    reconciler, _ = make(api)
    with pytest.raises(RenderError) as caught:
        await reconciler.reconcile(NS)
    assert "(label app.kubernetes.io/managed-by=symbol-operator)" in str(caught.value)


class Gated(FakeApi):
    """Listing namespace ``slow`` waits until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def list_sources(self, namespace: str) -> list[dict[str, Any]]:
        if namespace == "slow":
            await self.gate.wait()
        return await super().list_sources(namespace)


async def test_the_reconciler_is_not_idle_while_any_namespace_is_being_reconciled() -> None:
    api = fill(Gated())
    reconciler, _ = make(api)
    try:
        reconciler.trigger("slow")
        await poll(lambda: not reconciler.idle and api.calls == 0)
        reconciler.trigger(NS)
        await poll(lambda: (NS, "symbol-proxy-config") in api.secrets and reconciler.passes == 1)
        assert not reconciler.idle  # "slow" is still in its pass
        api.gate.set()
        await poll(lambda: reconciler.passes == 2 and reconciler.idle)
    finally:
        await reconciler.stop()
