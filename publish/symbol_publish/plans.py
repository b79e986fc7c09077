"""From scanned files to what gets published where: entries, and what is skipped and why. Pure.

One file often gives several entries (a PE under its SymSrv and SSQP keys, every slice of a
universal Mach-O). Two *different* files that claim the same key (``crash.sym`` and
``crash.inlines.sym`` describe one module) cannot both be published under it: the first in path
order keeps it and the other is reported as a ``conflict`` for that key; nothing is overwritten.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

from symbol_publish.identities import Identity

__all__ = ["Entry", "Plan", "Scanned", "Skipped", "plan"]


@dataclasses.dataclass(frozen=True, slots=True)
class Scanned:
    """A debug file and the objects in it (several for a universal Mach-O)."""

    path: Path
    relative: str
    """Relative to the scanned directory, ``/``-separated: how the file is reported."""
    size: int
    identities: tuple[Identity, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Skipped:
    """A file (or one key of it) that is not published, with the reason."""

    relative: str
    category: str
    """``unreadable``, ``broken``, ``not-debug``, ``no-identifier``, ``conflict``."""
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One key (client key or store path) and the file to publish under it."""

    key: str
    file: Scanned
    identity: Identity


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    entries: tuple[Entry, ...]
    files: tuple[Scanned, ...]
    """The files that have at least one entry, in path order."""
    skipped: tuple[Skipped, ...]

    @property
    def total_bytes(self) -> int:
        return sum(file.size for file in self.files)


def plan(
    results: Iterable[Scanned | Skipped],
    keys_of: Callable[[Identity], list[str]],
    *,
    case_insensitive: bool = True,
    same_content: Callable[[Scanned, Scanned], bool] = lambda a, b: False,
    unplaced: str = "no key in this target",
) -> Plan:
    """Entries under ``keys_of(identity)`` for every scanned file; ``Skipped`` results pass through.

    Keys are compared ignoring case when the target matches keys that way (the Symbol Service, SSQP);
    a local store on a case-sensitive disk compares them exactly. A second file with the *same bytes*
    under a key (a .NET build's ``obj/`` and ``bin/`` copies of one PDB) is no conflict: it is simply
    not needed. ``same_content`` is asked only for files of equal size that claim one key.
    ``unplaced`` says why an object with identifiers got no key (``{format}`` is its format).
    """
    entries: list[Entry] = []
    files: list[Scanned] = []
    skipped: list[Skipped] = []
    owners: dict[str, Scanned] = {}
    for result in results:
        if isinstance(result, Skipped):
            skipped.append(result)
            continue
        mine = 0
        reasons: list[str] = []
        for identity in result.identities:
            keys = keys_of(identity)
            if not keys:
                reasons.append(identity.keyable() or unplaced.format(format=identity.format.value))
            for key in keys:
                folded = key.lower() if case_insensitive else key
                owner = owners.get(folded)
                if owner is None:
                    owners[folded] = result
                    entries.append(Entry(key, result, identity))
                    mine += 1
                elif owner is not result and not (owner.size == result.size and same_content(owner, result)):
                    skipped.append(
                        Skipped(
                            result.relative, "conflict", f"{key} is already published from {owner.relative}"
                        )
                    )
        if mine:
            files.append(result)
        elif reasons:
            skipped.append(Skipped(result.relative, "no-identifier", "; ".join(dict.fromkeys(reasons))))
    return Plan(tuple(entries), tuple(files), tuple(skipped))
