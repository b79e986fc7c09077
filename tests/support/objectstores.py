"""Real object-store servers for tests and benchmarks, each a child process on 127.0.0.1:

- :class:`FakeGcs`: fake-gcs-server (``github.com/fsouza/fake-gcs-server``), the GCS JSON API
  emulator Google's own client libraries are tested against; in-memory backend, plain HTTP.
- :class:`Minio`: MinIO (``github.com/minio/minio``), an S3-compatible server that stores objects
  on disk and serves ranged GETs from them, as S3 does (moto reads the whole object per range).

Both are built from the Go module proxy by ``tests/objectstores/build.sh`` (``scripts/setup --test``
does it ahead of time) and cached under ``~/.cache/symbol-operator/<name>/<version>/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.support.net import free_port

__all__ = ["FakeGcs", "Minio", "binary", "start_fake_gcs", "start_minio"]

BUILD = Path(__file__).resolve().parents[1] / "objectstores" / "build.sh"


class ObjectStoreError(RuntimeError):
    pass


def binary(name: str) -> Path:
    """The cached server binary, built on first use."""
    result = subprocess.run([str(BUILD), name], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ObjectStoreError(f"{BUILD} {name} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def _wait(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ObjectStoreError(f"exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.1)
    raise ObjectStoreError(f"not ready within {timeout:g} s:\n{log.read_text()[-4000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class FakeGcs:
    """A running fake-gcs-server; ``endpoint`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"

    def _call(self, method: str, path: str, body: bytes, content_type: str) -> None:
        request = urllib.request.Request(
            self.endpoint + path, data=body, method=method, headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def create_bucket(self, bucket: str) -> None:
        self._call("POST", "/storage/v1/b", json.dumps({"name": bucket}).encode(), "application/json")

    def start_resumable(self, bucket: str, name: str, data: bytes) -> None:
        """Start a resumable upload and send ``data`` as its first chunk, never finishing it."""
        query = urllib.parse.urlencode({"uploadType": "resumable", "name": name})
        request = urllib.request.Request(
            f"{self.endpoint}/upload/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o?{query}",
            data=b"",
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            session = response.headers["Location"]
        chunk = urllib.request.Request(
            session, data=data, method="PUT", headers={"Content-Range": f"bytes 0-{len(data) - 1}/*"}
        )
        try:
            urllib.request.urlopen(chunk, timeout=30).close()
        except urllib.error.HTTPError as exc:  # 308: more to come, which is the point
            if exc.code != 308:
                raise

    def upload(self, bucket: str, name: str, data: bytes) -> None:
        query = urllib.parse.urlencode({"uploadType": "media", "name": name})
        path = f"/upload/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o?{query}"
        self._call("POST", path, data, "application/octet-stream")


@contextlib.contextmanager
def start_fake_gcs() -> Iterator[FakeGcs]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="fake-gcs-") as workdir:
        log = Path(workdir) / "server.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [
                    str(binary("fake-gcs-server")),
                    "-backend", "memory",
                    "-scheme", "http",
                    "-host", "127.0.0.1",
                    "-port", str(port),
                    "-public-host", f"127.0.0.1:{port}",
                    "-log-level", "warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            _wait(process, f"http://127.0.0.1:{port}/storage/v1/b", log)
            yield FakeGcs(process, port)
        finally:
            _stop(process)


class Minio:
    """A running MinIO server; the root user's keys are ``access_key`` and ``secret_key``."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, access_key: str, secret_key: str) -> None:
        self.process = process
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.access_key = access_key
        self.secret_key = secret_key


@contextlib.contextmanager
def start_minio(data_dir: Path | None = None) -> Iterator[Minio]:
    """MinIO on a free port, storing objects under ``data_dir`` (a temporary directory by default)."""
    port, console = free_port(), free_port()
    access_key, secret_key = "minio-root", secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="minio-") as workdir:
        data = data_dir or Path(workdir) / "data"
        data.mkdir(parents=True, exist_ok=True)
        log = Path(workdir) / "server.log"
        env = {
            **os.environ,
            "MINIO_ROOT_USER": access_key,
            "MINIO_ROOT_PASSWORD": secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
            "MINIO_CONFIG_DIR": str(Path(workdir) / "config"),
            "HOME": workdir,
        }
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [
                    str(binary("minio")),
                    "server",
                    "--quiet",
                    "--address", f"127.0.0.1:{port}",
                    "--console-address", f"127.0.0.1:{console}",
                    str(data),
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
            )  # fmt: skip
        try:
            _wait(process, f"http://127.0.0.1:{port}/minio/health/ready", log, timeout=120)
            yield Minio(process, port, access_key, secret_key)
        finally:
            _stop(process)
