"""The real kube-apiserver calls the injection webhook over TLS.

The webhook runs as ``symbol-operator webhook`` (a subprocess, with a certificate of a test CA for
127.0.0.1) and the MutatingWebhookConfiguration is the chart's, with ``clientConfig.url`` pointing at
it because the test control plane has no kube-proxy to reach a Service. Covered: an annotated Pod comes
back injected, an unannotated one unchanged, a re-submitted injected Pod is not injected twice, a
labelled namespace injects every pod except those that refuse, a bad annotation is refused with its
name, the pods a Deployment's ReplicaSet creates (kube-controller-manager running) are injected, and
the proxy started with exactly the injected container spec (mounts mapped to local
directories) serves a fixture file from the configuration the operator rendered.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from symbol_operator.models import API_VERSION
from symbol_operator.webhook import injection
from tests.operator_tests.chart import find, render
from tests.operator_tests.k8s.conftest import running_operator
from tests.operator_tests.k8s.kube import Kube, KubeError, wait_for
from tests.support.controlplane import _certificate, _pem_cert, _pem_key
from tests.support.net import free_port
from tests.support.shared import keyed_objects

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(240)]

IMAGE = "registry.example.com/symbol-operator:webhook-test"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def webhook_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, bytes]]:
    """``symbol-operator webhook`` on a free loopback port: (base URL, CA certificate PEM)."""
    workdir = tmp_path_factory.mktemp("webhook")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("webhook test CA", ca_key, None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate("webhook", key, (ca, ca_key), sans=["127.0.0.1"])
    (workdir / "tls.crt").write_bytes(_pem_cert(cert))
    (workdir / "tls.key").write_bytes(_pem_key(key))
    (workdir / "ca.crt").write_bytes(_pem_cert(ca))
    port = free_port()
    log = (workdir / "webhook.log").open("wb")
    process = subprocess.Popen(
        [
            str(BIN / "symbol-operator"),
            "webhook",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--tls-cert={workdir / 'tls.crt'}",
            f"--tls-key={workdir / 'tls.key'}",
            f"--proxy-image={IMAGE}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"https://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, (workdir / "webhook.log").read_text()
        try:
            return requests.get(f"{url}/healthz", verify=str(workdir / "ca.crt"), timeout=2).ok
        except requests.RequestException:
            return False

    try:
        wait_for(healthy, timeout=60, interval=0.2, what="the webhook's /healthz over TLS")
        yield url, _pem_cert(ca)
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


@pytest.fixture
def injector(kube: Kube, webhook_url: tuple[str, bytes], tmp_path: Path) -> Iterator[str]:
    """The chart's MutatingWebhookConfiguration, pointed at the local webhook; removed afterwards."""
    url, ca = webhook_url
    configuration = find(render({}, tmp_path), "MutatingWebhookConfiguration")
    name = f"symbols-test-{secrets.token_hex(3)}"
    configuration["metadata"] = {"name": name}
    for webhook in configuration["webhooks"]:
        path = webhook["clientConfig"]["service"]["path"]
        webhook["clientConfig"] = {"url": url + path, "caBundle": base64.b64encode(ca).decode()}
        # A broken webhook must fail these tests, not be ignored.
        webhook["failurePolicy"] = "Fail"
    prefix = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    kube.request("POST", prefix, body=configuration)
    try:
        # The API server picks up webhook configurations asynchronously.
        time.sleep(1.5)
        yield name
    finally:
        with contextlib.suppress(KubeError):
            kube.request("DELETE", f"{prefix}/{name}")


def pod(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}], **spec},
    }


def create_pod(kube: Kube, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    return kube.request("POST", f"/api/v1/namespaces/{namespace}/pods", body=body)


def sidecars(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in body["spec"].get("initContainers") or [] if c["name"] == injection.CONTAINER_NAME]


def env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env") or []}


def test_the_api_server_injects_annotated_pods_only_and_only_once(
    kube: Kube, namespace: str, injector: str
) -> None:
    annotated = create_pod(kube, namespace, pod("annotated", {injection.INJECT: "true"}))
    [proxy] = sidecars(annotated)
    assert proxy["restartPolicy"] == "Always"
    assert proxy["image"] == IMAGE
    volumes = {v["name"]: v for v in annotated["spec"]["volumes"]}
    assert volumes[injection.CONFIG_VOLUME]["secret"]["secretName"] == "symbol-proxy-config"
    assert volumes[injection.CACHE_VOLUME]["emptyDir"]["sizeLimit"] == "5Gi"
    assert env(annotated["spec"]["containers"][0]) == injection.variables(8080)

    plain_body = pod("plain")
    plain = create_pod(kube, namespace, plain_body)
    assert "initContainers" not in plain["spec"]
    assert [c.get("env") for c in plain["spec"]["containers"]] == [None]
    assert injection.STATUS not in (plain["metadata"].get("annotations") or {})

    again = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "again", "annotations": annotated["metadata"]["annotations"]},
        "spec": {k: annotated["spec"][k] for k in ("initContainers", "containers", "volumes")},
    }
    resubmitted = create_pod(kube, namespace, again)
    assert len(sidecars(resubmitted)) == 1
    assert [v["name"] for v in resubmitted["spec"]["volumes"]] == [
        v["name"] for v in annotated["spec"]["volumes"]
    ]
    assert resubmitted["spec"]["containers"][0]["env"] == annotated["spec"]["containers"][0]["env"]


def test_a_labelled_namespace_injects_every_pod_that_does_not_refuse(kube: Kube, injector: str) -> None:
    name = f"opted-in-{secrets.token_hex(3)}"
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"symbols.symbol-operator.dev/inject": "enabled"}},
        }
    )
    assert len(sidecars(create_pod(kube, name, pod("plain")))) == 1
    assert sidecars(create_pod(kube, name, pod("refuses", {injection.INJECT: "false"}))) == []


def test_a_bad_annotation_is_refused_with_its_name(kube: Kube, namespace: str, injector: str) -> None:
    with pytest.raises(KubeError) as refused:
        create_pod(kube, namespace, pod("bad", {injection.INJECT: "true", injection.CACHE_SIZE: "lots"}))
    assert injection.CACHE_SIZE in refused.value.message
    # A pod that did not ask is not affected by the same annotation.
    create_pod(kube, namespace, pod("fine", {injection.CACHE_SIZE: "lots"}))


def test_the_proxy_started_with_the_injected_spec_serves_from_the_rendered_config(
    kube: Kube, namespace: str, injector: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fixture = next(obj for obj in keyed_objects() if obj.keys.get("symsrv"))
    key = fixture.keys["symsrv"][0]
    store = tmp_path / "store"
    (store / key).parent.mkdir(parents=True)
    (store / key).write_bytes(fixture.data)
    kube.create(
        {
            "apiVersion": API_VERSION,
            "kind": "SymbolSource",
            "metadata": {"name": "disk"},
            "spec": {
                "type": "filesystem",
                "filesystem": {"path": str(store)},
                "layout": {"type": "symstore"},
            },
        },
        namespace,
    )
    with running_operator(monkeypatch, [namespace]):
        secret = wait_for(
            lambda: kube.get("Secret", "symbol-proxy-config", namespace), what="the rendered Secret"
        )
    port = free_port()
    annotations = {injection.INJECT: "true", injection.PORT: str(port), injection.CACHE_SIZE: "64Mi"}
    body = create_pod(kube, namespace, pod("debugger", annotations))
    [proxy] = sidecars(body)

    # The pod's volumes, as local directories: the Secret's keys as files, the emptyDir empty.
    volumes = {v["name"]: v for v in body["spec"]["volumes"]}
    paths: dict[str, Path] = {}
    for mount in proxy["volumeMounts"]:
        local = tmp_path / "volumes" / mount["name"]
        local.mkdir(parents=True)
        source = volumes[mount["name"]]
        if "secret" in source:
            assert source["secret"]["secretName"] == secret["metadata"]["name"]
            for item, value in secret["data"].items():
                (local / item).write_bytes(base64.b64decode(value))
        else:
            assert "emptyDir" in source
        paths[mount["mountPath"]] = local

    def local_arg(arg: str) -> str:
        for mount_path, local in paths.items():
            arg = arg.replace(mount_path, str(local))
        return arg

    command = [str(BIN / proxy["command"][0]), *(local_arg(a) for a in proxy["args"])]
    log = (tmp_path / "proxy.log").open("wb")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env={"PATH": os.environ["PATH"], **env(proxy)}
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "proxy.log").read_text()
            try:
                return requests.get(f"{base}/healthz", timeout=2).ok
            except requests.RequestException:
                return False

        wait_for(ready, timeout=60, interval=0.2, what="the injected proxy")
        # The app container's variable names the sidecar; follow it.
        debuginfod = env(body["spec"]["containers"][0])["DEBUGINFOD_URLS"]
        assert debuginfod == f"{base}/"
        symbols = env(body["spec"]["containers"][0])["_NT_SYMBOL_PATH"].removeprefix("srv*")
        response = requests.get(f"{symbols}/{key}", timeout=30)
        assert response.status_code == 200
        assert response.content == fixture.data
        cache = paths[
            next(m["mountPath"] for m in proxy["volumeMounts"] if m["name"] == injection.CACHE_VOLUME)
        ]
        metrics = requests.get(f"{base}/metrics", timeout=10).text
        cap = next(line for line in metrics.splitlines() if line.startswith("symproxy_cache_max_size_bytes"))
        assert float(cap.split()[-1]) == int(64 * 2**20 * injection.CACHE_SHARE)
        assert any(cache.rglob("*")), "nothing cached in the emptyDir's directory"
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
    assert (
        yaml.safe_load((paths[injection.CONFIG_DIR] / "proxy.yaml").read_text())["sources"][0]["id"] == "disk"
    )


@pytest.fixture
def workload_controllers(control_plane: Any, tmp_path: Path) -> Iterator[None]:
    """kube-controller-manager running only the Deployment and ReplicaSet controllers, so Pods are
    created by the control plane itself, as in a cluster."""
    log = (tmp_path / "kube-controller-manager.log").open("wb")
    process = subprocess.Popen(
        [
            str(control_plane.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={control_plane.kubeconfig}",
            "--controllers=deployment,replicaset",
            "--leader-elect=false",
            "--use-service-account-credentials=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            f"--authentication-kubeconfig={control_plane.kubeconfig}",
            f"--authorization-kubeconfig={control_plane.kubeconfig}",
            f"--tls-cert-file={control_plane.workdir / 'pki' / 'apiserver.crt'}",
            f"--tls-private-key-file={control_plane.workdir / 'pki' / 'apiserver.key'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_a_deployments_pods_are_injected(
    kube: Kube, namespace: str, injector: str, workload_controllers: None
) -> None:
    template = pod("unused", {injection.INJECT: "true"})
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "crash-processor"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "crash-processor"}},
            "template": {
                "metadata": {
                    "labels": {"app": "crash-processor"},
                    "annotations": template["metadata"]["annotations"],
                },
                "spec": template["spec"],
            },
        },
    }
    kube.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body=deployment)

    def pods() -> list[dict[str, Any]]:
        items = kube.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": "app=crash-processor"}
        )
        found: list[dict[str, Any]] = items.get("items") or []
        return found if len(found) == 2 else []

    created = wait_for(pods, timeout=90, what="the Deployment's two pods")
    for body in created:
        assert len(sidecars(body)) == 1, body["metadata"]["name"]
        assert env(body["spec"]["containers"][0]) == injection.variables(8080)
