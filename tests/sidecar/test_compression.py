"""Unpacking containers and writing CAB files, checked against real files and real tools.

The payloads are real debug files from the shared fixture set (paths come from ``MANIFEST.json``).
CAB interoperability is checked both ways with the real tools: cabinets made by ``gcab`` are read by
our reader, and cabinets made by :func:`compression.write_cab` are listed, tested (checksums) and
extracted by ``cabextract`` and ``gcab``. Those tools are installed by the project's setup script
(Debian packages ``cabextract`` and ``gcab``); a test that needs one fails, rather than skips, when
it is missing.
"""

from __future__ import annotations

import calendar
import gzip
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from symbol_proxy import compression
from symbol_proxy.compression import (
    MAX_CAB_SIZE,
    Malformed,
    TooLarge,
    cab_checksum,
    decompress_file,
    write_cab,
)
from tests.support.shared import FIXTURES, REPO, manifest

FILES: list[dict[str, Any]] = manifest()["files"]

SAMPLES: list[Path] = [
    FIXTURES / next(f["path"] for f in FILES if f["format"] == fmt)
    for fmt in sorted({f["format"] for f in FILES})
]
"""The first manifest file of every format: a 634-byte plist up to a 1 MiB PDB."""

LARGEST = FIXTURES / max(FILES, key=lambda f: f["size"])["path"]
"""Spans dozens of 32 KiB CAB blocks, so MSZIP history across blocks is exercised."""

PDB = FIXTURES / next(f["path"] for f in FILES if f["format"] == "pdb")
SMALL = FIXTURES / min((f for f in FILES if f["format"] == "pdb"), key=lambda f: f["size"])["path"]
ODD = FIXTURES / next(f["path"] for f in FILES if f["size"] % 2 and f["size"] > 3 * 32768)
"""A file of odd length spanning several blocks (LZX pads odd uncompressed blocks)."""

BIG = 1 << 40


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(FIXTURES)) for p in paths]


def tool(name: str) -> str:
    """The path of a real command-line tool; the test fails (not skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run the setup script or `apt-get install -y {name}`")
    return path


def unpack_to(tmp_path: Path, packed: bytes, *, max_size: int = BIG) -> tuple[str, bytes]:
    src = tmp_path / "packed"
    src.write_bytes(packed)
    dst = tmp_path / "unpacked"
    name = decompress_file(src, dst, max_size=max_size)
    return name, dst.read_bytes()


# --------------------------------------------------------------------------------------------------
# Containers built in memory


def gzip_members(data: bytes, parts: int = 1) -> bytes:
    step = max(-(-len(data) // parts), 1)
    return b"".join(gzip.compress(data[i : i + step]) for i in range(0, len(data), step))


def zstd_with_size(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_content_size=True, write_checksum=True).compress(data)


def zstd_streamed(data: bytes) -> bytes:
    """A frame written by a streaming compressor that never learns the size (no content size)."""
    buffer = io.BytesIO()
    with zstandard.ZstdCompressor(write_checksum=True).stream_writer(buffer, closefd=False) as writer:
        for i in range(0, len(data), 10_000):
            writer.write(data[i : i + 10_000])
    packed = buffer.getvalue()
    assert packed[4] & 0xC0 == 0 and not packed[4] & 0x20, "expected a frame without content size"
    return packed


def zip_of(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def cab_of(
    payload: bytes,
    name: bytes,
    *,
    compression_type: int = 0,
    blocks: list[tuple[bytes, int]] | None = None,
    reserve: tuple[int, int, int] | None = None,
    file_offset: int = 0,
    flags: int = 0,
) -> bytes:
    """A single-file cabinet assembled field by field from the format description.

    Without ``blocks`` the payload is stored uncompressed in 32 KiB CFDATA blocks. ``reserve`` sets
    the sizes of the per-cabinet, per-folder and per-block reserved areas (filled with 0xEE).
    """
    if blocks is None:
        blocks = [
            (payload[i : i + 32768], len(payload[i : i + 32768])) for i in range(0, len(payload), 32768)
        ]
    header_reserve, folder_reserve, data_reserve = reserve or (0, 0, 0)
    head_size = 36 + (4 + header_reserve if reserve else 0)
    files_offset = head_size + 8 + folder_reserve
    data_offset = files_offset + 16 + len(name) + 1
    body = b""
    for data, size in blocks:
        sizes = struct.pack("<HH", len(data), size)
        body += (
            struct.pack("<I", cab_checksum(sizes, cab_checksum(data))) + sizes + b"\xee" * data_reserve + data
        )
    flags |= 0x0004 if reserve else 0
    head = struct.pack(
        "<4sIIIIIBBHHHHH", b"MSCF", 0, data_offset + len(body), 0, files_offset, 0, 3, 1, 1, 1, flags, 0, 0
    )
    if reserve:
        head += struct.pack("<HBB", header_reserve, folder_reserve, data_reserve) + b"\xee" * header_reserve
    folder = struct.pack("<IHH", data_offset, len(blocks), compression_type) + b"\xee" * folder_reserve
    cffile = (
        struct.pack("<IIHHHH", len(payload) - file_offset, file_offset, 0, 0x5821, 0, 0x20) + name + b"\0"
    )
    return head + folder + cffile + body


def lzx_stored_cab(payload: bytes, name: bytes) -> bytes:
    """A cabinet with an LZX folder (window 2^16) holding ``payload`` as one uncompressed LZX block.

    An LZX bitstream is read as little-endian 16-bit words, most significant bit first. It opens with
    one bit for "no E8 translation" (0), then the block type (3 bits, 3 = uncompressed) and the block
    size (24 bits). An uncompressed block then aligns to the next 16-bit word, stores R0, R1 and R2
    (12 bytes) and the raw bytes, plus one pad byte when the size is odd. Each CFDATA block carries
    the stream for one 32 KiB output frame.
    """
    bits = (3 << 24 | len(payload)) << 4  # 28 header bits, padded to two words
    stream = struct.pack("<HH", bits >> 16, bits & 0xFFFF) + struct.pack("<III", 1, 1, 1)
    stream += payload + b"\0" * (len(payload) % 2)
    blocks: list[tuple[bytes, int]] = []
    consumed = 0
    for start in range(0, len(payload), 32768):
        size = min(32768, len(payload) - start)
        take = size + (16 if start == 0 else 0)
        if start + size == len(payload):
            take = len(stream) - consumed
        blocks.append((stream[consumed : consumed + take], size))
        consumed += take
    return cab_of(payload, name, compression_type=3 | 16 << 8, blocks=blocks)


# --------------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("path", SAMPLES, ids=_ids(SAMPLES))
def test_gzip_round_trips_a_real_file(tmp_path: Path, path: Path) -> None:
    assert unpack_to(tmp_path, gzip.compress(path.read_bytes())) == ("", path.read_bytes())


def test_multi_member_gzip_unpacks_to_the_concatenated_members(tmp_path: Path) -> None:
    data = LARGEST.read_bytes()
    packed = gzip_members(data, parts=5)
    assert packed.count(b"\x1f\x8b\x08") >= 5
    assert unpack_to(tmp_path, packed) == ("", data)


def test_gzip_with_nul_padding_after_its_members_is_accepted(tmp_path: Path) -> None:
    data = PDB.read_bytes()
    assert unpack_to(tmp_path, gzip_members(data, 2) + bytes(100_000)) == ("", data)


def test_gzip_followed_by_garbage_is_malformed(tmp_path: Path) -> None:
    with pytest.raises(Malformed):
        unpack_to(tmp_path, gzip.compress(PDB.read_bytes()) + b"<html>")


@pytest.mark.parametrize("path", SAMPLES, ids=_ids(SAMPLES))
def test_zstd_with_content_size_and_checksum_round_trips_a_real_file(tmp_path: Path, path: Path) -> None:
    assert unpack_to(tmp_path, zstd_with_size(path.read_bytes())) == ("", path.read_bytes())


@pytest.mark.parametrize("path", [*SAMPLES, LARGEST], ids=[*_ids(SAMPLES), "largest"])
def test_zstd_without_content_size_round_trips_a_real_file(tmp_path: Path, path: Path) -> None:
    assert unpack_to(tmp_path, zstd_streamed(path.read_bytes())) == ("", path.read_bytes())


def test_several_zstd_frames_and_skippable_frames_unpack_to_the_concatenated_frames(tmp_path: Path) -> None:
    data = LARGEST.read_bytes()
    skippable = struct.pack("<II", 0x184D2A53, 5) + b"notes"
    third = len(data) // 3
    packed = (
        skippable
        + zstd_with_size(data[:third])
        + zstd_streamed(data[third : 2 * third])
        + skippable
        + zstandard.ZstdCompressor(level=1).compress(data[2 * third :])
    )
    assert unpack_to(tmp_path, packed) == ("", data)


@pytest.mark.parametrize("level", [1, 6, 9])
@pytest.mark.parametrize("path", SAMPLES, ids=_ids(SAMPLES))
def test_zlib_round_trips_a_real_file(tmp_path: Path, path: Path, level: int) -> None:
    assert unpack_to(tmp_path, zlib.compress(path.read_bytes(), level)) == ("", path.read_bytes())


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED, zipfile.ZIP_LZMA])
@pytest.mark.parametrize("path", SAMPLES, ids=_ids(SAMPLES))
def test_a_zip_with_one_entry_round_trips_and_names_the_entry(
    tmp_path: Path, path: Path, method: int
) -> None:
    packed = zip_of({f"symbols/{path.name}": path.read_bytes()}, method)
    assert unpack_to(tmp_path, packed) == (f"symbols/{path.name}", path.read_bytes())


def test_a_zip_with_two_entries_is_malformed(tmp_path: Path) -> None:
    with pytest.raises(Malformed, match="exactly one entry"):
        unpack_to(tmp_path, zip_of({"a.pdb": PDB.read_bytes(), "b.pdb": b"x"}))


def test_a_zip_holding_only_a_directory_is_malformed(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.mkdir("symbols")
    with pytest.raises(Malformed, match="directory"):
        unpack_to(tmp_path, buffer.getvalue())


@pytest.mark.parametrize("path", [*SAMPLES, LARGEST], ids=[*_ids(SAMPLES), "largest"])
def test_a_cab_written_by_write_cab_round_trips_a_real_file(tmp_path: Path, path: Path) -> None:
    write_cab(path, tmp_path / "file.cab", path.name)
    assert decompress_file(tmp_path / "file.cab", tmp_path / "out", max_size=BIG) == path.name
    assert (tmp_path / "out").read_bytes() == path.read_bytes()


def test_an_empty_file_round_trips_through_a_cab(tmp_path: Path) -> None:
    (tmp_path / "empty.pdb").write_bytes(b"")
    write_cab(tmp_path / "empty.pdb", tmp_path / "empty.pd_", "empty.pdb")
    subprocess.run([tool("cabextract"), "-q", "-t", "empty.pd_"], cwd=tmp_path, check=True)
    assert unpack_to(tmp_path, (tmp_path / "empty.pd_").read_bytes()) == ("empty.pdb", b"")


# --------------------------------------------------------------------------------------------------
# CAB interoperability with real tools


@pytest.mark.parametrize("compress", [True, False], ids=["mszip", "uncompressed"])
@pytest.mark.parametrize("path", [PDB, LARGEST, SMALL], ids=["pdb", "largest", "small"])
def test_a_cab_made_by_gcab_is_unpacked_byte_identically(tmp_path: Path, path: Path, compress: bool) -> None:
    shutil.copy(path, tmp_path / path.name)
    options = ["-c", "-z"] if compress else ["-c"]
    subprocess.run([tool("gcab"), *options, "made.cab", path.name], cwd=tmp_path, check=True)
    packed = (tmp_path / "made.cab").read_bytes()
    first_checksum = struct.unpack_from("<I", packed, struct.unpack_from("<I", packed, 36)[0])[0]
    assert first_checksum != 0, "gcab writes CFDATA checksums, so the reader verifies them here"
    assert unpack_to(tmp_path, packed) == (path.name, path.read_bytes())


def test_write_cab_output_is_listed_tested_and_extracted_by_cabextract(tmp_path: Path) -> None:
    cabextract = tool("cabextract")
    write_cab(LARGEST, tmp_path / "out.pd_", "crash.pdb")
    listing = subprocess.run(
        [cabextract, "-l", "out.pd_"], cwd=tmp_path, check=True, capture_output=True, text=True
    )
    rows = [[cell.strip() for cell in line.split("|")] for line in listing.stdout.splitlines() if "|" in line]
    assert rows[1:] == [[str(LARGEST.stat().st_size), rows[1][1], "crash.pdb"]]
    tested = subprocess.run([cabextract, "-t", "out.pd_"], cwd=tmp_path, capture_output=True, text=True)
    assert tested.returncode == 0 and "no errors" in tested.stdout, tested.stdout + tested.stderr
    subprocess.run([cabextract, "-q", "-d", "x", "out.pd_"], cwd=tmp_path, check=True)
    assert (tmp_path / "x" / "crash.pdb").read_bytes() == LARGEST.read_bytes()


def test_write_cab_output_is_extracted_by_gcab(tmp_path: Path) -> None:
    write_cab(PDB, tmp_path / "out.pd_", PDB.name)
    (tmp_path / "x").mkdir()
    subprocess.run([tool("gcab"), "-x", "-C", "x", "out.pd_"], cwd=tmp_path, check=True)
    assert (tmp_path / "x" / PDB.name).read_bytes() == PDB.read_bytes()


def test_write_cab_records_the_modification_time_seen_by_cabextract(tmp_path: Path) -> None:
    shutil.copy(SMALL, tmp_path / "in.pdb")
    stamp = calendar.timegm((2021, 3, 4, 5, 6, 8, 0, 0, 0))
    os.utime(tmp_path / "in.pdb", (stamp, stamp))
    write_cab(tmp_path / "in.pdb", tmp_path / "out.pd_", "in.pdb")
    listing = subprocess.run(
        [tool("cabextract"), "-l", "out.pd_"], cwd=tmp_path, check=True, capture_output=True, text=True
    )
    assert "04.03.2021 05:06:08" in listing.stdout


def test_write_cab_stores_a_non_ascii_name_as_utf8(tmp_path: Path) -> None:
    write_cab(SMALL, tmp_path / "out.pd_", "símbolo.pdb")
    listing = subprocess.run(
        [tool("cabextract"), "-l", "out.pd_"], cwd=tmp_path, check=True, capture_output=True, text=True
    )
    assert "símbolo.pdb" in listing.stdout
    assert decompress_file(tmp_path / "out.pd_", tmp_path / "x", max_size=BIG) == "símbolo.pdb"


def test_write_cab_lays_out_one_folder_of_full_32k_mszip_blocks(tmp_path: Path) -> None:
    write_cab(LARGEST, tmp_path / "out.pd_", "x.debug")
    packed = (tmp_path / "out.pd_").read_bytes()
    _, _, cb_cabinet, _, coff_files, _, minor, major, folders, files, flags, _, _ = struct.unpack_from(
        "<4sIIIIIBBHHHHH", packed
    )
    assert (cb_cabinet, coff_files, major, minor, folders, files, flags) == (len(packed), 44, 1, 3, 1, 1, 0)
    data_offset, count, kind = struct.unpack_from("<IHH", packed, 36)
    size = LARGEST.stat().st_size
    assert (count, kind) == (-(-size // 32768), 1)
    assert struct.unpack_from("<IIH", packed, 44) == (size, 0, 0)
    offset, sizes = data_offset, []
    for _ in range(count):
        _, packed_size, unpacked_size = struct.unpack_from("<IHH", packed, offset)
        assert packed[offset + 8 : offset + 10] == b"CK"
        sizes.append(unpacked_size)
        offset += 8 + packed_size
    assert offset == len(packed)
    assert sizes == [32768] * (count - 1) + [size - 32768 * (count - 1)]


def test_a_cab_with_reserved_areas_is_read(tmp_path: Path) -> None:
    data = PDB.read_bytes()[:100_000]
    packed = cab_of(data, b"r.pdb", reserve=(20, 3, 5))
    (tmp_path / "r.cab").write_bytes(packed)
    piped = subprocess.run(
        [tool("cabextract"), "-q", "-p", "r.cab"], cwd=tmp_path, check=True, capture_output=True
    )
    assert piped.stdout == data, "the hand-made cabinet is valid for cabextract too"
    assert unpack_to(tmp_path, packed) == ("r.pdb", data)


def test_a_cab_file_is_cut_out_of_its_folder_at_its_offset(tmp_path: Path) -> None:
    data = SMALL.read_bytes()
    packed = cab_of(b"padding!" + data, b"o.pdb", file_offset=8)
    assert unpack_to(tmp_path, packed) == ("o.pdb", data)


def test_a_cab_with_two_files_is_malformed(tmp_path: Path) -> None:
    shutil.copy(PDB, tmp_path / "a.pdb")
    shutil.copy(SMALL, tmp_path / "b.pdb")
    subprocess.run([tool("gcab"), "-c", "-z", "two.cab", "a.pdb", "b.pdb"], cwd=tmp_path, check=True)
    with pytest.raises(Malformed, match="exactly one file"):
        decompress_file(tmp_path / "two.cab", tmp_path / "out", max_size=BIG)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", [0x0001, 0x0002], ids=["continued-from-previous", "continues-in-next"])
def test_a_cab_of_a_spanned_set_is_malformed(tmp_path: Path, flag: int) -> None:
    with pytest.raises(Malformed, match="spanned"):
        unpack_to(tmp_path, cab_of(SMALL.read_bytes(), b"s.pdb", flags=flag))


def test_a_cab_block_with_a_wrong_checksum_is_malformed(tmp_path: Path) -> None:
    write_cab(PDB, tmp_path / "out.pd_", PDB.name)
    packed = bytearray((tmp_path / "out.pd_").read_bytes())
    packed[struct.unpack_from("<I", packed, 36)[0]] ^= 0x01
    with pytest.raises(Malformed, match="checksum"):
        unpack_to(tmp_path, bytes(packed))


def test_an_lzx_cab_is_unpacked_by_cabextract(tmp_path: Path) -> None:
    tool("cabextract")
    data = ODD.read_bytes()
    assert unpack_to(tmp_path, lzx_stored_cab(data, b"lzx.sym")) == ("lzx.sym", data)


def test_an_lzx_cab_larger_than_max_size_is_refused_before_cabextract_runs(tmp_path: Path) -> None:
    with pytest.raises(TooLarge):
        unpack_to(tmp_path, lzx_stored_cab(ODD.read_bytes(), b"lzx.sym"), max_size=1000)


def test_an_lzx_cab_without_cabextract_is_malformed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(Malformed, match="LZX CAB not supported"):
        unpack_to(tmp_path, lzx_stored_cab(SMALL.read_bytes(), b"lzx.pdb"))


def test_an_lzx_cab_with_an_odd_name_is_handed_to_cabextract_safely(tmp_path: Path) -> None:
    tool("cabextract")
    src = tmp_path / "-p --help; $(x) `y`.pd_"
    src.write_bytes(lzx_stored_cab(SMALL.read_bytes(), b"../../escape.pdb"))
    dst = tmp_path / "out"
    assert decompress_file(src, dst, max_size=BIG) == "../../escape.pdb"
    assert dst.read_bytes() == SMALL.read_bytes()
    assert not (tmp_path.parent / "escape.pdb").exists()


def _fake_cabextract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """Put a stand-in ``cabextract`` first on PATH, for failures the real one does not show on cue."""
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "cabextract"
    fake.write_text("#!/bin/sh\n" + script + "\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")


def test_a_stalled_cabextract_is_killed_by_the_watchdog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_cabextract(tmp_path, monkeypatch, "exec sleep 60")
    monkeypatch.setattr(compression, "CABEXTRACT_TIMEOUT", 0.5)
    started = time.monotonic()
    with pytest.raises(Malformed, match="cabextract failed"):
        unpack_to(tmp_path, lzx_stored_cab(SMALL.read_bytes(), b"lzx.pdb"))
    assert time.monotonic() - started < 10


def test_cabextract_output_beyond_the_declared_size_is_malformed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_cabextract(tmp_path, monkeypatch, "exec yes")
    with pytest.raises(Malformed, match="more data than the cabinet declares"):
        unpack_to(tmp_path, lzx_stored_cab(SMALL.read_bytes(), b"lzx.pdb"))


def test_a_damaged_lzx_cab_is_malformed(tmp_path: Path) -> None:
    tool("cabextract")
    packed = bytearray(lzx_stored_cab(SMALL.read_bytes(), b"lzx.pdb"))
    data_offset = struct.unpack_from("<I", packed, 36)[0]
    struct.pack_into("<I", packed, data_offset, 0)  # no checksum, so the damage reaches the decoder
    packed[data_offset + 9] = 0x70  # the first word's high byte: no E8 bit, then block type 7 (invalid)
    with pytest.raises(Malformed, match="cabextract"):
        unpack_to(tmp_path, bytes(packed))


# --------------------------------------------------------------------------------------------------
# Damaged, truncated and oversized input


def cab_via_write_cab(data: bytes) -> bytes:
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "in").write_bytes(data)
        write_cab(Path(scratch) / "in", Path(scratch) / "out", "f.pdb")
        return (Path(scratch) / "out").read_bytes()


PACKERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "gzip-multi": lambda data: gzip_members(data, 3),
    "zstd": zstd_with_size,
    "zstd-streamed": zstd_streamed,
    "zlib": zlib.compress,
    "zip": lambda data: zip_of({"f.pdb": data}),
    "cab": cab_via_write_cab,
}


@pytest.mark.parametrize("cut", ["header", "half", "last-byte"])
@pytest.mark.parametrize("kind", sorted(PACKERS))
def test_a_truncated_container_is_malformed(tmp_path: Path, kind: str, cut: str) -> None:
    packed = PACKERS[kind](PDB.read_bytes())
    keep = {"header": 6, "half": len(packed) // 2, "last-byte": len(packed) - 1}[cut]
    with pytest.raises(Malformed):
        unpack_to(tmp_path, packed[:keep])
    assert not (tmp_path / "unpacked").exists()


@pytest.mark.parametrize("kind", sorted(PACKERS))
def test_a_container_with_a_damaged_byte_is_malformed(tmp_path: Path, kind: str) -> None:
    packed = bytearray(PACKERS[kind](PDB.read_bytes()))
    packed[len(packed) // 2] ^= 0x55
    with pytest.raises(Malformed):
        unpack_to(tmp_path, bytes(packed))


def test_a_plain_debug_file_is_not_a_container(tmp_path: Path) -> None:
    with pytest.raises(Malformed, match="not a compressed"):
        decompress_file(PDB, tmp_path / "out", max_size=BIG)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", sorted(PACKERS))
def test_a_file_of_exactly_max_size_is_accepted(tmp_path: Path, kind: str) -> None:
    data = PDB.read_bytes()
    assert unpack_to(tmp_path, PACKERS[kind](data), max_size=len(data))[1] == data


@pytest.mark.parametrize("kind", sorted(PACKERS))
def test_exceeding_max_size_raises_too_large_without_writing_more_than_max_size(
    tmp_path: Path, kind: str
) -> None:
    data = LARGEST.read_bytes()
    packed = tmp_path / "packed"
    packed.write_bytes(PACKERS[kind](data))
    for limit in (len(data) - 1, 100_000, 0):
        out = io.BytesIO()
        with open(packed, "rb") as src, pytest.raises(TooLarge):
            compression.unpack(src, out, max_size=limit)
        assert len(out.getvalue()) <= limit
        assert out.getvalue() == data[: len(out.getvalue())]
    with pytest.raises(TooLarge):
        decompress_file(packed, tmp_path / "out", max_size=100_000)
    assert not (tmp_path / "out").exists(), "a failed unpack leaves no partial file behind"


def test_a_full_disk_is_an_os_error_and_not_a_malformed_download() -> None:
    packed = io.BytesIO(gzip.compress(PDB.read_bytes()))
    with open("/dev/full", "wb", buffering=0) as full, pytest.raises(OSError):
        compression.unpack(packed, full, max_size=BIG)


def test_a_zstd_frame_announcing_more_than_max_size_is_refused_before_decoding(tmp_path: Path) -> None:
    out = io.BytesIO()
    with pytest.raises(TooLarge):
        compression.unpack(io.BytesIO(zstd_with_size(PDB.read_bytes())), out, max_size=1000)
    assert out.getvalue() == b""


BOMB_PROBE = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    from symbol_proxy import compression
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    try:
        compression.decompress_file(Path(sys.argv[1]), Path(sys.argv[2]), max_size=int(sys.argv[3]))
        outcome = "unpacked"
    except compression.TooLarge:
        outcome = "TooLarge"
    print(json.dumps({"outcome": outcome, "seconds": time.monotonic() - started,
                      "rss_growth_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before}))
    """
)


def _zero_bomb_zstd(path: Path, gib: int) -> None:
    zeros = bytes(1 << 20)
    with (
        open(path, "wb") as handle,
        zstandard.ZstdCompressor().stream_writer(handle, closefd=False) as writer,
    ):
        for _ in range(gib * 1024):
            writer.write(zeros)


def _zero_bomb_gzip(path: Path, gib: int) -> None:
    member = gzip.compress(bytes(1 << 20))
    with open(path, "wb") as handle:
        for _ in range(gib * 1024):
            handle.write(member)


@pytest.mark.parametrize("make", [_zero_bomb_zstd, _zero_bomb_gzip], ids=["zstd", "gzip"])
def test_a_decompression_bomb_is_stopped_by_max_size_quickly_and_with_flat_memory(
    tmp_path: Path, make: Callable[[Path, int], None]
) -> None:
    bomb = tmp_path / "bomb"
    make(bomb, 1)  # 1 GiB of zeros in about 1 MiB or less
    assert bomb.stat().st_size < 2 << 20
    limit = 64 << 20
    probe = subprocess.run(
        [sys.executable, "-c", BOMB_PROBE, str(bomb), str(tmp_path / "out"), str(limit)],
        env={**os.environ, "PYTHONPATH": str(REPO / "sidecar")},
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = json.loads(probe.stdout)
    assert result["outcome"] == "TooLarge"
    assert result["seconds"] < 10
    assert result["rss_growth_kib"] < 48 * 1024, result
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# write_cab limits and names


def test_write_cab_refuses_a_file_larger_than_a_cab_can_hold(tmp_path: Path) -> None:
    assert MAX_CAB_SIZE == 0xFFFF * 32768 < 2**31 - 1
    huge = tmp_path / "huge.pdb"
    with open(huge, "wb") as handle:
        handle.truncate(MAX_CAB_SIZE + 1)  # sparse: nothing is really written
    with pytest.raises(TooLarge):
        write_cab(huge, tmp_path / "huge.pd_", "huge.pdb")
    assert not (tmp_path / "huge.pd_").exists()


@pytest.mark.parametrize("name", ["", "dir/x.pdb", "dir\\x.pdb", "x\0.pdb", "x" * 252 + ".pdb"])
def test_write_cab_rejects_a_name_a_cab_cannot_hold(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        write_cab(SMALL, tmp_path / "out.pd_", name)
    assert not (tmp_path / "out.pd_").exists()


def test_the_cab_checksum_packs_left_over_bytes_big_endian() -> None:
    assert cab_checksum(b"") == 0
    assert cab_checksum(b"\x01\x02\x03\x04") == 0x04030201
    assert cab_checksum(b"\x01\x02\x03\x04\x05\x06\x07") == 0x04030201 ^ 0x050607
    assert cab_checksum(b"\x01\x02", seed=0x10000) == 0x10102
    words = bytes(range(256)) * 9
    expected = 0
    for i in range(0, len(words), 4):
        expected ^= int.from_bytes(words[i : i + 4], "little")
    assert cab_checksum(words) == expected


def test_the_modules_import_no_network_or_server_code() -> None:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, symbol_proxy.compression, symbol_proxy.magic; print(sorted(sys.modules))",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO / "sidecar")},
        check=True,
        capture_output=True,
        text=True,
    )
    loaded = probe.stdout
    for forbidden in (
        "aiohttp",
        "socket",
        "symbol_proxy.server",
        "symbol_proxy.backends",
        "symbol_proxy.cache",
    ):
        assert f"'{forbidden}'" not in loaded, forbidden


@pytest.mark.parametrize(
    "size", [0, 1, compression.CAB_BLOCK - 1, compression.CAB_BLOCK, 3 * compression.CAB_BLOCK + 5]
)
@pytest.mark.parametrize("piece", [1000, compression.CAB_BLOCK, 1 << 20])
def test_a_stored_cab_streamed_in_pieces_unpacks_to_the_file(tmp_path: Path, size: int, piece: int) -> None:
    data = os.urandom(size)
    cab = compression.stored_cab(size, "crash.pdb", time.time())
    blocks = compression.StoredBlocks(size)
    body = cab.header + b"".join(blocks.feed(data[i : i + piece]) for i in range(0, size, piece))
    assert blocks.complete
    assert len(body) == cab.size
    out = io.BytesIO()
    assert compression.unpack(io.BytesIO(body), out, max_size=size + 1) == "crash.pdb"
    assert out.getvalue() == data
    path = tmp_path / "x.pd_"
    path.write_bytes(body)
    cabextract = shutil.which("cabextract")
    assert cabextract
    subprocess.run([cabextract, "-q", "-d", str(tmp_path / "out"), str(path)], check=True)
    assert (tmp_path / "out" / "crash.pdb").read_bytes() == data


def test_a_stored_cab_refuses_more_bytes_than_announced() -> None:
    blocks = compression.StoredBlocks(10)
    with pytest.raises(compression.Malformed):
        blocks.feed(b"x" * 11)
    with pytest.raises(compression.TooLarge):
        compression.stored_cab(compression.MAX_CAB_SIZE + 1, "big.pdb", 0.0)


# --------------------------------------------------------------------------------------------------
# Unpacking while the body arrives (StreamUnpacker): the same parsers, fed chunk by chunk


def zip_streamed(data: bytes, zip64: bool = False) -> bytes:
    """A zip written to a pipe-like output: the sizes and CRC follow the entry (data descriptor)."""

    class Unseekable(io.BytesIO):
        def seekable(self) -> bool:
            return False

        def seek(self, *args: Any) -> int:
            raise io.UnsupportedOperation

    buffer = Unseekable()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("f.pdb", "w", force_zip64=zip64) as entry,
    ):
        entry.write(data)
    packed = buffer.getvalue()
    assert struct.unpack_from("<H", packed, 6)[0] & 0x08, "expected a data descriptor"
    return packed


def zip64_of(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("f.pdb", "w", force_zip64=True) as entry,
    ):
        entry.write(data)
    return buffer.getvalue()


STREAMED: dict[str, Callable[[bytes], bytes]] = {
    **PACKERS,
    "zip-stored": lambda data: zip_of({"f.pdb": data}, zipfile.ZIP_STORED),
    "zip-streamed": zip_streamed,
    "zip64": zip64_of,
    "zip64-streamed": lambda data: zip_streamed(data, zip64=True),
    "cab-stored": lambda data: cab_of(data, b"f.pdb"),
    "cab-reserve": lambda data: cab_of(data, b"f.pdb", reserve=(4, 2, 3)),
}
SIZED = {"cab", "cab-stored", "cab-reserve", "zip", "zip-stored", "zip64"}
"""Containers that announce the unpacked size before its first byte."""


def stream_unpack(packed: bytes, *, max_size: int = BIG, limit: int = 100_000) -> tuple[bytes, int | None]:
    """``packed`` fed in chunks of random sizes (1 byte to 1 MiB); the output and the size the
    unpacker announced before its first byte."""
    unpacker = compression.StreamUnpacker.for_head(packed[:64], max_size=max_size)
    assert unpacker is not None
    rng = random.Random(len(packed))
    out: list[bytes] = []
    announced: list[int | None] = []
    position = 0
    while not unpacker.done or position < len(packed):
        if position < len(packed):
            size = rng.choice([1, 7, 100, 4096, 65536, 1 << 20])
            unpacker.feed(packed[position : position + size])
            position += size
        else:
            unpacker.end()
        while piece := unpacker.read(limit):
            assert len(piece) <= limit + (1 << 17), "one read is bounded by its limit and one block"
            if not out:
                announced.append(unpacker.size)
            out.append(piece)
        if position >= len(packed) and not unpacker.done:
            unpacker.end()
            while piece := unpacker.read(limit):
                out.append(piece)
            assert unpacker.done
    return b"".join(out), announced[0] if announced else unpacker.size


@pytest.mark.parametrize("kind", sorted(STREAMED))
def test_a_container_unpacked_as_it_arrives_gives_the_same_file(tmp_path: Path, kind: str) -> None:
    data = LARGEST.read_bytes()
    packed = STREAMED[kind](data)
    unpacked, announced = stream_unpack(packed)
    assert unpacked == data
    assert unpacked == unpack_to(tmp_path, packed)[1]
    assert announced == (len(data) if kind in SIZED else None)


@pytest.mark.parametrize("cut", ["header", "half", "last-byte"])
@pytest.mark.parametrize("kind", sorted(STREAMED))
def test_a_truncated_body_is_malformed_once_it_ends(kind: str, cut: str) -> None:
    packed = STREAMED[kind](PDB.read_bytes())
    keep = {"header": 6, "half": len(packed) // 2, "last-byte": len(packed) - 1}[cut]
    unpacker = compression.StreamUnpacker.for_head(packed[:64], max_size=BIG)
    assert unpacker is not None
    unpacker.feed(packed[:keep])
    while unpacker.read():
        pass
    assert not unpacker.done
    unpacker.end()
    with pytest.raises(Malformed):
        while unpacker.read():
            pass


@pytest.mark.parametrize("kind", sorted(STREAMED))
def test_a_damaged_body_is_malformed(kind: str) -> None:
    packed = bytearray(STREAMED[kind](PDB.read_bytes()))
    packed[len(packed) // 2] ^= 0x55
    with pytest.raises(Malformed):
        stream_unpack(bytes(packed))


@pytest.mark.parametrize("kind", sorted(STREAMED))
def test_a_body_unpacking_beyond_max_size_is_too_large(kind: str) -> None:
    data = LARGEST.read_bytes()
    with pytest.raises(TooLarge):
        stream_unpack(STREAMED[kind](data), max_size=len(data) - 1)
    assert stream_unpack(STREAMED[kind](data), max_size=len(data))[0] == data


def test_a_zip_with_two_entries_or_only_a_directory_is_malformed_as_it_arrives() -> None:
    with pytest.raises(Malformed, match="exactly one entry"):
        stream_unpack(zip_of({"a.pdb": b"MZ" * 1000, "b.pdb": b"MZ" * 1000}))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.mkdir("only")
    with pytest.raises(Malformed, match="directory"):
        stream_unpack(buffer.getvalue())


def test_containers_that_need_the_whole_file_are_not_unpacked_as_they_arrive() -> None:
    data = PDB.read_bytes()
    lzma_zip = zip_of({"f.pdb": data}, zipfile.ZIP_LZMA)
    data_first = bytearray(cab_of(data, b"f.pdb"))
    struct.pack_into("<I", data_first, 36, 44)  # the folder's data would start inside the headers
    for packed in (lzx_stored_cab(data, b"f.pdb"), lzma_zip, bytes(data_first), data):
        assert compression.StreamUnpacker.for_head(packed[:64], max_size=BIG) is None


def test_bytes_after_the_end_of_a_cab_are_counted_but_not_kept() -> None:
    data = PDB.read_bytes()
    unpacker = compression.StreamUnpacker.for_head(cab_via_write_cab(data)[:64], max_size=BIG)
    assert unpacker is not None
    unpacker.feed(cab_via_write_cab(data))
    assert b"".join(iter(unpacker.read, b"")) == data
    assert unpacker.done
    for _ in range(100):
        unpacker.feed(bytes(1 << 20))
        assert unpacker.read() == b""
    assert unpacker.received > 100 << 20
    assert not unpacker._pending, "trailing bytes are not held in memory"
