"""``symbol-service serve`` in its default mode against a real API server: each request created
through the REST API is a SymbolRequest that ``kubectl get symbolrequests`` lists (server-side
printing, the CRD's columns); a seal through REST shows there; the name is unique (409
``RequestExistsException`` from the object name); a ``kubectl delete`` is a delete for REST clients,
and a REST delete removes the object."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from symbol_service import tokens
from symbol_service.kuberequests import object_name
from tests.operator_tests.k8s.kube import Kube
from tests.service.test_cli import start_service, write_config
from tests.support.net import free_port

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(120)]


class Client:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.auth = "Basic " + base64.b64encode(f":{token}".encode()).decode()

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{self.base}/org/_apis/symbol/{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json", "Authorization": self.auth},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)


def test_rest_and_kubectl_are_two_views_of_one_request(kube: Kube, namespace: str, tmp_path: Path) -> None:
    port = free_port()
    token = tokens.new_token()
    config = write_config(tmp_path, port, token)
    scopes = ["vso.symbols_write", "vso.symbols_manage"]
    (tmp_path / "tokens.yaml").write_text(
        yaml.safe_dump([{"name": "ci", "hash": tokens.hash_token(token), "scopes": scopes}])
    )
    process = start_service(config, port, options=("--namespace", namespace), output=subprocess.PIPE)
    client = Client(f"http://127.0.0.1:{port}", token)
    try:
        status, created = client.call("POST", "requests", {"name": "Team/Build/42", "description": "ci"})
        assert status == 201, created
        table = kube.table("SymbolRequest", namespace)
        columns = [c["name"] for c in table["columnDefinitions"]]
        rows = {row["cells"][0]: dict(zip(columns, row["cells"], strict=True)) for row in table["rows"]}
        assert rows[object_name("Team/Build/42")]["Request"] == "Team/Build/42"
        assert rows[object_name("Team/Build/42")]["Status"] == "Created"
        stored = kube.get("SymbolRequest", object_name("Team/Build/42"), namespace)
        assert stored is not None
        assert stored["spec"]["requestId"] == created["id"]
        assert created["storageETag"] == stored["metadata"]["resourceVersion"]

        status, error = client.call("POST", "requests", {"name": "TEAM/build/42"})
        assert (status, error["typeKey"]) == (409, "RequestExistsException")

        status, sealed = client.call("PATCH", f"requests/{created['id']}", {"status": "sealed"})
        assert status == 200, sealed
        stored = kube.get("SymbolRequest", object_name("Team/Build/42"), namespace)
        assert stored is not None
        assert stored["spec"]["sealed"] is True and stored["status"]["requestStatus"] == "Sealed"
        status, stale = client.call(
            "PATCH", f"requests/{created['id']}", {"status": "sealed", "storageETag": created["storageETag"]}
        )
        assert (status, stale["typeKey"]) == (409, "RequestUpdateConflictException")

        kube.delete("SymbolRequest", object_name("Team/Build/42"), namespace)
        status, gone = client.call("GET", f"requests/{created['id']}")
        assert (status, gone["typeKey"]) == (404, "RequestNotFoundException")

        status, other = client.call("POST", "requests", {"name": "Team/Build/43"})
        assert status == 201
        status, _ = client.call("DELETE", f"requests/{other['id']}?synchronous=true")
        assert status == 200
        assert kube.get("SymbolRequest", object_name("Team/Build/43"), namespace) is None
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert token.encode() not in output
    assert b"DEVELOPMENT MODE" not in output
