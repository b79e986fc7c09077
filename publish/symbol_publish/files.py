"""Reading the files to publish: in pieces, off the event loop, counted as they go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from symbol_service import vsohash

__all__ = ["CHUNK_SIZE", "chunks", "same_content", "vso_hash_file"]

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


def vso_hash_file(path: Path) -> vsohash.BlobId:
    """The file's VSO-Hash (its blob identifier in the Symbol Service); run it in a thread."""
    hasher = vsohash.VsoHasher()
    with path.open("rb") as file:
        while data := file.read(CHUNK_SIZE):
            hasher.update(data)
    return hasher.finish()


def same_content(first: Path, second: Path) -> bool:
    with first.open("rb") as one, second.open("rb") as other:
        while True:
            a, b = one.read(CHUNK_SIZE), other.read(CHUNK_SIZE)
            if a != b:
                return False
            if not a:
                return True
