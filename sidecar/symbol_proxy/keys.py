"""Client request paths → lookups: which objects, in which file types, a request asks for.

Three request forms reach the proxy:

* SymSrv / SSQP keys ``<name>/<id>/<name>`` (under ``/symbols/``), sent by WinDbg, Visual Studio,
  ``dotnet-symbol``, Symbolicator itself and any SSQP client;
* unified paths ``<id[0:2]>/<id[2:]>/<kind>`` (under ``/unified/``), Sentry's ``symsorter`` layout;
* debuginfod requests ``/buildid/<id>/<kind>``.

``parse_symstore_path`` is Symbolicator's proxy parser, unchanged (``layouts.md`` §11); the
``proxy_path_parse`` vectors pin it down. ``parse_symsrv_request`` starts from the same row table but
serves more of what real clients send, and validates strictly so that garbage is a fast 404 that
never reaches a source. Its extensions:

1. Case: names and ids match case-insensitively (SSQP requires it; Windows tools send uppercase
   GUIDs and original names, SSQP clients lowercase). The query keeps the request's spelling, for
   case-sensitive stores; the cache key is the lowercase canonical form, the same for every case
   variant.
2. Compressed names: a trail equal to ``lead[:-1] + "_"`` (``foo.pd_``) asks for the CAB form. It
   gets the plain file's alternatives and cache key and ``Variant.COMPRESSED``; the server decides how
   to answer (upstream 404s, symbolicator#1951).
3. Fast 404s: ``file.ptr`` / ``refs.ptr`` as the trail and ``index2.txt`` / ``pingme.txt`` as the whole
   path are store bookkeeping that symsrv probes after a miss; they are never looked up.
4. Breakpad: ``<debug_file>/<BREAKPADID>/<stem>.sym`` (the trail ends in ``.sym`` and differs from
   the lead) asks for a Breakpad file. The stem is the debug file without ``.pdb`` (upstream's rule)
   or, as Breakpad's documentation has it, without ``.exe`` / ``.dll`` / ``.pdb``.
5. Portable PDBs: a PDB age of ``FFFFFFFF`` is the SSQP portable-PDB key, so ``portablepdb`` is
   asked for besides ``pdb``.
6. PE ids: ``<8-digit timestamp><size>`` is validated; its canonical form (``%08x%x``) is the cache key
   and a second alternative when the request zero-pads the size, as the DAC/SOS spec text does. For
   DAC/DBI/SOS names both spellings are probed (``ssqp-keys.md`` §5 #1).
7. ELF build ids: an SSQP key pads 8..20-byte ids with zero bytes to 20 (discrepancy #10), while
   Symbolicator-style stores use the real id. A 40-digit id ending in zero bytes also probes its
   16- and 8-byte forms, after the padded one; a 16- or 8-byte id also probes its padded form.
8. Mach-O: the UUID is both the code id and the debug id (they are the same for Mach-O), so stores
   keyed either way are found.
9. Not supported yet, answered 404 with a reason: ``sha1-`` (source files by hash), ``r2rmap-``
   (ReadyToRun perf maps) and ``*-coreclr-`` (runtime-keyed DAC/DBI/SOS) keys; JS source-map keys
   and other non-hex ids.
10. GUID+age ids: a 33- to 40-digit id under a name without ``.pdb`` (``Async.pdbx``) is read as a
    PDB key, not as a PE id (which has at most 16 digits), like ``.pdb`` names.
11. Strict shape: exactly three non-empty segments; ids of the right length and all hex; names
    without control characters or backslashes, not ``.`` / ``..``, shorter than 256 bytes (a longer
    name would generate no candidate path anyway).
12. Nil ids (all zeros) name no object by themselves: a request that carries nothing else (a unified
    or debuginfod path, an ``_.debug`` / ``_.dwarf`` key) is a fast 404; one that carries a file name
    keeps it (``Lookup.name_required``), so only locations that contain that name are probed.
13. ``SymbolChecksum`` (``with_checksum``): the client's checksum goes into every query (sources with
    ``requires_checksum`` need it, HTTP sources forward it) and into the cache key, so a file fetched
    for one checksum is never served to a request with another, or with none.

The cache key is canonical (lowercase): it names the object. Which spelling of a name was asked
for is kept in ``Lookup.spelling``; the resolver adds it to the key only when some source would
probe different locations for another spelling (``docs/caching.md``).
"""

from __future__ import annotations

import dataclasses
import enum
import re
import string
import uuid

from symbol_proxy import checksums
from symbol_proxy.checksums import BadChecksum
from symbol_proxy.layouts import breakpad_stem
from symbol_proxy.objects import DebugId, FileType, InvalidId, ObjectQuery, ObjectType, normalize_code_id

__all__ = [
    "Alternative",
    "BadChecksum",
    "Lookup",
    "NotALookup",
    "Protocol",
    "Variant",
    "parse_debuginfod_request",
    "parse_symsrv_request",
    "parse_symstore_path",
    "parse_unified_request",
    "with_checksum",
]

F = FileType


class Protocol(enum.StrEnum):
    SYMSRV = "symsrv"
    UNIFIED = "unified"
    DEBUGINFOD = "debuginfod"


class Variant(enum.StrEnum):
    PLAIN = "plain"
    COMPRESSED = "compressed"  # the client asked for the `_` name (foo.pd_)


class NotALookup(ValueError):
    """The path is not a lookup we can answer: the server answers 404 at once, without touching any
    source. ``str(exc)`` says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class Alternative:
    """One reading of a request: an object and the file types that can answer for it."""

    query: ObjectQuery
    filetypes: tuple[FileType, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Lookup:
    """A parsed request: what to look for, and under which key to cache the answer."""

    protocol: Protocol
    alternatives: tuple[Alternative, ...]
    """In preference order; candidates from all alternatives are probed, duplicates dropped."""
    cache_key: str
    """Canonical and lowercase, unique per served (plain, decompressed) file; the same for every case
    variant of the request; a compressed request has the key of the plain file."""
    file_name: str
    """The plain file name to present (``crash.pdb``, ``debuginfo``)."""
    variant: Variant = Variant.PLAIN
    spelling: str = ""
    """The request's own spelling of the file name it carries (empty when it carries none): the
    only part of a request whose case can change which upstream locations are probed."""
    name_required: str | None = None
    """Set for a lookup by a nil id: only locations that contain this name (lowercase) may answer,
    since an id of zeros alone would match any module stored under it."""

    def casefolded(self) -> Lookup:
        """The same lookup spelled in lowercase (what an SSQP client sends)."""
        if self.spelling == self.spelling.lower():
            return self
        alternatives = tuple(
            Alternative(
                dataclasses.replace(
                    a.query,
                    code_file=_lower_or_none(a.query.code_file),
                    debug_file=_lower_or_none(a.query.debug_file),
                ),
                a.filetypes,
            )
            for a in self.alternatives
        )
        return dataclasses.replace(self, alternatives=alternatives, spelling=self.spelling.lower())


def _lower_or_none(text: str | None) -> str | None:
    return None if text is None else text.lower()


def with_checksum(lookup: Lookup, header: str) -> Lookup:
    """``lookup`` for the file whose ``SymbolChecksum`` is ``header``; raises ``BadChecksum``.

    The header is forwarded as the client sent it (sources compare it themselves); the cache key
    gets its normalised form (uppercase algorithm, lowercase digits, sorted).
    """
    pairs = checksums.parse(header)
    normalised = ";".join(sorted(f"{algorithm}:{digest}" for algorithm, digest in pairs))
    parts = [part.strip() for part in header.strip().split(";") if part.strip()]
    forwarded = ";".join(parts)
    alternatives = tuple(
        Alternative(dataclasses.replace(a.query, debug_checksum=forwarded), a.filetypes)
        for a in lookup.alternatives
    )
    return dataclasses.replace(
        lookup, alternatives=alternatives, cache_key=f"{lookup.cache_key}|checksum={normalised}"
    )


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_HEX = re.compile(r"[0-9a-f]+")
_BAD_NAME_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


# --------------------------------------------------------------------------------------------------
# Symbolicator's parser (§11)


def _code_query(raw_id: str, lead: str, object_type: ObjectType) -> ObjectQuery:
    # Upstream's CodeId keeps only the hex digits, lowercased; an empty result means "no code id".
    code_id = normalize_code_id(raw_id) or None
    return ObjectQuery(code_id=code_id, code_file=lead or None, object_type=object_type)


def parse_symstore_path(path: str) -> tuple[list[FileType], ObjectQuery] | None:
    """Symbolicator's ``parse_symstore_path``: ``None`` means 404.

    The path splits on its first two ``/``; the names must be equal ignoring case; then the first
    matching row of the §11 table decides the file type and the query.
    """
    parts = path.split("/", 2)
    if len(parts) != 3:
        return None
    lead, sig, trail = parts
    lead_lower = lead.lower()
    if lead_lower != trail.translate(_ASCII_LOWER):  # upstream: Unicode-lowercased lead, ASCII-folded compare
        return None
    sig_lower = sig.lower()
    # The prefixes are ASCII without a `k`, so `sig_lower` starting with one means `sig` does too.
    if lead_lower.endswith(".debug") and sig_lower.startswith("elf-buildid-sym-"):
        return [F.ELF_DEBUG], _code_query(sig[16:], lead, ObjectType.ELF)
    if sig_lower.startswith("elf-buildid-"):
        return [F.ELF_CODE], _code_query(sig[12:], lead, ObjectType.ELF)
    if lead_lower.endswith(".dwarf") and sig_lower.startswith("mach-uuid-sym-"):
        return [F.MACH_DEBUG], _code_query(sig[14:], lead, ObjectType.MACHO)
    if sig_lower.startswith("mach-uuid-"):
        return [F.MACH_CODE], _code_query(sig[10:], lead, ObjectType.MACHO)
    if lead_lower.endswith(".pdb"):
        try:
            debug_id = DebugId.parse_breakpad(sig)
        except InvalidId:
            return None
        return [F.PDB], ObjectQuery(debug_id=debug_id, debug_file=lead or None, object_type=ObjectType.PE)
    return [F.PE], _code_query(sig, lead, ObjectType.PE)


# --------------------------------------------------------------------------------------------------
# Shared id rules


def _is_hex(text: str) -> bool:
    """``text`` (already lowercase) is a non-empty run of hex digits."""
    return _HEX.fullmatch(text) is not None


def _is_nil(hex_id: str) -> bool:
    """An id of zeros only: no object's own id, whatever the id's length."""
    return not hex_id.strip("0")


def _refuse_nil(hex_id: str, what: str) -> None:
    if _is_nil(hex_id):
        raise NotALookup(f"{what} is all zeros (a nil id names no object by itself)")


def _build_id(text: str) -> str:
    build_id = text.lower()
    if not _is_hex(build_id) or len(build_id) % 2 or not 8 <= len(build_id) <= 128:
        raise NotALookup(f"malformed build id {text!r}: expected an even number (8 to 128) of hex digits")
    return build_id


def _elf_ids(build_id: str) -> list[str]:
    """The build id as given, then its SSQP-padded or unpadded twins (discrepancy #10)."""
    ids = [build_id]
    if len(build_id) == 40:
        if build_id.endswith("00000000"):
            ids.append(build_id[:32])
            if build_id.endswith("0" * 24):
                ids.append(build_id[:16])
    elif len(build_id) in (16, 32):
        ids.append(build_id.ljust(40, "0"))
    return ids


def _elf_query(build_id: str, code_file: str | None) -> ObjectQuery:
    return ObjectQuery(code_id=build_id, code_file=code_file, object_type=ObjectType.ELF)


def _elf_alternatives(
    build_id: str, filetypes: tuple[FileType, ...], code_file: str | None
) -> tuple[Alternative, ...]:
    return tuple(Alternative(_elf_query(ident, code_file), filetypes) for ident in _elf_ids(build_id))


def _mach_query(uuid_hex: str, code_file: str | None, object_type: ObjectType) -> ObjectQuery:
    debug_id = DebugId(uuid.UUID(hex=uuid_hex))
    return ObjectQuery(code_id=uuid_hex, code_file=code_file, debug_id=debug_id, object_type=object_type)


def _wasm_query(code_id: str) -> ObjectQuery:
    """Symbolic's wasm ids: the code id is the build_id payload, the debug id its first 16 bytes."""
    debug_id = DebugId(uuid.UUID(hex=code_id[:32])) if len(code_id) >= 32 else None
    return ObjectQuery(code_id=code_id, debug_id=debug_id, object_type=ObjectType.WASM)


def _breakpad_id(text: str, what: str) -> DebugId:
    try:
        return DebugId.parse_breakpad(text)
    except InvalidId:
        raise NotALookup(
            f"malformed {what} {text!r}: expected 32 hex digits of GUID followed by 1 to 8 of age"
        ) from None


# --------------------------------------------------------------------------------------------------
# SymSrv / SSQP keys

_STORE_MARKERS = frozenset({"index2.txt", "pingme.txt"})
_POINTER_FILES = frozenset({"file.ptr", "refs.ptr"})
_UNSUPPORTED_PREFIXES = (
    ("sha1-", "SSQP sha1- keys (files addressed by content hash, e.g. sources) are not supported yet"),
    ("r2rmap-", "ReadyToRun perf-map keys (r2rmap-) are not supported yet"),
)
_DAC_SOS_NAMES = ("mscordaccore", "mscordbi", "sos.", "sos_")
_PE_LIKE = (".pdb", ".exe", ".dll")


def _check_name(name: str) -> None:
    if not name:
        raise NotALookup("expected <name>/<id>/<name>, got an empty segment")
    if name in (".", ".."):
        raise NotALookup(f"{name!r} is not a file name")
    if _BAD_NAME_CHAR.search(name):
        raise NotALookup(f"file name {name!r} contains a control character or a backslash")
    if len(name.encode()) >= 256:
        raise NotALookup("file name is 256 bytes or longer")


def _pe_alternatives(lead: str, lead_lower: str, sig_lower: str) -> tuple[tuple[Alternative, ...], str]:
    if not 9 <= len(sig_lower) <= 16 or not _is_hex(sig_lower):
        raise NotALookup(
            f"malformed PE id {sig_lower!r}: expected an 8-digit hex timestamp and the image size in hex"
        )
    size = int(sig_lower[8:], 16)
    canonical = f"{sig_lower[:8]}{size:x}"
    ids = [sig_lower]
    if canonical != sig_lower:
        ids.append(canonical)
    padded = f"{sig_lower[:8]}{size:08x}"
    dac_sos = lead_lower.startswith(_DAC_SOS_NAMES)
    if dac_sos and padded not in ids:
        ids.append(padded)
    alternatives = tuple(
        Alternative(ObjectQuery(code_id=ident, code_file=lead, object_type=ObjectType.PE), (F.PE,))
        for ident in ids
    )
    # An id spelled otherwise probes more locations than the canonical one (unless the canonical one
    # probes that spelling too, as for DAC/SOS), so it cannot share its answer: a miss of the canonical
    # locations would hide a file stored under the id as sent.
    shared = sig_lower == canonical or (dac_sos and sig_lower == padded)
    return alternatives, canonical if shared else sig_lower


def _identify(lead: str, lead_lower: str, sig: str) -> tuple[tuple[Alternative, ...], str]:
    """The alternatives of a plain key and its canonical (cache key) id, by the §11 rows."""
    sig_lower = sig.lower()
    if "-coreclr-" in sig_lower:
        raise NotALookup("runtime-keyed DAC/DBI/SOS keys (*-coreclr-) are not supported yet")
    for prefix, reason in _UNSUPPORTED_PREFIXES:
        if sig_lower.startswith(prefix):
            raise NotALookup(reason)
    if sig_lower.startswith("elf-buildid-sym-"):
        if not lead_lower.endswith(".debug"):
            raise NotALookup("elf-buildid-sym- keys name a debug file: <name>.debug, conventionally _.debug")
        build_id = _build_id(sig_lower[16:])
        _refuse_nil(build_id, "the build id of an _.debug key")
        return _elf_alternatives(build_id, (F.ELF_DEBUG,), lead), f"elf-buildid-sym-{build_id}"
    if sig_lower.startswith("elf-buildid-"):
        build_id = _build_id(sig_lower[12:])
        return _elf_alternatives(build_id, (F.ELF_CODE,), lead), f"elf-buildid-{build_id}"
    if sig_lower.startswith("mach-uuid-"):
        debug = sig_lower.startswith("mach-uuid-sym-")
        if debug and not lead_lower.endswith(".dwarf"):
            raise NotALookup("mach-uuid-sym- keys name a dSYM file: <name>.dwarf, conventionally _.dwarf")
        prefix = "mach-uuid-sym-" if debug else "mach-uuid-"
        uuid_hex = sig_lower[len(prefix) :]
        if len(uuid_hex) != 32 or not _is_hex(uuid_hex):
            raise NotALookup(f"malformed Mach-O UUID {uuid_hex!r}: expected 32 hex digits")
        if debug:
            _refuse_nil(uuid_hex, "the UUID of an _.dwarf key")
        filetype = F.MACH_DEBUG if debug else F.MACH_CODE
        return (Alternative(_mach_query(uuid_hex, lead, ObjectType.MACHO), (filetype,)),), prefix + uuid_hex
    if lead_lower.endswith(".pdb") or (33 <= len(sig_lower) <= 40 and _is_hex(sig_lower)):
        # A GUID+age id is longer than any PE id (9 to 16 digits), so it names a PDB-style file
        # whatever the extension: portable `.pdbx` files, or a Mach/ELF debug file on a native store.
        debug_id = _breakpad_id(sig, "PDB signature")
        filetypes = (F.PDB, F.PORTABLEPDB) if debug_id.appendix == 0xFFFFFFFF else (F.PDB,)
        query = ObjectQuery(debug_id=debug_id, debug_file=lead, object_type=ObjectType.PE)
        return (Alternative(query, filetypes),), debug_id.breakpad().lower()
    return _pe_alternatives(lead, lead_lower, sig_lower)


def _name_required(alternatives: tuple[Alternative, ...], name: str) -> str | None:
    """``name`` when the lookup's id is nil: then only locations that carry the name may answer."""
    for alternative in alternatives:
        query = alternative.query
        if query.debug_id is not None and query.debug_id.uuid.int == 0:
            return name
        if query.code_id is not None and _is_nil(query.code_id):
            return name
    return None


def _breakpad_lookup(lead: str, lead_lower: str, sig: str, trail: str, trail_lower: str) -> Lookup:
    canonical = breakpad_stem(lead_lower) + ".sym"
    documented = (lead_lower[:-4] if lead_lower.endswith(_PE_LIKE) else lead_lower) + ".sym"
    if trail_lower not in (canonical, documented):
        raise NotALookup(
            f"file names differ: {lead!r} vs {trail!r} (a Breakpad file is <debug file without .pdb>.sym)"
        )
    debug_id = _breakpad_id(sig, "Breakpad id")
    object_type = ObjectType.PE if lead_lower.endswith(_PE_LIKE) else ObjectType.UNKNOWN
    query = ObjectQuery(debug_id=debug_id, debug_file=lead, object_type=object_type)
    alternatives = (Alternative(query, (F.BREAKPAD,)),)
    return Lookup(
        protocol=Protocol.SYMSRV,
        alternatives=alternatives,
        cache_key=f"symsrv/{lead_lower}/{debug_id.breakpad().lower()}/{canonical}",
        file_name=trail,
        spelling=lead,
        name_required=_name_required(alternatives, lead_lower),
    )


def parse_symsrv_request(path: str) -> Lookup:
    """A SymSrv/SSQP key (the path after ``/symbols/``) as a lookup; raises ``NotALookup``.

    ``crash.pdb/3249D99D0C4049318610F4E4FB0B69361/crash.pdb`` → the PDB with that GUID and age.
    The extensions over Symbolicator's parser are listed in the module docstring.
    """
    if path.lower() in _STORE_MARKERS:
        raise NotALookup(f"{path!r} is a store marker, not a symbol file")
    parts = path.split("/")
    if len(parts) != 3:
        raise NotALookup(f"expected <name>/<id>/<name>, got {len(parts)} path segment(s)")
    lead, sig, trail = parts
    _check_name(lead)
    _check_name(trail)
    if not sig:
        raise NotALookup("expected <name>/<id>/<name>, got an empty id")
    lead_lower, trail_lower = lead.lower(), trail.lower()
    if trail_lower in _POINTER_FILES:
        raise NotALookup(f"{trail} is a SymStore pointer file; pointers are not served")
    if trail_lower == lead_lower:
        variant = Variant.PLAIN
    elif trail_lower == lead_lower[:-1] + "_":
        variant = Variant.COMPRESSED
    elif trail_lower.endswith(".sym"):
        return _breakpad_lookup(lead, lead_lower, sig, trail, trail_lower)
    else:
        raise NotALookup(f"file names differ: {lead!r} vs {trail!r}")
    alternatives, canonical_id = _identify(lead, lead_lower, sig)
    return Lookup(
        protocol=Protocol.SYMSRV,
        alternatives=alternatives,
        cache_key=f"symsrv/{lead_lower}/{canonical_id}/{lead_lower}",
        file_name=lead,
        variant=variant,
        spelling=lead,
        name_required=_name_required(alternatives, lead_lower),
    )


# --------------------------------------------------------------------------------------------------
# Unified paths (layouts.md §4.5)

_UNIFIED_KINDS: dict[str, dict[ObjectType, tuple[FileType, ...]]] = {
    "executable": {
        ObjectType.ELF: (F.ELF_CODE,),
        ObjectType.MACHO: (F.MACH_CODE,),
        ObjectType.WASM: (F.WASM_CODE,),
        ObjectType.PE: (F.PE,),
    },
    "debuginfo": {
        ObjectType.ELF: (F.ELF_DEBUG,),
        ObjectType.MACHO: (F.MACH_DEBUG,),
        ObjectType.WASM: (F.WASM_DEBUG,),
        ObjectType.PE: (F.PDB, F.PORTABLEPDB),
    },
    # Keyed like the object's main file (PE: by debug id; others: by code id).
    **{
        kind: {t: (filetype,) for t in (ObjectType.ELF, ObjectType.MACHO, ObjectType.WASM, ObjectType.PE)}
        for kind, filetype in (
            ("breakpad", F.BREAKPAD),
            ("sourcebundle", F.SOURCEBUNDLE),
            ("il2cpp", F.IL2CPP),
        )
    },
    # Keyed by code id (or UUID), never by a PE debug id.
    **{
        kind: {t: (filetype,) for t in (ObjectType.ELF, ObjectType.MACHO, ObjectType.WASM)}
        for kind, filetype in (("uuidmap", F.UUIDMAP), ("bcsymbolmap", F.BCSYMBOLMAP))
    },
}


def parse_unified_request(path: str) -> Lookup:
    """A unified path (after ``/unified/``) as a lookup; raises ``NotALookup``.

    The id's shape says which objects it can name, in this preference order: 40 hex digits are an
    ELF build id, or a PE/PDB debug id with an 8-digit age; 32 a Mach-O UUID, a 16-byte ELF build id
    or a wasm build id; 33 to 39 a PE/PDB debug id (GUID + age). Other even lengths from 8 to 128
    are ELF or wasm build ids (a wasm code id keeps its length byte: 34 digits for 16 bytes). An id
    of zeros is a fast 404. A PE/PDB reading is used only when the unified layout writes that debug id
    exactly as requested (no zero-padded age), so a unified source is probed at the requested path.
    """
    parts = path.split("/")
    if len(parts) != 3:
        raise NotALookup(f"expected <id[0:2]>/<id[2:]>/<kind>, got {len(parts)} path segment(s)")
    head, rest, kind = parts
    if len(head) != 2 or not rest:
        raise NotALookup("expected <id[0:2]>/<id[2:]>/<kind>: the first segment is two hex digits")
    ident = (head + rest).lower()
    if not _is_hex(ident):
        raise NotALookup(f"malformed id {head + rest!r}: expected hex digits")
    _refuse_nil(ident, "the id of a unified path")
    kind_lower = kind.lower()
    by_type = _UNIFIED_KINDS.get(kind_lower)
    if by_type is None:
        raise NotALookup(f"unknown unified file kind {kind!r}; expected one of {', '.join(_UNIFIED_KINDS)}")
    length = len(ident)
    elf = [_elf_query(i, None) for i in _elf_ids(ident)] if length % 2 == 0 and 8 <= length <= 128 else []
    pe: list[ObjectQuery] = []
    if 33 <= length <= 40:
        debug_id = DebugId.parse_breakpad(ident)
        if debug_id.breakpad().lower() == ident:
            pe.append(ObjectQuery(debug_id=debug_id, object_type=ObjectType.PE))
    # A wasm code id is the whole build_id payload, length byte included (34 digits for a 16-byte
    # id, as symbolic and sentry-cli write it), so any even length can name a wasm module.
    wasm = [_wasm_query(ident)] if length % 2 == 0 and 8 <= length <= 128 else []
    readings: list[tuple[ObjectType, list[ObjectQuery]]]
    if length == 40:
        readings = [(ObjectType.ELF, elf), (ObjectType.PE, pe), (ObjectType.WASM, wasm)]
    elif length == 32:
        mach = _mach_query(ident, None, ObjectType.MACHO)
        readings = [(ObjectType.MACHO, [mach]), (ObjectType.ELF, elf), (ObjectType.WASM, wasm)]
    else:
        readings = [(ObjectType.PE, pe), (ObjectType.ELF, elf), (ObjectType.WASM, wasm)]
    alternatives = tuple(
        Alternative(query, by_type[object_type])
        for object_type, queries in readings
        if object_type in by_type
        for query in queries
    )
    if not alternatives:
        raise NotALookup(f"no object stores a {kind_lower} file under a {length}-digit id")
    return Lookup(
        protocol=Protocol.UNIFIED,
        alternatives=alternatives,
        cache_key=f"unified/{ident}/{kind_lower}",
        file_name=kind_lower,
    )


# --------------------------------------------------------------------------------------------------
# debuginfod

_DEBUGINFOD_KINDS: dict[str, tuple[FileType, ...]] = {
    "debuginfo": (F.ELF_DEBUG,),
    "executable": (F.ELF_CODE,),
}


def parse_debuginfod_request(build_id: str, kind: str) -> Lookup:
    """``/buildid/<build_id>/<kind>`` as a lookup for an ELF object; raises ``NotALookup``.

    Only ``debuginfo`` and ``executable`` are served (``source`` and ``section`` need the file's
    contents, not a store lookup). Build ids are case-insensitive hex of 4 to 64 bytes.
    """
    filetypes = _DEBUGINFOD_KINDS.get(kind)
    if filetypes is None:
        raise NotALookup(f"debuginfod {kind!r} requests are not served; only debuginfo and executable")
    ident = _build_id(build_id)
    _refuse_nil(ident, "the build id")
    return Lookup(
        protocol=Protocol.DEBUGINFOD,
        alternatives=_elf_alternatives(ident, filetypes, None),
        cache_key=f"buildid/{ident}/{kind}",
        file_name=kind,
    )
