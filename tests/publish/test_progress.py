"""The progress bar as a user sees it: in a real terminal (a tmux pane, captured) it shows files,
bytes, rate and time left; in a pipe (a CI log) nothing but the summary and the skipped files."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.publish.conftest import run_process
from tests.support import shared

BAR = "━"


def _capture(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=True
    ).stdout


def test_a_terminal_gets_the_bar(tmp_path: Path) -> None:
    session = f"publish-{uuid.uuid4().hex[:8]}"
    done = tmp_path / "done"
    command = " ".join(
        shlex.quote(str(part))
        for part in (
            sys.executable,
            "-m",
            "symbol_publish.cli",
            shared.FIXTURES / "pdb",
            "--store",
            tmp_path / "s",
            "--no-state",  # a running tmux server has its own environment, not this test's
        )
    )
    subprocess.run(
        [
            "tmux",
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "160",
            "-y",
            "20",
            f"{command}; touch {done}; sleep 60",
        ],
        check=True,
    )
    try:
        for _ in range(600):
            if done.exists():
                break
            time.sleep(0.1)
        pane = _capture(session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    pdbs = len(list((shared.FIXTURES / "pdb").iterdir()))
    assert f"writing {pdbs}/{pdbs} files" in pane, pane
    assert BAR in pane and "MB" in pane and "/s" in pane, pane  # bar, bytes done/total, rate
    assert "files written to" in pane


def test_a_pipe_gets_only_the_summary(tmp_path: Path) -> None:
    result = run_process(shared.FIXTURES / "pdb", "--store", tmp_path / "s")
    assert result.code == 0, result.err
    assert BAR not in result.err + result.out
    assert "writing" not in result.err
    assert result.out.count("\n") == 1 and "files written to" in result.out
    forced = run_process(shared.FIXTURES / "pdb", "--store", tmp_path / "t", "--progress", "always")
    assert BAR in forced.err
