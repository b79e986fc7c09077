"""``--store DIR``: write the files straight into a local store, as ``symstore.exe add`` does.

The writes go through the proxy's own filesystem backend (``create``: a temporary file, flushed,
then hard-linked to its name, which fails if the name is taken), so a reader never sees a partial
file, a crash leaves at most a temporary file, and nothing already in the store is overwritten.
A path that is taken by the same bytes is "already there" (a re-run is a no-op); by other bytes, a
``conflict`` that is reported and left alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from symbol_proxy.backends import base
from symbol_proxy.backends.filesystem import FilesystemBackend
from symbol_proxy.config import FilesystemSource
from symbol_publish import files
from symbol_publish.plans import Entry, Plan, Skipped
from symbol_publish.progress import Progress

__all__ = ["StoreResult", "write_store"]


@dataclasses.dataclass
class StoreResult:
    written: list[Entry] = dataclasses.field(default_factory=list)
    present: list[Entry] = dataclasses.field(default_factory=list)
    """Already in the store with the same bytes."""
    skipped: list[Skipped] = dataclasses.field(default_factory=list)
    written_bytes: int = 0


async def write_store(root: Path, plan: Plan, progress: Progress, *, concurrency: int = 4) -> StoreResult:
    root.mkdir(parents=True, exist_ok=True)
    backend = FilesystemBackend(FilesystemSource(id="publish", type="filesystem", path=str(root)))
    result = StoreResult()
    limit = asyncio.Semaphore(concurrency)
    remaining = {file.relative: sum(1 for e in plan.entries if e.file is file) for file in plan.files}
    progress.start(len(plan.files), sum(e.file.size for e in plan.entries))

    async def one(entry: Entry) -> None:
        async with limit:
            try:
                await backend.create(
                    entry.key, files.chunks(entry.file.path, progress.advance), size=entry.file.size
                )
                result.written.append(entry)
                result.written_bytes += entry.file.size
            except base.AlreadyExists:
                progress.advance(entry.file.size)
                target = root / entry.key
                loop = asyncio.get_running_loop()
                if await loop.run_in_executor(None, files.same_content, target, entry.file.path):
                    result.present.append(entry)
                else:
                    result.skipped.append(
                        Skipped(
                            entry.file.relative, "conflict", f"{entry.key} holds other bytes in the store"
                        )
                    )
            except (base.BackendError, OSError) as exc:
                result.skipped.append(Skipped(entry.file.relative, "unreadable", f"{entry.key}: {exc}"))
            remaining[entry.file.relative] -= 1
            if not remaining[entry.file.relative]:
                progress.file_done()

    try:
        await asyncio.gather(*(one(entry) for entry in plan.entries))
    finally:
        progress.close()
    return result
