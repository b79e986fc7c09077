"""The webhook's HTTP surface without a cluster: AdmissionReviews in and out, what is not a Pod CREATE
passes untouched, a body that is not a review gets 400, a refused pod gets allowed=false and a reason,
and the flags are checked at start."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from symbol_operator.cli import build_parser
from symbol_operator.webhook import injection, serving
from tests.support.controlplane import _certificate, _pem_cert, _pem_key
from tests.support.net import free_port

SETTINGS = injection.Settings(image="registry.example.com/symbol-operator:test")


def review(obj: dict[str, Any], *, operation: str = "CREATE", kind: str = "Pod") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": kind},
            "operation": operation,
            "namespace": "team-a",
            "object": obj,
        },
    }


def pod(annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"generateName": "x-", "annotations": annotations},
        "spec": {"containers": [{"name": "a"}]},
    }


@pytest.fixture
async def client(aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(serving.create_app(SETTINGS))


async def answer(client: TestClient, path: str, body: Any) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status == 200
    result: dict[str, Any] = await response.json()
    return result


async def test_an_annotated_pod_gets_a_json_patch(client: TestClient) -> None:
    result = await answer(client, "/inject/pod", review(pod({injection.INJECT: "true"})))
    assert result["kind"] == "AdmissionReview"
    response = result["response"]
    assert response["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    assert patch == injection.patch_for(pod({injection.INJECT: "true"}), "pod", SETTINGS)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/inject/pod", review(pod({}))),
        ("/inject/namespace", review(pod({injection.INJECT: "false"}))),
        ("/inject/pod", review(pod({injection.INJECT: "true"}), operation="UPDATE")),
        ("/inject/pod", review({"metadata": {}}, kind="ConfigMap")),
    ],
    ids=["unannotated", "refused-in-namespace", "update", "not-a-pod"],
)
async def test_everything_else_passes_untouched(client: TestClient, path: str, body: Any) -> None:
    response = (await answer(client, path, body))["response"]
    assert response == {"uid": body["request"]["uid"], "allowed": True}


async def test_the_namespace_route_injects_unannotated_pods(client: TestClient) -> None:
    response = (await answer(client, "/inject/namespace", review(pod({}))))["response"]
    assert response["patchType"] == "JSONPatch"


async def test_a_bad_annotation_is_refused_with_its_name(client: TestClient) -> None:
    body = review(pod({injection.INJECT: "true", injection.PORT: "http"}))
    response = (await answer(client, "/inject/pod", body))["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 400 and injection.PORT in response["status"]["message"]


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"request": {}}'])
async def test_a_body_that_is_not_a_review_is_a_400(client: TestClient, body: bytes) -> None:
    response = await client.post("/inject/pod", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert "error" in await response.json()


def test_bad_defaults_fail_at_start() -> None:
    args = build_parser().parse_args(
        ["webhook", "--tls-cert=c", "--tls-key=k", "--proxy-image=i", "--cache-size=lots"]
    )
    with pytest.raises(injection.InjectionError, match="lots"):
        serving.settings_from_args(args)


def write_pair(directory: Path, subject: str) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(f"{subject} CA", ca_key, None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(subject, key, (ca, ca_key), sans=["127.0.0.1"])
    # Written next to the files and renamed over them, as the kubelet swaps a Secret's files.
    for name, data in (("tls.crt", _pem_cert(cert)), ("tls.key", _pem_key(key))):
        (directory / f".{name}.new").write_bytes(data)
        (directory / f".{name}.new").rename(directory / name)


def served_subject(port: int) -> str:
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=10)
    name = x509.load_pem_x509_certificate(pem.encode()).subject
    return str(name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


async def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    write_pair(tmp_path, "first")
    certificates = serving.CertificateFiles(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"))
    runner = web.AppRunner(serving.create_app(SETTINGS))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=certificates.context).start()
    loop = asyncio.get_running_loop()
    try:
        assert await loop.run_in_executor(None, served_subject, port) == "first"
        assert certificates.reload_if_changed() is False
        write_pair(tmp_path, "second")
        assert certificates.reload_if_changed() is True
        assert await loop.run_in_executor(None, served_subject, port) == "second"
        (tmp_path / "tls.key").write_text("not a key")
        assert certificates.reload_if_changed() is False  # a broken pair keeps the previous one
        assert await loop.run_in_executor(None, served_subject, port) == "second"
    finally:
        await runner.cleanup()
