"""Pod body + injection settings → the JSON patch that adds the symbol proxy as a native sidecar.

Pure: no I/O, no clock, deterministic. The webhook server decodes the AdmissionReview and hands the
pod here; everything a user can observe about injection is decided in this module.

Decisions:

* Opt-in. A pod is injected when its annotation ``symbols.symbol-operator.dev/inject`` is ``"true"``,
  or when its namespace opted in (the webhook configuration routes such pods to the ``namespace``
  mode) and the pod does not say ``"false"``. Anything else is left untouched: no patch at all.
* Native sidecar: an init container with ``restartPolicy: Always`` placed first, so it runs before
  every other init container and the app, and does not keep a Job's pod alive (Kubernetes ≥ 1.29).
* The rendered configuration Secret is mounted as a directory (never ``subPath``: subPath mounts do
  not see Secret updates, and the proxy reloads a changed file).
* The cache is an ``emptyDir`` whose ``sizeLimit`` is the requested cache size; the proxy is told to
  keep at most ``CACHE_SHARE`` of it, so downloads in progress (which live under the cache directory
  until they are complete) never push the volume over its limit and get the pod evicted.
* App containers get ``_NT_SYMBOL_PATH`` and ``DEBUGINFOD_URLS`` pointing at the sidecar unless the
  container already sets them (by ``env``; values from ``envFrom`` cannot be seen here and are
  overridden by ``env``, which is why a pod that wants its own uses ``env``).
* Idempotent: a pod that already has a container named ``symbol-proxy`` (or the injected
  annotation) gets no patch, so a re-submitted or re-invoked pod is not injected twice.
* Annotations tune the cache size, port, resources and image; a bad value is an error naming the
  annotation (the webhook denies that pod with the message: the pod asked for injection).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

__all__ = [
    "ANNOTATION_PREFIX",
    "CACHE_SHARE",
    "CONTAINER_NAME",
    "INJECT",
    "INJECTED_LABEL",
    "STATUS",
    "InjectionError",
    "Mode",
    "Settings",
    "patch_for",
    "quantity_bytes",
    "variables",
    "wants_injection",
]

ANNOTATION_PREFIX = "symbols.symbol-operator.dev/"
INJECT = ANNOTATION_PREFIX + "inject"
"""``"true"`` asks for the sidecar; ``"false"`` refuses it in a namespace that opted in."""
STATUS = ANNOTATION_PREFIX + "injected"
"""Set on injected pods (the proxy's image), so tools and a second pass can tell."""
INJECTED_LABEL = ANNOTATION_PREFIX + "injected"
"""Label ``"true"`` on injected pods: what the chart's PodMonitor selects."""
CACHE_SIZE = ANNOTATION_PREFIX + "cache-size"
PORT = ANNOTATION_PREFIX + "port"
PROBE_PORT = ANNOTATION_PREFIX + "probe-port"
IMAGE = ANNOTATION_PREFIX + "image"
CPU = ANNOTATION_PREFIX + "cpu"
MEMORY = ANNOTATION_PREFIX + "memory"
CPU_LIMIT = ANNOTATION_PREFIX + "cpu-limit"
MEMORY_LIMIT = ANNOTATION_PREFIX + "memory-limit"

CONTAINER_NAME = "symbol-proxy"
CONFIG_VOLUME = "symbol-proxy-config"
CACHE_VOLUME = "symbol-proxy-cache"
CONFIG_DIR = "/etc/symbol-proxy"
CACHE_DIR = "/var/cache/symbols"
CACHE_SHARE = Decimal("0.9")
"""Share of the emptyDir's ``sizeLimit`` the proxy may fill with complete files; the rest is room for
downloads in progress."""

Mode = Literal["pod", "namespace"]
"""``pod``: only pods annotated ``inject: "true"``; ``namespace``: every pod unless ``"false"``."""


class InjectionError(ValueError):
    """A pod asked for injection with an annotation value that cannot be used."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Defaults of the injected sidecar (the webhook's flags, set from the chart's values); each but
    the Secret's name and key can be changed per pod by an annotation."""

    image: str
    """The proxy's image; the chart's default is the project's one image."""
    image_pull_policy: str = "IfNotPresent"
    config_secret: str = "symbol-proxy-config"
    """The Secret the operator renders in every namespace (``symbol-operator run --config-secret``)."""
    config_key: str = "proxy.yaml"
    """Its key: the file name inside the mounted directory."""
    port: int = 8080
    """The proxy's port on the pod's loopback; the app containers' variables point at it."""
    probe_port: int = 8081
    """The proxy's probe port on the pod's addresses: ``/healthz``, ``/readyz`` and ``/metrics``
    only, for the kubelet's probes (sent from the node, so never to the pod's loopback) and the
    chart's PodMonitor."""
    cache_size: str = "5Gi"
    """``sizeLimit`` of the cache volume (a Kubernetes quantity)."""
    cpu: str = "50m"
    memory: str = "64Mi"
    cpu_limit: str | None = None
    """No CPU limit by default: throttling a cache proxy slows every symbol load of the app."""
    memory_limit: str | None = "256Mi"
    run_as_user: int = 10001


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_FACTORS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_CPU = re.compile(r"^([0-9]+(?:\.[0-9]+)?m?)$")


def quantity_bytes(value: str) -> int:
    """Bytes of a Kubernetes memory/storage quantity such as ``5Gi``, ``500M`` or ``1048576``.

    Not the proxy's ``parse_size``: that one also takes ``5GB`` or ``5 gib``, which the API server
    refuses in a ``sizeLimit``, and the pod would then fail after our patch with a less clear error."""
    match = _QUANTITY.match(value.strip())
    if not match:
        raise InjectionError(f"{value!r} is not a size such as 512Mi or 5Gi")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:  # pragma: no cover - the pattern only lets numbers through
        raise InjectionError(f"{value!r} is not a size") from None
    return int(number * _FACTORS[match.group(2)])


def wants_injection(pod: Mapping[str, Any], mode: Mode) -> bool:
    """Whether the pod opted in (``mode`` says whether its namespace did) and is not injected yet."""
    annotations = _annotations(pod)
    choice = annotations.get(INJECT, "").strip().lower()
    if mode == "namespace":
        # hostNetwork pods share the node's ports: only an explicit annotation injects them (and
        # then ``patch_for`` refuses with a reason), a namespace's opt-in never does.
        wanted = choice not in ("false", "disabled", "no") and not (pod.get("spec") or {}).get("hostNetwork")
    else:
        wanted = choice in ("true", "enabled", "yes")
    return wanted and not _injected(pod)


def patch_for(pod: Mapping[str, Any], mode: Mode, settings: Settings) -> list[dict[str, Any]]:
    """The JSON patch (RFC 6902) injecting the sidecar; empty when the pod is to be left as it is."""
    if not wants_injection(pod, mode):
        return []
    annotations = _annotations(pod)
    effective = _with_annotations(settings, annotations)
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork"):
        raise InjectionError(
            "hostNetwork pods share the node's ports; the symbol proxy sidecar is not injected into them"
        )
    volume_names = {volume.get("name") for volume in spec.get("volumes") or []}
    for name in (CONFIG_VOLUME, CACHE_VOLUME):
        if name in volume_names:
            raise InjectionError(f"the pod already has a volume named {name!r}; the sidecar needs that name")
    sidecar = _sidecar(effective)
    volumes = [
        *(spec.get("volumes") or []),
        {"name": CONFIG_VOLUME, "secret": {"secretName": effective.config_secret}},
        {"name": CACHE_VOLUME, "emptyDir": {"sizeLimit": effective.cache_size}},
    ]
    containers = [_with_variables(container, effective.port) for container in spec.get("containers") or []]
    labels = dict((pod.get("metadata") or {}).get("labels") or {})
    return [
        {"op": "add", "path": "/metadata/annotations", "value": {**annotations, STATUS: effective.image}},
        {"op": "add", "path": "/metadata/labels", "value": {**labels, INJECTED_LABEL: "true"}},
        {
            "op": "add",
            "path": "/spec/initContainers",
            "value": [sidecar, *(spec.get("initContainers") or [])],
        },
        {"op": "add", "path": "/spec/containers", "value": containers},
        {"op": "add", "path": "/spec/volumes", "value": volumes},
    ]


def _annotations(pod: Mapping[str, Any]) -> dict[str, str]:
    return dict((pod.get("metadata") or {}).get("annotations") or {})


def _injected(pod: Mapping[str, Any]) -> bool:
    if STATUS in _annotations(pod):
        return True
    spec = pod.get("spec") or {}
    names = {c.get("name") for key in ("initContainers", "containers") for c in spec.get(key) or []}
    return CONTAINER_NAME in names


def _with_annotations(settings: Settings, annotations: Mapping[str, str]) -> Settings:
    changes: dict[str, Any] = {}
    if CACHE_SIZE in annotations:
        value = annotations[CACHE_SIZE].strip()
        _checked(CACHE_SIZE, value, quantity_bytes)
        changes["cache_size"] = value
    for key, field in ((PORT, "port"), (PROBE_PORT, "probe_port")):
        if key in annotations:
            raw = annotations[key].strip()
            if not raw.isdigit() or not 1 <= int(raw) <= 65535:
                raise InjectionError(f"annotation {key}: {raw!r} is not a port (1-65535)")
            changes[field] = int(raw)
    if IMAGE in annotations:
        image = annotations[IMAGE].strip()
        if not image or any(c.isspace() for c in image):
            raise InjectionError(f"annotation {IMAGE}: {image!r} is not an image reference")
        changes["image"] = image
    for key, field in ((MEMORY, "memory"), (MEMORY_LIMIT, "memory_limit")):
        if key in annotations:
            value = annotations[key].strip()
            _checked(key, value, quantity_bytes)
            changes[field] = value
    for key, field in ((CPU, "cpu"), (CPU_LIMIT, "cpu_limit")):
        if key in annotations:
            value = annotations[key].strip()
            if not _CPU.match(value):
                raise InjectionError(f"annotation {key}: {value!r} is not a CPU quantity such as 100m or 1")
            changes[field] = value
    changed = dataclasses.replace(settings, **changes)
    if changed.port == changed.probe_port:
        raise InjectionError(
            f"the proxy's port and its probe port are both {changed.port} (annotations {PORT}, {PROBE_PORT})"
        )
    return changed


def _checked(key: str, value: str, parse: Any) -> None:
    try:
        parse(value)
    except InjectionError as exc:
        raise InjectionError(f"annotation {key}: {exc}") from None


def _sidecar(settings: Settings) -> dict[str, Any]:
    cap = int(quantity_bytes(settings.cache_size) * CACHE_SHARE)
    requests = {"cpu": settings.cpu, "memory": settings.memory}
    limits = {
        key: value
        for key, value in (("cpu", settings.cpu_limit), ("memory", settings.memory_limit))
        if value is not None
    }
    resources: dict[str, Any] = {"requests": requests}
    if limits:
        resources["limits"] = limits
    # The kubelet probes from the node, so the probe goes to the pod's address, where only the
    # probe port listens (health, readiness and metrics; symbols stay on the loopback).
    probe = {"httpGet": {"path": "/healthz", "port": settings.probe_port}}
    return {
        "name": CONTAINER_NAME,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "restartPolicy": "Always",
        "command": ["symbol-proxy"],
        "args": [
            "serve",
            f"--config={CONFIG_DIR}/{settings.config_key}",
            "--host=127.0.0.1",
            f"--port={settings.port}",
            f"--probe-port={settings.probe_port}",
            f"--cache-dir={CACHE_DIR}",
            f"--cache-max-size={cap}",
        ],
        "ports": [{"name": "symbols", "containerPort": settings.probe_port, "protocol": "TCP"}],
        "startupProbe": {**probe, "periodSeconds": 1, "failureThreshold": 60},
        "readinessProbe": {**probe, "periodSeconds": 10},
        "resources": resources,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": CACHE_VOLUME, "mountPath": CACHE_DIR},
        ],
    }


def variables(port: int) -> dict[str, str]:
    """The environment that points Windows debuggers and debuginfod clients at the sidecar."""
    base = f"http://127.0.0.1:{port}"
    return {"_NT_SYMBOL_PATH": f"srv*{base}/symbols", "DEBUGINFOD_URLS": f"{base}/"}


def _with_variables(container: Mapping[str, Any], port: int) -> dict[str, Any]:
    env: Sequence[Mapping[str, Any]] = container.get("env") or []
    present = {item.get("name") for item in env}
    added = [{"name": name, "value": value} for name, value in variables(port).items() if name not in present]
    if not added:
        return dict(container)
    return {**container, "env": [*env, *added]}
