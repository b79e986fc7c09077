"""``symbol_operator.kubeapi`` (the official client in a thread pool) against the real API server:
its refusals arrive as our errors (404 → ``None`` for reads, 409 for a second create and for a stale
delete precondition, 422, 403 under RBAC), lists follow ``continue`` tokens, Events are written, an
unreachable server is ``Unavailable``, and a ServiceAccount token that stops working (the account
was re-created, as after a rotation) is replaced by the one now mounted, after one 401."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from symbol_operator import kubeapi
from symbol_operator.models import API_VERSION
from tests.operator_tests.k8s.kube import Kube, KubeError, wait_for
from tests.operator_tests.manifests import secret
from tests.support.controlplane import ControlPlane, kubeconfig_document
from tests.support.net import free_port

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(120)]


def source(name: str) -> dict[str, Any]:
    spec = {"type": "filesystem", "filesystem": {"path": "/srv/symbols"}}
    return {"apiVersion": API_VERSION, "kind": "SymbolSource", "metadata": {"name": name}, "spec": spec}


async def test_refusals_of_the_api_server_arrive_as_our_errors(kube: Kube, namespace: str) -> None:
    api = kubeapi.KubeApi()
    try:
        assert await api.get_secret(namespace, "absent") is None
        created = await api.create_secret(namespace, secret("creds", {"token": "t1"}))
        assert created["metadata"]["resourceVersion"]
        with pytest.raises(kubeapi.Conflict, match="already exists"):
            await api.create_secret(namespace, secret("creds", {"token": "t2"}))
        patched = await api.patch_secret(namespace, "creds", {"metadata": {"labels": {"rotated": "yes"}}})
        assert patched["metadata"]["labels"] == {"rotated": "yes"}
        assert patched["data"] == created["data"]  # a merge patch: the rest is kept
        with pytest.raises(kubeapi.Conflict):  # the precondition names the version before the patch
            await api.delete_secret(namespace, "creds", created["metadata"]["resourceVersion"])
        await api.delete_secret(namespace, "creds", patched["metadata"]["resourceVersion"])
        assert kube.get("Secret", "creds", namespace) is None
        with pytest.raises(kubeapi.Invalid):
            await api.create_secret(namespace, secret("Not_A_Name", {"token": "t"}))
        with pytest.raises(kubeapi.NotFound):
            await api.patch_source_status(namespace, "absent", {"observedGeneration": 1})
    finally:
        await api.close()


async def test_lists_follow_continue_tokens_and_events_are_written(
    kube: Kube, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(5):
        kube.create(source(f"s{index}"), namespace)
    monkeypatch.setattr(kubeapi, "PAGE_SIZE", 2)
    api = kubeapi.KubeApi()
    try:
        items = await api.list_sources(namespace)
        assert sorted(item["metadata"]["name"] for item in items) == [f"s{n}" for n in range(5)]
        uid = items[0]["metadata"]["uid"]
        name = items[0]["metadata"]["name"]
        await api.post_event(
            namespace, {"name": name, "uid": uid}, type_="Warning", reason="Tested", message="from the test"
        )
        status = await api.patch_source_status(namespace, name, {"observedGeneration": 1})
        assert status["status"]["observedGeneration"] == 1
    finally:
        await api.close()
    (event,) = kube.list("Event", namespace)
    assert event["involvedObject"]["uid"] == uid and event["involvedObject"]["kind"] == "SymbolSource"
    assert (event["type"], event["reason"], event["message"]) == ("Warning", "Tested", "from the test")


async def test_an_unreachable_api_server_is_unavailable(
    control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "kubeconfig"
    server = f"https://127.0.0.1:{free_port()}"
    config.write_text(kubeconfig_document(server, control_plane.ca_file.read_bytes(), "t", "u"))
    monkeypatch.setenv("KUBECONFIG", str(config))
    api = kubeapi.KubeApi(timeout=5)
    try:
        with pytest.raises(kubeapi.Unavailable):
            await api.get_secret("default", "anything")
    finally:
        await api.close()


def service_account(kube: Kube, namespace: str) -> None:
    """A ServiceAccount that may read Secrets in ``namespace`` only."""
    kube.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader", "namespace": namespace}}
    )
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "reader", "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
        }
    )
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        }
    )


def refused(client: Kube, namespace: str) -> bool:
    """Whether the API server now answers 401 (it caches accepted tokens for a few seconds)."""
    try:
        client.get("Secret", "creds", namespace)
    except KubeError as exc:
        return exc.status == 401
    return False


async def test_in_cluster_a_replaced_service_account_token_is_read_again_after_a_401(
    kube: Kube,
    control_plane: ControlPlane,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As in a pod: KUBERNETES_SERVICE_HOST/PORT and a mounted token with the cluster's CA."""
    mount = tmp_path / "serviceaccount"
    mount.mkdir()
    (mount / "ca.crt").write_bytes(control_plane.ca_file.read_bytes())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(control_plane.api_port))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))  # the mount must be what is used
    service_account(kube, namespace)
    kube.create(secret("creds", {"token": "t"}), namespace)
    old_token = kube.token("reader", namespace)
    (mount / "token").write_text(old_token)
    api = kubeapi.KubeApi(functools.partial(kubeapi.load_configuration, service_account=mount))
    try:
        assert (await api.get_secret(namespace, "creds") or {})["metadata"]["name"] == "creds"
        with pytest.raises(kubeapi.Forbidden, match="secrets"):  # it is the ServiceAccount that asks
            await api.get_secret("default", "anything")
        # The account is re-created: its old token is now refused (401), and the kubelet has
        # mounted a new one. The client would re-read the file only a minute later by itself.
        kube.delete("ServiceAccount", "reader", namespace)
        service_account(kube, namespace)
        (mount / "token").write_text(kube.token("reader", namespace))
        old = Kube(control_plane.token_kubeconfig(old_token, tmp_path / "old.kubeconfig"))
        wait_for(lambda: refused(old, namespace), timeout=60, what="the old token to be refused")
        assert (await api.get_secret(namespace, "creds") or {})["metadata"]["name"] == "creds"
    finally:
        await api.close()
