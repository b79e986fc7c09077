"""The disk cap under churn, measured the way the filesystem sees it.

16 clients ask a proxy process with a small cap for files of random sizes (1 KiB to several MiB,
plain, gzip-wrapped upstream, and as ``_`` CABs the proxy streams), while a sampler adds up, every
50 ms, the bytes of every file under the cache directory and of every deleted file the proxy still
holds open there (``/proc/<pid>/fd``). The maximum never exceeds the cap, no response is a 5xx,
every body is the right one, and once idle nothing deleted is held open.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import random
from pathlib import Path

import aiohttp

from symbol_proxy import compression
from tests.reliability.harness import (
    DiskSampler,
    FaultyUpstream,
    cache_usage,
    deleted_but_open,
    running_proxy,
)

MiB = 1024 * 1024
CAP = 16 * MiB
CLIENTS = 16
REQUESTS_PER_CLIENT = 20


def compressible(rng: random.Random, size: int) -> bytes:
    block = rng.randbytes(16 * 1024)
    return (b"MZ" + block * (size // len(block) + 1))[:size]


def unpack_cab(data: bytes) -> bytes:
    out = io.BytesIO()
    compression.unpack(io.BytesIO(data), out, max_size=64 * MiB)
    return out.getvalue()


async def test_the_cap_holds_on_disk_and_nothing_fails_while_files_churn(tmp_path: Path) -> None:
    rng = random.Random(8)
    with FaultyUpstream() as upstream:
        files: dict[str, bytes] = {}
        for i in range(30):
            name = f"c{i}.exe/5AB38077{i + 1:x}000/c{i}.exe"
            low, high = rng.choice([(1024, 64 * 1024), (64 * 1024, MiB), (MiB, 6 * MiB)])
            size = rng.randint(low, high)
            data = compressible(rng, size)
            files[name] = data
            upstream.put(name, gzip.compress(data, 1) if i % 3 == 0 else data)
        config = {
            "cache": {"dir": str(tmp_path / "cache"), "max_size": CAP},
            "upstream": {"retries": 0},
            "sources": [{"id": "up", "type": "http", "url": upstream.url, "layout": {"type": "symstore"}}],
        }
        with running_proxy(tmp_path, config) as proxy:
            statuses: list[int] = []
            wrong: list[str] = []

            async def client(n: int) -> None:
                local = random.Random(n)
                async with aiohttp.ClientSession(auto_decompress=False) as http:
                    for _ in range(REQUESTS_PER_CLIENT):
                        name = local.choice(list(files))
                        as_cab = local.random() < 0.2
                        path = name[:-1] + "_" if as_cab else name
                        async with http.get(f"{proxy.url}/symbols/{path}") as response:
                            body = await response.read()
                            statuses.append(response.status)
                            if response.status != 200:
                                wrong.append(f"{path}: {response.status} {body[:200]!r}")
                            elif (unpack_cab(body) if as_cab else body) != files[name]:
                                wrong.append(f"{path}: wrong body")

            with DiskSampler(proxy.cache_dir, proxy.pid) as sampler:
                await asyncio.gather(*(client(n) for n in range(CLIENTS)))
                await asyncio.sleep(0.3)
            assert not wrong, (len(wrong), wrong[:10])
            assert len(statuses) == CLIENTS * REQUESTS_PER_CLIENT
            assert sampler.samples > 10
            assert sampler.peak <= CAP, (sampler.peak, CAP, sampler.peak_files)
            assert deleted_but_open(proxy.cache_dir, proxy.pid) == 0
            idle, _ = cache_usage(proxy.cache_dir, proxy.pid)
            assert proxy.metric("symproxy_cache_size_bytes") == idle, "the cache accounts every byte"
            assert proxy.metric("symproxy_cache_evictions_total") > 0, "the churn never filled the cache"
