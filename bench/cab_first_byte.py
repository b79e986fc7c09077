"""``foo.pd_`` synthesised from a plain ``foo.pdb``: time to first byte and total time, with curl.

    .venv/bin/python bench/cab_first_byte.py [--size-mib 237] [--rounds 3] [--sidecar DIR]

A PDB-shaped file (an MSF 7.00 header, then base64 text of random bytes: compressible about as
much as real PDBs' string tables, 1.3:1 by deflate) sits in a filesystem store with the symstore
layout. For each round a fresh file name is asked for as ``.pd_`` on a cold cache (the proxy must
fetch the plain file and make the cabinet), then again (the plain file is cached). ``--sidecar``
runs another tree's proxy (e.g. ``git archive main sidecar | tar -x -C /tmp/main``, then
``--sidecar /tmp/main/sidecar``) with this venv's dependencies, for a before/after comparison.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.net import free_port  # noqa: E402

MSF7 = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\x00\x00\x00"
GUID = "3249D99D0C4049318610F4E4FB0B6936"
CURL_FORMAT = "%{http_code} %{time_starttransfer} %{time_total} %{size_download}"


def make_pdb(path: Path, size: int) -> None:
    with open(path, "wb") as out:
        out.write(MSF7)
        written = len(MSF7)
        while written < size:
            chunk = base64.b64encode(os.urandom(3 * 1024 * 1024))[: size - written]
            out.write(chunk)
            written += len(chunk)


def curl(url: str) -> tuple[float, float, int]:
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", CURL_FORMAT, url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    code, first, total, size = out.split()
    assert code == "200", f"{url}: {code}"
    return float(first), float(total), int(size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=237)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sidecar", type=Path, default=REPO / "sidecar")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cab-bench-") as tmp:
        work = Path(tmp)
        names = [f"bench{i}.pdb" for i in range(args.rounds)]
        for name in names:
            folder = work / "store" / name / f"{GUID}1"
            folder.mkdir(parents=True)
            make_pdb(folder / name, args.size_mib * 1024 * 1024)
        port = free_port()
        config = work / "proxy.json"
        config.write_text(
            json.dumps(
                {
                    "listen": {"host": "127.0.0.1", "port": port},
                    "cache": {"dir": str(work / "cache"), "max_size": "8GiB", "max_file_size": "4GiB"},
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
        env = {**os.environ, "PYTHONPATH": str(args.sidecar)}
        proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "symbol_proxy",
                "--log-level",
                "warning",
                "serve",
                "--config",
                f"{config}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            cold, warm = [], []
            for name in names:
                url = f"http://127.0.0.1:{port}/symbols/{name}/{GUID}1/{name[:-1]}_"
                cold.append(curl(url))
                warm.append(curl(url))
        finally:
            proxy.terminate()
            proxy.wait(10)
    where = subprocess.run(
        [sys.executable, "-c", "import symbol_proxy; print(symbol_proxy.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    result = {
        "proxy": where,
        "size_mib": args.size_mib,
        "rounds": args.rounds,
        "cold_ttfb_s": statistics.median(r[0] for r in cold),
        "cold_total_s": statistics.median(r[1] for r in cold),
        "warm_ttfb_s": statistics.median(r[0] for r in warm),
        "warm_total_s": statistics.median(r[1] for r in warm),
        "cab_bytes": cold[0][2],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
