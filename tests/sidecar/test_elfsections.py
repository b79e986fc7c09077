"""Section headers of real ELF files, checked against binutils' ``readelf -S``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from symbol_proxy import elfsections
from tests.support.shared import FIXTURES

ELF_FILES = sorted(p for p in (FIXTURES / "elf").iterdir() if p.read_bytes()[:4] == b"\x7fELF")
# readelf -S -W: "  [Nr] Name Type Address Off Size ..."
ROW = re.compile(r"^\s*\[\s*(\d+)\]\s+(\S+)\s+(\S+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)")


def readelf_sections(path: Path) -> dict[str, tuple[str, int, int]]:
    readelf = shutil.which("readelf")
    assert readelf, "readelf (binutils) is needed; run scripts/setup --test"
    out = subprocess.run([readelf, "-S", "-W", str(path)], capture_output=True, text=True, check=True).stdout
    sections: dict[str, tuple[str, int, int]] = {}
    for line in out.splitlines():
        match = ROW.match(line)
        if match and match.group(1) != "0":
            sections.setdefault(
                match.group(2), (match.group(3), int(match.group(4), 16), int(match.group(5), 16))
            )
    return sections


def reader(path: Path) -> elfsections.Read:
    data = path.read_bytes()
    return lambda offset, size: data[offset : offset + size]


@pytest.mark.parametrize("path", ELF_FILES, ids=lambda p: p.name)
def test_every_section_is_where_readelf_says(path: Path) -> None:
    expected = readelf_sections(path)
    assert expected, path
    for name, (kind, offset, size) in expected.items():
        found = elfsections.find_section(reader(path), name)
        assert found is not None, name
        assert (found.offset, found.size) == (offset, size), name
        assert found.has_content == (kind != "NOBITS" and size > 0), name
    assert elfsections.find_section(reader(path), ".no_such_section") is None


def test_32_bit_files_are_read() -> None:
    assert any(p.read_bytes()[4] == 1 for p in ELF_FILES), "the fixtures should hold a 32-bit ELF file"


@pytest.mark.parametrize(
    "data",
    [b"", b"MZ" + bytes(100), b"\x7fELF\x03\x01" + bytes(100), b"\x7fELF\x02\x01" + bytes(10)],
    ids=["empty", "not-elf", "bad-class", "truncated"],
)
def test_what_is_not_readable_elf_is_refused(data: bytes) -> None:
    with pytest.raises(elfsections.NotElf):
        elfsections.find_section(lambda offset, size: data[offset : offset + size], ".text")


def test_section_headers_beyond_the_end_are_refused(tmp_path: Path) -> None:
    source = next(p for p in ELF_FILES if p.name == "crash")
    data = source.read_bytes()[: os.path.getsize(source) // 2]  # the headers sit at the end
    with pytest.raises(elfsections.NotElf):
        elfsections.find_section(lambda offset, size: data[offset : offset + size], ".text")
