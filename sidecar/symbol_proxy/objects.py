"""Identifiers of the objects a lookup is about: file types, object types, debug ids, queries.

Everything here is a value with no I/O. The rules follow Symbolicator's (and rust-debugid's)
normalisation exactly, because candidate paths are built from these strings and a single
different character means a different upstream object (``shared/specs/layouts.md`` §1).
"""

from __future__ import annotations

import dataclasses
import enum
import re
import uuid

__all__ = [
    "DebugId",
    "FileType",
    "InvalidId",
    "ObjectQuery",
    "ObjectType",
    "basename",
    "normalize_code_id",
]


class InvalidId(ValueError):
    """An identifier in a request or a config could not be parsed."""


class FileType(enum.StrEnum):
    """Symbolicator's file types, with their JSON names."""

    PE = "pe"
    PDB = "pdb"
    PORTABLEPDB = "portablepdb"
    MACH_DEBUG = "mach_debug"
    MACH_CODE = "mach_code"
    ELF_DEBUG = "elf_debug"
    ELF_CODE = "elf_code"
    WASM_DEBUG = "wasm_debug"
    WASM_CODE = "wasm_code"
    BREAKPAD = "breakpad"
    SOURCEBUNDLE = "sourcebundle"
    UUIDMAP = "uuidmap"
    BCSYMBOLMAP = "bcsymbolmap"
    IL2CPP = "il2cpp"
    PROGUARD = "proguard"


class ObjectType(enum.StrEnum):
    PE = "pe"
    PE_DOTNET = "pe_dotnet"
    ELF = "elf"
    MACHO = "macho"
    WASM = "wasm"
    UNKNOWN = "unknown"


_HEX = re.compile(r"[0-9a-fA-F]+")
_NON_HEX = re.compile(r"[^0-9a-fA-F]")
_HYPHENATED = re.compile(
    r"^([0-9a-fA-F]{8})-([0-9a-fA-F]{4})-([0-9a-fA-F]{4})-([0-9a-fA-F]{4})-([0-9a-fA-F]{12})"
    r"(?:-([0-9a-fA-F]{1,}))?$"
)


@dataclasses.dataclass(frozen=True, slots=True)
class DebugId:
    """A debug identifier: a UUID plus a 32-bit age ("appendix").

    The display form is ``uuid`` or ``uuid-<age hex>`` (lowercase); the Breakpad form is the UUID in
    uppercase hex without dashes followed by the age in lowercase hex, unpadded.
    """

    uuid: uuid.UUID
    appendix: int = 0

    @classmethod
    def parse(cls, text: str) -> DebugId:
        """Parse the hyphenated, compact (``<32 hex><age hex>``) or PDB 2.0 form, any case."""
        text = text.strip()
        match = _HYPHENATED.match(text)
        if match:
            hexuuid = "".join(match.group(i) for i in range(1, 6))
            age = match.group(6) or "0"
            return cls(uuid.UUID(hex=hexuuid), int(age[:8], 16))
        if not _HEX.fullmatch(text):
            raise InvalidId(f"not a debug id: {text!r}")
        if len(text) >= 32:
            return cls(uuid.UUID(hex=text[:32]), int(text[32:40] or "0", 16))
        if 9 <= len(text) <= 16:
            # PDB 2.0: an 8-digit timestamp followed by the age.
            stamp = int(text[:8], 16)
            return cls(uuid.UUID(bytes=stamp.to_bytes(4, "big") + bytes(12)), int(text[8:], 16))
        raise InvalidId(f"not a debug id: {text!r}")

    @classmethod
    def parse_breakpad(cls, text: str) -> DebugId:
        """Parse a Breakpad module id: 32 hex digits and an age of at least one hex digit."""
        if len(text) < 33 or len(text) > 40 or not _HEX.fullmatch(text):
            raise InvalidId(f"not a breakpad id: {text!r}")
        return cls(uuid.UUID(hex=text[:32]), int(text[32:], 16))

    def __str__(self) -> str:
        return f"{self.uuid}-{self.appendix:x}" if self.appendix else str(self.uuid)

    @property
    def uuid_hex(self) -> str:
        """The UUID as 32 lowercase hex digits."""
        return self.uuid.hex

    def breakpad(self) -> str:
        return f"{self.uuid.hex.upper()}{self.appendix:x}"

    def is_nil(self) -> bool:
        return self.uuid.int == 0 and self.appendix == 0


def normalize_code_id(text: str) -> str:
    """Drop every non-hex character and lowercase the rest (odd lengths are allowed: PE ids)."""
    return _NON_HEX.sub("", text).lower()


def basename(path: str | None) -> str | None:
    """The last component after ``/`` or ``\\``, ignoring trailing separators.

    Returns ``None`` when there is no usable name: empty, 256 bytes or longer, or with control
    characters (C0, DEL and C1, as Symbolicator checks) (no candidate path is generated from such a name).
    """
    if not path:
        return None
    name = re.split(r"[/\\]", path.rstrip("/\\"))[-1]
    if not name or len(name.encode()) >= 256 or any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name):
        return None
    return name


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectQuery:
    """What a lookup knows about the object it wants (Symbolicator's ``ObjectId``).

    ``code_id`` is stored normalised; file names are kept as given (layouts take the basename).
    """

    code_id: str | None = None
    code_file: str | None = None
    debug_id: DebugId | None = None
    debug_file: str | None = None
    debug_checksum: str | None = None
    object_type: ObjectType = ObjectType.UNKNOWN

    @classmethod
    def create(
        cls,
        *,
        code_id: str | None = None,
        code_file: str | None = None,
        debug_id: str | DebugId | None = None,
        debug_file: str | None = None,
        debug_checksum: str | None = None,
        object_type: ObjectType | str = ObjectType.UNKNOWN,
    ) -> ObjectQuery:
        """Build a query from loose strings, normalising the ids."""
        cid = normalize_code_id(code_id) if code_id else None
        did = DebugId.parse(debug_id) if isinstance(debug_id, str) else debug_id
        return cls(
            code_id=cid or None,
            code_file=code_file or None,
            debug_id=did,
            debug_file=debug_file or None,
            debug_checksum=debug_checksum or None,
            object_type=ObjectType(object_type),
        )
