"""The injection as a pure function, table by table: who is injected, what the sidecar looks like, the
app containers' variables, annotations that tune it, bad annotations, and idempotence (the patch applied
and offered again gives nothing)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from symbol_operator.webhook import injection
from symbol_operator.webhook.injection import INJECT, InjectionError, Settings, patch_for
from symbol_proxy.server import handlers
from tests.operator_tests.kubemodels import unknown_fields

SETTINGS = Settings(image="registry.example.com/symbol-operator:test")


def pod(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "app-"},
        "spec": {"containers": [{"name": "app", "image": "app:1"}], **spec},
    }
    if annotations is not None:
        body["metadata"]["annotations"] = annotations
    return body


def apply(body: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``add`` on object members, the only operation the webhook emits."""
    result = copy.deepcopy(body)
    for operation in patch:
        assert operation["op"] == "add"
        *parents, last = operation["path"].lstrip("/").split("/")
        target = result
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = operation["value"]
    return result


def injected(
    body: dict[str, Any], mode: injection.Mode = "pod", settings: Settings = SETTINGS
) -> dict[str, Any]:
    return apply(body, patch_for(body, mode, settings))


def sidecar(body: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in body["spec"]["initContainers"] if c["name"] == injection.CONTAINER_NAME)


def env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env") or []}


@pytest.mark.parametrize(
    ("annotations", "mode", "spec", "expected"),
    [
        (None, "pod", {}, False),
        ({}, "pod", {}, False),
        ({INJECT: "true"}, "pod", {}, True),
        ({INJECT: "True"}, "pod", {}, True),
        ({INJECT: "enabled"}, "pod", {}, True),
        ({INJECT: "false"}, "pod", {}, False),
        ({INJECT: "yes please"}, "pod", {}, False),
        ({"other/inject": "true"}, "pod", {}, False),
        (None, "namespace", {}, True),
        ({INJECT: "true"}, "namespace", {}, True),
        ({INJECT: "false"}, "namespace", {}, False),
        ({INJECT: "disabled"}, "namespace", {}, False),
        (None, "namespace", {"hostNetwork": True}, False),
    ],
)
def test_who_is_injected(
    annotations: dict[str, str] | None, mode: injection.Mode, spec: dict[str, Any], expected: bool
) -> None:
    body = pod(annotations, **spec)
    assert injection.wants_injection(body, mode) is expected
    assert bool(patch_for(body, mode, SETTINGS)) is expected


def test_an_injected_pod_has_a_native_sidecar_with_the_config_secret_and_a_capped_cache() -> None:
    body = injected(pod({INJECT: "true"}, initContainers=[{"name": "migrate", "image": "m:1"}]))
    names = [c["name"] for c in body["spec"]["initContainers"]]
    assert names == [injection.CONTAINER_NAME, "migrate"]  # first, so it serves the other init containers
    proxy = sidecar(body)
    assert proxy["restartPolicy"] == "Always"
    assert proxy["image"] == SETTINGS.image
    assert proxy["command"] == ["symbol-proxy"]
    volumes = {v["name"]: v for v in body["spec"]["volumes"]}
    mounts = {m["name"]: m for m in proxy["volumeMounts"]}
    config = volumes[mounts[injection.CONFIG_VOLUME]["name"]]
    assert config["secret"] == {"secretName": "symbol-proxy-config"}
    assert "subPath" not in mounts[injection.CONFIG_VOLUME]
    assert f"--config={mounts[injection.CONFIG_VOLUME]['mountPath']}/proxy.yaml" in proxy["args"]
    cache = volumes[injection.CACHE_VOLUME]["emptyDir"]
    assert cache == {"sizeLimit": "5Gi"}
    assert f"--cache-dir={mounts[injection.CACHE_VOLUME]['mountPath']}" in proxy["args"]
    assert f"--cache-max-size={int(5 * 2**30 * 0.9)}" in proxy["args"]
    security = proxy["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert body["metadata"]["labels"][injection.INJECTED_LABEL] == "true"
    assert body["metadata"]["annotations"][injection.STATUS] == SETTINGS.image


def test_app_containers_point_at_the_sidecar_unless_they_set_the_variables() -> None:
    body = injected(
        pod(
            {INJECT: "true", injection.PORT: "18080"},
            containers=[
                {"name": "plain", "image": "a"},
                {"name": "own", "image": "b", "env": [{"name": "DEBUGINFOD_URLS", "value": "https://mine/"}]},
            ],
        )
    )
    plain, own = body["spec"]["containers"]
    assert env(plain) == {
        "_NT_SYMBOL_PATH": "srv*http://127.0.0.1:18080/symbols",
        "DEBUGINFOD_URLS": "http://127.0.0.1:18080/",
    }
    assert env(own) == {
        "DEBUGINFOD_URLS": "https://mine/",
        "_NT_SYMBOL_PATH": "srv*http://127.0.0.1:18080/symbols",
    }
    assert "--port=18080" in sidecar(body)["args"]


@pytest.mark.parametrize(
    ("annotation", "value", "check"),
    [
        (injection.CACHE_SIZE, "2Gi", lambda b: b["spec"]["volumes"][-1]["emptyDir"]["sizeLimit"] == "2Gi"),
        (
            injection.CACHE_SIZE,
            "2Gi",
            lambda b: f"--cache-max-size={int(2 * 2**30 * 0.9)}" in sidecar(b)["args"],
        ),
        (injection.IMAGE, "mirror.local/proxy:2", lambda b: sidecar(b)["image"] == "mirror.local/proxy:2"),
        (injection.CPU, "250m", lambda b: sidecar(b)["resources"]["requests"]["cpu"] == "250m"),
        (injection.MEMORY, "128Mi", lambda b: sidecar(b)["resources"]["requests"]["memory"] == "128Mi"),
        (injection.MEMORY_LIMIT, "1Gi", lambda b: sidecar(b)["resources"]["limits"]["memory"] == "1Gi"),
        (injection.CPU_LIMIT, "1", lambda b: sidecar(b)["resources"]["limits"]["cpu"] == "1"),
    ],
)
def test_annotations_tune_the_sidecar(annotation: str, value: str, check: Any) -> None:
    assert check(injected(pod({INJECT: "true", annotation: value})))


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (injection.CACHE_SIZE, "lots"),
        (injection.CACHE_SIZE, "-1Gi"),
        (injection.PORT, "0"),
        (injection.PORT, "http"),
        (injection.PORT, "70000"),
        (injection.IMAGE, "two words"),
        (injection.CPU, "fast"),
        (injection.MEMORY_LIMIT, "1 Gi"),
    ],
)
def test_a_bad_annotation_is_an_error_naming_it(annotation: str, value: str) -> None:
    with pytest.raises(InjectionError, match=annotation):
        patch_for(pod({INJECT: "true", annotation: value}), "pod", SETTINGS)


def test_a_bad_annotation_on_a_pod_that_is_not_injected_is_ignored() -> None:
    assert patch_for(pod({INJECT: "false", injection.PORT: "http"}), "pod", SETTINGS) == []


@pytest.mark.parametrize(
    "spec",
    [{"hostNetwork": True}, {"volumes": [{"name": injection.CACHE_VOLUME, "emptyDir": {}}]}],
    ids=["host-network", "volume-name-taken"],
)
def test_pods_the_sidecar_cannot_join_are_refused_with_a_reason(spec: dict[str, Any]) -> None:
    with pytest.raises(InjectionError):
        patch_for(pod({INJECT: "true"}, **spec), "pod", SETTINGS)


@pytest.mark.parametrize("mode", ["pod", "namespace"])
def test_injecting_twice_changes_nothing(mode: injection.Mode) -> None:
    once = injected(pod({INJECT: "true"}), mode)
    assert patch_for(once, mode, SETTINGS) == []
    # Also when only the container is there (a pod written by hand after the example).
    by_hand = pod({INJECT: "true"}, initContainers=[{"name": injection.CONTAINER_NAME, "image": "x"}])
    assert patch_for(by_hand, mode, SETTINGS) == []


def test_the_patch_leaves_the_pod_it_was_given_alone() -> None:
    body = pod({INJECT: "true"})
    before = copy.deepcopy(body)
    patch_for(body, "pod", SETTINGS)
    assert body == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1048576", 2**20), ("5Gi", 5 * 2**30), ("500M", 500 * 10**6), ("1.5Gi", 3 * 2**29), ("1k", 1000)],
)
def test_quantities(text: str, expected: int) -> None:
    assert injection.quantity_bytes(text) == expected


# -------------------------------------------------------------------------------------------------
# The patch as the API server reads it: field names and types of the Pod API (from the Kubernetes
# client's models, generated from the API's OpenAPI document), so a misspelt field, which the API
# server would drop without a word (a probe without its action, a mount that is not read-only), fails.

PATCH_KINDS = {
    "/metadata/annotations": "dict(str, str)",
    "/metadata/labels": "dict(str, str)",
    "/spec/initContainers": "list[V1Container]",
    "/spec/containers": "list[V1Container]",
    "/spec/volumes": "list[V1Volume]",
}


@pytest.mark.parametrize(
    "settings",
    [SETTINGS, Settings(image="i:1", cpu_limit="1", memory_limit=None, run_as_user=2000)],
    ids=["defaults", "other-settings"],
)
def test_the_patch_uses_only_fields_and_types_of_the_pod_api(settings: Settings) -> None:
    body = pod(
        {INJECT: "true"}, containers=[{"name": "app", "image": "a", "env": [{"name": "X", "value": "1"}]}]
    )
    patch = patch_for(body, "pod", settings)
    assert sorted(operation["path"] for operation in patch) == sorted(PATCH_KINDS)
    for operation in patch:
        assert unknown_fields(operation["value"], PATCH_KINDS[operation["path"]], operation["path"]) == []


def test_a_misspelt_field_is_found_by_the_check_above() -> None:
    container = sidecar(injected(pod({INJECT: "true"})))
    broken = {**container, "startupProbe": {"httpget": {"path": "/healthz", "port": 8080}}}
    assert unknown_fields([broken], "list[V1Container]") == [
        "[0].startupProbe.httpget: not a field of V1Probe"
    ]
    assert unknown_fields([{**container, "ports": [{"containerPort": "8080"}]}], "list[V1Container]") != []


def test_the_sidecar_listens_on_loopback_is_probed_on_the_health_route_and_mounts_its_config_read_only() -> (
    None
):
    port, probe_port = 18081, 18082
    annotations = {INJECT: "true", injection.PORT: str(port), injection.PROBE_PORT: str(probe_port)}
    proxy = sidecar(injected(pod(annotations)))
    assert proxy["args"][0] == "serve"
    assert "--host=127.0.0.1" in proxy["args"]
    assert f"--port={port}" in proxy["args"] and f"--probe-port={probe_port}" in proxy["args"]
    assert proxy["imagePullPolicy"] == SETTINGS.image_pull_policy
    assert proxy["securityContext"]["runAsUser"] == SETTINGS.run_as_user
    health = {
        route.path for route in handlers.routes() if isinstance(route, web.RouteDef) and route.method == "GET"
    }
    for name in ("startupProbe", "readinessProbe"):
        action = proxy[name]["httpGet"]
        assert action["path"] == "/healthz" and action["path"] in health
        # The kubelet sends probes from the node: to the pod's address (no host), where only the
        # probe port listens; a probe of 127.0.0.1 would reach the node's own loopback.
        assert "host" not in action
        assert action["port"] == probe_port
    (port_spec,) = proxy["ports"]
    assert (port_spec["containerPort"], port_spec["protocol"]) == (probe_port, "TCP")
    mounts = {m["name"]: m for m in proxy["volumeMounts"]}
    assert mounts[injection.CONFIG_VOLUME]["readOnly"] is True
    assert not mounts[injection.CACHE_VOLUME].get("readOnly", False)


def test_the_sidecars_port_has_the_name_the_charts_pod_monitor_scrapes() -> None:
    templates = Path(__file__).resolve().parents[3] / "charts" / "symbol-operator" / "templates"
    text = (templates / "monitoring.yaml").read_text(encoding="utf-8")
    scraped = re.findall(r"podMetricsEndpoints:\s*\n\s*- port: (\S+)", text)
    assert scraped
    (port_spec,) = sidecar(injected(pod({INJECT: "true"})))["ports"]
    assert scraped == [port_spec["name"]]


@pytest.mark.parametrize(
    ("annotations", "mode", "expected"),
    [({INJECT: "no"}, "namespace", False), ({INJECT: "yes"}, "pod", True), ({INJECT: " YES "}, "pod", True)],
)
def test_yes_and_no_are_answers_too(
    annotations: dict[str, str], mode: injection.Mode, expected: bool
) -> None:
    assert injection.wants_injection(pod(annotations), mode) is expected


def test_a_pod_whose_app_container_is_named_like_the_sidecar_is_not_injected() -> None:
    body = pod({INJECT: "true"}, containers=[{"name": injection.CONTAINER_NAME, "image": "x"}])
    assert patch_for(body, "pod", SETTINGS) == []


@pytest.mark.parametrize("port", ["1", "65535"])
def test_the_port_range_ends_are_ports(port: str) -> None:
    assert f"--port={port}" in sidecar(injected(pod({INJECT: "true", injection.PORT: port})))["args"]


def test_one_past_the_last_port_is_refused() -> None:
    with pytest.raises(InjectionError, match="'65536' is not a port"):
        patch_for(pod({INJECT: "true", injection.PORT: "65536"}), "pod", SETTINGS)


def test_the_pods_own_volumes_labels_and_variables_are_kept() -> None:
    own_env = [{"name": "_NT_SYMBOL_PATH", "value": "srv*x"}, {"name": "DEBUGINFOD_URLS", "value": "y"}]
    body = pod({INJECT: "true"}, volumes=[{"name": "data", "emptyDir": {}}])
    body["metadata"]["labels"] = {"app": "demo"}
    body["spec"]["containers"] = [{"name": "app", "image": "a", "env": own_env}]
    result = injected(body)
    assert [v["name"] for v in result["spec"]["volumes"]] == [
        "data",
        injection.CONFIG_VOLUME,
        injection.CACHE_VOLUME,
    ]
    assert result["metadata"]["labels"] == {"app": "demo", injection.INJECTED_LABEL: "true"}
    assert result["spec"]["containers"] == body["spec"]["containers"]


@pytest.mark.parametrize(
    ("annotation", "value", "phrase"),
    [(injection.CACHE_SIZE, "lots", "'lots' is not a size"), (injection.PORT, "x", "'x'")],
)
def test_the_error_for_a_bad_annotation_quotes_the_value(annotation: str, value: str, phrase: str) -> None:
    with pytest.raises(InjectionError) as caught:
        patch_for(pod({INJECT: "true", annotation: value}), "pod", SETTINGS)
    assert f"annotation {annotation}: " in str(caught.value) and phrase in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "phrase"),
    [
        ({"hostNetwork": True}, "hostNetwork pods share the node's ports"),
        ({"volumes": [{"name": injection.CONFIG_VOLUME, "secret": {}}]}, repr(injection.CONFIG_VOLUME)),
    ],
    ids=["host-network", "volume-name-taken"],
)
def test_a_refusal_says_why(spec: dict[str, Any], phrase: str) -> None:
    with pytest.raises(InjectionError) as caught:
        patch_for(pod({INJECT: "true"}, **spec), "pod", SETTINGS)
    assert phrase in str(caught.value)


def test_a_probe_port_equal_to_the_proxys_port_is_refused() -> None:
    with pytest.raises(injection.InjectionError, match="probe port"):
        patch_for(pod({INJECT: "true", injection.PROBE_PORT: "8080"}), "pod", SETTINGS)
    with pytest.raises(injection.InjectionError, match="not a port"):
        patch_for(pod({INJECT: "true", injection.PROBE_PORT: "0"}), "pod", SETTINGS)
