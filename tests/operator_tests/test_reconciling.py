"""The namespace reconciler against an in-memory API: what it writes, and above all what it does not.

Covers: first pass (Secret created with label and hash annotation, statuses, events), no write on an
unchanged pass nor after a restart, one update on a Secret rotation, SecretNotFound and recovery,
deleting the last source, refusing to overwrite a foreign Secret, which watch events trigger a pass,
debouncing a burst into one pass, and retrying after an API error.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from symbol_operator import kubeapi
from symbol_operator.metrics import Metrics
from symbol_operator.options import OperatorOptions
from symbol_operator.reconciling import CONFIG_HASH_ANNOTATION, Reconciler
from symbol_operator.render import RenderError
from symbol_proxy.config import load_text
from tests.operator_tests.fakeapi import FakeApi
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
