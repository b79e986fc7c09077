"""What a debug file is, and the keys it is published under. Pure: no I/O, no third-party parser.

``scanning`` reads a file with ``symbolic`` and describes each object in it as an ``Identity``; this
module turns an identity into

* the lookup **keys** a symbol server answers for it, spelled as the fixtures' ``MANIFEST.json``
  spells them (``symsrv``, ``ssqp``, ``breakpad``, ``debuginfod``, ``gdb_build_id_path``), which are
  also the client keys posted to the Symbol Service (``client_keys``), and
* the **store paths** of a local store in any of the proxy's layouts (``store_paths``).

Both start from the proxy's own layouts (``symbol_proxy.layouts``), so the proxy reads a store at
exactly the paths this CLI writes. Where the published spelling differs from the layouts' lookup
spelling, the difference is one documented re-casing, never a second implementation:

* SymSrv writes a PDB signature all uppercase (``<GUID><AGE %X>``, ``…FFFFFFFF`` for portable PDBs);
  the symstore layout builds the age in lowercase. The id segment is uppercased.
* SSQP keeps a PE's ``<TIMESTAMP><size>`` id as SymSrv spells it and lowercases only the file names
  (dotnet/symstore's key generator and its tests); the ssqp layout lowercases the whole key. The
  SymSrv key is taken and its names lowercased.
* SSQP pads ELF build ids shorter than 20 bytes with zero bytes; the layouts use the id as found.
  The query is given the padded id.
"""

from __future__ import annotations

import dataclasses
import enum

from symbol_proxy import layouts
from symbol_proxy.config import Layout, LayoutType
from symbol_proxy.objects import DebugId, FileType, ObjectQuery, ObjectType

__all__ = ["CLIENT_KEY_KINDS", "KEY_KINDS", "Format", "Identity", "client_keys", "keys", "store_paths"]

F = FileType


class Format(enum.StrEnum):
    """File formats as ``symbolic`` names them (``file_format``)."""

    PE = "pe"
    PDB = "pdb"
    PORTABLEPDB = "portablepdb"
    ELF = "elf"
    MACHO = "macho"
    BREAKPAD = "breakpad"
    WASM = "wasm"
    SOURCEBUNDLE = "sourcebundle"


KEY_KINDS = ("symsrv", "ssqp", "breakpad", "debuginfod", "gdb_build_id_path")
"""Every kind of key, in the manifest's names."""
CLIENT_KEY_KINDS = ("symsrv", "ssqp", "breakpad")
"""The kinds that are ``<name>/<id>/<name>`` keys, the only form a Symbol Service request holds."""

_SSQP_ELF_ID_LENGTH = 40  # 20 bytes of hex: SSQP pads shorter build ids (SSQP_Key_Conventions.md)


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """One object of a debug file, as ``symbolic`` reads it (several for a universal Mach-O)."""

    name: str
    """The file's own name: keys are built from it (``crash.pdb``, ``libfoo.so.dbg``)."""
    format: Format
    kind: str
    """``exe``, ``lib``, ``dbg``, ``other``, ``sources`` (symbolic's object kinds)."""
    arch: str
    debug_id: DebugId | None
    code_id: str | None
    features: frozenset[str] = frozenset()
    """``debug``, ``symtab``, ``unwind``, ``sources``."""
    module_name: str | None = None
    """The debug file a Breakpad file or a source bundle belongs to (``MODULE`` line, manifest)."""

    @property
    def has_code(self) -> bool:
        return self.kind in ("exe", "lib")

    @property
    def has_debug_info(self) -> bool:
        return "debug" in self.features

    @property
    def object_type(self) -> ObjectType:
        if self.format == Format.PORTABLEPDB:
            return ObjectType.PE_DOTNET
        if self.format in (Format.PE, Format.PDB, Format.SOURCEBUNDLE):
            return ObjectType.PE
        if self.format == Format.BREAKPAD:
            return ObjectType.UNKNOWN
        return ObjectType(self.format.value)

    def query(self, *, name: str | None = None, code_id: str | None = None) -> ObjectQuery:
        """The object as the proxy's layouts see it; ``name``/``code_id`` override the file's."""
        own = name or self.name
        debug_file = self.module_name if self.format in (Format.BREAKPAD, Format.SOURCEBUNDLE) else own
        return ObjectQuery(
            code_id=code_id or self.code_id,
            code_file=own,
            debug_id=self.debug_id,
            debug_file=debug_file,
            object_type=self.object_type,
        )

    def roles(self) -> list[FileType]:
        """The file types this file serves as: an unstripped ELF is both code and debug file."""
        if self.format == Format.ELF:
            roles = [F.ELF_CODE] if self.has_code or not self.has_debug_info else []
            return roles + ([F.ELF_DEBUG] if self.has_debug_info else [])
        if self.format == Format.MACHO:
            return [F.MACH_DEBUG if self.kind == "dbg" else F.MACH_CODE]
        if self.format == Format.WASM:
            return [F.WASM_DEBUG if self.has_debug_info else F.WASM_CODE]
        return [FileType(self.format.value)]

    def keyable(self) -> str | None:
        """``None`` when the object has an identifier a symbol server can key; else why not."""
        if self.format in (Format.ELF, Format.MACHO, Format.PE) and not self.code_id:
            return "no code identifier (ELF without a GNU build id, or a Mach-O without LC_UUID)"
        if self.format in (Format.PDB, Format.PORTABLEPDB, Format.SOURCEBUNDLE) and (
            self.debug_id is None or self.debug_id.is_nil()
        ):
            return "no debug identifier"
        if self.format == Format.BREAKPAD and (self.debug_id is None or not self.module_name):
            return "no MODULE line"
        if self.format == Format.SOURCEBUNDLE and not (self.module_name or "").lower().endswith(".pdb"):
            return "only source bundles of PDBs have a SymSrv key (beside the PDB)"
        if self.format == Format.WASM:
            return "no symbol-server key convention covers WebAssembly (use --layout unified)"
        return None


def _upper_id(path: str) -> str:
    name, ident, trail = path.split("/")
    return f"{name}/{ident.upper()}/{trail}"


def _lower_names(path: str) -> str:
    name, ident, trail = path.split("/")
    return f"{name.lower()}/{ident}/{trail.lower()}"


def keys(identity: Identity) -> dict[str, list[str]]:
    """The keys a symbol server answers for this object, by kind (only kinds that have keys)."""
    if identity.keyable() is not None:
        return {}
    query = identity.query()
    found: dict[str, list[str]] = {}
    fmt = identity.format
    if fmt == Format.PE:
        symsrv = layouts.symstore_paths(F.PE, query)
        found = {"symsrv": symsrv, "ssqp": [_lower_names(p) for p in symsrv]}
    elif fmt in (Format.PDB, Format.PORTABLEPDB):
        filetype = FileType(fmt.value)
        found = {
            "symsrv": [_upper_id(p) for p in layouts.symstore_paths(filetype, query)],
            "ssqp": layouts.ssqp_paths(filetype, query),
        }
    elif fmt == Format.ELF:
        assert identity.code_id is not None
        padded = identity.query(code_id=identity.code_id.ljust(_SSQP_ELF_ID_LENGTH, "0"))
        ssqp_role = F.ELF_DEBUG if identity.has_debug_info else F.ELF_CODE
        debuginfod_roles = ([F.ELF_CODE] if identity.has_code else []) + (
            [F.ELF_DEBUG] if identity.has_debug_info else []
        )
        gdb_role = F.ELF_DEBUG if identity.has_debug_info and not identity.has_code else F.ELF_CODE
        found = {
            "ssqp": layouts.ssqp_paths(ssqp_role, padded),
            "debuginfod": [
                f"buildid/{path}"
                for role in debuginfod_roles
                for path in layouts.debuginfod_paths(role, query)
            ],
            "gdb_build_id_path": [f".build-id/{path}" for path in layouts.native_paths(gdb_role, query)],
        }
    elif fmt == Format.MACHO:
        found = {"ssqp": layouts.ssqp_paths(identity.roles()[0], query)}
    elif fmt == Format.BREAKPAD:
        found = {"breakpad": layouts.native_paths(F.BREAKPAD, query)}
    elif fmt == Format.SOURCEBUNDLE:
        found = {"symsrv": [_upper_id(p) for p in layouts.symstore_paths(F.SOURCEBUNDLE, query)]}
    return {kind: paths for kind, paths in found.items() if paths}


def client_keys(identity: Identity) -> list[str]:
    """The distinct ``<name>/<id>/<name>`` keys to post for this object (case-insensitively distinct,
    first spelling kept: SymSrv's, then SSQP's)."""
    found = keys(identity)
    seen: set[str] = set()
    result: list[str] = []
    for kind in CLIENT_KEY_KINDS:
        for key in found.get(kind, []):
            if key.lower() not in seen:
                seen.add(key.lower())
                result.append(key)
    return result


_CASE_FOLDED_LAYOUTS = frozenset({LayoutType.SYMSTORE, LayoutType.SSQP, LayoutType.SYMSTORE_INDEX2})


def store_paths(identity: Identity, layout: Layout) -> list[str]:
    """Where this object goes in a local store laid out as ``layout``: the paths the proxy probes.

    SymSrv clients send names as built, SSQP clients lowercase them, and the proxy keeps the
    request's spelling for case-sensitive stores; so a SymSrv-style layout gets the file under both
    spellings of its name. Compressed (``_``) variants are never written.
    """
    if identity.keyable() is not None and not (
        identity.format == Format.WASM and layout.type == LayoutType.UNIFIED
    ):
        return []
    names = [identity.name]
    if layout.type in _CASE_FOLDED_LAYOUTS and identity.name.lower() != identity.name:
        names.append(identity.name.lower())
    paths: list[str] = []
    for name in names:
        query = identity.query(name=name)
        for role in identity.roles():
            candidates = layouts.get_directory_paths(layout, role, query)
            compressed = {path[:-1] + "_" for path in candidates if not path.endswith("_")}
            for path in candidates:
                if path not in compressed and path not in paths:
                    paths.append(path)
    return paths
