"""A miss for a file the store keeps wrapped (gzip, zstd, a CAB ``.pd_``, a one-entry zip): time to
first byte, total time and the proxy's RSS growth, with curl, under a cap that holds the file and
under one that does not (the file is then passed through).

    .venv/bin/python bench/compressed_miss.py [--size-mib 128] [--sidecar DIR]

The file is PDB-shaped (an MSF 7.00 header, then base64 text of random bytes: compressible about as
much as real PDBs' string tables, 1.3:1 by deflate), packed at level 1 and served by a filesystem
source with the symstore layout. Every wrapping gets its own file name, so every request is a cold
miss. ``--sidecar`` runs another tree's proxy (e.g. ``git archive main sidecar | tar -x -C
/tmp/main``, then ``--sidecar /tmp/main/sidecar``) with this venv's dependencies, for a
before/after comparison.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import zstandard

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.cab_first_byte import CURL_FORMAT, GUID, make_pdb  # noqa: E402
from bench.run import rss_kib  # noqa: E402
from tests.support.net import free_port  # noqa: E402

from symbol_proxy import compression  # noqa: E402

WRAPPINGS = ("gzip", "zstd", "cab", "zip")


def pack(plain: Path, wrapping: str, store: Path, name: str) -> None:
    """Put ``plain`` into ``store`` as ``name``, wrapped: CABs under the ``_`` name, the others
    under the plain name."""
    folder = store / name / f"{GUID}1"
    folder.mkdir(parents=True)
    if wrapping == "cab":
        compression.write_cab(plain, folder / (name[:-1] + "_"), name, level=1)
        return
    target = folder / name
    with open(plain, "rb") as src:
        if wrapping == "gzip":
            with gzip.open(target, "wb", compresslevel=1) as out:
                shutil.copyfileobj(src, out, 1 << 20)
        elif wrapping == "zstd":
            with open(target, "wb") as raw:
                zstandard.ZstdCompressor(level=1).copy_stream(src, raw)
        else:
            with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
                archive.write(plain, name)


def curl(url: str, pid: int) -> dict[str, object]:
    before = rss_kib(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        out = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", CURL_FORMAT, url],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        done.set()
        sampler.join()
    code, first, total, size = out.split()
    return {
        "status": int(code),
        "ttfb_ms": round(float(first) * 1000, 1),
        "total_ms": round(float(total) * 1000),
        "bytes": int(size),
        "rss_growth_mib": round((peak[0] - before) / 1024, 1),
    }


def run_proxy(work: Path, sidecar: Path, cap: int, size: int) -> dict[str, object]:
    port = free_port()
    config = work / "proxy.json"
    cache = work / f"cache-{cap}"
    config.write_text(
        json.dumps(
            {
                "listen": {"host": "127.0.0.1", "port": port},
                "cache": {"dir": str(cache), "max_size": cap, "max_file_size": "4GiB"},
                "sources": [
                    {
                        "id": "fs",
                        "type": "filesystem",
                        "path": str(work / "store"),
                        "layout": {"type": "symstore"},
                    }
                ],
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(sidecar)}
    proxy = subprocess.Popen(
        [sys.executable, "-m", "symbol_proxy", "--log-level", "warning", "serve", "--config", f"{config}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: dict[str, object] = {}
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        # A first miss warms the process (thread pool, connections): not part of any row.
        curl(f"http://127.0.0.1:{port}/symbols/none.pdb/{GUID}1/none.pdb", proxy.pid)
        for wrapping in WRAPPINGS:
            name = f"{wrapping}.pdb"
            result = curl(f"http://127.0.0.1:{port}/symbols/{name}/{GUID}1/{name}", proxy.pid)
            result["cached"] = any(p.is_file() and p.stat().st_size == size for p in cache.rglob("*"))
            results[wrapping] = result
    finally:
        proxy.terminate()
        proxy.wait(10)
        shutil.rmtree(cache, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--sidecar", type=Path, default=REPO / "sidecar")
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="compressed-bench-") as tmp:
        work = Path(tmp)
        plain = work / "plain.pdb"
        make_pdb(plain, size)
        for wrapping in WRAPPINGS:
            pack(plain, wrapping, work / "store", f"{wrapping}.pdb")
        plain.unlink()
        result = {
            "sidecar": str(args.sidecar),
            "size_mib": args.size_mib,
            "cap_holds_the_file": run_proxy(work, args.sidecar, 4 * size, size),
            "cap_below_the_file": run_proxy(work, args.sidecar, size // 2, size),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
