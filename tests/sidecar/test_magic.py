"""Recognising containers and file types from the first bytes of a body.

The inputs are the real debug files of the shared fixture set (paths and formats come from
``MANIFEST.json``), the same files wrapped in every container, and the bodies a misbehaving server
sends instead of a file: an HTML error page and an empty body.
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
import zstandard

from symbol_proxy import compression
from symbol_proxy.magic import Container, looks_like, sniff
from symbol_proxy.objects import FileType
from tests.support.shared import FIXTURES, manifest

HEAD = 64
"""As many bytes as the resolver peeks before it accepts a candidate."""

FORMAT_TYPES: dict[str, set[FileType]] = {
    "pe": {FileType.PE},
    "pdb": {FileType.PDB},
    "portablepdb": {FileType.PDB, FileType.PORTABLEPDB},
    "elf": {FileType.ELF_CODE, FileType.ELF_DEBUG},
    "macho": {FileType.MACH_CODE, FileType.MACH_DEBUG},
    "breakpad": {FileType.BREAKPAD},
    "wasm": {FileType.WASM_CODE, FileType.WASM_DEBUG},
    "dsym-info-plist": set(),
}
"""The file types each manifest format may be served as (a portable PDB is also a ``.pdb``)."""

UNCHECKED = {FileType.UUIDMAP, FileType.BCSYMBOLMAP, FileType.IL2CPP, FileType.PROGUARD}
"""Text formats without a fixed header: every body passes."""

CHECKED = [t for t in FileType if t not in UNCHECKED]

HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\r\n<html><head><title>404 - File or directory not found.</title></head>"
    b"<body><h2>The resource you are looking for might have been removed.</h2></body></html>\r\n"
)

FILES: list[dict[str, Any]] = manifest()["files"]


def _head(entry: dict[str, Any]) -> bytes:
    with open(FIXTURES / entry["path"], "rb") as handle:
        return handle.read(HEAD)


@pytest.mark.parametrize("entry", FILES, ids=[f["path"] for f in FILES])
def test_every_fixture_passes_for_the_file_types_of_its_format(entry: dict[str, Any]) -> None:
    assert entry["format"] in FORMAT_TYPES, f"new fixture format {entry['format']!r}: map it in FORMAT_TYPES"
    head = _head(entry)
    for filetype in FORMAT_TYPES[entry["format"]]:
        assert looks_like(filetype, head), filetype


@pytest.mark.parametrize("entry", FILES, ids=[f["path"] for f in FILES])
def test_every_fixture_fails_for_the_file_types_of_other_formats(entry: dict[str, Any]) -> None:
    head = _head(entry)
    own = FORMAT_TYPES[entry["format"]]
    wrongly_accepted = [t for t in CHECKED if t not in own and looks_like(t, head)]
    assert wrongly_accepted == []


@pytest.mark.parametrize("entry", FILES, ids=[f["path"] for f in FILES])
def test_no_fixture_is_mistaken_for_a_compressed_container(entry: dict[str, Any]) -> None:
    assert sniff(_head(entry)) is None


def test_every_format_of_the_manifest_is_covered() -> None:
    assert {f["format"] for f in FILES} <= set(FORMAT_TYPES)
    assert {f["format"] for f in FILES} >= {"pe", "pdb", "portablepdb", "elf", "macho", "breakpad", "wasm"}


@pytest.mark.parametrize("filetype", CHECKED)
def test_an_html_error_page_is_not_a_debug_file(filetype: FileType) -> None:
    assert not looks_like(filetype, HTML_ERROR_PAGE[:HEAD])


@pytest.mark.parametrize("filetype", CHECKED)
def test_an_empty_body_is_not_a_debug_file(filetype: FileType) -> None:
    assert not looks_like(filetype, b"")


def test_an_html_error_page_and_an_empty_body_are_not_containers() -> None:
    assert sniff(HTML_ERROR_PAGE[:HEAD]) is None
    assert sniff(b"") is None


@pytest.mark.parametrize("filetype", sorted(UNCHECKED))
def test_text_formats_without_a_fixed_header_are_not_checked(filetype: FileType) -> None:
    assert looks_like(filetype, b"# compiler: R8\n")
    assert looks_like(filetype, b"")


@pytest.mark.parametrize(
    "magic",
    [b"\xfe\xed\xfa\xce", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe",
     b"\xca\xfe\xba\xbf"],
    ids=["feedface-be", "feedface-le", "feedfacf-be", "feedfacf-le", "fat", "fat64"],
)  # fmt: skip
def test_every_mach_o_magic_in_both_byte_orders_is_a_mach_o_file(magic: bytes) -> None:
    head = magic + bytes(28)
    assert looks_like(FileType.MACH_CODE, head)
    assert looks_like(FileType.MACH_DEBUG, head)
    assert not looks_like(FileType.ELF_CODE, head)


def test_an_old_pdb_2_0_file_is_a_pdb() -> None:
    head = b"Microsoft C/C++ program database 2.00\r\n\x1aJG\0\0" + bytes(16)
    assert looks_like(FileType.PDB, head)
    assert not looks_like(FileType.PORTABLEPDB, head)


def test_a_body_cut_inside_the_pdb_signature_is_not_a_pdb() -> None:
    assert not looks_like(FileType.PDB, b"Microsoft C/C++ MSF 7.00\r\n")
    assert not looks_like(FileType.PDB, b"Microsoft C/C++ MSF 7.00\r\n\x1aDS"[:-1])


def test_a_source_bundle_is_a_zip_archive() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.json", "{}")
    assert looks_like(FileType.SOURCEBUNDLE, buffer.getvalue()[:HEAD])
    assert not looks_like(FileType.SOURCEBUNDLE, HTML_ERROR_PAGE)


def _sample() -> Path:
    """The first PDB of the manifest (any real file will do)."""
    path: str = next(f["path"] for f in FILES if f["format"] == "pdb")
    return FIXTURES / path


def _zip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("sample.pdb", data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("container", "pack"),
    [
        (Container.GZIP, gzip.compress),
        (Container.ZSTD, zstandard.ZstdCompressor().compress),
        (Container.ZLIB, lambda data: zlib.compress(data, 1)),
        (Container.ZLIB, lambda data: zlib.compress(data, 6)),
        (Container.ZLIB, lambda data: zlib.compress(data, 9)),
        (Container.ZIP, _zip),
    ],
    ids=["gzip", "zstd", "zlib-7801", "zlib-789c", "zlib-78da", "zip"],
)
def test_each_container_is_recognised_from_its_first_bytes(container: Container, pack: Any) -> None:
    packed: bytes = pack(_sample().read_bytes())
    assert sniff(packed[:HEAD]) is container
    assert sniff(packed[:4]) is container


def test_a_zstd_file_opening_with_a_skippable_frame_is_recognised() -> None:
    packed = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"pzst" + zstandard.compress(b"x")
    assert sniff(packed) is Container.ZSTD


def test_a_cab_file_is_recognised_from_its_first_bytes(tmp_path: Path) -> None:
    compression.write_cab(_sample(), tmp_path / "sample.pd_", "sample.pdb")
    assert sniff((tmp_path / "sample.pd_").read_bytes()[:HEAD]) is Container.CAB


@pytest.mark.parametrize("head", [b"\x28\xb5\x2f", b"\x1f\x8b\x08", b"PK\x03", b"MSC", b"x\x9c", b""])
def test_bodies_shorter_than_four_bytes_are_left_alone(head: bytes) -> None:
    assert sniff(head) is None


@pytest.mark.parametrize(
    "head", [b"x\x9c" + b"\xff" * 40, b"x\x01hello world, not deflate", b"x\xda\x00\x00\x00\x00\x00"]
)
def test_a_zlib_header_followed_by_bytes_that_do_not_inflate_is_not_zlib(head: bytes) -> None:
    assert sniff(head) is None
