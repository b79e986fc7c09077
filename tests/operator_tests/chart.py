"""Helm in tests: the pinned helm built from the Go module proxy (``tests/helm/build.sh``), and the
chart rendered into parsed documents."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.operator_tests.manifests import REPO

CHART = REPO / "charts" / "symbol-operator"
BUILD = REPO / "tests" / "helm" / "build.sh"
RELEASE = "symbols"
NAMESPACE = "symbol-operator"


@functools.cache
def helm_binary() -> Path:
    """The pinned helm (``HELM_BIN`` wins), built on first use like the control plane."""
    result = subprocess.run([str(BUILD)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1]) / "helm"


def helm(*args: str, check: bool = True, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(helm_binary()), *args]
    if kubeconfig is not None:
        command.append(f"--kubeconfig={kubeconfig}")
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def values_args(values: Mapping[str, Any], tmp: Path) -> list[str]:
    if not values:
        return []
    path = tmp / f"values-{abs(hash(yaml.safe_dump(dict(values))))}.yaml"
    path.write_text(yaml.safe_dump(dict(values)), encoding="utf-8")
    return ["--values", str(path)]


def render(
    values: Mapping[str, Any], tmp: Path, *, api_versions: Iterable[str] = (), extra: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """``helm template`` of the chart's templates (not ``crds/``) as parsed documents."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values_args(values, tmp)]
    args += [f"--api-versions={api}" for api in api_versions]
    output = helm(*args, *extra).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def find(documents: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [d for d in documents if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"{len(matches)} {kind} {name or ''} in the rendered chart"
    return matches[0]


def kinds(documents: Iterable[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in documents)
