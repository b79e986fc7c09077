"""``--server``: the CLI against the real ``symbol-service serve`` process (filesystem store,
development request store), as a pipeline runs it.

Covered: every fixture published into one request, sealed, and every manifest client key read back
from the service byte-identical to its file; a re-run of a finished publish is a no-op; the CLI
killed in the middle of an upload (a forwarder holds one upload half-sent) and run again finishes
the same request, and no blob is uploaded twice (the service's own blob counters); ``--append``
and a taken name; a bad token, a missing token variable and an unreachable server give their own
exit codes; a directory with only broken files publishes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import io
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from symbol_publish.cli import ExitCode
from symbol_service import tokens
from tests.publish.conftest import KEYLESS_OK, Run, fixture_paths_by_client_key, run_process
from tests.service.test_cli import write_config
from tests.support import shared
from tests.support.net import free_port

EXCLUDES = [arg for pattern in KEYLESS_OK for arg in ("--exclude", pattern)]
ORG = "fabrikam"


class Service:
    def __init__(self, base: str, token: str, process: subprocess.Popen[bytes]) -> None:
        self.base = base
        self.url = f"{base}/{ORG}"
        self.token = token
        self.process = process

    def env(self, token: str | None = None) -> dict[str, str]:
        return dict(os.environ, SYMBOL_PUBLISH_TOKEN=self.token if token is None else token)

    def get(self, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}/_apis/symbol/{path}",
            headers={"Authorization": "Basic " + base64.b64encode(f":{self.token}".encode()).decode()},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            data = response.read()
            return json.loads(data) if response.headers.get_content_type() == "application/json" else data

    def blob_counts(self) -> dict[str, float]:
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=10) as response:
            text = response.read().decode()
        return {
            m.group(1): float(m.group(2))
            for m in re.finditer(r'^symservice_blobs_total\{result="(\w+)"\} (\S+)$', text, re.M)
        }

    def publish(self, directory: Path, name: str, *extra: str, url: str | None = None) -> Run:
        return run_process(directory, "--server", url or self.url, "--request", name, *extra, env=self.env())


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    port = free_port()
    token = tokens.new_token()
    config = write_config(tmp_path, port, token)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "symbol_service.cli",
            "serve",
            "--config",
            str(config),
            "--requests",
            "memory",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        else:
            pytest.fail("the service did not become ready")
        yield Service(base, token, process)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _check_contents(service: Service, request: dict[str, Any]) -> None:
    """Every manifest client key is an entry of the request, with its owner's bytes."""
    listed = service.get(f"requests/{request['id']}/debugentries")["value"]
    by_key = {e["clientKey"].lower(): e for e in listed}
    claims = fixture_paths_by_client_key()
    assert set(by_key) == {key.lower() for key in claims}
    for key, paths in claims.items():
        entry = by_key[key.lower()]
        assert entry["status"] == "created"
        content = service.get(f"requests/{request['id']}/contents/{entry['id']}")
        assert content == (shared.FIXTURES / min(paths)).read_bytes(), key


def test_every_fixture_is_published_and_read_back(service: Service) -> None:
    result = service.publish(shared.FIXTURES, "build/1", *EXCLUDES)
    assert result.code == ExitCode.SKIPPED, result.err
    assert "sealed" in result.out and f"{service.url}/_apis/symbol/requests/".lower() in result.out.lower()
    request = service.get("requests?requestName=build/1")
    assert request["status"] == "sealed"
    _check_contents(service, request)
    counts = service.blob_counts()
    assert counts.get("deduplicated", 0) == 0

    again = service.publish(shared.FIXTURES, "build/1", *EXCLUDES)
    assert again.code == ExitCode.SKIPPED, again.err
    assert "already sealed by an earlier run" in again.out
    assert service.blob_counts() == counts  # nothing uploaded


class _Forwarder:
    """A reverse proxy in front of the service that holds an upload half-sent (the first one over
    64 KiB from the N-th on) until ``release`` is set, then breaks it off: the service sees an upload
    that never completes."""

    def __init__(self, target: str, stall_at: int = 0, failures: dict[str, int] | None = None) -> None:
        self.target = target
        self.stream = stall_at > 0
        """Stream uploads through (to hold one half-sent), or read each whole, then send it on."""
        self.stall_at = stall_at
        self.failures = dict(failures or {})
        """Method → how many of its first calls get a 503 instead of reaching the service."""
        self.uploads = itertools.count(1)
        self.stalled = asyncio.Event()
        self.release = asyncio.Event()
        self.puts = 0

    async def start(self, aiohttp_server: Any) -> TestServer:
        app = web.Application(client_max_size=64 * 1024 * 1024)  # a refused upload is read whole
        app.router.add_route("*", "/{tail:.*}", self.handle)
        server: TestServer = await aiohttp_server(app)
        return server

    async def handle(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "transfer-encoding")}
        headers["Host"] = request.host  # the service builds blobUri from it: uploads come back here
        data: Any
        if self.failures.get(request.method, 0) > 0:
            self.failures[request.method] -= 1
            await request.read()
            return web.json_response(
                {"message": "try again", "typeKey": "ServiceUnavailableException"}, status=503
            )
        if request.method == "PUT":
            self.puts += 1
            number = next(self.uploads)
            stall = (
                0 < self.stall_at <= number
                and not self.stalled.is_set()
                and (request.content_length or 0) > 65536
            )
            data = self._body(request, stall) if self.stream else io.BytesIO(await request.read())
        else:
            data = await request.read()
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method, self.target + request.path_qs, data=data, headers=headers
            ) as response,
        ):
            body = await response.read()
            return web.Response(status=response.status, body=body, content_type=response.content_type)

    async def _body(self, request: web.Request, stall: bool) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in request.content.iter_chunked(16 * 1024):
            yield chunk
            sent += len(chunk)
            if stall and sent >= (request.content_length or 0) // 2:
                self.stalled.set()
                await self.release.wait()
                raise ConnectionResetError("the publisher went away in the middle of the upload")


async def test_killed_in_the_middle_of_uploads_the_rerun_finishes_the_same_request(
    service: Service, aiohttp_server: Any
) -> None:
    forwarder = _Forwarder(service.base, stall_at=5)
    server = await forwarder.start(aiohttp_server)
    url = str(server.make_url(f"/{ORG}"))
    args = [str(shared.FIXTURES), "--server", url, "--request", "nightly/7", "--concurrency", "1", *EXCLUDES]

    async def publisher() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "symbol_publish.cli", *args, env=service.env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    first = await publisher()
    stalled = asyncio.ensure_future(forwarder.stalled.wait())
    exited = asyncio.ensure_future(first.communicate())
    await asyncio.wait([stalled, exited], timeout=120, return_when=asyncio.FIRST_COMPLETED)
    assert stalled.done(), (
        forwarder.puts,
        exited.result() if exited.done() else "neither stalled nor exited",
    )
    first.send_signal(signal.SIGKILL)
    await exited
    forwarder.release.set()
    assert first.returncode == -signal.SIGKILL
    before = service.blob_counts()
    assert 4 <= before.get("stored", 0) == forwarder.puts - 1  # the uploads before the held one finished
    request = service.get("requests?requestName=nightly/7")
    assert request["status"] == "created"

    second = await publisher()
    out, err = await asyncio.wait_for(second.communicate(), timeout=120)
    assert second.returncode == ExitCode.SKIPPED, err.decode()
    assert "(resumed)" in out.decode()
    after = service.blob_counts()
    finished = service.get("requests?requestName=nightly/7")
    assert finished["id"] == request["id"] and finished["status"] == "sealed"
    _check_contents(service, finished)
    distinct = {
        (shared.FIXTURES / min(paths)).read_bytes() for paths in fixture_paths_by_client_key().values()
    }
    assert after.get("stored", 0) == len(distinct)
    assert after.get("deduplicated", 0) == 0  # no blob was uploaded twice
    assert forwarder.puts == len(distinct) + 1  # each blob once, plus the one broken off


def test_append_and_a_taken_name(service: Service) -> None:
    pdbs, sym = shared.FIXTURES / "pdb", shared.FIXTURES / "breakpad" / "windows"
    opened = service.publish(pdbs, "shared", "--no-seal")
    assert opened.code == ExitCode.OK, opened.err
    taken = service.publish(sym, "shared")
    assert taken.code == ExitCode.REQUEST_EXISTS
    assert "--append" in taken.err
    appended = service.publish(sym, "shared", "--append")
    assert appended.code == ExitCode.OK, appended.err
    request = service.get("requests?requestName=shared")
    assert request["status"] == "sealed"
    keys = {e["clientKey"].lower() for e in service.get(f"requests/{request['id']}/debugentries")["value"]}
    claims = fixture_paths_by_client_key()
    assert keys == {
        k.lower() for k, paths in claims.items() if min(paths).startswith(("pdb/", "breakpad/windows/"))
    }
    sealed = service.publish(shared.FIXTURES / "pe", "shared", "--append")
    assert sealed.code == ExitCode.REQUEST_EXISTS
    assert "sealed" in sealed.err


def test_auth_errors_and_an_unreachable_server(service: Service, tmp_path: Path) -> None:
    pdbs = shared.FIXTURES / "pdb"
    bad = run_process(pdbs, "--server", service.url, "--request", "x", env=service.env("not-a-token"))
    assert bad.code == ExitCode.AUTH
    assert "not-a-token" not in bad.err + bad.out
    missing = run_process(pdbs, "--server", service.url, "--request", "x", env=dict(os.environ))
    assert missing.code == ExitCode.USAGE and "SYMBOL_PUBLISH_TOKEN" in missing.err
    gone = run_process(
        pdbs, "--server", f"http://127.0.0.1:{free_port()}/{ORG}", "--request", "x", env=service.env()
    )
    assert gone.code == ExitCode.SERVER_ERROR
    assert "run the same command again" in gone.err


def test_a_directory_of_broken_files_publishes_nothing(service: Service, tmp_path: Path) -> None:
    build = tmp_path / "build"
    build.mkdir()
    (build / "truncated.pdb").write_bytes((shared.FIXTURES / "pdb" / "crash.pdb").read_bytes()[:4096])
    (build / "readme.txt").write_text("hello")
    result = service.publish(build, "broken")
    assert result.code == ExitCode.NOTHING_TO_PUBLISH
    assert "skipped truncated.pdb: broken" in result.err and "skipped readme.txt: not-debug" in result.err
    with pytest.raises(urllib.error.HTTPError):
        service.get("requests?requestName=broken")


def test_expiration_days_set_the_request_expiry(service: Service) -> None:
    result = service.publish(shared.FIXTURES / "pdb", "short-lived", "--expiration-days", "3")
    assert result.code == ExitCode.OK, result.err
    expires = datetime.datetime.fromisoformat(
        service.get("requests?requestName=short-lived")["expirationDate"]
    )
    left = expires - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=2, hours=23) < left <= datetime.timedelta(days=3)


async def test_5xx_answers_are_retried_and_the_publish_completes(
    service: Service, aiohttp_server: Any
) -> None:
    forwarder = _Forwarder(service.base, failures={"POST": 2, "PATCH": 1, "PUT": 2})
    server = await forwarder.start(aiohttp_server)
    args = [shared.FIXTURES / "pdb", "--server", str(server.make_url(f"/{ORG}")), "--request", "flaky"]
    result = await asyncio.get_running_loop().run_in_executor(
        None, lambda: run_process(*args, env=service.env())
    )
    assert result.code == ExitCode.OK, result.err
    assert forwarder.failures == {"POST": 0, "PATCH": 0, "PUT": 0}  # every failure was met, and retried
    assert forwarder.puts == len(list((shared.FIXTURES / "pdb").iterdir()))  # each blob arrived once
    assert service.get("requests?requestName=flaky")["status"] == "sealed"
    assert service.blob_counts().get("deduplicated", 0) == 0


def test_progress_shows_hashing_then_uploading(service: Service) -> None:
    result = service.publish(shared.FIXTURES / "pdb", "with-bar", "--progress", "always")
    assert result.code == ExitCode.OK, result.err
    pdbs = len(list((shared.FIXTURES / "pdb").iterdir()))
    assert f"hashing {pdbs}/{pdbs} files" in result.err
    assert f"uploading {pdbs}/{pdbs} files" in result.err
    quiet = service.publish(shared.FIXTURES / "pe", "without-bar")
    assert quiet.code == ExitCode.OK and "hashing" not in quiet.err and "uploading" not in quiet.err
