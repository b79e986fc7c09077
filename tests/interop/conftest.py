"""Fixtures of the interop tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.programs import Program, build_program


@pytest.fixture
async def program(tmp_path: Path) -> Program:
    """The program, its source deleted: only stores behind the proxy have it."""
    built = await build_program(tmp_path)
    Path(built.source_path).unlink()
    return built


@pytest.fixture
async def program_with_source(tmp_path: Path) -> Program:
    """The program, with its source left on disk (where ``debuginfod -F`` reads sources from)."""
    return await build_program(tmp_path)
