"""Background downloads are bounded and cancelled when nobody waits, against a real proxy process.

Many clients ask for distinct files while one source takes far longer than they wait to send its
headers; they give up and leave. The downloads they started are cancelled shortly after (no queue
left to drain for minutes), and meanwhile a miss for a file that a fast source has is answered:
the stuck source cannot take every upstream slot.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import requests

from tests.reliability.harness import FaultyUpstream, running_proxy
from tests.support.shared import keyed_objects

PDB = next(o for o in keyed_objects() if o.filetype.value == "pdb")
KEY = PDB.keys["symsrv"][0]
CLIENTS = 60


async def test_abandoned_downloads_are_cancelled_and_a_stuck_source_leaves_room_for_a_fast_one(
    tmp_path: Path,
) -> None:
    fast = tmp_path / "fast"
    (fast / KEY).parent.mkdir(parents=True)
    (fast / KEY).write_bytes(PDB.data)
    with FaultyUpstream() as slow:
        slow.slow_headers_delay = 120.0
        names = [f"s{i}.exe/5AB38077{i + 1:x}000/s{i}.exe" for i in range(CLIENTS)]
        for name in names:
            slow.put(name, b"MZ" + bytes(1000))
            slow.faults[name] = "slow_headers"
        config = {
            "cache": {"dir": str(tmp_path / "cache")},
            "upstream": {"max_concurrent_downloads": 4, "head_timeout": 90, "retries": 0},
            "sources": [
                {"id": "fast", "type": "filesystem", "path": str(fast), "layout": {"type": "symstore"}},
                {"id": "slow", "type": "http", "url": slow.url, "layout": {"type": "symstore"}},
            ],
        }
        with running_proxy(tmp_path, config) as proxy:

            async def impatient(name: str) -> None:
                timeout = aiohttp.ClientTimeout(total=1.0)
                async with aiohttp.ClientSession(timeout=timeout) as http:
                    try:
                        async with http.get(f"{proxy.url}/symbols/{name}") as response:
                            await response.read()
                    except TimeoutError:
                        pass

            await asyncio.gather(*(impatient(name) for name in names))
            assert proxy.metric("symproxy_downloads_in_flight") > 0
            # At once, while the slow source still holds every slot it may: a miss for a file the
            # fast source has. (A generous bound, not a timing: without the per-source bound it
            # waits for the slow source's 90 s head timeout.)
            response = await asyncio.to_thread(requests.get, f"{proxy.url}/symbols/{KEY}", timeout=20)
            assert response.status_code == 200 and response.content == PDB.data
            # The clients are gone: so are their downloads, well before the slow source answers.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proxy.metric("symproxy_downloads_in_flight") > 0:
                await asyncio.sleep(0.2)
            assert proxy.metric("symproxy_downloads_in_flight") == 0, "abandoned downloads still run"
            assert proxy.metric("symproxy_downloads_cancelled_total") >= 1
            assert slow.requests, "the slow source was asked"
