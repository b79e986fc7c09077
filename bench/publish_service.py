"""Publishing service, first numbers: a large request's entries, and blob upload throughput.

    .venv/bin/python bench/publish_service.py [--entries 100000] [--batch 100] [--blob-mib 256]

Runs ``symbol-service``'s app in this process on 127.0.0.1 over a filesystem store in a temporary
directory (the development request store), and drives it over real HTTP with aiohttp:

1. one request of ``--entries`` debug entries posted in batches of ``--batch`` (BuildXL's size),
   every entry naming one stored blob (so each is ``created``), then sealed: wall time, entries per
   second, the process's CPU time and peak RSS;
2. one ``--blob-mib`` MiB blob uploaded with a single PUT (hashed with VSO-Hash as it streams and
   written to the store), against writing the same bytes straight to the store with the
   filesystem backend, and against VSO-Hash alone: MiB/s of each.

Client and server share this process and the machine, so the numbers are an upper bound on cost,
not a statement of capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

from symbol_proxy.backends.filesystem import FilesystemBackend
from symbol_proxy.config import FilesystemSource
from symbol_service import tokens, vsohash
from symbol_service.app import create_app
from symbol_service.config import Limits
from symbol_service.requeststore import MemoryRequestStore

MiB = 1024 * 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(entries: int, batch: int, blob_mib: int) -> None:
    token = tokens.new_token()
    table = tokens.TokenTable(
        [{"name": "bench", "hash": tokens.hash_token(token), "scopes": ["vso.symbols_write"]}]
    )
    with tempfile.TemporaryDirectory(prefix="publish-bench-") as root:
        source = FilesystemSource.model_validate({"id": "bench", "type": "filesystem", "path": root})
        limits = Limits(max_blob_size=(blob_mib + 1) * MiB)
        server = TestServer(
            create_app(FilesystemBackend(source), MemoryRequestStore(), table, limits=limits),
            host="127.0.0.1",
        )
        await server.start_server()
        base = f"http://127.0.0.1:{server.port}/bench/_apis"
        auth = {"Authorization": "Basic " + base64.b64encode(f":{token}".encode()).decode()}
        async with aiohttp.ClientSession(headers=auth) as session:
            blob = b"one blob named by every entry"
            blob_id = vsohash.vso_hash(blob)
            async with session.put(f"{base}/blob/blobs/{blob_id.hex}", data=blob) as response:
                assert response.status == 201, response.status
            async with session.post(f"{base}/symbol/requests", json={"name": "bench"}) as response:
                request_id = (await response.json())["id"]
            started, cpu = time.perf_counter(), cpu_seconds()
            for first in range(0, entries, batch):
                body = {
                    "debugEntries": [
                        {
                            "clientKey": f"f{n}.pdb/{n:032X}1/f{n}.pdb",
                            "informationLevel": "private",
                            "blobIdentifier": {"identifierValue": blob_id.base64},
                        }
                        for n in range(first, min(first + batch, entries))
                    ]
                }
                async with session.post(
                    f"{base}/symbol/requests/{request_id}/debugentries", json=body
                ) as response:
                    assert response.status == 200, await response.text()
                    await response.read()
            async with session.patch(
                f"{base}/symbol/requests/{request_id}", json={"status": "sealed"}
            ) as response:
                assert response.status == 200
            wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"entries: {entries} in batches of {batch}, created and sealed in {wall:.1f} s "
                f"({entries / wall:,.0f} entries/s), CPU {cpu:.1f} s, peak RSS {rss:.0f} MiB"
            )

            data = os.urandom(blob_mib * MiB)
            started = time.perf_counter()
            hasher = vsohash.VsoHasher()
            for start in range(0, len(data), MiB):
                hasher.update(data[start : start + MiB])
            big_id = hasher.finish()
            hash_rate = blob_mib / (time.perf_counter() - started)

            async def pieces() -> AsyncIterator[bytes]:
                for start in range(0, len(data), MiB):
                    yield data[start : start + MiB]

            direct = FilesystemBackend(source)
            started = time.perf_counter()
            await direct.put("direct/blob.bin", pieces(), size=len(data))
            direct_rate = blob_mib / (time.perf_counter() - started)
            started = time.perf_counter()
            async with session.put(f"{base}/blob/blobs/{big_id.hex}", data=pieces()) as response:
                assert response.status == 201, await response.text()
            api_rate = blob_mib / (time.perf_counter() - started)
            print(
                f"blob of {blob_mib} MiB: VSO-Hash alone {hash_rate:,.0f} MiB/s; written directly "
                f"{direct_rate:,.0f} MiB/s; uploaded through the API (hash + write) {api_rate:,.0f} MiB/s "
                f"({direct_rate / api_rate:.2f}x the direct time)"
            )
        await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--blob-mib", type=int, default=256)
    args = parser.parse_args()
    asyncio.run(run(args.entries, args.batch, args.blob_mib))


if __name__ == "__main__":
    main()
