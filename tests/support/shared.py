"""The shared specs and fixtures: where they are, and the manifest of real debug files.

Tests read identifiers and keys from ``MANIFEST.json`` instead of copying them. The shared folder sits
beside the repository (``../shared``); ``SYMBOL_SHARED_DIR`` overrides that.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any

from symbol_proxy.objects import FileType, ObjectQuery, ObjectType

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SYMBOL_SHARED_DIR") or REPO.parent / "shared")
FIXTURES = SHARED / "fixtures"
VECTORS = SHARED / "specs" / "vectors"


@functools.cache
def manifest() -> dict[str, Any]:
    with open(FIXTURES / "MANIFEST.json", encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


@dataclasses.dataclass(frozen=True)
class FixtureObject:
    """One object of one fixture file, with what a lookup needs to know about it."""

    path: Path
    format: str
    entry: dict[str, Any]
    obj: dict[str, Any]
    filetype: FileType
    query: ObjectQuery

    @property
    def name(self) -> str:
        arch = self.obj.get("arch") or ""
        return f"{self.entry['path']}[{arch}]"

    @property
    def keys(self) -> dict[str, list[str]]:
        keys: dict[str, list[str]] = self.obj.get("keys") or {}
        return keys

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()


def _filetype(fmt: str, obj: dict[str, Any]) -> tuple[FileType, ObjectType] | None:
    ssqp = (obj.get("keys") or {}).get("ssqp") or [""]
    if fmt == "pe":
        clr = (obj.get("format_details") or {}).get("clr")
        return FileType.PE, ObjectType.PE_DOTNET if clr else ObjectType.PE
    if fmt == "pdb":
        return FileType.PDB, ObjectType.PE
    if fmt == "portablepdb":
        return FileType.PORTABLEPDB, ObjectType.PE_DOTNET
    if fmt == "elf":
        return (FileType.ELF_DEBUG if ssqp[0].startswith("_.debug/") else FileType.ELF_CODE), ObjectType.ELF
    if fmt == "macho":
        return (
            FileType.MACH_DEBUG if ssqp[0].startswith("_.dwarf/") else FileType.MACH_CODE
        ), ObjectType.MACHO
    if fmt == "breakpad":
        return FileType.BREAKPAD, ObjectType.UNKNOWN
    return None


def keyed_objects() -> list[FixtureObject]:
    """Every single-object fixture file that has lookup keys (universal Mach-O files are skipped
    because one file answers for several slices and the store would need one copy per slice)."""
    result = []
    for entry in manifest()["files"]:
        objects = entry.get("objects") or []
        if len(objects) != 1 or not objects[0].get("keys"):
            continue
        obj = objects[0]
        kinds = _filetype(entry["format"], obj)
        if kinds is None:
            continue
        filetype, object_type = kinds
        debug_id = obj.get("debug_id")
        query = ObjectQuery.create(
            code_id=obj.get("code_id"),
            code_file=obj.get("code_file"),
            debug_id=debug_id
            if debug_id and not debug_id.startswith("00000000-0000-0000-0000-000000000000")
            else None,
            debug_file=obj.get("debug_file"),
            object_type=object_type,
        )
        result.append(FixtureObject(FIXTURES / entry["path"], entry["format"], entry, obj, filetype, query))
    return result
