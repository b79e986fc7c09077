"""A real S3 API for tests: moto's server in a child process on 127.0.0.1, with a request log.

Why a child process and not moto's ``ThreadedMotoServer`` in the test process: moto answers a ranged
GET by reading the whole object into memory, and a test that measures the S3 backend's memory with
``tracemalloc`` must not count the server's. A child also keeps moto's global state away from the
tests. The child listens on a free port (``port=0``) and prints it; a small WSGI wrapper records every
request (method, path, Range header, status, start and end times) and serves the record at ``/__requests__``.

Authentication is off at first, so fixtures can create IAM users, buckets and objects; ``enable_auth``
then makes moto check signatures and IAM policies for every later request, which is what lets tests
see ``InvalidAccessKeyId``, ``SignatureDoesNotMatch`` and ``AccessDenied`` from a real server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

__all__ = ["S3Server", "start_s3_server"]

LOG_PATH = "/__requests__"


class S3Server:
    """Handle on the child process; ``endpoint`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"

    def _call(self, method: str, path: str, body: bytes | None = None) -> bytes:
        request = urllib.request.Request(
            self.endpoint + path, data=body, method=method, headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            data: bytes = response.read()
            return data

    def requests(self) -> list[dict[str, Any]]:
        """Every request served since the last ``clear_requests``, oldest first."""
        records: list[dict[str, Any]] = json.loads(self._call("GET", LOG_PATH))
        return records

    def clear_requests(self) -> None:
        self._call("DELETE", LOG_PATH)

    def enable_auth(self) -> None:
        """From now on moto checks signatures and IAM policies (moto's ``reset-auth`` with 0)."""
        self._call("POST", "/moto-api/reset-auth", b"0")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_s3_server() -> S3Server:
    """Start moto's server in a child process and wait until it listens."""
    env = dict(os.environ)
    env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
    # Keep objects above 16 MiB out of the child's memory while they are stored.
    env.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(16 * 1024 * 1024))
    process = subprocess.Popen(
        [sys.executable, __file__],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line.startswith("PORT "):
        process.kill()
        raise RuntimeError(f"moto server did not start: {line!r}")
    process.stdout.close()
    return S3Server(process, int(line.split()[1]))


def _serve() -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    moto_app = DomainDispatcherApplication(create_backend_app)
    records: list[dict[str, Any]] = []
    lock = threading.Lock()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == LOG_PATH:
            with lock:
                if environ["REQUEST_METHOD"] == "DELETE":
                    records.clear()
                listing = json.dumps(records).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [listing]
        record = {
            "method": environ["REQUEST_METHOD"],
            "path": environ.get("PATH_INFO", ""),
            "range": environ.get("HTTP_RANGE"),
            "status": None,
            "started": time.monotonic(),
            "ended": None,
        }
        with lock:
            records.append(record)

        def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            record["status"] = int(status.split()[0])
            return start_response(status, headers, exc_info)

        def stream() -> Iterator[bytes]:
            try:
                yield from moto_app(environ, recording_start_response)
            finally:
                record["ended"] = time.monotonic()

        return stream()

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    sys.stdout.write(f"PORT {server.port}\n")
    sys.stdout.flush()
    with open(os.devnull, "w") as sink:
        sys.stdout = sink  # nothing may block on a pipe nobody reads
        server.serve_forever()


if __name__ == "__main__":
    _serve()
