"""The chart against the real API server: every rendered manifest accepted by a server-side dry-run
apply, then ``helm install`` into the test control plane, ``helm upgrade`` with changed values (the
generated webhook certificate is kept), ``helm test``'s pod created, and ``helm uninstall`` (CRDs kept,
as Helm does). Finally the operator, running with the token of exactly the ServiceAccount the chart
created and the RBAC it bound, reconciles a SymbolSource."""

from __future__ import annotations

import base64
import secrets
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from symbol_operator.models import API_VERSION, PUBLICATION_ANNOTATION, parse_source
from symbol_operator.render import render
from symbol_proxy.config import load_text
from symbol_service import tokens
from symbol_service.kuberequests import object_name
from tests.operator_tests.chart import CHART, helm, helm_binary, values_args
from tests.operator_tests.k8s.conftest import running_operator
from tests.operator_tests.k8s.kube import Kube, wait_for
from tests.operator_tests.k8s.test_publishing_kube import Client
from tests.operator_tests.k8s.test_request_lifecycle import lifecycle_operator
from tests.service.test_cli import start_service, write_config
from tests.support.net import free_port

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]

# Values sets without third-party kinds (no cert-manager or Prometheus Operator CRDs here).
DRY_RUN_MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"operator": {"watchNamespaces": ["default", "kube-public"]}},
    "locked-down": {
        "networkPolicy": {"enabled": True},
        "webhook": {"failurePolicy": "Fail", "replicas": 3, "podOptIn": False},
        "metrics": {"dashboard": {"enabled": True}},
        "sidecar": {"cpuLimit": "1", "memoryLimit": ""},
        "clusterCache": {"enabled": True},
    },
    "no-webhook": {"webhook": {"enabled": False}},
    "publishing": {
        "publishing": {
            "enabled": True,
            "store": {"id": "publish", "type": "s3", "bucket": "symbols", "region": "eu-west-1"},
            "credentialsSecret": {"name": "store-keys"},
            "tokens": {"secretName": "publish-tokens"},
            "publishSource": "publish",
            "ingress": {"enabled": True, "tls": [{"secretName": "t", "hosts": ["symbols.example.com"]}]},
        }
    },
}


def new_namespace(kube: Kube, stem: str) -> str:
    name = f"{stem}-{secrets.token_hex(3)}"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.mark.parametrize("name", list(DRY_RUN_MATRIX))
def test_every_rendered_manifest_is_accepted_by_the_api_server(
    name: str, kube: Kube, control_plane: Any, tmp_path: Path
) -> None:
    release_namespace = new_namespace(kube, "dry-run")
    values = DRY_RUN_MATRIX[name]
    args = [
        "template",
        "symbols",
        str(CHART),
        "--namespace",
        release_namespace,
        *values_args(values, tmp_path),
    ]
    manifests = helm(*args).stdout
    documents = [d for d in yaml.safe_load_all(manifests) if d]
    assert documents
    output = control_plane.kubectl(
        "apply", "--server-side", "--dry-run=server", "--field-manager=helm-test", "-f", "-", input=manifests
    )
    assert output.count("serverside-applied (server dry run)") == len(documents), output


def test_install_upgrade_test_hook_and_uninstall(
    kube: Kube, control_plane: Any, admin_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    release_namespace = new_namespace(kube, "release")
    watched = new_namespace(kube, "watched")
    release = f"sym-{secrets.token_hex(2)}"
    base = ["--namespace", release_namespace]
    first = {"operator": {"watchNamespaces": [watched]}}
    helm("install", release, str(CHART), *base, *values_args(first, tmp_path), kubeconfig=admin_kubeconfig)
    fullname = f"{release}-symbol-operator"
    webhook_name = f"{fullname}-webhook"
    tls = kube.get("Secret", f"{webhook_name}-tls", release_namespace)
    assert tls is not None
    prefix = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    configuration = kube.request("GET", f"{prefix}/{fullname}")
    assert {w["clientConfig"]["caBundle"] for w in configuration["webhooks"]} == {tls["data"]["ca.crt"]}
    deployment = kube.request(
        "GET", f"/apis/apps/v1/namespaces/{release_namespace}/deployments/{webhook_name}"
    )
    assert "--cache-size=5Gi" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]

    second = {**first, "sidecar": {"cacheSize": "2Gi"}, "webhook": {"replicas": 3}}
    helm("upgrade", release, str(CHART), *base, *values_args(second, tmp_path), kubeconfig=admin_kubeconfig)
    deployment = kube.request(
        "GET", f"/apis/apps/v1/namespaces/{release_namespace}/deployments/{webhook_name}"
    )
    assert deployment["spec"]["replicas"] == 3
    assert "--cache-size=2Gi" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    kept = kube.get("Secret", f"{webhook_name}-tls", release_namespace)
    assert kept is not None and kept["data"] == tls["data"], "the upgrade replaced the webhook certificate"
    configuration = kube.request("GET", f"{prefix}/{fullname}")
    assert {w["clientConfig"]["caBundle"] for w in configuration["webhooks"]} == {tls["data"]["ca.crt"]}

    # The operator with the token of exactly the chart's ServiceAccount and bindings.
    token = kube.token(fullname, release_namespace)
    operator_kubeconfig = control_plane.token_kubeconfig(token, tmp_path / "operator.kubeconfig")
    kube.create(
        {
            "apiVersion": API_VERSION,
            "kind": "SymbolSource",
            "metadata": {"name": "msdl"},
            "spec": {"type": "http", "http": {"url": "https://msdl.microsoft.com/download/symbols/"}},
        },
        watched,
    )
    with running_operator(monkeypatch, [watched], kubeconfig=operator_kubeconfig):
        secret = wait_for(
            lambda: kube.get("Secret", "symbol-proxy-config", watched), what="the rendered Secret"
        )
        wait_for(lambda: _ready(kube, watched, "msdl"), what="msdl Ready")
    document = yaml.safe_load(base64.b64decode(secret["data"]["proxy.yaml"]))
    assert [s["id"] for s in document["sources"]] == ["msdl"]

    # `helm test` creates its hook pod; without a kubelet it never runs, so only its creation is checked.
    hook = subprocess.run(
        [*_helm_command("test", release, *base, "--timeout=5s", kubeconfig=admin_kubeconfig)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "timed out" in (hook.stderr + hook.stdout) or hook.returncode == 0, hook.stderr
    assert kube.request("GET", f"/api/v1/namespaces/{release_namespace}/pods/{fullname}-test")

    helm("uninstall", release, *base, kubeconfig=admin_kubeconfig)
    assert kube.get("Secret", f"{webhook_name}-tls", release_namespace) is None
    assert kube.get("ClusterRole", fullname) is None
    missing = subprocess.run(
        _helm_command("status", release, *base, kubeconfig=admin_kubeconfig), capture_output=True, text=True
    )
    assert missing.returncode != 0
    for crd in ("symbolsources.symbols.symbol-operator.dev", "symbolrequests.symbols.symbol-operator.dev"):
        assert kube.get("CustomResourceDefinition", crd) is not None, f"uninstall removed the CRD {crd}"


def test_the_notes_opt_in_puts_the_cluster_cache_first_and_the_namespaces_sources_behind_it(
    kube: Kube, admin_kubeconfig: Path, tmp_path: Path
) -> None:
    release_namespace, team = new_namespace(kube, "cache"), new_namespace(kube, "team")
    values = values_args({"clusterCache": {"enabled": True}}, tmp_path)
    args = ["install", "symbols", str(CHART), "--namespace", release_namespace, "--dry-run=client", *values]
    notes = helm(*args, kubeconfig=admin_kubeconfig).stdout.split("NOTES:", 1)[1]
    block = notes[notes.rindex("\n", 0, notes.index(f"apiVersion: {API_VERSION}")) + 1 :]
    opt_in = yaml.safe_load(textwrap.dedent(block))  # the last lines of the notes
    public = {
        "apiVersion": API_VERSION,
        "kind": "SymbolSource",
        "metadata": {"name": "public"},
        "spec": {"type": "http", "http": {"url": "https://msdl.microsoft.com/download/symbols/"}},
    }
    created = [parse_source(kube.create(body, team)) for body in (public, opt_in)]  # the CRD accepts it
    rendering = render("team", created, {})
    assert rendering.rendered == ("cluster-cache", "public")
    rendered = load_text(rendering.text).sources
    assert [source.fallback for source in rendered] == [False, True]
    assert getattr(rendered[0], "url", "").startswith(
        f"http://symbols-symbol-operator-cache.{release_namespace}.svc:"
    )


def test_the_service_with_the_charts_service_account_keeps_requests_in_its_namespace_only(
    kube: Kube, control_plane: Any, admin_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    release_namespace, other = new_namespace(kube, "publish"), new_namespace(kube, "other")
    values = DRY_RUN_MATRIX["publishing"]
    release = f"pub-{secrets.token_hex(2)}"
    base = ["install", release, str(CHART), "--namespace", release_namespace, *values_args(values, tmp_path)]
    helm(*base, kubeconfig=admin_kubeconfig)
    service_account = f"{release}-symbol-operator-publishing"
    token = kube.token(service_account, release_namespace)
    monkeypatch.setenv(
        "KUBECONFIG", str(control_plane.token_kubeconfig(token, tmp_path / "service.kubeconfig"))
    )
    port, api_token = free_port(), tokens.new_token()
    config = write_config(tmp_path, port, api_token)  # a filesystem store: no S3 here
    for namespace, expected in ((release_namespace, 201), (other, 500)):
        process = start_service(config, port, options=("--namespace", namespace), output=subprocess.PIPE)
        try:
            status, created = Client(f"http://127.0.0.1:{port}", api_token).call(
                "POST", "requests", {"name": "Team/Build/7"}
            )
        finally:
            process.terminate()
            process.communicate(timeout=30)
        assert status == expected, created
        stored = kube.get("SymbolRequest", object_name("Team/Build/7"), namespace)
        if expected == 201:
            assert stored is not None and stored["spec"]["requestId"] == created["id"]
        else:  # the ServiceAccount's Role ends at its own namespace
            assert stored is None and created["typeKey"] == "InternalServerErrorException"
    helm("uninstall", release, "--namespace", release_namespace, kubeconfig=admin_kubeconfig)


def test_the_operators_lifecycle_runs_with_exactly_the_charts_rbac(
    kube: Kube, control_plane: Any, admin_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Service and operator each with the token of their chart ServiceAccount: a request sealed over
    REST is published (condition, the publish source's annotation), and a REST delete goes through
    the operator's finalizer; no call is forbidden."""
    release_namespace = new_namespace(kube, "lifecycle")
    values = {**DRY_RUN_MATRIX["publishing"], "operator": {"watchNamespaces": [release_namespace]}}
    release = f"lc-{secrets.token_hex(2)}"
    args = ["install", release, str(CHART), "--namespace", release_namespace, *values_args(values, tmp_path)]
    helm(*args, kubeconfig=admin_kubeconfig)
    fullname = f"{release}-symbol-operator"
    kubeconfigs = {
        account: control_plane.token_kubeconfig(
            kube.token(account, release_namespace), tmp_path / f"{account}.kc"
        )
        for account in (fullname, f"{fullname}-publishing")
    }
    kube.create(
        {
            "apiVersion": API_VERSION,
            "kind": "SymbolSource",
            "metadata": {"name": "publish"},
            "spec": {"type": "http", "http": {"url": "http://127.0.0.1:9/symbols/"}},
        },
        release_namespace,
    )
    port, api_token = free_port(), tokens.new_token()
    config = write_config(tmp_path, port, api_token)  # a filesystem store: no S3 here
    (tmp_path / "tokens.yaml").write_text(
        yaml.safe_dump(
            [{"name": "ci", "hash": tokens.hash_token(api_token), "scopes": ["vso.symbols_manage"]}]
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfigs[f"{fullname}-publishing"]))
    service = start_service(config, port, options=("--namespace", release_namespace), output=subprocess.PIPE)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfigs[fullname]))
    client = Client(f"http://127.0.0.1:{port}", api_token)
    name = object_name("Team/Build/8")
    try:
        with lifecycle_operator(
            config, release_namespace, source="publish", operator_settings=True
        ) as runner:
            status, created = client.call("POST", "requests", {"name": "Team/Build/8"})
            assert status == 201, created
            status, sealed = client.call("PATCH", f"requests/{created['id']}", {"status": "sealed"})
            assert status == 200, sealed
            wait_for(
                lambda: _condition(kube.get("SymbolRequest", name, release_namespace), "Published"),
                what="Published",
            )
            source = kube.get("SymbolSource", "publish", release_namespace) or {}
            assert PUBLICATION_ANNOTATION in source["metadata"].get("annotations", {})
            status, _ = client.call("DELETE", f"requests/{created['id']}?synchronous=true")
            assert status == 200
            wait_for(lambda: kube.get("SymbolRequest", name, release_namespace) is None, what="deleted")
        assert "Forbidden" not in runner.output, runner.output
    finally:
        service.terminate()
        service.communicate(timeout=30)
    helm("uninstall", release, "--namespace", release_namespace, kubeconfig=admin_kubeconfig)


def _condition(body: dict[str, Any] | None, kind: str) -> bool:
    conditions = ((body or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == kind and c["status"] == "True" for c in conditions)


def _ready(kube: Kube, namespace: str, name: str) -> bool:
    status = (kube.get("SymbolSource", name, namespace) or {}).get("status") or {}
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])


def _helm_command(*args: str, kubeconfig: Path) -> list[str]:
    return [str(helm_binary()), *args, f"--kubeconfig={kubeconfig}"]
