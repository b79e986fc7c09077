"""``SymbolChecksum``: the header's syntax, and which bytes of a portable PDB it hashes.

Clients of NuGet's symbol server send ``SymbolChecksum: <ALG>:<hex>[;<ALG>:<hex>…]`` for portable
PDBs; the values come from the PE's PdbChecksum debug directory entries. Each is the hash of the
whole PDB file with its 20-byte PDB id (the start of the ``#Pdb`` metadata stream) set to zeros,
since the id is written after the hash is computed (Portable PDB specification, "PDB Checksum").

Pure functions: the caller reads the file.
"""

from __future__ import annotations

import re
import struct

__all__ = ["PDB_ID_SIZE", "BadChecksum", "parse", "pdb_id_offset"]

PDB_ID_SIZE = 20
_PART = re.compile(r"([A-Za-z0-9]{3,16}):([0-9A-Fa-f]{32,256})")
_METADATA_SIGNATURE = 0x424A5342  # "BSJB"


class BadChecksum(ValueError):
    """A ``SymbolChecksum`` header that is not ``<ALG>:<hex>[;<ALG>:<hex>…]``."""


def parse(header: str) -> list[tuple[str, str]]:
    """The header's ``(ALGORITHM, hexdigest)`` pairs, uppercase and lowercase; raises ``BadChecksum``."""
    parts = [part.strip() for part in header.strip().split(";") if part.strip()]
    pairs = []
    for part in parts:
        match = _PART.fullmatch(part)
        if match is None:
            raise BadChecksum(
                f"malformed SymbolChecksum {header[:200]!r}: expected <ALG>:<hex>[;<ALG>:<hex>…]"
            )
        pairs.append((match.group(1).upper(), match.group(2).lower()))
    if not pairs:
        raise BadChecksum("empty SymbolChecksum header")
    return pairs


def pdb_id_offset(head: bytes) -> int | None:
    """Where the 20-byte PDB id of a portable PDB starts, read from its metadata header in ``head``
    (the first 4 KiB are plenty); ``None`` when ``head`` does not start a portable PDB."""
    try:
        signature, _, _, _, version_length = struct.unpack_from("<IHHII", head, 0)
        if signature != _METADATA_SIGNATURE:
            return None
        position = 16 + version_length
        _, count = struct.unpack_from("<HH", head, position)
        position += 4
        for _ in range(count):
            offset, size = struct.unpack_from("<II", head, position)
            position += 8
            end = head.index(b"\0", position)
            name = head[position:end]
            position += (end - position + 4) & ~3  # the name, its NUL, padded to 4 bytes
            if name == b"#Pdb":
                return int(offset) if size >= PDB_ID_SIZE else None
    except (struct.error, ValueError):
        return None
    return None
