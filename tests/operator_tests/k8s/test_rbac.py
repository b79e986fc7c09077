"""The operator runs as a ServiceAccount holding only the rules of ``examples/k8s/rbac.yaml`` (a token
from the TokenRequest API, in a kubeconfig of its own) and everything it does still works, with no
403 anywhere in its output: namespaced (RoleBinding to the ClusterRole) and cluster-wide
(ClusterRoleBinding)."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from symbol_operator.models import API_VERSION
from tests.operator_tests.k8s.conftest import running_operator
from tests.operator_tests.k8s.kube import Kube, KubeError, wait_for
from tests.operator_tests.manifests import EXAMPLES, secret
from tests.operator_tests.manifests import example_documents as _documents

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(180)]

CONFIG = "symbol-proxy-config"


def rbac(kind: str) -> dict[str, Any]:
    for path, document in _documents():
        if path == EXAMPLES / "rbac.yaml" and document["kind"] == kind:
            return copy.deepcopy(document)
    raise LookupError(kind)


def grant(kube: Kube, namespace: str, *, cluster_wide: bool) -> None:
    """The example's ServiceAccount (in the test namespace), ClusterRole, and a binding."""
    account = rbac("ServiceAccount")
    account["metadata"]["namespace"] = namespace
    kube.apply(account)
    kube.apply(rbac("ClusterRole"))
    subject = {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": namespace}
    if cluster_wide:
        binding = rbac("ClusterRoleBinding")
        binding["metadata"]["name"] = f"symbol-operator-{namespace}"
        binding["subjects"] = [subject]
    else:
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "symbol-operator", "namespace": namespace},
            "roleRef": rbac("ClusterRoleBinding")["roleRef"],
            "subjects": [subject],
        }
    kube.apply(binding)


def source(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "SymbolSource", "metadata": {"name": name}, "spec": spec}


def rendered_ids(kube: Kube, namespace: str) -> list[str] | None:
    body = kube.get("Secret", CONFIG, namespace)
    if body is None:
        return None
    return [s["id"] for s in yaml.safe_load(base64.b64decode(body["data"]["proxy.yaml"]))["sources"]]


def ready_reason(kube: Kube, namespace: str, name: str) -> str | None:
    status = (kube.get("SymbolSource", name, namespace) or {}).get("status") or {}
    return next((c["reason"] for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


@pytest.mark.parametrize("cluster_wide", [False, True], ids=["namespaced", "cluster-wide"])
def test_the_operator_needs_nothing_beyond_the_example_rbac(
    kube: Kube,
    namespace: str,
    control_plane: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    cluster_wide: bool,
) -> None:
    grant(kube, namespace, cluster_wide=cluster_wide)
    token = kube.token("symbol-operator", namespace)
    kubeconfig = tmp_path / "operator.kubeconfig"
    control_plane.token_kubeconfig(token, kubeconfig)
    as_operator = Kube(kubeconfig)
    assert as_operator.get("Secret", CONFIG, namespace) is None  # the token works; nothing rendered yet
    with pytest.raises(KubeError) as denied:
        as_operator.patch("Secret", "creds-elsewhere", namespace, {"metadata": {"labels": {"x": "y"}}})
    assert denied.value.status == 403  # and it is narrow: no writes to other Secrets

    kube.create(secret("creds", {"token": "t1"}), namespace)
    kube.create(source("fs", {"type": "filesystem", "filesystem": {"path": "/srv"}}), namespace)
    kube.create(
        source(
            "bucket",
            {
                "type": "gcs",
                "gcs": {"bucket": "b", "bearerToken": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            },
        ),
        namespace,
    )
    kube.create(
        source(
            "orphan",
            {
                "type": "gcs",
                "gcs": {"bucket": "o", "bearerToken": {"secretKeyRef": {"name": "absent", "key": "k"}}},
            },
        ),
        namespace,
    )

    scope: dict[str, Any] = {"all_namespaces": True} if cluster_wide else {"namespaces": [namespace]}
    with running_operator(monkeypatch, kubeconfig=kubeconfig, **scope) as operator:
        wait_for(
            lambda: rendered_ids(kube, namespace) == ["bucket", "fs"], what="rendered as the ServiceAccount"
        )
        wait_for(lambda: ready_reason(kube, namespace, "orphan") == "SecretNotFound", what="status patched")
        kube.patch("Secret", "creds", namespace, {"stringData": {"token": "t2"}})  # update by name
        kube.delete("SymbolSource", "bucket", namespace)
        wait_for(lambda: rendered_ids(kube, namespace) == ["fs"], what="update of the rendered Secret")
        kube.delete("SymbolSource", "fs", namespace)
        kube.delete("SymbolSource", "orphan", namespace)
        wait_for(lambda: kube.get("Secret", CONFIG, namespace) is None, what="delete of the rendered Secret")
        events = [e for e in kube.list("Event", namespace) if e["involvedObject"]["name"] == "orphan"]
        assert [e["reason"] for e in events] == ["SecretNotFound"]
        assert operator.sample("symbol_operator_secret_writes_total", operation="create") >= 1
    output = operator.runner.output
    assert "Forbidden" not in output
    assert "forbidden" not in output.lower()  # the API server's "... is forbidden: User ..." too
    assert "APIForbiddenError" not in output
