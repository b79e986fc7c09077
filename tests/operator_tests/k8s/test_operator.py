"""The operator against the real API server: the rendered Secret follows creates, edits, Secret
rotations and deletions; missing Secrets and keys are reported on the source and recover; a restart
writes nothing; and a proxy started on the rendered file serves real fixture files from a filesystem
and an HTTP source, sending the credential from the referenced Secret."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from symbol_operator.models import API_VERSION
from symbol_proxy.config import load_text
from tests.operator_tests.k8s.conftest import Operator, running_operator
from tests.operator_tests.k8s.kube import Kube, wait_for
from tests.operator_tests.manifests import secret
from tests.support.shared import keyed_objects
from tests.support.upstream import UpstreamStore

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(180)]

CONFIG = "symbol-proxy-config"


def symbol_source(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "SymbolSource", "metadata": {"name": name}, "spec": spec}


def token_ref(key: str = "token", name: str = "creds") -> dict[str, Any]:
    return {"secretKeyRef": {"name": name, "key": key}}


def rendered(kube: Kube, namespace: str) -> dict[str, Any] | None:
    body = kube.get("Secret", CONFIG, namespace)
    if body is None:
        return None
    return yaml.safe_load(base64.b64decode(body["data"]["proxy.yaml"]))  # type: ignore[no-any-return]


def ids(kube: Kube, namespace: str) -> list[str] | None:
    document = rendered(kube, namespace)
    return None if document is None else [source["id"] for source in document["sources"]]


def ready(kube: Kube, namespace: str, name: str) -> tuple[str, str, str] | None:
    """(status, reason, message) of the Ready condition, once it describes the current generation."""
    body = kube.get("SymbolSource", name, namespace) or {}
    status = body.get("status") or {}
    if status.get("observedGeneration") != body.get("metadata", {}).get("generation"):
        return None
    for condition in status.get("conditions") or []:
        if condition["type"] == "Ready" and condition["observedGeneration"] == status["observedGeneration"]:
            return condition["status"], condition["reason"], condition["message"]
    return None


def test_the_rendered_secret_follows_create_edit_rotation_and_delete(
    kube: Kube, namespace: str, operator: Operator
) -> None:
    kube.create(secret("creds", {"token": "t1\n"}), namespace)
    kube.create(
        symbol_source("local", {"type": "filesystem", "priority": 20, "filesystem": {"path": "/srv/a"}}),
        namespace,
    )
    kube.create(
        symbol_source(
            "bucket", {"type": "gcs", "priority": 10, "gcs": {"bucket": "b", "bearerToken": token_ref()}}
        ),
        namespace,
    )

    wait_for(lambda: ids(kube, namespace) == ["bucket", "local"], what="both sources rendered")
    document = rendered(kube, namespace)
    assert document is not None
    assert document["sources"][0]["bearer_token"] == "t1"
    body = kube.get("Secret", CONFIG, namespace)
    assert body is not None
    assert body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "symbol-operator"
    text = base64.b64decode(body["data"]["proxy.yaml"])
    assert body["metadata"]["annotations"]["symbols.symbol-operator.dev/config-hash"] == (
        "sha256:" + hashlib.sha256(text).hexdigest()
    )
    load_text(text.decode())
    for name in ("local", "bucket"):
        wait_for(lambda name=name: (ready(kube, namespace, name) or ("",))[0] == "True", what=f"{name} Ready")
    source = kube.get("SymbolSource", "bucket", namespace)
    assert source is not None
    assert source["status"]["configSecret"] == CONFIG
    assert source["status"]["endpoint"] == "gs://b"

    # An edit of a source: new order, observedGeneration follows.
    kube.patch("SymbolSource", "local", namespace, {"spec": {"priority": 5}})
    wait_for(lambda: ids(kube, namespace) == ["local", "bucket"], what="the new order")
    wait_for(lambda: ready(kube, namespace, "local"), what="observedGeneration 2")

    # A Secret rotation reaches the rendered configuration within seconds.
    started = time.monotonic()
    kube.patch("Secret", "creds", namespace, {"stringData": {"token": "t2"}})
    wait_for(
        lambda: (
            (rendered(kube, namespace) or {"sources": [{}, {}]})["sources"][1].get("bearer_token") == "t2"
        ),
        timeout=10,
        what="the rotated token",
    )
    assert time.monotonic() - started < 10

    # Deleting a source removes it; deleting the last one removes the Secret.
    kube.delete("SymbolSource", "bucket", namespace)
    wait_for(lambda: ids(kube, namespace) == ["local"], what="bucket removed")
    kube.delete("SymbolSource", "local", namespace)
    wait_for(lambda: kube.get("Secret", CONFIG, namespace) is None, what="the rendered Secret deleted")

    events = kube.list("Event", namespace)
    assert {(e["involvedObject"]["name"], e["reason"], e["type"]) for e in events} >= {
        ("local", "Rendered", "Normal"),
        ("bucket", "Rendered", "Normal"),
    }
    assert operator.sample("symbol_operator_secret_writes_total", operation="create") == 1
    assert operator.sample("symbol_operator_secret_writes_total", operation="delete") == 1


def test_a_missing_secret_or_key_is_reported_and_recovers(
    kube: Kube, namespace: str, operator: Operator
) -> None:
    kube.create(
        symbol_source(
            "sentry",
            {"type": "sentry", "sentry": {"url": "https://sentry.example.com/api/0/", "token": token_ref()}},
        ),
        namespace,
    )
    state = wait_for(lambda: ready(kube, namespace, "sentry"), what="a Ready condition")
    assert state == ("False", "SecretNotFound", "Secret 'creds' not found")
    assert ids(kube, namespace) == []
    assert "configSecret" not in (kube.get("SymbolSource", "sentry", namespace) or {})["status"]

    kube.create(secret("creds", {"other": "x"}), namespace)
    state = wait_for(
        lambda: (s := ready(kube, namespace, "sentry")) and s[1] == "SecretKeyMissing" and s,
        what="SecretKeyMissing",
    )
    assert state[2] == "Secret 'creds' has no key 'token'"

    kube.patch("Secret", "creds", namespace, {"stringData": {"token": "tok"}})
    wait_for(lambda: (ready(kube, namespace, "sentry") or ("",))[0] == "True", what="recovery")
    assert (rendered(kube, namespace) or {})["sources"][0]["token"] == "tok"

    reasons = [
        (e["reason"], e["type"])
        for e in kube.list("Event", namespace)
        if e["involvedObject"]["name"] == "sentry"
    ]
    assert ("SecretNotFound", "Warning") in reasons
    assert ("SecretKeyMissing", "Warning") in reasons
    assert ("Rendered", "Normal") in reasons


def test_a_restart_writes_nothing(kube: Kube, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kube.create(secret("creds", {"token": "t"}), namespace)
    for index in range(5):
        kube.create(
            symbol_source(
                f"s{index}", {"type": "gcs", "gcs": {"bucket": f"b{index}", "bearerToken": token_ref()}}
            ),
            namespace,
        )
    kube.create(
        symbol_source(
            "broken", {"type": "gcs", "gcs": {"bucket": "x", "bearerToken": token_ref(name="nope")}}
        ),
        namespace,
    )

    def settled() -> bool:
        states = [ready(kube, namespace, name) for name in ("s0", "s1", "s2", "s3", "s4", "broken")]
        return all(states) and len(ids(kube, namespace) or []) == 5

    with running_operator(monkeypatch, [namespace]):
        wait_for(settled, what="a stable rendered configuration")

    def versions() -> dict[str, str]:
        found = {"secret": (kube.get("Secret", CONFIG, namespace) or {})["metadata"]["resourceVersion"]}
        for body in kube.list("SymbolSource", namespace):
            found[body["metadata"]["name"]] = body["metadata"]["resourceVersion"]
        return found

    before = versions()
    with running_operator(monkeypatch, [namespace]) as restarted:
        wait_for(
            lambda: restarted.sample(
                "symbol_operator_reconciles_total", kind="ProxyConfig", outcome="unchanged"
            ),
            what="a reconcile pass after the restart",
        )
        wait_for(
            lambda: (
                restarted.sample("symbol_operator_reconciles_total", kind="SymbolSource", outcome="Rendered")
                >= 5
            ),
            what="every source visited",
        )
        time.sleep(1.0)  # a late write would show up here; nothing is polled, so this wait is the point
        assert restarted.sample("symbol_operator_secret_writes_total", operation="update") == 0
        assert restarted.sample("symbol_operator_secret_writes_total", operation="create") == 0
    assert versions() == before


async def test_a_proxy_started_on_the_rendered_file_serves_fixture_files(
    kube: Kube,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    aiohttp_server: Any,
) -> None:
    objects = [obj for obj in keyed_objects() if obj.keys.get("symsrv")]
    local, remote = objects[0], objects[1]
    local_key, remote_key = local.keys["symsrv"][0], remote.keys["symsrv"][0]
    store = tmp_path / "store"
    (store / local_key).parent.mkdir(parents=True)
    (store / local_key).write_bytes(local.data)
    upstream = UpstreamStore()
    upstream.put(remote_key, remote.data)
    upstream_server: TestServer = await aiohttp_server(upstream.app)
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"cache": {"dir": str(tmp_path / "cache")}}), encoding="utf-8")

    kube.create(secret("upstream-auth", {"authorization": "Bearer from-a-secret\n"}), namespace)
    kube.create(
        symbol_source(
            "disk",
            {
                "type": "filesystem",
                "priority": 1,
                "filesystem": {"path": str(store)},
                "layout": {"type": "symstore"},
            },
        ),
        namespace,
    )
    kube.create(
        symbol_source(
            "server",
            {
                "type": "http",
                "priority": 2,
                "http": {
                    "url": str(upstream_server.make_url("/")),
                    "headers": [
                        {"name": "Authorization", "valueFrom": token_ref("authorization", "upstream-auth")}
                    ],
                },
                "layout": {"type": "symstore"},
            },
        ),
        namespace,
    )

    with running_operator(monkeypatch, [namespace], base_config=base):
        wait_for(lambda: ids(kube, namespace) == ["disk", "server"], what="both sources rendered")
    body = kube.get("Secret", CONFIG, namespace)
    assert body is not None
    proxy_file = tmp_path / "proxy.yaml"
    proxy_file.write_bytes(base64.b64decode(body["data"]["proxy.yaml"]))

    from symbol_proxy.server.app import create_app

    config = load_text(proxy_file.read_text(encoding="utf-8"))
    assert config.cache.dir == str(tmp_path / "cache")
    proxy: TestServer = await aiohttp_server(create_app(config, registry=CollectorRegistry()))
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        for key, expected in ((local_key, local.data), (remote_key, remote.data)):
            async with http.get(proxy.make_url(f"/symbols/{key}")) as response:
                assert response.status == 200, key
                assert await response.read() == expected
        async with http.get(
            proxy.make_url("/symbols/missing.pdb/0123456789ABCDEF0123456789ABCDEF1/missing.pdb")
        ) as response:
            assert response.status == 404
    assert any(headers.get("Authorization") == "Bearer from-a-secret" for headers in upstream.headers_seen)
