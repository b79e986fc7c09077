"""The test control plane itself: the pinned release, a verified TLS chain, RBAC that really denies,
ServiceAccount tokens from the TokenRequest API, and the controllers tests can switch on (garbage
collector, namespace lifecycle)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests

from tests.operator_tests.k8s.kube import Kube, KubeError, wait_for
from tests.support.controlplane import ControlPlane

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(180)]

VERSIONS = Path(__file__).resolve().parents[2] / "controlplane" / "versions.env"


def pinned(name: str) -> str:
    match = re.search(rf"^{name}=(\S+)$", VERSIONS.read_text(encoding="utf-8"), re.M)
    assert match, name
    return match.group(1)


def test_the_server_is_the_pinned_release_behind_the_test_ca(control_plane: ControlPlane) -> None:
    response = requests.get(f"{control_plane.server}/version", verify=str(control_plane.ca_file), timeout=10)
    assert response.json()["gitVersion"] == pinned("KUBERNETES_VERSION")
    client = json.loads(control_plane.kubectl("version", "--output=json"))
    assert client["clientVersion"]["gitVersion"] == pinned("KUBERNETES_VERSION")
    with pytest.raises(requests.exceptions.SSLError):  # not trusted without the test CA
        requests.get(f"{control_plane.server}/version", timeout=10)


def test_rbac_denies_a_service_account_without_bindings(
    control_plane: ControlPlane, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    kube.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody"}}, namespace)
    token = kube.token("nobody", namespace)
    nobody = Kube(control_plane.token_kubeconfig(token, tmp_path / "nobody.kubeconfig"))
    with pytest.raises(KubeError) as denied:
        nobody.list("Secret", namespace)
    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:nobody" in denied.value.message
    anonymous = requests.get(
        f"{control_plane.server}/api/v1/namespaces/{namespace}/secrets",
        verify=str(control_plane.ca_file),
        timeout=10,
    )
    assert anonymous.status_code in (401, 403)


def test_garbage_collection_and_namespace_deletion_with_the_controller_manager(
    control_plane: ControlPlane, kube: Kube, namespace: str
) -> None:
    control_plane.start_controller_manager()
    owner = kube.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}, "data": {}}, namespace
    )
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "owned", "ownerReferences": [reference]},
            "stringData": {"k": "v"},
        },
        namespace,
    )
    kube.delete("ConfigMap", "owner", namespace)
    wait_for(lambda: kube.get("Secret", "owned", namespace) is None, timeout=60, what="the cascade")

    kube.delete("Namespace", namespace)
    wait_for(lambda: kube.get("Namespace", namespace) is None, timeout=90, what="the namespace to go")
