"""S3 miss path: an object fetched through symbol-proxy versus fetched directly with aiobotocore,
from the same S3-compatible server on 127.0.0.1 (moto, or MinIO with ``--server minio``), in one run.

    .venv/bin/python bench/s3_miss.py [--rounds 3] [--server moto|minio] [--parallel-threshold BYTES]

``--parallel-threshold 0`` makes the proxy fetch every object in parallel ranged parts
(``upstream.s3_parallel_threshold``); moto reads the whole object for each range, MinIO reads only
the range from disk, as S3 does.

For 1 MiB and 200 MiB objects: time to first byte and total time, median of the rounds. Every
proxy round uses a fresh cache (a miss); the direct client streams the body to nowhere, as the
proxy's client (curl) does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
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
from tests.support.objectstores import start_minio  # noqa: E402
from tests.support.s3server import start_s3_server  # noqa: E402

SIZES = {"1MiB": 1024 * 1024, "200MiB": 200 * 1024 * 1024}
CREDS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench", "region_name": "us-east-1"}


def key_for(label: str, i: int) -> str:
    return f"bench{label}{i}.exe/5AB3807{i}9000/bench{label}{i}.exe"


async def direct(endpoint: str, key: str) -> tuple[float, float]:
    from aiobotocore.session import get_session

    async with get_session().create_client("s3", endpoint_url=endpoint, **CREDS) as client:
        start = time.perf_counter()
        response = await client.get_object(Bucket="bench", Key=key)
        first = None
        async for chunk in response["Body"].iter_chunks(256 * 1024):
            if first is None and chunk:
                first = time.perf_counter() - start
        return first or 0.0, time.perf_counter() - start


def through_proxy(port: int, key: str) -> tuple[float, float]:
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_starttransfer} %{time_total}",
            f"http://127.0.0.1:{port}/symbols/{key}",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out[0] == "200", out
    return float(out[1]), float(out[2])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", choices=["moto", "minio"], default="moto")
    parser.add_argument("--parallel-threshold", type=int, default=None)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.server == "minio":
            minio = stack.enter_context(start_minio())
            endpoint = minio.endpoint
            CREDS.update(aws_access_key_id=minio.access_key, aws_secret_access_key=minio.secret_key)
        else:
            moto = start_s3_server()
            stack.callback(moto.stop)
            endpoint = moto.endpoint
        results = run(endpoint, args.rounds, args.parallel_threshold)
    threshold = "default" if args.parallel_threshold is None else args.parallel_threshold
    print(f"server: {args.server}; s3_parallel_threshold: {threshold}\n")
    print("| object | direct TTFB | proxy TTFB | direct total | proxy total | proxy / direct (total) |")
    print("|---|---|---|---|---|---|")
    for label, r in results.items():
        print(
            f"| {label} | {r['direct_ttfb_s'] * 1000:.1f} ms | {r['proxy_ttfb_s'] * 1000:.1f} ms | "
            f"{r['direct_total_s'] * 1000:.0f} ms | {r['proxy_total_s'] * 1000:.0f} ms | "
            f"{r['proxy_total_s'] / r['direct_total_s']:.2f} |"
        )
    return 0


def run(endpoint: str, rounds: int, parallel_threshold: int | None) -> dict[str, dict[str, float]]:
    import boto3  # type: ignore[import-untyped]

    work = Path(tempfile.mkdtemp(prefix="s3bench-"))
    results: dict[str, dict[str, float]] = {}
    upstream = {} if parallel_threshold is None else {"s3_parallel_threshold": parallel_threshold}
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, **CREDS)
        s3.create_bucket(Bucket="bench")
        for label, size in SIZES.items():
            blob = b"MZ" + os.urandom(size - 2)
            for i in range(rounds * 2):
                s3.put_object(Bucket="bench", Key=key_for(label, i), Body=blob)
        port = free_port()
        config = work / "proxy.json"
        config.write_text(
            json.dumps(
                {
                    "listen": {"host": "127.0.0.1", "port": port},
                    "cache": {"dir": str(work / "cache"), "max_size": "4GiB"},
                    "upstream": upstream,
                    "sources": [
                        {
                            "id": "s3",
                            "type": "s3",
                            "bucket": "bench",
                            "region": ["us-east-1", endpoint],
                            "access_key": CREDS["aws_access_key_id"],
                            "secret_key": CREDS["aws_secret_access_key"],
                            "layout": {"type": "symstore"},
                        }
                    ],
                }
            )
        )
        proxy = subprocess.Popen(
            [
                str(REPO / ".venv/bin/symbol-proxy"),
                "--log-level",
                "warning",
                "serve",
                "--config",
                str(config),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            for label in SIZES:
                d = [asyncio.run(direct(endpoint, key_for(label, i))) for i in range(rounds)]
                p = [through_proxy(port, key_for(label, rounds + i)) for i in range(rounds)]
                results[label] = {
                    "direct_ttfb_s": statistics.median(x[0] for x in d),
                    "direct_total_s": statistics.median(x[1] for x in d),
                    "proxy_ttfb_s": statistics.median(x[0] for x in p),
                    "proxy_total_s": statistics.median(x[1] for x in p),
                }
        finally:
            proxy.terminate()
            proxy.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    sys.exit(main())
