"""Symbolicator source bundles: the source files of one debug file, as a zip with a manifest.

A bundle (``sentry-cli difutil bundle-sources``, symbolic's ``SourceBundleWriter``) is a zip archive,
normally preceded by an 8-byte header (``SYSB`` and a little-endian format version), holding
``manifest.json`` and the sources under ``files/``. The manifest maps each archive member to its
attributes; ``path`` is the file's original path on the build machine, which is what a debugger
asks for (``/buildid/<id>/source/<absolute path>``)::

    {"files": {"files/home/ci/src/main.c": {"type": "source", "path": "/home/ci/src/main.c"}}, ...}

Lookups match the original path exactly first, then after collapsing repeated separators and
``.`` segments and treating ``\\`` as ``/`` (Windows paths), the way a debugger may spell them.
Reading runs in a worker thread (``zipfile`` is blocking); errors of the zip library are translated
here into :class:`BadBundle`.
"""

from __future__ import annotations

import json
import posixpath
import zipfile
from pathlib import Path

__all__ = ["BadBundle", "normalize_path", "read_source"]

MANIFEST = "manifest.json"
MAX_MANIFEST = 64 * 1024 * 1024
"""A bundle's manifest larger than this is refused instead of being parsed."""


class BadBundle(ValueError):
    """The file is not a source bundle that can be read."""


def normalize_path(path: str) -> str:
    """The comparable form of a source path: ``/`` separators, no repeated ones, no ``.`` segments."""
    path = path.replace("\\", "/")
    leading = "/" if path.startswith("/") else ""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return leading + posixpath.join(*parts) if parts else leading


def _members(manifest: object) -> dict[str, str]:
    """Original path → archive member, from a parsed manifest."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BadBundle("the manifest has no files table")
    result: dict[str, str] = {}
    for member, attributes in manifest["files"].items():
        if not isinstance(attributes, dict):
            continue
        original = attributes.get("path")
        if isinstance(original, str) and original and attributes.get("type", "source") == "source":
            result.setdefault(original, member)
    return result


def read_source(bundle: Path, path: str, *, max_size: int) -> bytes | None:
    """The contents of the source file ``path`` in ``bundle``; ``None`` if the bundle lacks it.

    Raises :class:`BadBundle` for a file that is not a readable bundle, or a member larger than
    ``max_size``.
    """
    try:
        with zipfile.ZipFile(bundle) as archive:
            try:
                info = archive.getinfo(MANIFEST)
            except KeyError:
                raise BadBundle("no manifest.json in the archive") from None
            if info.file_size > MAX_MANIFEST:
                raise BadBundle("manifest.json is too large")
            try:
                members = _members(json.loads(archive.read(info)))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BadBundle(f"manifest.json is not JSON: {exc}") from None
            member = members.get(path)
            if member is None:
                wanted = normalize_path(path)
                member = next((m for p, m in members.items() if normalize_path(p) == wanted), None)
            if member is None:
                return None
            try:
                info = archive.getinfo(member)
            except KeyError:
                raise BadBundle(f"the manifest names {member!r}, which the archive lacks") from None
            if info.file_size > max_size:
                raise BadBundle(f"{member!r} is larger than the configured maximum file size")
            return archive.read(info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise BadBundle(f"not a readable zip archive: {exc}") from None
