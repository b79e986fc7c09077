"""A small writer of Symbolicator source bundles, for tests.

The format as symbolic writes it (``sentry-cli difutil bundle-sources``): the 8-byte header ``SYSB`` +
format version 2 (u32, little endian), then a zip archive with ``manifest.json`` and the sources
under ``files/``, each member named after its original path with the leading separators removed.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile

__all__ = ["write_source_bundle"]

_SEPARATORS = re.compile(r":?[/\\]+")


def _member(path: str) -> str:
    return "files/" + _SEPARATORS.sub("/", path).lstrip("/")


def write_source_bundle(sources: dict[str, bytes], *, code_id: str, debug_id: str, name: str) -> bytes:
    """A bundle holding ``sources`` (original absolute path → contents) for one object."""
    buffer = io.BytesIO()
    buffer.write(b"SYSB" + struct.pack("<I", 2))
    manifest = {
        "files": {_member(path): {"type": "source", "path": path} for path in sources},
        "code_id": code_id,
        "debug_id": debug_id,
        "object_name": name,
        "arch": "x86_64",
    }
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        for path, data in sources.items():
            archive.writestr(_member(path), data)
    return buffer.getvalue()
