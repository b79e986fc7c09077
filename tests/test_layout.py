"""The repository's importable packages never shadow a standard library module (``operator/`` holds
``symbol_operator``, it is not itself a package)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = [REPO, REPO / "sidecar", REPO / "operator", REPO / "tests", REPO / "bench"]


def test_no_package_or_module_is_named_like_a_standard_library_module() -> None:
    clashes = [
        str(path.relative_to(REPO))
        for root in ROOTS
        for path in root.iterdir()
        if (path / "__init__.py").is_file() or path.suffix == ".py"
        if path.stem in sys.stdlib_module_names
    ]
    assert clashes == []
    assert not (REPO / "operator" / "__init__.py").exists()
