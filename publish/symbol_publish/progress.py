"""What the user sees while files are written or uploaded.

In a terminal: one bar with files done, bytes, rate and time left (``rich``), on stderr. In a pipe
or a CI log: nothing until the summary, because a redrawn bar becomes thousands of lines there.
``--progress always|never`` overrides the detection.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NoProgress", "Progress", "TerminalProgress", "make"]


class Progress(Protocol):
    def start(self, files: int, total_bytes: int) -> None: ...
    def advance(self, size: int) -> None: ...
    def file_done(self) -> None: ...
    def close(self) -> None: ...


class NoProgress:
    def start(self, files: int, total_bytes: int) -> None:
        pass

    def advance(self, size: int) -> None:
        pass

    def file_done(self) -> None:
        pass

    def close(self) -> None:
        pass


class TerminalProgress:
    """A ``rich`` bar: ``uploading 3/40 files ━━━━━━ 1.2/8.0 MB 4.1 MB/s 0:00:02``."""

    def __init__(self, verb: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bar

        self._verb = verb
        self._bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._bar.add_task(verb, total=0, start=False)
        self._files = 0
        self._done = 0

    def _describe(self) -> str:
        return f"{self._verb} {self._done}/{self._files} files"

    def start(self, files: int, total_bytes: int) -> None:
        self._files = files
        self._bar.update(self._task, total=total_bytes, description=self._describe())
        self._bar.start_task(self._task)
        self._bar.start()

    def advance(self, size: int) -> None:
        self._bar.advance(self._task, size)

    def file_done(self) -> None:
        self._done += 1
        self._bar.update(self._task, description=self._describe())

    def close(self) -> None:
        if self._files:
            self._bar.stop()


def make(mode: str, verb: str, is_terminal: bool) -> Progress:
    """``mode`` is ``auto`` (a bar only when stderr is a terminal), ``always`` or ``never``."""
    if mode == "always" or (mode == "auto" and is_terminal):
        return TerminalProgress(verb)
    return NoProgress()
