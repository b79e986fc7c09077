"""Candidate paths: where a source stores the file of a given type for a given object.

One function per layout turns (file type, object query) into relative paths, and
``get_directory_paths`` runs the whole pipeline of ``shared/specs/layouts.md`` §3: layout function,
then casing on the whole string, then the ``_`` compressed variant for ``pe``/``pdb``.

The output must match Sentry Symbolicator byte for byte (the vectors in ``shared/specs/vectors``
pin it down): a store that Symbolicator can read must be readable here, and a single different
character is a different upstream object. That is why several upstream quirks are kept on purpose:

* the Breakpad ``.sym`` stem strips only ``.pdb`` (``foo.exe`` → ``foo.exe.sym``), through a chain
  of suffix checks whose odd result for ``foo.pdb.dll`` (→ ``foo.sym``) is kept too;
* the ``_`` variant is made on every layout, so unified stores get ``…/executabl_`` probes;
* the casing step is ASCII only, while the ``ssqp`` layout lowercases names with full Unicode rules;
* ``symstore_index2`` takes the first two *bytes* of the path as its prefix and leaves the path
  unprefixed when they do not end on a character boundary;
* ``slashsymbols`` repeats both of its paths for every file type, duplicates included.

The module is pure and allocation-light: it runs for every request, source and file type.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping

from symbol_proxy.config import Casing, Layout, LayoutType
from symbol_proxy.objects import FileType, ObjectQuery, ObjectType, basename

__all__ = [
    "LAYOUT_FUNCTIONS",
    "LayoutFunction",
    "breakpad_stem",
    "debuginfod_paths",
    "filetypes_for",
    "get_directory_paths",
    "native_paths",
    "slashsymbols_paths",
    "ssqp_paths",
    "store_paths",
    "symstore_index2_paths",
    "symstore_paths",
    "unified_paths",
]

F = FileType
LayoutFunction = Callable[[FileType, ObjectQuery], list[str]]

# --------------------------------------------------------------------------------------------------
# Which file types a lookup for an object asks for (§2).

_FILETYPES: dict[ObjectType, tuple[FileType, ...]] = {
    ObjectType.MACHO: (F.MACH_CODE, F.BREAKPAD, F.MACH_DEBUG, F.PDB, F.ELF_DEBUG),
    ObjectType.PE: (F.PE, F.BREAKPAD, F.MACH_DEBUG, F.PDB, F.ELF_DEBUG),
    ObjectType.ELF: (F.ELF_CODE, F.BREAKPAD, F.MACH_DEBUG, F.PDB, F.ELF_DEBUG),
    ObjectType.WASM: (F.WASM_CODE, F.WASM_DEBUG),
    ObjectType.PE_DOTNET: (F.PORTABLEPDB,),
    ObjectType.UNKNOWN: (
        F.PDB,
        F.MACH_DEBUG,
        F.ELF_DEBUG,
        F.PE,
        F.MACH_CODE,
        F.ELF_CODE,
        F.WASM_CODE,
        F.WASM_DEBUG,
        F.BREAKPAD,
        F.SOURCEBUNDLE,
        F.UUIDMAP,
        F.BCSYMBOLMAP,
        F.PORTABLEPDB,
        F.PROGUARD,
    ),
}


def filetypes_for(object_type: ObjectType) -> tuple[FileType, ...]:
    """The file types a native lookup requests for an object, in Symbolicator's order (§2).

    Every native object also asks for ``pdb`` and ``mach_debug``: Symbolicator probes them for ELF
    and Mach-O too, and stores exist that rely on it.
    """
    return _FILETYPES[ObjectType(object_type)]


# --------------------------------------------------------------------------------------------------
# Building blocks shared by the layouts (§1.2).


def _gdb_path(query: ObjectQuery) -> str | None:
    """``cid[0:2]/cid[2:]``: GDB's build-id directory, also used for wasm."""
    cid = query.code_id
    if cid is None or len(cid) < 2:
        return None
    return f"{cid[:2]}/{cid[2:]}"


def _mach_uuid(query: ObjectQuery) -> str | None:
    """The Mach UUID as 32 lowercase hex digits.

    A code id that is present but not a UUID means "no Mach path at all": there is no fallback to the
    debug id then, exactly as upstream.
    """
    cid = query.code_id
    if cid is not None:
        return cid if len(cid) == 32 else None
    if query.debug_id is not None:
        return query.debug_id.uuid_hex
    return None


def _lldb_path(query: ObjectQuery) -> str | None:
    """LLDB's "file mapped UUID directories": ``XXXX/XXXX/XXXX/XXXX/XXXX/XXXXXXXXXXXX``."""
    uuid = _mach_uuid(query)
    if uuid is None:
        return None
    u = uuid.upper()
    return f"{u[0:4]}/{u[4:8]}/{u[8:12]}/{u[12:16]}/{u[16:20]}/{u[20:32]}"


def _pdb_path(query: ObjectQuery, ssqp: bool) -> str | None:
    """``df/<UUID><age>/df``; SSQP casing flips it to ``lower(df)/<uuid><AGE>/lower(df)``.

    Portable PDBs (``pe_dotnet``) use the age ``ffffffff``, as the SSQP conventions require.
    """
    debug_id = query.debug_id
    if debug_id is None:
        return None
    name = basename(query.debug_file)
    if name is None:
        return None
    age = 0xFFFFFFFF if query.object_type == ObjectType.PE_DOTNET else debug_id.appendix
    if ssqp:
        name = name.lower()
        return f"{name}/{debug_id.uuid_hex}{age:X}/{name}"
    return f"{name}/{debug_id.uuid_hex.upper()}{age:x}/{name}"


def _pe_path(query: ObjectQuery, ssqp: bool) -> str | None:
    """``cf/<TIMESTAMP><size>/cf`` (SymStore casing) or all-lowercase with SSQP casing."""
    cid = query.code_id
    if cid is None:
        return None
    name = basename(query.code_file)
    if name is None:
        return None
    if ssqp:
        name = name.lower()
        return f"{name}/{cid}/{name}"
    if len(cid) < 8:
        return None
    return f"{name}/{cid[:8].upper()}{cid[8:]}/{name}"


def breakpad_stem(debug_file: str) -> str:
    """The stem of a Breakpad symbol file name, as upstream computes it.

    The documentation promises to strip ``.exe``, ``.dll`` and ``.pdb``, but the code chains three
    suffix checks that each fall back to the *original* name, so in effect only ``.pdb`` is stripped
    (``crash.pdb`` → ``crash``, ``foo.exe`` → ``foo.exe``), except that ``foo.pdb.dll`` → ``foo``.
    Breakpad's own ``simple_symbol_supplier`` also strips only ``.pdb``.
    """
    step = debug_file[:-4] if debug_file.endswith(".exe") else debug_file
    step = step[:-4] if step.endswith(".dll") else debug_file
    return step[:-4] if step.endswith(".pdb") else debug_file


def _breakpad_path(query: ObjectQuery) -> str | None:
    """``df/<BREAKPADID>/<stem>.sym``; wasm never gets one."""
    if query.object_type == ObjectType.WASM:
        return None
    debug_id = query.debug_id
    if debug_id is None:
        return None
    name = basename(query.debug_file)
    if name is None:
        return None
    return f"{name}/{debug_id.breakpad()}/{breakpad_stem(name)}.sym"


def _without_extension(path: str) -> str:
    """Cut at the last ``.`` of the path (only the last segment can have one in these paths)."""
    cut = path.rfind(".")
    return path[:cut] if cut >= 0 else path


def _one(path: str | None) -> list[str]:
    return [] if path is None else [path]


# --------------------------------------------------------------------------------------------------
# native (§4.1)


def _native_source_bundle(query: ObjectQuery) -> list[str]:
    object_type = query.object_type
    if object_type in (ObjectType.PE, ObjectType.PE_DOTNET):
        base = _pdb_path(query, False)
        primary = None if base is None else _without_extension(base)
    elif object_type == ObjectType.MACHO:
        primary = _lldb_path(query)
    elif object_type in (ObjectType.ELF, ObjectType.WASM):
        primary = _gdb_path(query)
    else:
        primary = None
    if primary is None:
        return []  # upstream returns nothing, not even the Breakpad-style path
    primary += ".src.zip"
    breakpad = _breakpad_path(query)
    if breakpad is not None:
        breakpad_style = breakpad[:-4] + ".src.zip"
        if breakpad_style != primary:
            return [breakpad_style, primary]
    return [primary]


def _native_gdb_debug(query: ObjectQuery) -> list[str]:
    path = _gdb_path(query)
    return [] if path is None else [path + ".debug"]


def _native_lldb_app(query: ObjectQuery) -> list[str]:
    path = _lldb_path(query)
    return [] if path is None else [path + ".app"]


_NATIVE: dict[FileType, Callable[[ObjectQuery], list[str]]] = {
    F.ELF_CODE: lambda q: _one(_gdb_path(q)),
    F.WASM_CODE: lambda q: _one(_gdb_path(q)),
    F.ELF_DEBUG: _native_gdb_debug,
    F.WASM_DEBUG: _native_gdb_debug,
    F.MACH_CODE: _native_lldb_app,
    F.MACH_DEBUG: lambda q: _one(_lldb_path(q)),
    F.PDB: lambda q: _one(_pdb_path(q, False)),
    F.PORTABLEPDB: lambda q: _one(_pdb_path(q, False)),
    F.PE: lambda q: _one(_pe_path(q, False)),
    F.BREAKPAD: lambda q: _one(_breakpad_path(q)),
    F.SOURCEBUNDLE: _native_source_bundle,
}


def native_paths(filetype: FileType, query: ObjectQuery) -> list[str]:
    """The default layout: GDB, LLDB, SymSrv and Breakpad conventions side by side."""
    function = _NATIVE.get(filetype)
    return [] if function is None else function(query)


# --------------------------------------------------------------------------------------------------
# symstore / ssqp (§4.2) and symstore_index2 (§4.3)


def _symstore_path(filetype: FileType, query: ObjectQuery, ssqp: bool) -> str | None:
    if filetype == F.PDB or filetype == F.PORTABLEPDB:
        return _pdb_path(query, ssqp)
    if filetype == F.PE:
        return _pe_path(query, ssqp)
    if filetype == F.ELF_CODE:
        cid = query.code_id
        name = basename(query.code_file)
        if cid is None or name is None:
            return None
        if ssqp:
            name = name.lower()
        return f"{name}/elf-buildid-{cid}/{name}"
    if filetype == F.ELF_DEBUG:
        cid = query.code_id
        return None if cid is None else f"_.debug/elf-buildid-sym-{cid}/_.debug"
    if filetype == F.MACH_CODE:
        name = basename(query.code_file)
        if name is None:
            return None
        uuid = _mach_uuid(query)
        if uuid is None:
            return None
        if ssqp:
            name = name.lower()
        return f"{name}/mach-uuid-{uuid}/{name}"
    if filetype == F.MACH_DEBUG:
        uuid = _mach_uuid(query)
        return None if uuid is None else f"_.dwarf/mach-uuid-sym-{uuid}/_.dwarf"
    if filetype == F.SOURCEBUNDLE:
        # Source bundles sit beside the PDB, for native PE objects only (not pe_dotnet).
        if query.object_type != ObjectType.PE:
            return None
        base = _pdb_path(query, ssqp)
        return None if base is None else _without_extension(base) + ".src.zip"
    return None  # breakpad, wasm, uuidmap, bcsymbolmap, il2cpp, proguard: not in a symbol store


def symstore_paths(filetype: FileType, query: ObjectQuery) -> list[str]:
    """Microsoft SymStore casing: names as given, uppercase GUIDs and PE timestamps."""
    return _one(_symstore_path(filetype, query, False))


def ssqp_paths(filetype: FileType, query: ObjectQuery) -> list[str]:
    """SSQP casing: lowercase names and GUIDs, uppercase PDB age; ELF ids unpadded, as given."""
    return _one(_symstore_path(filetype, query, True))


def symstore_index2_paths(filetype: FileType, query: ObjectQuery) -> list[str]:
    """The two-tier store: the symstore path under a directory named after its first two bytes.

    Upstream slices the first two *bytes*: when they are not a whole number of characters the path is
    used without a prefix, and a prefix ending in ``/`` or ``.`` is shortened to one character.
    """
    path = _symstore_path(filetype, query, False)
    if path is None:
        return []
    head = path[:2]
    if not head.isascii():
        try:
            head = path.encode()[:2].decode()  # a non-ASCII character is at least two bytes long
        except UnicodeDecodeError:
            return [path]
    elif len(head) < 2:
        return [path]
    if head.endswith(("/", ".")):
        head = head[:1]
    return [f"{head}/{path}"]


# --------------------------------------------------------------------------------------------------
# debuginfod (§4.4)


def debuginfod_paths(filetype: FileType, query: ObjectQuery) -> list[str]:
    """``<build id>/executable`` and ``<build id>/debuginfo`` under the server's ``/buildid/``."""
    cid = query.code_id
    if cid is None:
        return []
    if filetype == F.ELF_CODE:
        return [f"{cid}/executable"]
    if filetype == F.ELF_DEBUG:
        return [f"{cid}/debuginfo"]
    return []


# --------------------------------------------------------------------------------------------------
# unified (§4.5)

_UNIFIED_SUFFIX: dict[FileType, str] = {
    F.ELF_CODE: "executable",
    F.MACH_CODE: "executable",
    F.PE: "executable",
    F.WASM_CODE: "executable",
    F.ELF_DEBUG: "debuginfo",
    F.MACH_DEBUG: "debuginfo",
    F.PDB: "debuginfo",
    F.WASM_DEBUG: "debuginfo",
    F.PORTABLEPDB: "debuginfo",
    F.BREAKPAD: "breakpad",
    F.SOURCEBUNDLE: "sourcebundle",
    F.UUIDMAP: "uuidmap",
    F.BCSYMBOLMAP: "bcsymbolmap",
    F.IL2CPP: "il2cpp",
}
# Breakpad files, source bundles and il2cpp maps are keyed like the object's main file.
_UNIFIED_MAIN_FILE: dict[ObjectType, FileType] = {
    ObjectType.ELF: F.ELF_CODE,
    ObjectType.MACHO: F.MACH_CODE,
    ObjectType.PE: F.PE,
    ObjectType.WASM: F.WASM_CODE,
    ObjectType.PE_DOTNET: F.PORTABLEPDB,
}
_BY_DEBUG_ID = frozenset({F.PE, F.PDB, F.PORTABLEPDB})
_BY_CODE_OR_UUID = frozenset({F.MACH_CODE, F.MACH_DEBUG, F.WASM_CODE, F.WASM_DEBUG, F.UUIDMAP, F.BCSYMBOLMAP})


def _unified_id(filetype: FileType, query: ObjectQuery) -> str | None:
    if filetype in (F.SOURCEBUNDLE, F.BREAKPAD, F.IL2CPP):
        main = _UNIFIED_MAIN_FILE.get(query.object_type)
        if main is None:
            return None
        filetype = main
    if filetype in _BY_DEBUG_ID:
        # PEs are keyed by debug id, never by code id (symbolicator#1451), with the real age.
        return None if query.debug_id is None else query.debug_id.breakpad().lower()
    if filetype in _BY_CODE_OR_UUID:
        if query.code_id is not None:
            return query.code_id  # no 32-hex check here, unlike the Mach paths of other layouts
        return None if query.debug_id is None else query.debug_id.uuid_hex
    if filetype in (F.ELF_CODE, F.ELF_DEBUG):
        return query.code_id
    return None  # proguard


def unified_paths(filetype: FileType, query: ObjectQuery) -> list[str]:
    """Sentry's ``symsorter`` layout: ``id[0:2]/id[2:]/<suffix>``."""
    suffix = _UNIFIED_SUFFIX.get(filetype)
    if suffix is None:
        return []
    ident = _unified_id(filetype, query)
    if ident is None or len(ident) < 2:
        return []
    return [f"{ident[:2]}/{ident[2:]}/{suffix}"]


# --------------------------------------------------------------------------------------------------
# slashsymbols (§4.6)


def slashsymbols_paths(filetype: FileType, query: ObjectQuery) -> list[str]:
    """PlayStation uploader: ``cf/<cid>/symbols`` then ``cf/<CID>/symbols``, for any file type."""
    cid = query.code_id
    if cid is None:
        return []
    name = basename(query.code_file)
    if name is None:
        return []
    return [f"{name}/{cid}/symbols", f"{name}/{cid.upper()}/symbols"]


# --------------------------------------------------------------------------------------------------
# The pipeline (§3)

LAYOUT_FUNCTIONS: Mapping[LayoutType, LayoutFunction] = {
    LayoutType.NATIVE: native_paths,
    LayoutType.SYMSTORE: symstore_paths,
    LayoutType.SSQP: ssqp_paths,
    LayoutType.SYMSTORE_INDEX2: symstore_index2_paths,
    LayoutType.DEBUGINFOD: debuginfod_paths,
    LayoutType.UNIFIED: unified_paths,
    LayoutType.SLASHSYMBOLS: slashsymbols_paths,
}

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)
_COMPRESSIBLE = frozenset({F.PE, F.PDB})


def _ascii_lower(text: str) -> str:
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def _ascii_upper(text: str) -> str:
    return text.upper() if text.isascii() else text.translate(_ASCII_UPPER)


def get_directory_paths(layout: Layout, filetype: FileType, query: ObjectQuery) -> list[str]:
    """All paths of ``filetype`` for ``query`` on a source with ``layout``, in upstream list order.

    The list is ordered from lower to higher priority: callers probe it from the end, so a plain
    ``P`` comes before its compressed ``P[:-1] + "_"``.
    """
    paths = LAYOUT_FUNCTIONS[layout.type](filetype, query)
    if not paths:
        return paths
    if layout.casing == Casing.LOWERCASE:
        paths = [_ascii_lower(path) for path in paths]
    elif layout.casing == Casing.UPPERCASE:
        paths = [_ascii_upper(path) for path in paths]
    if filetype in _COMPRESSIBLE:
        compressed: list[str] = []
        for path in paths:
            compressed.append(path[:-1] + "_")
            compressed.append(path)
        return compressed
    return paths


# --------------------------------------------------------------------------------------------------
# What real stores contain besides Symbolicator's paths

_PORTABLE_AGE = 0xFFFFFFFF
_KEEPS_ID_CASE = frozenset({LayoutType.NATIVE, LayoutType.SYMSTORE, LayoutType.SYMSTORE_INDEX2})


def store_paths(layout: Layout, filetype: FileType, query: ObjectQuery) -> list[str]:
    """``get_directory_paths`` plus the spellings that real stores use where Symbolicator's differ.

    * Portable PDBs: ``dotnet-symbol``, ``symstore`` and NuGet store them under the SSQP key's
      ``<GUID>FFFFFFFF`` (uppercase suffix, ``ssqp-keys.md`` §2), while Symbolicator's
      symstore-cased layouts write the age in lowercase (``…ffffffff``).
    * PE files on an SSQP store: the key keeps the timestamp in uppercase (``542D574Ec2000``), while
      Symbolicator's ``ssqp`` layout lowercases the whole path.

    On a case-sensitive store both spellings are probed, Symbolicator's first. Same order
    convention as ``get_directory_paths`` (lowest priority first).
    """
    paths = get_directory_paths(layout, filetype, query)
    if not paths or layout.casing != Casing.DEFAULT:
        return paths
    ours, theirs = _standard_id_segment(layout.type, filetype, query)
    if ours == theirs:
        return paths
    extra = [path.replace(ours, theirs) for path in paths if ours in path]
    return extra + paths


def _standard_id_segment(layout: LayoutType, filetype: FileType, query: ObjectQuery) -> tuple[str, str]:
    """The id segment as Symbolicator writes it and as the SSQP key conventions do (may be equal)."""
    debug_id = query.debug_id
    portable = debug_id is not None and (
        debug_id.appendix == _PORTABLE_AGE or query.object_type == ObjectType.PE_DOTNET
    )
    if portable and debug_id is not None and filetype in (F.PDB, F.PORTABLEPDB) and layout in _KEEPS_ID_CASE:
        guid = debug_id.uuid_hex.upper()
        return f"/{guid}ffffffff/", f"/{guid}FFFFFFFF/"
    code_id = query.code_id
    if filetype == F.PE and layout == LayoutType.SSQP and code_id is not None and len(code_id) > 8:
        return f"/{code_id}/", f"/{code_id[:8].upper()}{code_id[8:]}/"
    return "", ""
