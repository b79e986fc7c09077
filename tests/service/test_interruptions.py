"""Uploads that break off, and publishers that race each other, as raw HTTP sees them.

Covered: a client that sends half a blob and disconnects leaves nothing (no blob, no temporary
file); the service process killed (SIGKILL) in the middle of an upload leaves no blob under its
name, and a restarted service takes the whole upload; five publishers posting the same entries and
uploading the same blob at once all succeed, the request lists each entry once and the store holds
the blob once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from symbol_service import tokens, vsohash
from tests.service.conftest import Service
from tests.service.test_api import create_request, entry
from tests.service.test_cli import start_service, write_config
from tests.support.net import free_port

MiB = 1024 * 1024


def put_head(port: int, path: str, token: str, total: int) -> bytes:
    """The request head of a PUT announcing ``total`` bytes of body."""
    auth = base64.b64encode(f":{token}".encode()).decode()
    return (
        f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic {auth}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n"
    ).encode()


def partial_put(port: int, path: str, token: str, total: int, sent: bytes) -> None:
    """Send a PUT that announces ``total`` bytes, send ``sent``, and hang up."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(put_head(port, path, token, total) + sent)


def no_blob_files(store: Path) -> bool:
    return not [p for p in store.rglob("*") if p.is_file() and (p.suffix == ".blob" or ".tmp-" in p.name)]


async def test_a_client_that_hangs_up_mid_upload_leaves_nothing(service: Service) -> None:
    assert service.store is not None
    data = random.Random(4).randbytes(3 * MiB)
    blob_id = vsohash.vso_hash(data)
    port = int(service.url.split(":")[2].split("/")[0])
    await asyncio.to_thread(
        partial_put,
        port,
        f"/org/_apis/blob/blobs/{blob_id.hex}",
        service.tokens["writer"],
        len(data),
        data[:MiB],
    )
    for _ in range(100):
        if no_blob_files(service.store):
            break
        await asyncio.sleep(0.1)
    assert no_blob_files(service.store)
    await service.call("PUT", f"/_apis/blob/blobs/{blob_id.hex}", data=data, expect=201)


def test_a_service_killed_mid_upload_leaves_no_blob(tmp_path: Path) -> None:
    port = free_port()
    token = tokens.new_token()
    config = write_config(tmp_path, port, token)
    data = random.Random(5).randbytes(8 * MiB)
    blob_id = vsohash.vso_hash(data)
    path = f"/org/_apis/blob/blobs/{blob_id.hex}"

    process = start_service(config, port)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(put_head(port, path, token, len(data)) + data[: 5 * MiB])
            time.sleep(0.5)  # let the service write part of it
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        assert not list((tmp_path / "store").rglob("*.blob"))
        process = start_service(config, port)
        auth = base64.b64encode(f":{token}".encode()).decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=data,
            method="PUT",
            headers={"Authorization": f"Basic {auth}"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 201
            assert json.load(response)["size"] == len(data)
        assert [p.name for p in (tmp_path / "store").rglob("*.blob")] == [f"{blob_id.hex}.blob"]
    finally:
        process.kill()
        process.wait(timeout=30)


async def test_publishers_racing_with_the_same_entries_and_blob(service: Service) -> None:
    assert service.store is not None
    data = random.Random(6).randbytes(300_000)
    request = await create_request(service, "racing")
    path = f"/_apis/symbol/requests/{request['id']}/debugentries"
    batch = {
        "debugEntries": [
            entry("same.dll/1234/same.dll", data),
            entry("same.pdb/ABCD1/same.pdb", data, "private"),
        ]
    }
    first = await asyncio.gather(*(service.call("POST", path, json=batch) for _ in range(5)))
    assert [status for status, _, _ in first] == [200] * 5
    uploads = await asyncio.gather(
        *(service.call("PUT", f"/_apis/blob/blobs/{vsohash.vso_hash(data).hex}", data=data) for _ in range(5))
    )
    assert sorted(status for status, _, _ in uploads) == [200, 200, 200, 200, 201]  # stored once
    second = await asyncio.gather(*(service.call("POST", path, json=batch) for _ in range(5)))
    assert all(body["value"][0]["status"] == "created" for _, body, _ in second)
    _, listed, _ = await service.call("GET", path, expect=200)
    assert sorted(e["clientKey"] for e in listed["value"]) == [
        "same.dll/1234/same.dll",
        "same.pdb/ABCD1/same.pdb",
    ]
    assert all(e["status"] == "created" for e in listed["value"])
    assert [p.name for p in service.store.rglob("*.blob")] == [f"{vsohash.vso_hash(data).hex}.blob"]
