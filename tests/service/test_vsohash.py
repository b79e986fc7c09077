"""VSO-Hash against the published vectors (``vsohash_vectors.json``, from BuildXL's own tests).

Covered, for every vector length (0, 1, 64 KiB ± 1, 2 MiB ± 1, 4 MiB ± 1 …): block hashes and blob ids
in hex and base64, whole and fed in awkward pieces (1 byte, 7 bytes around page and block edges, a
page plus one); the spec's example identifier; the id's validation rules.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from symbol_service import vsohash
from tests.support import shared


@cache
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((shared.VECTORS / "vsohash_vectors.json").read_text())
    return data


@cache
def content(length: int) -> bytes:
    return bytes(i & 0xFF for i in range(length))


def blob_vectors() -> list[dict[str, Any]]:
    return list(vectors()["blob_id_vectors"])


def test_sizes_match_the_vector_file() -> None:
    assert vectors()["page_size"] == vsohash.PAGE_SIZE
    assert vectors()["block_size"] == vsohash.BLOCK_SIZE
    assert vectors()["seed_ascii"].encode("ascii") == vsohash.SEED


@pytest.mark.parametrize("vector", vectors()["block_hash_vectors"], ids=lambda v: str(v["content_length"]))
def test_block_hash_of_one_block(vector: dict[str, Any]) -> None:
    data = content(vector["content_length"])
    if len(data) > vsohash.BLOCK_SIZE:
        pytest.fail("block vectors are at most one block long")
    assert vsohash.block_hash(data).hex().upper() == vector["block_hash_hex"]


@pytest.mark.parametrize("vector", blob_vectors(), ids=lambda v: str(v["content_length"]))
def test_blob_id_whole(vector: dict[str, Any]) -> None:
    hasher = vsohash.VsoHasher()
    hasher.update(content(vector["content_length"]))
    blob_id = hasher.finish()
    assert blob_id.hex == vector["blob_id_hex"]
    assert blob_id.base64 == vector["identifierValue_base64"]
    assert [h.hex().upper() for h in hasher.block_hashes] == vector["block_hashes_hex"]
    assert hasher.size == vector["content_length"]


@pytest.mark.parametrize("piece", [1 << 16 | 1, 7 * 1024 + 3, 1 << 21], ids=["page+1", "7KiB+3", "block"])
@pytest.mark.parametrize("vector", blob_vectors(), ids=lambda v: str(v["content_length"]))
def test_blob_id_fed_in_pieces(vector: dict[str, Any], piece: int) -> None:
    data = content(vector["content_length"])
    hasher = vsohash.VsoHasher()
    for start in range(0, len(data), piece):
        hasher.update(memoryview(data)[start : start + piece])
    assert hasher.finish().hex == vector["blob_id_hex"]


def test_blob_id_fed_byte_by_byte_across_a_page_edge() -> None:
    vector = next(v for v in blob_vectors() if v["content_length"] == vsohash.PAGE_SIZE + 1)
    data = content(vector["content_length"])
    hasher = vsohash.VsoHasher()
    hasher.update(data[: vsohash.PAGE_SIZE - 5])
    for offset in range(vsohash.PAGE_SIZE - 5, len(data)):
        hasher.update(data[offset : offset + 1])
    assert hasher.finish().hex == vector["blob_id_hex"]


def test_the_spec_example_identifier_round_trips_between_base64_and_hex() -> None:
    example = vectors()["azure_example"]
    blob_id = vsohash.BlobId.from_base64(example["identifierValue_base64"])
    assert blob_id.hex == example["blob_id_hex"]
    assert blob_id.algorithm == vsohash.ALGORITHM_FILE
    assert vsohash.BlobId.from_hex(example["blob_id_hex"].lower()).base64 == example["identifierValue_base64"]


@pytest.mark.parametrize("raw", [b"", b"\x00", b"\x00\x01", b"\x00" * 32])
def test_identifiers_of_even_or_tiny_length_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        vsohash.BlobId(raw)


def test_garbage_base64_and_hex_are_refused() -> None:
    with pytest.raises(ValueError):
        vsohash.BlobId.from_base64("not base64!")
    with pytest.raises(ValueError):
        vsohash.BlobId.from_hex("XYZ")


def test_a_finished_hasher_takes_no_more_bytes() -> None:
    hasher = vsohash.VsoHasher()
    hasher.finish()
    with pytest.raises(RuntimeError):
        hasher.update(b"x")


@pytest.mark.parametrize("vector", blob_vectors(), ids=lambda v: str(v["content_length"]))
def test_vso_hash_of_whole_content(vector: dict[str, Any]) -> None:
    assert vsohash.vso_hash(content(vector["content_length"])).hex == vector["blob_id_hex"]


def test_the_size_counts_every_piece() -> None:
    vector = max(blob_vectors(), key=lambda v: v["content_length"])
    data = content(vector["content_length"])
    hasher = vsohash.VsoHasher()
    for start in range(0, len(data), 1 << 20):
        hasher.update(data[start : start + (1 << 20)])
    assert hasher.size == vector["content_length"]


def test_the_shortest_identifier_is_three_bytes() -> None:
    assert vsohash.BlobId(b"\x01\x02\x00").algorithm == vsohash.ALGORITHM_FILE


def test_base64_with_a_stray_character_is_refused_not_skipped() -> None:
    example = vectors()["azure_example"]["identifierValue_base64"]
    assert vsohash.BlobId.from_base64(example).base64 == example
    with pytest.raises(ValueError, match="identifierValue is not a base64 blob identifier"):
        vsohash.BlobId.from_base64(example[:4] + "!" + example[4:])


def test_each_refusal_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="a blob identifier has an odd length of at least 3 bytes"):
        vsohash.BlobId(b"\x00\x01")
    with pytest.raises(ValueError, match="a blob identifier in hex has an odd number of hex digits"):
        vsohash.BlobId.from_hex("ABC")
    with pytest.raises(ValueError, match="a block is at most 2 MiB"):
        vsohash.block_hash(bytes(vsohash.BLOCK_SIZE + 1))
    hasher = vsohash.VsoHasher()
    hasher.finish()
    with pytest.raises(RuntimeError, match="the hash is already finished"):
        hasher.update(b"x")
