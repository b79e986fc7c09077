"""Reading the files to publish: in pieces, off the event loop, counted as they go."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from symbol_service import vsohash

__all__ = ["CHUNK_SIZE", "Hashed", "chunks", "hash_file", "read_block", "same_content"]

CHUNK_SIZE = 1024 * 1024


async def chunks(path: Path, on_bytes: Callable[[int], None] = lambda _: None) -> AsyncIterator[bytes]:
    """The file's bytes in 1 MiB pieces; ``on_bytes`` hears each piece's size once it is read."""
    loop = asyncio.get_running_loop()
    with path.open("rb") as file:
        while True:
            data = await loop.run_in_executor(None, file.read, CHUNK_SIZE)
            if not data:
                return
            yield data
            on_bytes(len(data))


@dataclasses.dataclass(frozen=True, slots=True)
class Hashed:
    """A file's blob id and the hashes of its 2 MiB blocks (what a block upload names)."""

    blob: vsohash.BlobId
    blocks: tuple[bytes, ...]


def hash_file(path: Path) -> Hashed:
    """The file's VSO-Hash (its blob identifier in the Symbol Service); run it in a thread."""
    hasher = vsohash.VsoHasher()
    with path.open("rb") as file:
        while data := file.read(CHUNK_SIZE):
            hasher.update(data)
    blob = hasher.finish()
    return Hashed(blob, tuple(hasher.block_hashes))


def read_block(path: Path, index: int) -> bytes:
    """Block ``index`` of the file (``vsohash.BLOCK_SIZE`` bytes, the last one shorter)."""
    with path.open("rb") as file:
        file.seek(index * vsohash.BLOCK_SIZE)
        return file.read(vsohash.BLOCK_SIZE)


def same_content(first: Path, second: Path) -> bool:
    with first.open("rb") as one, second.open("rb") as other:
        while True:
            a, b = one.read(CHUNK_SIZE), other.read(CHUNK_SIZE)
            if a != b:
                return False
            if not a:
                return True
