"""Checking a manifest against the Kubernetes API's types, as the API server reads it.

The field names and types come from the Kubernetes Python client's models, which are generated from
the API's OpenAPI document. The API server drops an unknown field without a word (a probe without
its action, a mount that is no longer read-only, a patch whose ``resourceVersion`` is ignored), so a
misspelt field is a bug no status code reveals; these checks find it without a cluster.
"""

from __future__ import annotations

from typing import Any

import kubernetes.client

__all__ = ["unknown_fields"]

_SCALARS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "bool": (bool,), "object": (int, str)}


def unknown_fields(value: Any, kind: str, where: str = "") -> list[str]:
    """Where ``value`` does not fit the Kubernetes model type ``kind`` (e.g. ``V1Container``)."""
    if kind.lower().startswith("list["):
        assert isinstance(value, list), where
        inner = kind[5:-1]
        return [
            problem
            for i, item in enumerate(value)
            for problem in unknown_fields(item, inner, f"{where}[{i}]")
        ]
    if kind.lower().startswith("dict"):
        return [] if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()) else [where]
    if kind in _SCALARS:
        ok = isinstance(value, _SCALARS[kind]) and (kind == "bool" or not isinstance(value, bool))
        return [] if ok else [f"{where}: {value!r} is not {kind}"]
    model = getattr(kubernetes.client, kind)
    by_json = {json: attribute for attribute, json in model.attribute_map.items()}
    if not isinstance(value, dict):
        return [f"{where}: not an object"]
    problems = []
    for key, item in value.items():
        if key not in by_json:
            problems.append(f"{where}.{key}: not a field of {kind}")
        else:
            problems += unknown_fields(item, model.openapi_types[by_json[key]], f"{where}.{key}")
    return problems
