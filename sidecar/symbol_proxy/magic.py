"""What a downloaded body is, judged from its first bytes.

Two questions are answered here, before anything is written to the cache:

* :func:`sniff`: is the body a compressed container (zstd, gzip, zlib, zip, CAB) that has to be
  unpacked first (``shared/specs/layouts.md`` §5)? Symbol servers serve ``foo.pd_`` as a CAB, some
  stores keep gzip or zstd files under the plain name, and a debuginfod or S3 store may hold anything.
* :func:`looks_like`: could the (unpacked) body be the file type that was asked for? Servers answer
  a missing file with an HTML error page and status 200 often enough that clients were burnt by it
  (``shared/specs/clients.md`` §7.1: "validate payload magic before caching"). One such page cached
  as ``foo.pdb`` would poison every later lookup, so a body whose start cannot be a PDB is refused.

Both functions only look at a few dozen leading bytes (the resolver peeks 64) and do no I/O, so they
run on the event loop while the rest of the body is still in flight.
"""

from __future__ import annotations

import enum
import zlib

from symbol_proxy.objects import FileType

__all__ = ["MIN_SNIFF", "Container", "looks_like", "sniff"]

MIN_SNIFF = 4
"""Bodies shorter than this are never treated as containers (the spec leaves them alone)."""


class Container(enum.StrEnum):
    """A compressed wrapper that :mod:`symbol_proxy.compression` can unpack."""

    ZSTD = "zstd"
    GZIP = "gzip"
    ZLIB = "zlib"
    ZIP = "zip"
    CAB = "cab"


_ZSTD = b"\x28\xb5\x2f\xfd"
_ZSTD_SKIPPABLE = b"\x2a\x4d\x18"
"""Bytes 1-3 of a skippable zstd frame (byte 0 is 0x50-0x5F); ``pzstd`` output starts with one."""
_GZIP = b"\x1f\x8b"
_ZIP = b"PK\x03\x04"
_CAB = b"MSCF"
_SOURCE_BUNDLE = b"SYSB"
"""symbolic's source bundle header (then a format version), written before the zip by sentry-cli."""
_ZLIB_HEADERS = (b"\x78\x01", b"\x78\x9c", b"\x78\xda")
"""The zlib headers zlib itself writes (32 KiB window, fastest / default / best compression)."""

_MSF7 = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS"
_MSF2 = b"Microsoft C/C++ program database 2.00\r\n\x1aJG"
"""The pre-2000 PDB format: still served by old stores, and ``objects.DebugId`` parses its ids."""
_PORTABLE_PDB = b"BSJB"
_PE = b"MZ"
_ELF = b"\x7fELF"
_MACHO = (
    b"\xfe\xed\xfa\xce",  # MH_MAGIC, big endian
    b"\xce\xfa\xed\xfe",  # MH_MAGIC, little endian
    b"\xfe\xed\xfa\xcf",  # MH_MAGIC_64, big endian
    b"\xcf\xfa\xed\xfe",  # MH_MAGIC_64, little endian
    b"\xca\xfe\xba\xbe",  # FAT_MAGIC (fat headers are always big endian)
    b"\xca\xfe\xba\xbf",  # FAT_MAGIC_64
)
_BREAKPAD = b"MODULE "
_WASM = b"\0asm"

_SIGNATURES: dict[FileType, tuple[bytes, ...]] = {
    FileType.PDB: (_MSF7, _MSF2, _PORTABLE_PDB),
    FileType.PORTABLEPDB: (_PORTABLE_PDB,),
    FileType.PE: (_PE,),
    FileType.ELF_CODE: (_ELF,),
    FileType.ELF_DEBUG: (_ELF,),
    FileType.MACH_CODE: _MACHO,
    FileType.MACH_DEBUG: _MACHO,
    FileType.BREAKPAD: (_BREAKPAD,),
    FileType.WASM_CODE: (_WASM,),
    FileType.WASM_DEBUG: (_WASM,),
    FileType.SOURCEBUNDLE: (_SOURCE_BUNDLE, _ZIP),
}
"""Leading bytes each file type may start with. Types missing here (text formats without a fixed
header: uuidmap, bcsymbolmap, il2cpp, proguard) are not checked."""

_DEBUG_MAGICS = tuple({sig for sigs in _SIGNATURES.values() for sig in sigs})


def sniff(head: bytes) -> Container | None:
    """The container format of a body starting with ``head``, or ``None`` for a plain file.

    ``head`` should hold the first few dozen bytes (at least :data:`MIN_SNIFF`; shorter bodies are
    plain files). A zstd file may also open with a skippable frame (``pzstd`` writes one). The zlib
    header is only two bytes with a weak check, so a zlib stream is reported only when the body is
    not a known debug file and the bytes after the header inflate cleanly.
    """
    if len(head) < MIN_SNIFF:
        return None
    if head.startswith(_ZSTD) or (head[0] & 0xF0 == 0x50 and head[1:4] == _ZSTD_SKIPPABLE):
        return Container.ZSTD
    if head.startswith(_GZIP):
        return Container.GZIP
    if head.startswith(_ZIP):
        return Container.ZIP
    if head.startswith(_CAB):
        return Container.CAB
    if head[:2] in _ZLIB_HEADERS and _plausible_zlib(head):
        return Container.ZLIB
    return None


def _plausible_zlib(head: bytes) -> bool:
    if head.startswith(_DEBUG_MAGICS):
        return False
    try:
        # The output is capped: a few bytes of deflate can expand a thousandfold.
        zlib.decompressobj().decompress(head, 4096)
    except zlib.error:
        return False
    return True


def looks_like(filetype: FileType, head: bytes) -> bool:
    """Whether a file starting with ``head`` can be of ``filetype``.

    This is a plausibility check on the magic bytes only, meant to keep error pages and other
    unrelated bodies out of the cache; it does not parse the file. A portable PDB passes for
    ``pdb`` because SymSrv keys serve both kinds under the same ``.pdb`` name.
    """
    signatures = _SIGNATURES.get(filetype)
    if signatures is None:
        return True
    return head.startswith(signatures)
