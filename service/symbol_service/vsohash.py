"""VSO-Hash: the Azure DevOps BlobStore "file-level dedup" blob identifier (algorithm id 0x00).

The content is cut into 2 MiB blocks and each block into 64 KiB pages. A block's hash is the
SHA-256 of its pages' SHA-256 hashes; the blob id folds the block hashes in order into a rolling
SHA-256 seeded with ``VSO Content Identifier Seed``, marking the last block, and appends the
algorithm byte. Empty content is one empty block. (Spec: ``shared/specs/azure-symbol-api.md`` §8.)

``VsoHasher`` is incremental so uploads are hashed as they stream, holding at most one page.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib

__all__ = [
    "ALGORITHM_FILE",
    "BLOCK_SIZE",
    "PAGE_SIZE",
    "BlobId",
    "VsoHasher",
    "block_hash",
    "vso_hash",
]

PAGE_SIZE = 64 * 1024
BLOCK_SIZE = 2 * 1024 * 1024
SEED = b"VSO Content Identifier Seed"
ALGORITHM_FILE = 0x00
"""The only algorithm we accept: whole-file ids. 1 (chunk) and 2 (node) belong to chunk dedup."""


@dataclasses.dataclass(frozen=True, slots=True)
class BlobId:
    """A 33-byte blob identifier: 32 bytes of hash and the algorithm byte."""

    raw: bytes

    def __post_init__(self) -> None:
        # BlobIdentifier's own rule: odd total length, an even algorithm result of at least 2 bytes.
        if len(self.raw) < 3 or len(self.raw) % 2 != 1:
            raise ValueError("a blob identifier has an odd length of at least 3 bytes")

    @classmethod
    def from_hex(cls, text: str) -> BlobId:
        try:
            return cls(bytes.fromhex(text))
        except ValueError:
            raise ValueError("a blob identifier in hex has an odd number of hex digits") from None

    @classmethod
    def from_base64(cls, text: str) -> BlobId:
        try:
            return cls(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise ValueError("identifierValue is not a base64 blob identifier") from None

    @property
    def algorithm(self) -> int:
        return self.raw[-1]

    @property
    def hex(self) -> str:
        """Upper-case hex, as BlobStore routes and storage names spell it."""
        return self.raw.hex().upper()

    @property
    def base64(self) -> str:
        """How the Symbol REST API carries it (``identifierValue``)."""
        return base64.b64encode(self.raw).decode("ascii")

    def __str__(self) -> str:
        return self.hex


class VsoHasher:
    """Feed bytes with ``update``; ``finish`` returns the blob id (``block_hashes`` then holds all)."""

    def __init__(self) -> None:
        self._rolling = SEED
        self._pages = hashlib.sha256()
        self._page = bytearray()
        self._in_block = 0
        self._pending: bytes | None = None
        self._finished: BlobId | None = None
        self.block_hashes: list[bytes] = []
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._finished is not None:
            raise RuntimeError("the hash is already finished")
        view = memoryview(data).cast("B")
        self.size += len(view)
        while view:
            if self._in_block == BLOCK_SIZE:
                self._close_block()
            if not self._page and len(view) >= PAGE_SIZE:
                self._pages.update(hashlib.sha256(view[:PAGE_SIZE]).digest())
                view = view[PAGE_SIZE:]
                self._in_block += PAGE_SIZE
                continue
            take = view[: PAGE_SIZE - len(self._page)]
            self._page += take
            view = view[len(take) :]
            self._in_block += len(take)
            if len(self._page) == PAGE_SIZE:
                self._pages.update(hashlib.sha256(self._page).digest())
                self._page.clear()

    def _close_block(self) -> None:
        if self._page:
            self._pages.update(hashlib.sha256(self._page).digest())
            self._page.clear()
        digest = self._pages.digest()
        if self._pending is not None:
            # The previous block is not the last one: a block follows.
            self._rolling = hashlib.sha256(self._rolling + self._pending + b"\x00").digest()
        self._pending = digest
        self.block_hashes.append(digest)
        self._pages = hashlib.sha256()
        self._in_block = 0

    def finish(self) -> BlobId:
        if self._finished is None:
            self._close_block()
            assert self._pending is not None
            rolling = hashlib.sha256(self._rolling + self._pending + b"\x01").digest()
            self._finished = BlobId(rolling + bytes([ALGORITHM_FILE]))
        return self._finished


def vso_hash(data: bytes | bytearray | memoryview) -> BlobId:
    hasher = VsoHasher()
    hasher.update(data)
    return hasher.finish()


def block_hash(block: bytes | bytearray | memoryview) -> bytes:
    """The hash of one block (at most ``BLOCK_SIZE`` bytes), as the block upload route names it."""
    view = memoryview(block).cast("B")
    if len(view) > BLOCK_SIZE:
        raise ValueError("a block is at most 2 MiB")
    pages = hashlib.sha256()
    for start in range(0, len(view), PAGE_SIZE):
        pages.update(hashlib.sha256(view[start : start + PAGE_SIZE]).digest())
    return pages.digest()
