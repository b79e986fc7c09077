"""``kill -9`` of the proxy process in the middle of a 200 MiB miss, then a restart: nothing
partial is served or kept, the temporary file is gone, and the file then arrives with the right
bytes."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import requests

from tests.reliability.harness import FaultyUpstream, ProxyProcess

MiB = 1024 * 1024
SIZE = 200 * MiB
NAME = "huge.exe/5AB3807710000/huge.exe"


def tmp_bytes(cache: Path) -> int:
    tmp = cache / "tmp"
    return sum(p.stat().st_size for p in tmp.iterdir()) if tmp.exists() else 0


def test_kill_9_during_a_large_miss_leaves_nothing_partial(tmp_path: Path) -> None:
    data = b"MZ" + random.Random(9).randbytes(SIZE - 2)
    digest = hashlib.sha256(data).hexdigest()
    with FaultyUpstream() as upstream:
        upstream.put(NAME, data)
        upstream.faults[NAME] = "slow_body"
        upstream.slow_body_pause = 0.001  # 16 KiB pieces: the download takes a while
        cache = tmp_path / "cache"
        config = {
            "cache": {"dir": str(cache), "max_size": "1GiB"},
            "sources": [{"id": "up", "type": "http", "url": upstream.url, "layout": {"type": "symstore"}}],
        }
        proxy = ProxyProcess(tmp_path, config).start()
        try:
            with requests.get(f"{proxy.url}/symbols/{NAME}", stream=True, timeout=60) as response:
                assert response.status_code == 200
                assert int(response.headers["Content-Length"]) == SIZE
                received = 0
                for chunk in response.iter_content(MiB):
                    received += len(chunk)
                    if received >= 20 * MiB and tmp_bytes(cache) >= 20 * MiB:
                        break
                proxy.kill()
            assert 0 < tmp_bytes(cache) < SIZE, "killed while the temporary file was partial"
            objects = cache / "objects"
            assert not objects.exists() or not any(p.is_file() for p in objects.rglob("*"))

            upstream.faults.clear()
            proxy.start()
            assert tmp_bytes(cache) == 0, "leftovers of the killed run are dropped at start"
            response = requests.get(f"{proxy.url}/symbols/{NAME}", timeout=120)
            assert response.status_code == 200
            assert hashlib.sha256(response.content).hexdigest() == digest
            cached = [p for p in (cache / "objects").rglob("*") if p.is_file()]
            assert [p.stat().st_size for p in cached] == [SIZE]
            assert os.listdir(cache / "tmp") == []
        finally:
            proxy.stop()
