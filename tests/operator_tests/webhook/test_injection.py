"""The injection as a pure function, table by table: who is injected, what the sidecar looks like, the
app containers' variables, annotations that tune it, bad annotations, and idempotence (the patch applied
and offered again gives nothing)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from symbol_operator.webhook import injection
from symbol_operator.webhook.injection import INJECT, InjectionError, Settings, patch_for

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
