"""Loading the shared vector files and turning their objects into queries.

The vector files live in ``shared/specs/vectors`` beside the repository (``SYMBOL_SHARED_DIR``
overrides the shared folder; ``tests.support.shared`` resolves it). Tests load expected values from
here and never copy them.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from symbol_proxy.objects import ObjectQuery
from tests.support.shared import VECTORS, manifest

__all__ = ["load", "manifest", "query", "short"]


@functools.cache
def load(name: str) -> Any:
    """The parsed JSON of ``shared/specs/vectors/<name>`` (read once per test session)."""
    with open(VECTORS / name, encoding="utf-8") as handle:
        return json.load(handle)


def query(obj: dict[str, Any]) -> ObjectQuery:
    """A vector ``object`` as a query; ``code_id_raw`` (the input before normalisation) wins."""
    return ObjectQuery.create(
        code_id=obj.get("code_id_raw") or obj.get("code_id"),
        code_file=obj.get("code_file"),
        debug_id=obj.get("debug_id"),
        debug_file=obj.get("debug_file"),
        debug_checksum=obj.get("debug_checksum"),
        object_type=obj.get("object_type") or "unknown",
    )


def short(path: str | None) -> str:
    """The last component of a file path, for readable test ids (``-`` when there is none)."""
    if not path:
        return "-"
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].replace(" ", "_") or path
