"""Publishing service: a large request's life, blob upload throughput, and publishing against S3.

    .venv/bin/python bench/publish_service.py [--part entries|blob|s3 ...] [--entries 100000]
        [--batch 100] [--blob-mib 256] [--files 1000] [--total-mib 1024] [--concurrency 8]

``entries`` and ``blob`` run ``symbol-service``'s app in this process on 127.0.0.1 over a filesystem
store in a temporary directory (the development request store), and drive it over real HTTP with
aiohttp:

1. ``entries``: one request of ``--entries`` debug entries posted in batches of ``--batch``
   (BuildXL's size), every entry naming one stored blob (so each is ``created``), then sealed: wall
   time, entries per second, the process's CPU time and peak RSS. Then the operator's part, in a
   child process of its own (``symbol_service.publication.Publisher``, as ``symbol-operator``'s
   lifecycle runs it): publishing the sealed request (every entry's file copied to its lookup
   paths) and expiring it (the sweep that deletes those paths, then the manifest): wall time of each
   and the child's peak RSS.
2. ``blob``: one ``--blob-mib`` MiB blob uploaded with a single PUT (hashed with VSO-Hash as it
   streams and written to the store), against writing the same bytes straight to the store with the
   filesystem backend, and against VSO-Hash alone: MiB/s of each.
3. ``s3``: ``--files`` files of mixed sizes, ``--total-mib`` in all, into MinIO (an S3-compatible
   server on 127.0.0.1, ``tests/support/objectstores.py``) in one run: first uploaded directly with
   aiobotocore PutObject calls, ``--concurrency`` at a time; then published through
   ``symbol-service serve`` (a child process, S3 store on the same MinIO) as a client does it:
   create the request, post the entries in batches (``blobMissing``), PUT every blob,
   ``--concurrency`` at a time, re-post, seal. Wall time of each, their ratio, and CPU per MiB of
   the direct client, of the API's client and of the service process.

Client and server share the machine (2 cores, shared with other work when these numbers were
taken), so the numbers are an upper bound on cost, not a statement of capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import resource
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiobotocore.session import AioSession
from aiohttp.test_utils import TestServer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.service.test_cli import start_service  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.objectstores import start_minio  # noqa: E402

from symbol_proxy.backends.filesystem import FilesystemBackend  # noqa: E402
from symbol_proxy.config import FilesystemSource  # noqa: E402
from symbol_service import tokens, vsohash  # noqa: E402
from symbol_service.app import create_app  # noqa: E402
from symbol_service.config import Limits  # noqa: E402
from symbol_service.publication import Publisher  # noqa: E402
from symbol_service.requeststore import MemoryRequestStore  # noqa: E402

MiB = 1024 * 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_cpu_seconds(pid: int) -> float:
    """User + system CPU of a running child process (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f":{token}".encode()).decode()}


async def in_process_service(root: str, token: str, blob_mib: int) -> tuple[TestServer, FilesystemSource]:
    table = tokens.TokenTable(
        [{"name": "bench", "hash": tokens.hash_token(token), "scopes": ["vso.symbols_write"]}]
    )
    source = FilesystemSource.model_validate({"id": "bench", "type": "filesystem", "path": root})
    limits = Limits(max_blob_size=(blob_mib + 1) * MiB)
    server = TestServer(
        create_app(FilesystemBackend(source), MemoryRequestStore(), table, limits=limits), host="127.0.0.1"
    )
    await server.start_server()
    return server, source


async def run_entries(entries: int, batch: int) -> None:
    token = tokens.new_token()
    with tempfile.TemporaryDirectory(prefix="publish-bench-") as root:
        server, _ = await in_process_service(root, token, 1)
        base = f"http://127.0.0.1:{server.port}/bench/_apis"
        async with aiohttp.ClientSession(headers=basic(token)) as session:
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
        await server.close()
        segments = -(-entries // batch)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--operator-part",
            root,
            request_id,
            str(segments),
            stdout=asyncio.subprocess.PIPE,
        )
        stdout, _ = await child.communicate()
        assert child.returncode == 0, child.returncode
        numbers = json.loads(stdout)
        print(
            f"operator: published {numbers['paths']:,} paths in {numbers['publish']:.1f} s, expired "
            f"(withdrew {numbers['withdrawn']:,} paths, removed the manifest) in {numbers['expire']:.1f} s, "
            f"CPU {numbers['cpu']:.1f} s, peak RSS {numbers['rss']:.0f} MiB"
        )


async def operator_part(root: str, request_id: str, segments: int) -> None:
    """What the operator's lifecycle does with the sealed request, timed (run as a child process)."""
    source = FilesystemSource.model_validate({"id": "bench", "type": "filesystem", "path": root})
    publisher = Publisher(FilesystemBackend(source))
    started = time.perf_counter()
    paths = await publisher.publish(request_id, segments)
    published = time.perf_counter() - started
    started = time.perf_counter()
    withdrawn = await publisher.withdraw(request_id, segments, [])
    await publisher.forget(request_id)
    expired = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"paths": paths, "publish": published, "withdrawn": withdrawn, "expire": expired}
    print(json.dumps({**result, "cpu": cpu_seconds(), "rss": rss}))


async def run_blob(blob_mib: int) -> None:
    token = tokens.new_token()
    with tempfile.TemporaryDirectory(prefix="publish-bench-") as root:
        server, source = await in_process_service(root, token, blob_mib)
        base = f"http://127.0.0.1:{server.port}/bench/_apis"
        async with aiohttp.ClientSession(headers=basic(token)) as session:
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


def mixed_sizes(count: int, total: int) -> list[int]:
    """``count`` sizes summing to ``total``: log-uniform between 4 KiB and 64 MiB before scaling, so
    most files are small and a few carry most of the bytes, as in a build's symbols."""
    rng = random.Random(1)
    raw = [2 ** rng.uniform(12, 26) for _ in range(count)]
    scale = total / sum(raw)
    sizes = [max(1, int(r * scale)) for r in raw]
    sizes[0] += total - sum(sizes)
    return sizes


async def limited(concurrency: int, jobs: list[Callable[[], Awaitable[None]]]) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(one(job) for job in jobs))


async def run_s3(count: int, total_mib: int, concurrency: int) -> None:
    sizes = mixed_sizes(count, total_mib * MiB)
    pool = os.urandom(sum(sizes))
    files: list[bytes] = []
    offset = 0
    for size in sizes:
        files.append(pool[offset : offset + size])
        offset += size
    del pool
    print(
        f"s3: {count} files, {total_mib} MiB in all, sizes {min(sizes):,} B .. {max(sizes) / MiB:.1f} MiB "
        f"(median {statistics.median(sizes) / 1024:.0f} KiB), {concurrency} uploads at a time, "
        "MinIO on 127.0.0.1"
    )
    with start_minio() as minio, tempfile.TemporaryDirectory(prefix="publish-bench-") as work:
        keys = {"aws_access_key_id": minio.access_key, "aws_secret_access_key": minio.secret_key}
        session = AioSession()
        async with session.create_client(
            "s3", region_name="us-east-1", endpoint_url=minio.endpoint, **keys
        ) as s3:
            for bucket in ("direct", "publish"):
                await s3.create_bucket(Bucket=bucket)
            started, cpu = time.perf_counter(), cpu_seconds()
            store_cpu = child_cpu_seconds(minio.process.pid)

            def direct_job(number: int, data: bytes) -> Callable[[], Awaitable[None]]:
                async def job() -> None:
                    await s3.put_object(Bucket="direct", Key=f"files/{number}.bin", Body=data)

                return job

            await limited(concurrency, [direct_job(n, data) for n, data in enumerate(files)])
            direct_wall, direct_cpu = time.perf_counter() - started, cpu_seconds() - cpu
            direct_store_cpu = child_cpu_seconds(minio.process.pid) - store_cpu

        token = tokens.new_token()
        tokens_file = Path(work) / "tokens.yaml"
        tokens_file.write_text(
            yaml.safe_dump(
                [{"name": "bench", "hash": tokens.hash_token(token), "scopes": ["vso.symbols_write"]}]
            )
        )
        port = free_port()
        config = Path(work) / "service.yaml"
        store = {
            "id": "publish",
            "type": "s3",
            "bucket": "publish",
            "region": ["us-east-1", minio.endpoint],
            "access_key": minio.access_key,
            "secret_key": minio.secret_key,
        }
        config.write_text(
            yaml.safe_dump(
                {
                    "listen": {"host": "127.0.0.1", "port": port},
                    "store": store,
                    "tokens_file": str(tokens_file),
                    "limits": {"max_blob_size": max(sizes) + MiB},
                }
            )
        )
        process = start_service(config, port)
        try:
            base = f"http://127.0.0.1:{port}/bench/_apis"
            service_cpu = child_cpu_seconds(process.pid)
            store_cpu = child_cpu_seconds(minio.process.pid)
            started, cpu = time.perf_counter(), cpu_seconds()
            async with aiohttp.ClientSession(headers=basic(token)) as client:
                await publish_through_api(client, base, files, concurrency)
            api_wall, api_cpu = time.perf_counter() - started, cpu_seconds() - cpu
            service_cpu = child_cpu_seconds(process.pid) - service_cpu
            api_store_cpu = child_cpu_seconds(minio.process.pid) - store_cpu
            service_rss = child_peak_rss_mib(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(
        f"direct aiobotocore PUTs: {direct_wall:.1f} s ({total_mib / direct_wall:,.0f} MiB/s), client CPU "
        f"{direct_cpu * 1000 / total_mib:.1f} ms/MiB, "
        f"MinIO CPU {direct_store_cpu * 1000 / total_mib:.1f} ms/MiB"
    )
    print(
        f"through the API (create, entries, PUT blobs, re-post, seal): {api_wall:.1f} s "
        f"({total_mib / api_wall:,.0f} MiB/s) = {api_wall / direct_wall:.2f}x direct; client CPU "
        f"{api_cpu * 1000 / total_mib:.1f} ms/MiB, service CPU {service_cpu * 1000 / total_mib:.1f} ms/MiB, "
        f"MinIO CPU {api_store_cpu * 1000 / total_mib:.1f} ms/MiB, service peak RSS {service_rss:.0f} MiB"
    )


async def publish_through_api(
    client: aiohttp.ClientSession, base: str, files: list[bytes], concurrency: int, batch: int = 100
) -> None:
    """The client's flow: create, entries (blobMissing), upload every blob, re-post, seal."""
    async with client.post(
        f"{base}/symbol/requests", json={"name": f"bench-{secrets.token_hex(4)}"}
    ) as response:
        assert response.status == 201, await response.text()
        request_id = (await response.json())["id"]
    entries = [
        {
            "clientKey": f"f{n}.dll/{n:08X}1000/f{n}.dll",
            "informationLevel": "binary",
            "blobIdentifier": {"identifierValue": vsohash.vso_hash(data).base64},
        }
        for n, data in enumerate(files)
    ]
    path = f"{base}/symbol/requests/{request_id}/debugentries"

    async def post_entries() -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = []
        for first in range(0, len(entries), batch):
            async with client.post(path, json={"debugEntries": entries[first : first + batch]}) as response:
                assert response.status == 200, await response.text()
                answers += (await response.json())["value"]
        return answers

    missing = await post_entries()

    def upload(uri: str, data: bytes) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            async with client.put(uri, data=data) as response:
                assert response.status in (200, 201), await response.text()

        return job

    await limited(
        concurrency,
        [upload(answer["blobUri"], data) for answer, data in zip(missing, files, strict=True)],
    )
    assert all(answer["status"] == "created" for answer in await post_entries())
    async with client.patch(f"{base}/symbol/requests/{request_id}", json={"status": "sealed"}) as response:
        assert response.status == 200, await response.text()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--part", action="append", choices=["entries", "blob", "s3"], help="what to run (default: all)"
    )
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--blob-mib", type=int, default=256)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--total-mib", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--operator-part", nargs=3, metavar=("ROOT", "REQUEST_ID", "SEGMENTS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.operator_part:
        root, request_id, segments = args.operator_part
        asyncio.run(operator_part(root, request_id, int(segments)))
        return
    parts = args.part or ["entries", "blob", "s3"]
    if "entries" in parts:
        asyncio.run(run_entries(args.entries, args.batch))
    if "blob" in parts:
        asyncio.run(run_blob(args.blob_mib))
    if "s3" in parts:
        asyncio.run(run_s3(args.files, args.total_mib, args.concurrency))


if __name__ == "__main__":
    main()
