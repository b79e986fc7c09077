"""A small synchronous Kubernetes client for tests (``requests``), built from a kubeconfig file.

Tests talk to the API server as an administrator through this client, while the operator under test
uses its own credentials; keeping the two apart is what lets the RBAC test prove something.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml

T = TypeVar("T")

PATHS: dict[str, tuple[str, str, bool]] = {
    # kind: (api prefix, plural, namespaced)
    "Namespace": ("/api/v1", "namespaces", False),
    "Secret": ("/api/v1", "secrets", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Event": ("/api/v1", "events", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "CustomResourceDefinition": ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    "SymbolSource": ("/apis/symbols.symbol-operator.dev/v1alpha1", "symbolsources", True),
    "SymbolRequest": ("/apis/symbols.symbol-operator.dev/v1alpha1", "symbolrequests", True),
}


class KubeError(Exception):
    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('message', body)}")
        self.status = status
        self.body = body
        self.message = str(body.get("message", ""))


def wait_for(
    check: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.1, what: str = ""
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or check}; last value: {last!r}")


class Kube:
    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(Path(kubeconfig).read_text(encoding="utf-8"))
        current = config.get("current-context")
        context = next(c["context"] for c in config["contexts"] if c["name"] == current)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self.server = cluster["server"].rstrip("/")
        self.session = requests.Session()
        # Not the environment's CA bundle (REQUESTS_CA_BUNDLE would win over session.verify): only
        # what the kubeconfig says.
        self.session.trust_env = False
        if cluster.get("certificate-authority-data"):
            handle = tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False)  # noqa: SIM115
            handle.write(base64.b64decode(cluster["certificate-authority-data"]))
            handle.close()
            self.session.verify = handle.name
        elif cluster.get("certificate-authority"):
            self.session.verify = cluster["certificate-authority"]
        if cluster.get("insecure-skip-tls-verify"):
            self.session.verify = False
        if user.get("token"):
            self.session.headers["Authorization"] = f"Bearer {user['token']}"
        if user.get("client-certificate") and user.get("client-key"):
            self.session.cert = (user["client-certificate"], user["client-key"])

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        data = None
        all_headers = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, str | bytes) else json.dumps(body)
            all_headers["Content-Type"] = content_type
        response = self.session.request(
            method, self.server + path, data=data, params=params, headers=all_headers, timeout=30
        )
        try:
            decoded = response.json() if response.content else {}
        except ValueError:
            decoded = {"message": response.text}
        if response.status_code >= 400:
            raise KubeError(response.status_code, decoded)
        return decoded  # type: ignore[no-any-return]

    @staticmethod
    def path(kind: str, namespace: str | None = None, name: str | None = None) -> str:
        prefix, plural, namespaced = PATHS[kind]
        path = (
            f"{prefix}/namespaces/{namespace}/{plural}" if namespaced and namespace else f"{prefix}/{plural}"
        )
        return f"{path}/{name}" if name else path

    def create(self, body: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
        namespace = namespace or body.get("metadata", {}).get("namespace")
        return self.request("POST", self.path(body["kind"], namespace), body=body)

    def apply(self, body: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Server-side apply (force), so re-running a test is idempotent."""
        namespace = namespace or body.get("metadata", {}).get("namespace")
        path = self.path(body["kind"], namespace, body["metadata"]["name"])
        return self.request(
            "PATCH",
            path,
            body=body,
            params={"fieldManager": "tests", "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self.request("GET", self.path(kind, namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None = None, **params: str) -> list[dict[str, Any]]:
        return list(self.request("GET", self.path(kind, namespace), params=params).get("items") or [])

    def patch(self, kind: str, name: str, namespace: str | None, patch: Mapping[str, Any]) -> dict[str, Any]:
        return self.request(
            "PATCH", self.path(kind, namespace, name), body=patch, content_type="application/merge-patch+json"
        )

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        try:
            self.request("DELETE", self.path(kind, namespace, name))
        except KubeError as exc:
            if exc.status != 404:
                raise

    def token(self, service_account: str, namespace: str, seconds: int = 3600) -> str:
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        }
        return str(self.request("POST", path, body=body)["status"]["token"])

    def table(self, kind: str, namespace: str) -> dict[str, Any]:
        """The list as kubectl prints it (server-side printing with the CRD's printer columns)."""
        return self.request(
            "GET",
            self.path(kind, namespace),
            headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        )
