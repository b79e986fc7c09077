"""Walk a build directory and read every file's identities with ``symbolic``.

This is the only module that imports ``symbolic``; its errors become a ``Skipped`` with a category
here, so nothing above guesses at a file it could not read:

* ``unreadable``: the file cannot be opened or read (permissions, a dangling link, I/O error) or is
  not a regular file;
* ``broken``: it has the magic of a debug format but does not parse (truncated, corrupt);
* ``not-debug``: no debug format recognises it;
* ``no-identifier``: it parses but carries no identifier a symbol server could key (a fuzzed
  Mach-O with a nil UUID, an ELF without a build id, WebAssembly in a SymSrv layout).

Files inside a ``.dSYM`` bundle that are not debug files (``Info.plist``, relocation maps) are the
bundle's metadata and are ignored without a report: the DWARF file inside is what gets published.
"""

from __future__ import annotations

import fnmatch
import json
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from symbol_proxy.objects import DebugId, InvalidId
from symbol_publish.identities import Format, Identity
from symbol_publish.plans import Scanned, Skipped
from symbol_publish.state import FileCache

__all__ = ["Scanned", "Skipped", "scan", "selected"]

_MAX_MODULE_LINE = 64 * 1024


def selected(relative: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Globs match the relative path or the file name; no ``include`` means everything."""
    name = relative.rsplit("/", 1)[-1]

    def matches(pattern: str) -> bool:
        return fnmatch.fnmatchcase(relative, pattern) or fnmatch.fnmatchcase(name, pattern)

    if include and not any(matches(p) for p in include):
        return False
    return not any(matches(p) for p in exclude)


def _in_dsym_bundle(relative: str) -> bool:
    return any(part.lower().endswith(".dsym") for part in relative.split("/")[:-1])


def _module_name(path: Path) -> str | None:
    """The name on a Breakpad file's ``MODULE <os> <arch> <id> <name>`` line (it may hold spaces)."""
    with path.open("rb") as file:
        line = file.readline(_MAX_MODULE_LINE).decode("utf-8", "replace").rstrip("\r\n")
    parts = line.split(maxsplit=4)
    if len(parts) == 5 and parts[0] == "MODULE":
        return parts[4]
    return None


def _bundle_object_name(path: Path) -> str | None:
    """The ``debug_file`` (or ``object_name``) a source bundle's ``manifest.json`` names.

    symbolic has read the bundle already (its header and manifest are valid), but does not expose
    that name; zipfile skips the bundle's 8-byte ``SYSB`` header as it would a self-extractor's stub.
    """
    with zipfile.ZipFile(path) as bundle, bundle.open("manifest.json") as handle:
        manifest = json.load(handle)
    for field in ("debug_file", "object_name"):
        value = manifest.get(field)
        if isinstance(value, str) and value:
            return value
    return None


def _read(path: Path, relative: str) -> Scanned | Skipped:
    from symbolic import debuginfo
    from symbolic.exceptions import IoError, ObjectErrorUnknown, ObjectErrorUnsupportedObject, SymbolicError

    try:
        info = path.stat()
    except OSError as exc:
        return Skipped(relative, "unreadable", exc.strerror or str(exc))
    if not path.is_file():
        return Skipped(relative, "unreadable", "not a regular file")
    try:
        archive = debuginfo.Archive.open(str(path))
        objects = list(archive.iter_objects())
        module = None
        if objects and objects[0].file_format == Format.BREAKPAD:
            module = _module_name(path)
        elif objects and objects[0].file_format == Format.SOURCEBUNDLE:
            module = _bundle_object_name(path)
    except (ObjectErrorUnknown, ObjectErrorUnsupportedObject) as exc:
        message = str(exc).splitlines()[0]
        if message == "unsupported object file format":
            return Skipped(relative, "not-debug", "not a debug file")
        return Skipped(relative, "broken", " / ".join(line.strip() for line in str(exc).splitlines()))
    except SymbolicError as exc:
        category = "unreadable" if isinstance(exc, IoError) else "broken"
        return Skipped(relative, category, str(exc).splitlines()[0])
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        return Skipped(relative, "broken", f"source bundle: {exc}")
    except OSError as exc:
        return Skipped(relative, "unreadable", exc.strerror or str(exc))
    identities = []
    for obj in objects:
        try:
            debug_id = DebugId.parse(obj.debug_id) if obj.debug_id else None
        except InvalidId:
            debug_id = None
        try:
            fmt = Format(obj.file_format)
        except ValueError:
            return Skipped(relative, "not-debug", f"{obj.file_format} files are not published")
        identities.append(
            Identity(
                name=path.name,
                format=fmt,
                kind=str(obj.kind),
                arch=str(obj.arch),
                debug_id=debug_id,
                code_id=obj.code_id or None,
                features=frozenset(obj.features),
                module_name=module,
            )
        )
    if not identities:
        return Skipped(relative, "no-identifier", "the file holds no object")
    return Scanned(path, relative, info.st_size, tuple(identities))


def _cached_read(path: Path, relative: str, cache: FileCache | None) -> Scanned | Skipped:
    """``_read``, or what it found in the unchanged file before (``cache``)."""
    if cache is None:
        return _read(path, relative)
    identities = cache.objects(path)
    if identities is not None:
        try:
            return Scanned(path, relative, path.stat().st_size, identities)
        except OSError:
            pass
    try:
        before = path.stat().st_mtime_ns
    except OSError:
        before = None
    result = _read(path, relative)
    if isinstance(result, Scanned) and before is not None:
        cache.put_objects(path, before, result.identities)
    return result


def scan(
    root: Path, include: Sequence[str] = (), exclude: Sequence[str] = (), cache: FileCache | None = None
) -> Iterator[Scanned | Skipped]:
    """Every selected file under ``root`` (recursively, in path order, links to files followed)."""
    if root.is_file():
        yield _cached_read(root, root.name, cache)
        return
    for directory, subdirectories, files in os.walk(root):
        subdirectories.sort()
        for name in sorted(files):
            path = Path(directory, name)
            relative = path.relative_to(root).as_posix()
            if not selected(relative, include, exclude):
                continue
            result = _cached_read(path, relative, cache)
            if isinstance(result, Skipped) and result.category == "not-debug" and _in_dsym_bundle(relative):
                continue
            yield result
