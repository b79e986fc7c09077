"""Running ``symbol-publish`` as a user does: in-process through ``main`` (stdout, stderr and the
exit code captured) or as a child process, and the fixture manifest's keys by file."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from symbol_publish import cli, identities
from tests.support import shared

KEYLESS_OK = ("*.json", "*.md")
"""The fixture folder's own documentation, excluded when the fixtures are published."""


@pytest.fixture(autouse=True)
def _own_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Each test's CLI runs (in process and children) keep their hash cache and block journal in the
    test's own directory, never in the user's."""
    directory = tmp_path / "publish-state"
    monkeypatch.setenv("SYMBOL_PUBLISH_STATE_DIR", str(directory))
    return directory


@dataclasses.dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*args: str | Path) -> Run:
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def run_process(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
    done = subprocess.run(
        [sys.executable, "-m", "symbol_publish.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def manifest_keys() -> dict[str, list[dict[str, list[str]]]]:
    """Per fixture file: per object, the keys it is published under (non-empty kinds only)."""
    result = {}
    for entry in shared.manifest()["files"]:
        result[entry["path"]] = [
            {
                kind: keys
                for kind, keys in (obj.get("keys") or {}).items()
                if kind in identities.KEY_KINDS and keys
            }
            for obj in entry.get("objects") or []
        ]
    return result


def fixture_paths_by_client_key() -> dict[str, set[str]]:
    """Every manifest key of the ``<name>/<id>/<name>`` kinds → the fixture files that claim it."""
    claims: dict[str, set[str]] = {}
    for path, objects in manifest_keys().items():
        for keys in objects:
            for kind in identities.CLIENT_KEY_KINDS:
                for key in keys.get(kind, []):
                    claims.setdefault(key, set()).add(path)
    return claims
