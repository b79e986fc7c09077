"""Large files in blocks, resumable; and the cache that spares a re-run the scan and the hashing.

Against the real ``symbol-service serve`` process (``tests.publish.test_service``). A generated
Breakpad file of a few MiB with ``--block-threshold`` set below its size is uploaded in 2 MiB blocks
(the service counts ``put_block`` calls and no whole-blob ``PUT``), the entry re-posted with
``blobDetails``, and the content read back byte-identical; a block that repeats is sent once. The
CLI SIGKILLed while a block is held half-way (a forwarder in front of the service) and run again
resumes after the acknowledged blocks: every block reaches the service once. A journal whose blocks
the service no longer holds (the staged blocks removed between the runs) makes the rerun send those
blocks again, and the publish completes. The scan and hash cache: a second run neither parses nor
hashes a file (the summary counts the cache's answers) and the dry run it gives equals an uncached
one; a file changed in place (same size, new mtime) is read and hashed again and published with its
new content; a corrupt state file is ignored and rewritten; a file younger than the mtime granularity
is not cached; an unusable state directory is ignored.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import re
import shutil
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from symbol_publish import files, state
from symbol_publish.cli import ExitCode
from symbol_service import vsohash
from tests.publish.conftest import run_process
from tests.publish.test_service import ORG, Service, service  # noqa: F401  (the running service fixture)
from tests.support import shared

MiB = 1024 * 1024
THRESHOLD = "3M"


def _breakpad(path: Path, size: int, seed: int) -> bytes:
    """A Breakpad file of about ``size`` bytes (a MODULE line, then FUNC records)."""
    rng = random.Random(seed)
    module_id = "".join(rng.choice("0123456789ABCDEF") for _ in range(32)) + "0"
    lines = [f"MODULE Linux x86_64 {module_id} big{seed}.so", "FILE 0 big.c"]
    total, address = sum(len(x) + 1 for x in lines), 0x1000
    while total < size:
        line = f"FUNC {address:x} 10 0 function_{rng.getrandbits(64):016x}"
        lines.append(line)
        total += len(line) + 1
        address += 0x10
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(data)
    return data


def _calls(target: Service, operation: str) -> dict[str, float]:
    """``symservice_requests_total`` of one operation, by status."""
    with urllib.request.urlopen(f"{target.base}/metrics", timeout=10) as response:
        text = response.read().decode()
    pattern = rf'^symservice_requests_total\{{operation="{operation}",status="(\d+)"\}} (\S+)$'
    return {m.group(1): float(m.group(2)) for m in re.finditer(pattern, text, re.M)}


def _content(target: Service, name: str) -> bytes:
    request = target.get(f"requests?requestName={name}")
    assert request["status"] == "sealed"
    (entry,) = target.get(f"requests/{request['id']}/debugentries")["value"]
    data: bytes = target.get(f"requests/{request['id']}/contents/{entry['id']}")
    return data


def _counted(out: str) -> tuple[int, int, int, int]:
    """(files scanned, scans from the cache, files hashed, hashes from the cache) of the summary."""
    match = re.search(r"(\d+) files scanned, (\d+) from the cache; (\d+) hashed, (\d+) from the cache", out)
    assert match, out
    scanned, scan_hits, hashed, hash_hits = map(int, match.groups())
    return scanned, scan_hits, hashed, hash_hits


def test_a_large_file_is_uploaded_in_blocks(service: Service, tmp_path: Path) -> None:  # noqa: F811
    build = tmp_path / "build"
    build.mkdir()
    data = _breakpad(build / "big.sym", 7 * MiB, seed=1)
    blocks = -(-len(data) // vsohash.BLOCK_SIZE)
    result = service.publish(build, "blocks/1", "--block-threshold", THRESHOLD)
    assert result.code == ExitCode.OK, result.err
    assert f"{blocks} blocks uploaded, 0 resumed" in result.out
    assert _calls(service, "put_block") == {"201": blocks}
    assert _calls(service, "put_blob") == {}  # no whole-blob PUT
    assert _content(service, "blocks/1") == data
    # Below the threshold, one PUT.
    small = service.publish(build, "blocks/2", "--block-threshold", "8M", "--no-state")
    assert small.code == ExitCode.OK and "blocks uploaded" not in small.out


def test_a_block_that_repeats_is_sent_once(service: Service, tmp_path: Path) -> None:  # noqa: F811
    build = tmp_path / "build"
    build.mkdir()
    head = b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 repeats.so\nFILE 0 a.c\n"
    filler = b"PUBLIC 2000 0 q\n"  # 16 bytes: a block of them is exactly 2 MiB
    first_block = head + b"#" * (vsohash.BLOCK_SIZE - len(head) - 1) + b"\n"
    data = first_block + filler * (3 * vsohash.BLOCK_SIZE // len(filler))
    (build / "repeats.sym").write_bytes(data)
    result = service.publish(build, "repeats/1", "--block-threshold", THRESHOLD)
    assert result.code == ExitCode.OK, result.err
    assert "2 blocks uploaded, 0 resumed" in result.out  # of 4: the last three are one block
    assert _calls(service, "put_block") == {"201": 2}
    assert _content(service, "repeats/1") == data


class _BlockHolder:
    """Forwards everything to the service; the ``hold_at``-th block is never forwarded (held until
    the test is done), so the publisher is killed with the earlier blocks acknowledged."""

    def __init__(self, target: str, hold_at: int) -> None:
        self.target = target
        self.hold_at = hold_at
        self.blocks = 0
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.method == "POST" and "blockhash" in {k.lower() for k in request.query}:
            self.blocks += 1
            if self.blocks == self.hold_at:
                self.held.set()
                await self.release.wait()
                return web.Response(status=503)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "transfer-encoding")}
        headers["Host"] = request.host  # blobUri comes back here
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method, self.target + request.path_qs, data=io.BytesIO(body), headers=headers
            ) as answer,
        ):
            return web.Response(
                status=answer.status, body=await answer.read(), content_type=answer.content_type
            )


@pytest.mark.parametrize("lose_staged_blocks", [False, True])
async def test_an_interrupted_block_upload_resumes(
    service: Service,  # noqa: F811
    tmp_path: Path,
    aiohttp_server: Any,
    lose_staged_blocks: bool,
) -> None:
    build = tmp_path / "build"
    build.mkdir()
    data = _breakpad(build / "big.sym", 9 * MiB, seed=2)
    blocks = -(-len(data) // vsohash.BLOCK_SIZE)
    holder = _BlockHolder(service.base, hold_at=3)
    app = web.Application(client_max_size=8 * MiB)
    app.router.add_route("*", "/{tail:.*}", holder.handle)
    server = await aiohttp_server(app)
    url = str(server.make_url(f"/{ORG}"))  # the journal is per server: both runs go through here
    args = [build, "--server", url, "--request", "resumed/1", "--block-threshold", THRESHOLD]

    first = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "symbol_publish.cli", *map(str, args), "--concurrency", "1",
        env=service.env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    exited = asyncio.ensure_future(first.communicate())
    held = asyncio.ensure_future(holder.held.wait())
    await asyncio.wait([held, exited], timeout=120, return_when=asyncio.FIRST_COMPLETED)
    assert held.done(), exited.result() if exited.done() else "neither held a block nor exited"
    first.send_signal(signal.SIGKILL)
    await exited
    holder.release.set()
    assert _calls(service, "put_block") == {"201": 2}  # the two blocks before the held one
    if lose_staged_blocks:
        shutil.rmtree(tmp_path / "store" / "_publish" / "blocks")

    second = await asyncio.get_running_loop().run_in_executor(
        None, lambda: run_process(*args, env=service.env())
    )
    assert second.code == ExitCode.OK, second.err
    assert "(resumed)" in second.out
    if lose_staged_blocks:  # the journal's two blocks were gone: sent again after the re-post
        assert f"{blocks} blocks uploaded, 2 resumed" in second.out
        assert _calls(service, "put_block") == {"201": 2 + blocks}
    else:  # each block reached the service once
        assert f"{blocks - 2} blocks uploaded, 2 resumed" in second.out
        assert _calls(service, "put_block") == {"201": blocks}
    assert _content(service, "resumed/1") == data
    assert not list((tmp_path / "publish-state" / "blocks").rglob("*"))[1:]  # the journal is gone


def test_a_rerun_reads_the_cache_and_reads_a_changed_file_again(service: Service, tmp_path: Path) -> None:  # noqa: F811
    build = tmp_path / "build"
    shutil.copytree(shared.FIXTURES / "breakpad", build)  # copies keep their (old) mtimes
    files = sorted(p for p in build.rglob("*.sym"))
    first = service.publish(build, "cache/1")
    assert first.code in (ExitCode.OK, ExitCode.SKIPPED), first.err
    scanned, _, hashed, _ = _counted(first.out)
    assert _counted(first.out) == (scanned, 0, hashed, 0) and scanned >= hashed > 1

    second = service.publish(build, "cache/1")
    assert "already sealed by an earlier run" in second.out
    assert _counted(second.out) == (0, scanned, 0, hashed)
    # What the cache gives is what symbolic reads: the dry run's objects and keys are the same.
    cached = run_process(build, "--dry-run", "--format", "json")
    fresh = run_process(build, "--dry-run", "--format", "json", "--no-state")
    assert cached.out == fresh.out and cached.json()["entries"]

    # One file changed in place: same size, another byte, a new (but not racy) mtime.
    changed = next(p for p in files if b"FUNC " in p.read_bytes())
    text = changed.read_bytes()
    position = text.index(b"FUNC ") + 5
    flipped = (
        text[:position] + (b"1" if text[position : position + 1] != b"1" else b"2") + text[position + 1 :]
    )
    stat = changed.stat()
    changed.write_bytes(flipped)
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**9))
    assert changed.stat().st_size == stat.st_size and time.time_ns() - changed.stat().st_mtime_ns > 2 * 10**9
    third = service.publish(build, "cache/2")
    assert third.code in (ExitCode.OK, ExitCode.SKIPPED), third.err
    assert _counted(third.out) == (1, scanned - 1, 1, hashed - 1)
    request = service.get("requests?requestName=cache/2")
    contents = {
        service.get(f"requests/{request['id']}/contents/{e['id']}")
        for e in service.get(f"requests/{request['id']}/debugentries")["value"]
    }
    assert flipped in contents and text not in contents

    (tmp_path / "publish-state" / "files.json").write_text('{"version": 1, "files": {"x": [')
    corrupt = service.publish(build, "cache/2")
    assert corrupt.code in (ExitCode.OK, ExitCode.SKIPPED), corrupt.err
    assert _counted(corrupt.out) == (scanned, 0, hashed, 0)
    assert _counted(service.publish(build, "cache/2").out) == (0, scanned, 0, hashed)  # rewritten whole


def test_the_cache_skips_files_younger_than_the_mtime_granularity_and_a_broken_state_dir(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old.bin"
    old.write_bytes(b"x" * 100)
    stamp = old.stat().st_mtime_ns - 10 * 10**9
    os.utime(old, ns=(stamp, stamp))
    young = tmp_path / "young.bin"
    young.write_bytes(b"y" * 100)
    cache = state.FileCache(tmp_path / "state")
    for path in (old, young):
        cache.put_hashed(path, path.stat().st_mtime_ns, files.hash_file(path))
    cache.save()
    again = state.FileCache(tmp_path / "state")
    assert again.hashed(old) == files.hash_file(old)
    assert again.hashed(young) is None  # could still change without changing its mtime
    assert (again.hash_hits, again.hash_misses) == (1, 1)

    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the state directory should be")
    unwritable = state.FileCache(blocked)
    unwritable.put_hashed(old, old.stat().st_mtime_ns, files.hash_file(old))
    unwritable.save()  # nothing raised, nothing written
    assert blocked.read_text().startswith("a file")
    journal = state.BlockJournal(blocked, "http://x")
    blob = files.hash_file(old).blob
    journal.add(blob, b"\0" * 32)
    assert journal.acknowledged(blob) == set()
