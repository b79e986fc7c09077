"""The parts of the fault suite: a misbehaving HTTP upstream, the proxy as a separate process, and
a sampler of the disk space the proxy's cache really holds.

The upstream runs an aiohttp server on its own event loop in a thread, so the proxy process talks
to it over real sockets while the test's own loop is free to be a client. Faults are set per
location (``upstream.faults[location] = "reset"``) and read at request time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import requests
from aiohttp import web

from tests.support.net import free_port

FAULTS = (
    "slow_headers",  # headers only after ``slow_headers_delay``
    "slow_body",  # the body in small pieces with short pauses, within every timeout
    "trickle",  # the body so slowly that the whole download outlasts ``total_timeout``
    "reset",  # headers, then the connection is torn down
    "truncate",  # announces the full length, sends half, closes
    "wrong_length",  # announces more bytes than it has
    "500",
    "503",
    "401",
    "403",
    "html",  # 200 with a sign-in page
    "redirect_loop",
    "chunked",  # no Content-Length, chunked transfer encoding (not a fault: must work)
    "gzip_encoding",  # the body gzip-compressed with ``Content-Encoding: gzip`` (not a fault either)
)


class FaultyUpstream:
    """A real HTTP symbol store whose answers can be broken per location, on command."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, str] = {}
        self.default_fault: str | None = None
        """The fault of every location without its own."""
        self.raw_paths: list[str] = []
        self.requests: collections.Counter[str] = collections.Counter()
        self.headers_seen: list[dict[str, str]] = []
        self.slow_headers_delay = 30.0
        self.trickle_pause = 0.5
        self.slow_body_pause = 0.002
        self.required_header: tuple[str, str] | None = None
        """When set, requests for ``protected`` locations without this header get 401."""
        self.protected: set[str] = set()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.port = free_port()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faulty-upstream", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> FaultyUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def put(self, location: str, data: bytes) -> None:
        self.files[location] = data

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        location = request.match_info["path"]
        self.raw_paths.append(request.raw_path)
        self.requests[location] += 1
        self.headers_seen.append(dict(request.headers))
        if self.required_header is not None and location in self.protected:
            name, value = self.required_header
            if request.headers.get(name) != value:
                return web.Response(status=401, text="unauthorized")
        fault = self.faults.get(location, self.default_fault)
        if fault == "slow_headers":
            await asyncio.sleep(self.slow_headers_delay)
        if fault in ("500", "503", "401", "403"):
            return web.Response(status=int(fault), text="failure")
        if fault == "html":
            page = "<html><body>Sign in</body></html>"
            return web.Response(status=200, text=page, content_type="text/html")
        if fault == "redirect_loop":
            raise web.HTTPFound(f"/{location}")
        data = self.files.get(location)
        if data is None:
            return web.Response(status=404, text="not found")
        response = web.StreamResponse(status=200)
        response.content_type = "application/octet-stream"
        if fault == "gzip_encoding":
            data = gzip.compress(data, 1)
            response.headers["Content-Encoding"] = "gzip"
        if fault == "chunked":
            response.enable_chunked_encoding()
        else:
            response.content_length = len(data) + (1000 if fault == "wrong_length" else 0)
        await response.prepare(request)
        assert request.transport is not None
        if fault == "reset":
            request.transport.abort()
            return response
        if fault in ("truncate", "wrong_length"):
            await response.write(data if fault == "wrong_length" else data[: len(data) // 2])
            request.transport.close()
            return response
        piece, pause = {"trickle": (256, self.trickle_pause), "slow_body": (16384, self.slow_body_pause)}.get(
            fault or "", (1024 * 1024, 0.0)
        )
        for start in range(0, len(data), piece):
            await response.write(data[start : start + piece])
            if pause:
                await asyncio.sleep(pause)
        await response.write_eof()
        return response


class ProxyProcess:
    """``symbol-proxy serve`` in a process of its own, with its log in a file."""

    def __init__(self, workdir: Path, config: dict[str, Any], serve_args: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.serve_args = list(serve_args)
        self.port = free_port()
        self.config = {**config, "listen": {"host": "127.0.0.1", "port": self.port}}
        self.config_path = workdir / "proxy.yaml"
        self.log_path = workdir / "proxy.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cache_dir(self) -> Path:
        return Path(self.config["cache"]["dir"])

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def write_config(self, config: dict[str, Any] | None = None) -> None:
        if config is not None:
            self.config = {**config, "listen": {"host": "127.0.0.1", "port": self.port}}
        replace_file(self.config_path, json.dumps(self.config).encode())

    def start(self, wait: bool = True) -> ProxyProcess:
        self.write_config()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "symbol_proxy", "serve"),
                    *("--config", str(self.config_path), *self.serve_args),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        finally:
            log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log()
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"the proxy did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metric(self, name: str) -> float:
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def running_proxy(workdir: Path, config: dict[str, Any], *serve_args: str) -> Iterator[ProxyProcess]:
    proxy = ProxyProcess(workdir, config, serve_args)
    try:
        yield proxy.start()
    finally:
        proxy.stop()


def replace_file(path: Path, data: bytes) -> None:
    """Write ``path`` atomically, as the kubelet swaps a mounted ConfigMap."""
    temp = path.with_name(path.name + ".new")
    temp.write_bytes(data)
    os.replace(temp, path)


def cache_usage(root: Path, pid: int) -> tuple[int, dict[str, int]]:
    """Bytes of files under ``root``, plus deleted files ``pid`` still holds open there: the space
    the cache takes on its filesystem, whichever way it is counted. Files are counted once per
    inode (a file renamed from ``tmp/`` to ``objects/`` while the walk runs is one file). Returns
    the total and the files by name."""
    seen: dict[tuple[int, int], tuple[str, int]] = {}
    walked = [os.path.join(directory, name) for directory, _, names in os.walk(root) for name in names]
    # The walk is not atomic: a file evicted while it runs, and one committed after it, never
    # coexisted. Only files still there once the walk is over count (stat'ed after it).
    for path in walked:
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(path)
            seen[(st.st_dev, st.st_ino)] = (path, st.st_size)
    for path, st in _deleted_but_open(root, pid):
        seen[(st.st_dev, st.st_ino)] = (path, st.st_size)
    files = dict(seen.values())
    return sum(files.values()), files


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (the workers of ``serve --workers``)."""
    pids = [pid]
    for parent in pids:
        with contextlib.suppress(OSError), open(f"/proc/{parent}/task/{parent}/children") as children:
            pids += [int(child) for child in children.read().split()]
    return pids


def _deleted_but_open(root: Path, pid: int) -> list[tuple[str, os.stat_result]]:
    """Deleted files under ``root`` held open by ``pid`` or any process it started."""
    found = []
    prefix = str(root.resolve())
    for holder in process_tree(pid):
        fd_dir = f"/proc/{holder}/fd"
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for fd in os.listdir(fd_dir):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"{fd_dir}/{fd}")
                    if target.startswith(prefix) and target.endswith(" (deleted)"):
                        found.append((target, os.stat(f"{fd_dir}/{fd}")))
    return found


def deleted_but_open(root: Path, pid: int) -> int:
    """Bytes of files under ``root`` that are deleted but still open in process ``pid``."""
    return sum(st.st_size for _, st in _deleted_but_open(root, pid))


class DiskSampler:
    """Samples ``cache_usage`` every ``interval`` seconds in a thread; ``peak`` is the maximum."""

    def __init__(self, root: Path, pid: int, interval: float = 0.05) -> None:
        self._root = root
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-sampler", daemon=True)
        self.peak = 0
        self.peak_files: dict[str, int] = {}
        self.samples = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            usage, files = cache_usage(self._root, self._pid)
            if usage > self.peak:
                self.peak, self.peak_files = usage, files
            self.samples += 1
            self._stop.wait(self._interval)

    def __enter__(self) -> DiskSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
