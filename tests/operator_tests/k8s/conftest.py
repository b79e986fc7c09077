"""Fixtures of the real API server tier: an admin client, the CRDs installed, and the operator running
in a thread (``kopf.testing.KopfRunner``) with settings from ``SYMBOL_OPERATOR_*`` variables.

``control_plane`` and ``namespace`` come from ``tests/operator_tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kopf.testing import KopfRunner

from tests.operator_tests.k8s.kube import Kube, wait_for
from tests.operator_tests.manifests import CRDS
from tests.support.net import free_port


@pytest.fixture(scope="session")
def admin_kubeconfig(control_plane: Any) -> Path:
    return Path(control_plane.kubeconfig)


@pytest.fixture(scope="session")
def kube(admin_kubeconfig: Path) -> Kube:
    """An administrator's client with the CRDs of ``crds/`` installed and established."""
    client = Kube(admin_kubeconfig)
    for path in sorted(CRDS.glob("*.yaml")):
        definition = yaml.safe_load(path.read_text(encoding="utf-8"))
        client.apply(definition)

    def established() -> bool:
        for path in CRDS.glob("*.yaml"):
            name = yaml.safe_load(path.read_text(encoding="utf-8"))["metadata"]["name"]
            crd = client.get("CustomResourceDefinition", name) or {}
            conditions = (crd.get("status") or {}).get("conditions") or []
            if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return False
        return True

    wait_for(established, timeout=30, what="the CRDs to be established")
    # Discovery can lag behind Established for a moment; kopf resolves resources through it.
    wait_for(
        lambda: client.request("GET", "/apis/symbols.symbol-operator.dev/v1alpha1").get("resources"),
        timeout=30,
        what="discovery of the CRDs",
    )
    return client


class Operator:
    """A running operator: its KopfRunner, and its metrics endpoint.

    ``runner.output`` may only be read after the runner has stopped (it blocks until then).
    """

    def __init__(self, runner: KopfRunner, metrics_port: int) -> None:
        self.runner = runner
        self.metrics_port = metrics_port

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def sample(self, name: str, **labels: str) -> float:
        """One sample of the operator's metrics (0 when absent)."""
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            metric, _, label_text = series.partition("{")
            found = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
            if metric == name and found == wanted:
                return float(value)
        return 0.0


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    """kopf configures logging process-wide (root level DEBUG with --verbose, its handler, asyncio's
    propagation); put it back so later tests capture logs as if no operator had run here."""
    root, quiet = logging.getLogger(), logging.getLogger("asyncio")
    level, handlers = root.level, list(root.handlers)
    quiet_state = (quiet.propagate, list(quiet.handlers))
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        quiet.propagate, quiet.handlers[:] = quiet_state[0], quiet_state[1]


@contextlib.contextmanager
def running_operator(
    monkeypatch: pytest.MonkeyPatch,
    namespaces: Sequence[str] = (),
    *,
    all_namespaces: bool = False,
    kubeconfig: Path | None = None,
    base_config: Path | None = None,
    timeout: float = 60,
) -> Iterator[Operator]:
    """Run the operator like ``kopf run --standalone --namespace NS -m symbol_operator.handlers``."""
    port = free_port()
    with monkeypatch.context() as env:
        env.setenv("SYMBOL_OPERATOR_METRICS_PORT", str(port))
        env.setenv("SYMBOL_OPERATOR_METRICS_HOST", "127.0.0.1")
        env.setenv("SYMBOL_OPERATOR_DEBOUNCE", "0.05")
        env.setenv("SYMBOL_OPERATOR_RETRY_DELAY", "0.2")
        if base_config is not None:
            env.setenv("SYMBOL_OPERATOR_BASE_CONFIG", str(base_config))
        if kubeconfig is not None:
            env.setenv("KUBECONFIG", str(kubeconfig))
        scope = (
            ["--all-namespaces"]
            if all_namespaces
            else [arg for ns in namespaces for arg in ("--namespace", ns)]
        )
        args = ["run", "--standalone", "--verbose", *scope, "-m", "symbol_operator.handlers"]
        with restored_logging(), KopfRunner(args, timeout=timeout) as runner:
            operator = Operator(runner, port)
            wait_for(lambda: _answers(operator), timeout=30, what="the operator's metrics endpoint")
            yield operator
    assert runner.exception is None, runner.output
    assert runner.exit_code == 0, runner.output
    assert "APIForbiddenError" not in runner.output
    assert "Traceback" not in runner.output, runner.output


def _answers(operator: Operator) -> bool:
    try:
        return "symbol_operator_reconciles_total" in operator.metrics()
    except requests.RequestException:
        time.sleep(0.1)
        return False


@pytest.fixture
def operator(monkeypatch: pytest.MonkeyPatch, kube: Kube, namespace: str) -> Iterator[Operator]:
    """The operator serving the test's namespace, as the administrator."""
    with running_operator(monkeypatch, [namespace]) as running:
        yield running
