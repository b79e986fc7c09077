"""ELF section headers: where a named section's bytes sit in a file (debuginfod ``section`` requests).

elfutils' server answers ``/buildid/<id>/section/<name>`` with the raw bytes of that section, taken
from the debug file, or from the executable when the debug file does not have it *with content*
(``objcopy --only-keep-debug`` turns ``.text`` and friends into ``SHT_NOBITS`` placeholders). The
proxy does the same from its cached copies; this module only reads the headers. It is pure: the
caller passes a ``read(offset, size)`` function, so the same code works on a file or on bytes.

Both classes (32/64 bit) and both byte orders are read, including the extended numbering that
files with 65280 sections or more use (the real count in section 0's ``sh_size``, the string table
index in its ``sh_link``).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable

__all__ = ["NotElf", "Section", "find_section"]

SHT_NOBITS = 8
_SHN_XINDEX = 0xFFFF
_MAX_SECTIONS = 1 << 20
"""A sanity bound on the section count read from a header: more is a corrupt file."""

Read = Callable[[int, int], bytes]


class NotElf(ValueError):
    """The file is not an ELF file whose section headers can be read."""


@dataclasses.dataclass(frozen=True, slots=True)
class Section:
    name: str
    type: int
    offset: int
    size: int

    @property
    def has_content(self) -> bool:
        """Whether the file holds the section's bytes (not a ``NOBITS`` placeholder, not empty)."""
        return self.type != SHT_NOBITS and self.size > 0


@dataclasses.dataclass(frozen=True, slots=True)
class _Format:
    header: struct.Struct  # e_shoff, e_shentsize, e_shnum, e_shstrndx
    header_at: int
    section: struct.Struct  # sh_name, sh_type, sh_offset, sh_size, sh_link


def _format(ident: bytes) -> _Format:
    if len(ident) < 16 or ident[:4] != b"\x7fELF":
        raise NotElf("no ELF magic")
    order = {1: "<", 2: ">"}.get(ident[5])
    if order is None:
        raise NotElf(f"unknown ELF byte order {ident[5]}")
    if ident[4] == 2:  # ELFCLASS64
        # e_shoff at 0x28; e_shentsize, e_shnum, e_shstrndx at 0x3a.
        return _Format(
            struct.Struct(order + "Q10xHHH"),
            0x28,
            struct.Struct(order + "II16xQQI20x"),
        )
    if ident[4] == 1:  # ELFCLASS32
        return _Format(
            struct.Struct(order + "I10xHHH"),
            0x20,
            struct.Struct(order + "II8xIII12x"),
        )
    raise NotElf(f"unknown ELF class {ident[4]}")


def _exact(read: Read, offset: int, size: int, what: str) -> bytes:
    data = read(offset, size)
    if len(data) != size:
        raise NotElf(f"file ends inside the {what}")
    return data


def find_section(read: Read, name: str) -> Section | None:
    """The section called ``name`` (first match), or ``None`` when the file has no such section.

    Raises :class:`NotElf` for a file whose headers cannot be read.
    """
    fmt = _format(read(0, 16))
    shoff, shentsize, shnum, shstrndx = fmt.header.unpack(
        _exact(read, fmt.header_at, fmt.header.size, "ELF header")
    )
    if shoff == 0:
        return None  # no section header table at all
    if shentsize < fmt.section.size:
        raise NotElf(f"section header entries of {shentsize} bytes are too small")

    def entry(index: int) -> tuple[int, int, int, int, int]:
        raw = _exact(read, shoff + index * shentsize, fmt.section.size, "section headers")
        values: tuple[int, int, int, int, int] = fmt.section.unpack(raw)
        return values

    if shnum == 0 or shstrndx == _SHN_XINDEX:
        _, _, _, first_size, first_link = entry(0)
        shnum = shnum or first_size
        if shstrndx == _SHN_XINDEX:
            shstrndx = first_link
    if shnum > _MAX_SECTIONS or shstrndx >= shnum:
        raise NotElf("implausible section count or string table index")
    _, _, strings_offset, strings_size, _ = entry(shstrndx)
    strings = _exact(read, strings_offset, strings_size, "section name table")
    wanted = name.encode()
    for index in range(1, shnum):
        name_at, kind, offset, size, _ = entry(index)
        end = strings.find(b"\0", name_at)
        if name_at < len(strings) and strings[name_at : end if end >= 0 else None] == wanted:
            return Section(name, kind, offset, size)
    return None
