"""Generated documentation stays in step with the code it is generated from."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_configuration_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_config_docs", REPO / "scripts" / "gen_config_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.render()
    actual = (REPO / "docs" / "configuration.md").read_text()
    assert actual == expected, (
        "docs/configuration.md is stale: run scripts/gen_config_docs.py > docs/configuration.md"
    )
