"""``symbol-proxy serve --workers 3`` as processes: three workers on one port, one cache.

Against a real HTTP store: many clients on new connections at once get one download per file
across the processes; hits are answered by every worker, byte-identical, counted once in the one
``/metrics``; the cap holds on disk (every worker's deleted-but-open files included) while files
churn; a follower killed with SIGKILL is started again while clients keep getting answers; the
admin endpoint works through any worker; SIGTERM ends every worker and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import aiohttp
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from tests.reliability.harness import (
    DiskSampler,
    FaultyUpstream,
    ProxyProcess,
    deleted_but_open,
    process_tree,
    running_proxy,
)
from tests.support.shared import keyed_objects

T = TypeVar("T")
WORKERS = 3
MiB = 1024 * 1024
PDB = next(o for o in keyed_objects() if o.filetype.value == "pdb" and len(o.data) > 512 * 1024)
PE = next(o for o in keyed_objects() if o.filetype.value == "pe" and len(o.data) < 64 * 1024)
ELF = next(o for o in keyed_objects() if o.keys.get("debuginfod"))


def until(check: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll ``check`` until it returns something; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def listening(port: int) -> int:
    """How many sockets listen on 127.0.0.1:``port`` (one per worker that serves)."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if row[1] == f"0100007F:{port:04X}" and row[3] == "0A")


def all_workers(proxy: ProxyProcess, *, not_: int | None = None) -> dict[str, list[int]] | None:
    """The workers by role once every one serves the port (and ``not_`` is none of them)."""
    roles = workers_of(proxy)
    complete = len(roles["owner"]) == 1 and len(roles["follower"]) == WORKERS - 1
    serving = complete and listening(proxy.port) == WORKERS
    return roles if serving and not_ not in roles["follower"] else None


def workers_of(proxy: ProxyProcess) -> dict[str, list[int]]:
    """The worker pids by role, read from their command lines."""
    roles: dict[str, list[int]] = {"owner": [], "follower": []}
    for pid in process_tree(proxy.pid)[1:]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                args = handle.read().split(b"\0")
        except OSError:
            continue
        if b"--worker-role" in args:
            roles[args[args.index(b"--worker-role") + 1].decode()].append(pid)
    return roles


def worker_dir(pid: int) -> Path:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        args = handle.read().split(b"\0")
    return Path(args[args.index(b"--worker-dir") + 1].decode())


def own_counter(directory: Path, pid: int, name: str, tmp_path: Path) -> float:
    """One worker's own value of counter ``name`` (from its file among the workers' metrics)."""
    alone = tmp_path / f"metrics-{pid}"
    alone.mkdir(exist_ok=True)
    shutil.copy(directory / "metrics" / f"counter_{pid}.db", alone / f"counter_{pid}.db")
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
    return registry.get_sample_value(name) or 0.0


def config(tmp_path: Path, upstream: FaultyUpstream, cap: int = 512 * MiB) -> dict[str, object]:
    return {
        "cache": {"dir": str(tmp_path / "cache"), "max_size": cap},
        "upstream": {"retries": 0},
        "sources": [{"id": "up", "type": "http", "url": upstream.url, "layout": {"type": "symstore"}}],
    }


async def fetch_all(
    url: str, paths: list[str], headers: dict[str, str] | None = None
) -> list[tuple[int, bytes]]:
    """Each path on a new connection (as many clients do), all at once."""
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as http:

        async def one(path: str) -> tuple[int, bytes]:
            async with http.get(url + path, headers=headers) as response:
                return response.status, await response.read()

        return await asyncio.gather(*(one(path) for path in paths))


async def test_one_download_per_file_and_every_worker_answers_hits(tmp_path: Path) -> None:
    pdb_key, pe_key = PDB.keys["symsrv"][0], PE.keys["symsrv"][0]
    with FaultyUpstream() as upstream:
        upstream.put(pdb_key, PDB.data)
        upstream.put(pe_key, PE.data)
        upstream.default_fault = "slow_headers"  # every client arrives while the first waits
        upstream.slow_headers_delay = 1.5
        with running_proxy(tmp_path, config(tmp_path, upstream), "--workers", str(WORKERS)) as proxy:
            roles = until(lambda: all_workers(proxy))
            expected = {f"/symbols/{pdb_key}": PDB.data, f"/symbols/{pe_key}": PE.data}
            paths = list(expected) * 20
            answers = await fetch_all(proxy.url, paths)
            assert [status for status, _ in answers] == [200] * len(paths)
            assert [body for _, body in answers] == [expected[path] for path in paths]
            assert upstream.requests[pdb_key] == 1 and upstream.requests[pe_key] == 1
            asked = sum(upstream.requests.values())  # with the probes of the ``_`` twins

            hits = list(expected) * 60
            answers = await fetch_all(proxy.url, hits)
            assert [status for status, _ in answers] == [200] * len(hits)
            assert [body for _, body in answers] == [expected[path] for path in hits]
            assert sum(upstream.requests.values()) == asked

            directory = worker_dir(roles["owner"][0])
            answered = {
                pid: own_counter(directory, pid, "symproxy_lean_path_answers_total", tmp_path)
                for pid in roles["owner"] + roles["follower"]
            }
            assert all(count > 0 for count in answered.values()), answered  # each worker served hits
            hit_total = proxy.metric('symproxy_requests_total{protocol="symsrv",result="hit"}')
            assert hit_total >= len(hits), "one /metrics counts every worker's hits"

            # A file nobody has: the owner asks upstream once; each follower answers the repeats
            # itself (for a few seconds) once the owner has told it "not found".
            missing = "/symbols/gone.pdb/0123456789ABCDEF0123456789ABCDEF1/gone.pdb"
            answers = await fetch_all(proxy.url, [missing] * 90)
            assert {status for status, _ in answers} == {404}
            assert upstream.requests["gone.pdb/0123456789ABCDEF0123456789ABCDEF1/gone.pdb"] == 1
            answers = await fetch_all(proxy.url, [missing] * 90)
            remembered = {
                pid: own_counter(directory, pid, "symproxy_lean_path_answers_total", tmp_path) - answered[pid]
                for pid in roles["follower"]
            }
            assert all(count > 0 for count in remembered.values()), remembered


def test_debuginfod_hits_carry_the_same_headers_on_every_worker(tmp_path: Path) -> None:
    location = ELF.keys["debuginfod"][0]  # buildid/<id>/executable
    with FaultyUpstream() as upstream:
        upstream.put(location, ELF.data)
        cfg = config(tmp_path, upstream)
        cfg["sources"] = [
            {"id": "up", "type": "http", "url": upstream.url + "buildid/", "layout": {"type": "debuginfod"}}
        ]
        with running_proxy(tmp_path, cfg, "--workers", str(WORKERS)) as proxy:
            until(lambda: all_workers(proxy))
            url = f"{proxy.url}/{location}"
            first = requests.get(url, timeout=30)
            assert first.status_code == 200 and first.content == ELF.data
            assert first.headers["X-DEBUGINFOD-FILE"]

            def same(response: requests.Response) -> dict[str, str]:
                headers = {k.lower(): v for k, v in response.headers.items()}  # names are case-blind
                return {k: v for k, v in headers.items() if k not in ("date", "connection")}

            hits = [requests.get(url, timeout=30, headers={"Connection": "close"}) for _ in range(30)]
            # New connections: every worker's lean path in turn; each answers as the owner does.
            assert all(hit.status_code == 200 and hit.content == ELF.data for hit in hits)
            assert [same(hit) for hit in hits] == [same(hits[0])] * len(hits)
            assert same(hits[0])["x-debuginfod-file"] == first.headers["X-DEBUGINFOD-FILE"]


async def test_the_cap_holds_on_disk_across_workers_while_files_churn(tmp_path: Path) -> None:
    cap = 8 * MiB
    rng = random.Random(5)
    files = {}
    with FaultyUpstream() as upstream:
        for i in range(24):
            name = f"w{i}.exe/5AB38077{i + 1:x}000/w{i}.exe"
            size = rng.choice([rng.randint(1024, 200 * 1024), rng.randint(300 * 1024, 2 * MiB)])
            files[name] = (b"MZ" + rng.randbytes(size))[:size]
            upstream.put(name, files[name])
        with running_proxy(tmp_path, config(tmp_path, upstream, cap), "--workers", str(WORKERS)) as proxy:
            until(lambda: all_workers(proxy))
            with DiskSampler(proxy.cache_dir, proxy.pid) as sampler:
                for _ in range(6):
                    names = [rng.choice(list(files)) for _ in range(40)]
                    answers = await fetch_all(proxy.url, [f"/symbols/{n}" for n in names])
                    assert [s for s, _ in answers] == [200] * len(names)
                    assert [body for _, body in answers] == [files[n] for n in names]
            assert sampler.samples > 5
            assert sampler.peak <= cap, (sampler.peak, sampler.peak_files)
            assert proxy.metric("symproxy_cache_evictions_total") > 0, "the churn never filled the cache"
            # Followers give their handles up within two seconds: nothing deleted stays held.
            until(lambda: deleted_but_open(proxy.cache_dir, proxy.pid) == 0)


async def test_a_killed_follower_comes_back_and_sigterm_stops_every_worker(tmp_path: Path) -> None:
    key = PE.keys["symsrv"][0]
    with FaultyUpstream() as upstream:
        upstream.put(key, PE.data)
        proxy = ProxyProcess(tmp_path, config(tmp_path, upstream), ["--workers", str(WORKERS)]).start()
        try:
            roles = until(lambda: all_workers(proxy))
            directory = worker_dir(roles["owner"][0])
            victim = roles["follower"][0]
            os.kill(victim, signal.SIGKILL)
            # Connections queued on the dying process's socket are reset with it (SO_REUSEPORT has
            # no hand-over); once it is gone, the kernel routes every new one to the others.
            until(lambda: listening(proxy.port) < WORKERS)
            answers = await fetch_all(proxy.url, [f"/symbols/{key}"] * 30)
            assert [s for s, _ in answers] == [200] * 30
            until(lambda: all_workers(proxy, not_=victim))
            answers = await fetch_all(proxy.url, [f"/symbols/{key}"] * 30)
            assert [s for s, _ in answers] == [200] * 30
            everyone = process_tree(proxy.pid)
        finally:
            assert proxy.process is not None
            proxy.process.send_signal(signal.SIGTERM)
            assert proxy.process.wait(30) == 0, proxy.log()
        assert not [pid for pid in everyone if os.path.exists(f"/proc/{pid}")]
        assert not directory.exists()
        assert "Traceback" not in proxy.log()


async def test_admin_purges_through_any_worker_and_only_for_loopback_with_the_token(tmp_path: Path) -> None:
    key = PE.keys["symsrv"][0]
    with FaultyUpstream() as upstream:
        upstream.put(key, PE.data)
        cfg = {**config(tmp_path, upstream), "admin": {"enabled": True, "token": "s3cret-admin-token"}}
        with running_proxy(tmp_path, cfg, "--workers", str(WORKERS)) as proxy:
            assert (await fetch_all(proxy.url, [f"/symbols/{key}"]))[0][0] == 200
            denied = await fetch_all(proxy.url, ["/admin/cache"] * 6)
            assert {status for status, _ in denied} <= {404, 405}
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as http:
                statuses = []
                for token in ["wrong"] * 6 + ["s3cret-admin-token"] * 6:
                    async with http.delete(
                        f"{proxy.url}/admin/cache", headers={"Authorization": f"Bearer {token}"}
                    ) as response:
                        statuses.append(response.status)
            assert statuses == [401] * 6 + [200] * 6
            assert "s3cret-admin-token" not in proxy.log()


async def test_a_reload_that_adds_a_source_reaches_every_worker_while_serving(tmp_path: Path) -> None:
    key = PE.keys["symsrv"][0]
    with FaultyUpstream() as first, FaultyUpstream() as second:
        second.put(key, PE.data)
        cfg = config(tmp_path, first)
        cfg["reload"] = {"poll_interval": 0.2}
        with running_proxy(tmp_path, cfg, "--workers", str(WORKERS)) as proxy:
            until(lambda: all_workers(proxy))
            answers = await fetch_all(proxy.url, [f"/symbols/{key}"] * 12)
            assert {status for status, _ in answers} == {404}  # and remembered by the owner
            with_second = {
                **cfg,
                "sources": [
                    *cfg["sources"],  # type: ignore[list-item]
                    {"id": "second", "type": "http", "url": second.url, "layout": {"type": "symstore"}},
                ],
            }
            proxy.write_config(with_second)
            until(lambda: proxy.metric('symproxy_config_reloads_total{result="success"}') >= 1)

            async def everyone_finds_it() -> bool:
                answers = await fetch_all(proxy.url, [f"/symbols/{key}"] * 12)
                return all(status == 200 and body == PE.data for status, body in answers)

            deadline = time.monotonic() + 30
            while not await everyone_finds_it():
                assert time.monotonic() < deadline, "a worker still answers 404 after the reload"
                await asyncio.sleep(0.2)
            assert second.requests[key] == 1
