"""Every fault of an HTTP upstream, against the real proxy process: the client's status and
``Retry-After``, nothing cached, and the right file once the upstream recovers.

Matrix: slow headers, slow body, a trickle past ``total_timeout``, reset, truncated body, wrong
length, 500, 503, 401, 403, an HTML page with status 200, a redirect loop, an oversized body, a
chunked body without length; plus ``..;`` segments (never a parent directory upstream).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.reliability.harness import FaultyUpstream, ProxyProcess, running_proxy

ERROR_TTL = 2.0
MAX_FILE = 2 * 1024 * 1024

CUT = 0
"""The body has no announced length, so it streams: a failure after the headers can only cut the
connection (the client sees a broken body, never a complete-looking wrong file)."""

# fault -> status the client sees while the fault lasts
EXPECTED = {
    "slow_headers": 504,
    "slow_body": 200,
    "trickle": 504,
    "reset": 502,
    "truncate": 502,
    "wrong_length": 502,
    "500": 502,
    "503": 502,
    "401": 404,
    "403": 404,
    "html": 404,
    "redirect_loop": 502,
    "oversized": CUT,
    "chunked": 200,
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream() as store:
        store.slow_headers_delay = 20.0
        yield store


@pytest.fixture(scope="module")
def proxy(upstream: FaultyUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    workdir = tmp_path_factory.mktemp("faults")
    config = {
        "cache": {
            "dir": str(workdir / "cache"),
            "max_size": "64MiB",
            "negative_ttl": "1h",
            "error_ttl": ERROR_TTL,
            "max_file_size": MAX_FILE,
        },
        "upstream": {
            "connect_timeout": 1,
            "head_timeout": 1,
            "read_timeout": 2,
            "total_timeout": 3,
            "retries": 0,
            "breaker_threshold": 1000,
        },
        "sources": [{"id": "up", "type": "http", "url": upstream.url, "layout": {"type": "symstore"}}],
    }
    with running_proxy(workdir, config) as process:
        yield process


def cached_copies(proxy: ProxyProcess, data: bytes) -> int:
    count = 0
    for directory, _, names in os.walk(proxy.cache_dir):
        for name in names:
            path = Path(directory, name)
            if path.stat().st_size == len(data) and path.read_bytes() == data:
                count += 1
    return count


def temp_files(proxy: ProxyProcess) -> list[str]:
    tmp = proxy.cache_dir / "tmp"
    return sorted(os.listdir(tmp)) if tmp.exists() else []


@pytest.mark.parametrize("fault", list(EXPECTED))
def test_each_upstream_fault_gives_its_status_caches_nothing_and_recovers(
    fault: str, upstream: FaultyUpstream, proxy: ProxyProcess
) -> None:
    n = list(EXPECTED).index(fault) + 1
    name = f"f{n}.exe/5AB38077{n:x}000/f{n}.exe"
    data = b"MZ" + random.Random(n).randbytes(48 * 1024)
    if fault == "oversized":
        upstream.put(name, b"MZ" + bytes(MAX_FILE + 1024))
        upstream.faults[name] = "chunked"  # no length up front: refused while it streams
    else:
        upstream.put(name, data)
        upstream.faults[name] = fault
    if EXPECTED[fault] == CUT:
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            requests.get(f"{proxy.url}/symbols/{name}", timeout=30)
        response = requests.get(f"{proxy.url}/symbols/{name}", timeout=30)  # now a remembered error
        assert response.status_code == 502, response.text
    else:
        response = requests.get(f"{proxy.url}/symbols/{name}", timeout=30)
        assert response.status_code == EXPECTED[fault], response.text
    if response.status_code in (502, 504):
        assert response.headers["Retry-After"] == str(math.ceil(ERROR_TTL))
    if response.status_code == 200:
        assert response.content == data
        assert cached_copies(proxy, data) == 1
        return
    assert cached_copies(proxy, data) == 0
    assert temp_files(proxy) == []

    # The upstream recovers: after error_ttl at the latest, the right file.
    upstream.put(name, data)
    del upstream.faults[name]
    time.sleep(ERROR_TTL + 0.2)
    response = requests.get(f"{proxy.url}/symbols/{name}", timeout=30)
    assert response.status_code == 200, (fault, response.text)
    assert response.content == data
    assert cached_copies(proxy, data) == 1


def test_dot_dot_semicolon_segments_never_reach_the_upstream_as_parent_directories(
    upstream: FaultyUpstream, proxy: ProxyProcess
) -> None:
    upstream.raw_paths.clear()
    response = requests.get(f"{proxy.url}/symbols/..;/5AB380771000/..;", timeout=30)
    assert response.status_code == 404
    assert upstream.raw_paths, "the lookup reached the upstream"
    for raw in upstream.raw_paths:
        segments = raw.split("?")[0].split("/")
        assert not any(s.split(";")[0] in (".", "..") for s in segments), raw
