"""Compressed upstream bodies under a small cap, against the real proxy process.

Each store below keeps the file wrapped (gzip or zstd under the plain name, a SymStore CAB ``.ex_``,
a one-entry zip). The data is incompressible, so the packed body is about as large as the file:

* with a cap that holds the unpacked file but not the packed body beside it, the file is unpacked
  while it arrives (only unpacked bytes are written): 200, the right bytes, cached, and a second
  request is a hit;
* with a cap smaller than the unpacked file, it is streamed through to the client: 200, the right
  bytes, nothing cached;
* a wrapped body that unpacks to something else than the file asked for is neither served nor cached.

A sampler adds up every 50 ms the bytes under the cache directory and the deleted files the proxy
holds open there (``harness.cache_usage``): the maximum never exceeds the cap.
"""

from __future__ import annotations

import gzip
import io
import random
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import zstandard

from symbol_proxy import compression
from tests.reliability.harness import DiskSampler, FaultyUpstream, cache_usage, running_proxy
from tests.support.polling import wait_for

MiB = 1024 * 1024
SIZE = 6 * MiB
"""Above the 4 MiB up to which a miss is answered only once complete: these misses stream."""
FITS_UNPACKED = 9 * MiB
"""Holds the file (6 MiB), not the packed body (about 6 MiB) beside it."""
TOO_SMALL = 4 * MiB
NAME = "app.exe/5AB380776000/app.exe"


def cab(data: bytes, tmp_path: Path) -> bytes:
    plain, packed = tmp_path / "app.exe", tmp_path / "app.ex_"
    plain.write_bytes(data)
    compression.write_cab(plain, packed, "app.exe", level=1)
    return packed.read_bytes()


def one_entry_zip(data: bytes, tmp_path: Path) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("app.exe", data)
    return out.getvalue()


WRAPPERS: dict[str, tuple[str, Callable[[bytes, Path], bytes]]] = {
    "gzip": (NAME, lambda data, _: gzip.compress(data, 1)),
    "zstd": (NAME, lambda data, _: zstandard.ZstdCompressor(level=1).compress(data)),
    "cab": (NAME[:-1] + "_", cab),
    "zip": (NAME, one_entry_zip),
}
"""Format → (where the store keeps it, how it is packed)."""


def stored_files(cache: Path) -> list[bytes]:
    objects = cache / "objects"
    return [p.read_bytes() for p in objects.rglob("*") if p.is_file()] if objects.exists() else []


def serve_once(tmp_path: Path, fmt: str, cap: int) -> tuple[bytes, FaultyUpstream, Path, int, int]:
    """Ask a fresh proxy with ``cap`` for the file, stored as ``fmt``; returns the file, the upstream,
    the cache directory, the peak disk use and the upstream requests made by a second ask."""
    data = b"MZ" + random.Random(fmt).randbytes(SIZE - 2)
    location, pack = WRAPPERS[fmt]
    packed = pack(data, tmp_path)
    assert len(packed) + len(data) > cap, "the packed body and the file together exceed the cap"
    with FaultyUpstream() as upstream:
        upstream.put(location, packed)
        config = {
            "cache": {"dir": str(tmp_path / "cache"), "max_size": cap, "error_ttl": 1},
            "upstream": {"retries": 0},
            "sources": [{"id": "up", "type": "http", "url": upstream.url, "layout": {"type": "symstore"}}],
        }
        with running_proxy(tmp_path, config) as proxy, DiskSampler(proxy.cache_dir, proxy.pid) as sampler:
            response = requests.get(f"{proxy.url}/symbols/{NAME}", timeout=60)
            assert response.status_code == 200, response.text
            assert response.content == data
            # The response can end a moment before its download leaves the in-flight table; a
            # request in that moment joins it. Ask again only once it is gone.
            wait_for(lambda: proxy.metric("symproxy_downloads_in_flight") == 0)
            before = upstream.requests[location]
            again = requests.get(f"{proxy.url}/symbols/{NAME}", timeout=60)
            assert again.status_code == 200, again.text
            assert again.content == data
            asked = upstream.requests[location] - before
            assert list((proxy.cache_dir / "tmp").iterdir()) == [], "no scratch file is left"
            idle, _ = cache_usage(proxy.cache_dir, proxy.pid)
            assert idle == proxy.metric("symproxy_cache_size_bytes"), "the cache accounts every byte"
        assert sampler.samples > 0
        return data, upstream, proxy.cache_dir, sampler.peak, asked


@pytest.mark.parametrize("fmt", list(WRAPPERS))
def test_a_wrapped_file_that_fits_only_unpacked_is_unpacked_as_it_arrives_and_cached(
    fmt: str, tmp_path: Path
) -> None:
    data, _, cache, peak, asked = serve_once(tmp_path, fmt, FITS_UNPACKED)
    assert stored_files(cache) == [data]
    assert asked == 0, "the second request is a hit"
    assert peak <= FITS_UNPACKED, peak


@pytest.mark.parametrize("fmt", list(WRAPPERS))
def test_a_wrapped_file_larger_than_the_cap_is_streamed_through_and_not_cached(
    fmt: str, tmp_path: Path
) -> None:
    _, _, cache, peak, asked = serve_once(tmp_path, fmt, TOO_SMALL)
    assert stored_files(cache) == []
    assert asked == 1, "nothing was cached: the second request is passed through again"
    assert peak <= TOO_SMALL, peak


@pytest.mark.parametrize("fmt", list(WRAPPERS))
def test_a_wrapped_body_that_unpacks_to_another_file_type_is_refused(fmt: str, tmp_path: Path) -> None:
    page = b"<html><body>Sign in</body></html>" * 1000
    location, pack = WRAPPERS[fmt]
    with FaultyUpstream() as upstream:
        upstream.put(location, pack(page, tmp_path))
        config = {
            "cache": {"dir": str(tmp_path / "cache"), "max_size": FITS_UNPACKED, "error_ttl": 1},
            "upstream": {"retries": 0},
            "sources": [{"id": "up", "type": "http", "url": upstream.url, "layout": {"type": "symstore"}}],
        }
        with running_proxy(tmp_path, config) as proxy:
            response = requests.get(f"{proxy.url}/symbols/{NAME}", timeout=60)
            assert response.status_code == 502, response.text
            assert "not a pe file" in response.text
            assert stored_files(proxy.cache_dir) == []
            assert list((proxy.cache_dir / "tmp").iterdir()) == []


@pytest.mark.parametrize("fmt", ["cab", "zip"])
def test_a_wrapped_file_larger_than_the_cap_is_streamed_through_as_a_cab_for_an_underscore_request(
    fmt: str, tmp_path: Path
) -> None:
    # A CAB and a zip announce the file's size before its first byte, so a `_` request can stream
    # its stored cabinet from the passed-through bytes (a gzip or zstd file's size is unknown).
    data = b"MZ" + random.Random(fmt).randbytes(SIZE - 2)
    location, pack = WRAPPERS[fmt]
    with FaultyUpstream() as upstream:
        upstream.put(location, pack(data, tmp_path))
        config = {
            "cache": {"dir": str(tmp_path / "cache"), "max_size": TOO_SMALL},
            "upstream": {"retries": 0},
            "sources": [{"id": "up", "type": "http", "url": upstream.url, "layout": {"type": "symstore"}}],
        }
        with running_proxy(tmp_path, config) as proxy, DiskSampler(proxy.cache_dir, proxy.pid) as sampler:
            response = requests.get(f"{proxy.url}/symbols/{NAME[:-1]}_", timeout=60)
            assert response.status_code == 200, response.text
            out = io.BytesIO()
            compression.unpack(io.BytesIO(response.content), out, max_size=2 * SIZE)
            assert out.getvalue() == data
            assert stored_files(proxy.cache_dir) == []
        assert sampler.peak <= TOO_SMALL


@pytest.mark.parametrize("cap", [FITS_UNPACKED, TOO_SMALL])
def test_a_body_with_gzip_content_encoding_is_served_cached_when_it_fits_and_passed_through_else(
    cap: int, tmp_path: Path
) -> None:
    # Decoded by the HTTP client as it arrives (the length is then unknown): the plain path.
    data = b"MZ" + random.Random(cap).randbytes(SIZE - 2)
    with FaultyUpstream() as upstream:
        upstream.put(NAME, data)
        upstream.faults[NAME] = "gzip_encoding"
        config = {
            "cache": {"dir": str(tmp_path / "cache"), "max_size": cap},
            "upstream": {"retries": 0},
            "sources": [{"id": "up", "type": "http", "url": upstream.url, "layout": {"type": "symstore"}}],
        }
        with running_proxy(tmp_path, config) as proxy, DiskSampler(proxy.cache_dir, proxy.pid) as sampler:
            response = requests.get(f"{proxy.url}/symbols/{NAME}", timeout=60)
            assert response.status_code == 200, response.text
            assert response.content == data
            assert stored_files(proxy.cache_dir) == ([data] if cap >= SIZE else [])
        assert sampler.peak <= cap
