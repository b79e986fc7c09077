"""Building and reading Kubernetes manifests in tests: SymbolSource and Secret bodies, the examples."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from symbol_operator.models import API_VERSION

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "k8s"
CRDS = REPO / "crds"


def source(
    name: str, spec: Mapping[str, Any], *, namespace: str = "team", generation: int = 1, **status: Any
) -> dict[str, Any]:
    """A SymbolSource body as the API server returns it."""
    return {
        "apiVersion": API_VERSION,
        "kind": "SymbolSource",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": generation},
        "spec": dict(spec),
        "status": dict(status),
    }


def secret(name: str, data: Mapping[str, str | bytes], *, namespace: str | None = None) -> dict[str, Any]:
    """A Secret body with base64 ``data``."""
    encoded = {
        key: base64.b64encode(value.encode() if isinstance(value, str) else value).decode()
        for key, value in data.items()
    }
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata, "data": encoded}


def secret_data(body: Mapping[str, Any]) -> dict[str, bytes]:
    """Decoded data of a Secret manifest, from ``data`` and ``stringData`` as the API server merges them."""
    data = {key: base64.b64decode(value) for key, value in (body.get("data") or {}).items()}
    data.update({key: value.encode() for key, value in (body.get("stringData") or {}).items()})
    return data


def example_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                yield path, document


def examples_of_kind(kind: str) -> list[dict[str, Any]]:
    return [document for _, document in example_documents() if document.get("kind") == kind]
