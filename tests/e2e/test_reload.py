"""Configuration reloads of a running ``symbol-proxy serve`` process: a changed file (also when
Kubernetes swaps the ``..data`` symlink) and SIGHUP apply a valid new configuration without a
restart; an invalid one is rejected with a logged error while the old one keeps serving."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.net import free_port
from tests.support.polling import wait_for
from tests.support.shared import keyed_objects

PDB = next(o for o in keyed_objects() if o.filetype.value == "pdb")
KEY = PDB.keys["symsrv"][0]


def config(port: int, cache: Path, stores: list[Path], poll: float = 0.2) -> str:
    return json.dumps(
        {
            "listen": {"host": "127.0.0.1", "port": port},
            "reload": {"poll_interval": poll},
            "cache": {"dir": str(cache), "negative_ttl": 0},
            "sources": [
                {"id": f"s{i}", "type": "filesystem", "path": str(p), "layout": {"type": "symstore"}}
                for i, p in enumerate(stores)
            ],
        }
    )


@pytest.fixture
def stores(tmp_path: Path) -> tuple[Path, Path]:
    empty = tmp_path / "empty"
    empty.mkdir()
    full = tmp_path / "full"
    (full / KEY).parent.mkdir(parents=True)
    (full / KEY).write_bytes(PDB.data)
    return empty, full


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(config_path: Path, port: int) -> subprocess.Popen[bytes]:
        with open(tmp_path / "proxy.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "symbol_proxy", "serve", "--config", str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)
        wait_for(lambda: _up(port))
        return process

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


def _up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def status(port: int) -> int:
    return requests.get(f"http://127.0.0.1:{port}/symbols/{KEY}", timeout=5).status_code


def reloads(port: int, result: str) -> float:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(f'symproxy_config_reloads_total{{result="{result}"}}'):
            return float(line.split()[1])
    return 0.0


def test_a_kubernetes_style_symlink_swap_is_picked_up_and_a_bad_file_is_rejected(
    tmp_path: Path, stores: tuple[Path, Path], serve: object
) -> None:
    empty, full = stores
    port = free_port()
    # The kubelet's layout: key -> ..data/key, ..data -> ..<timestamp>/
    mount = tmp_path / "mount"
    first = mount / "..2026_01"
    first.mkdir(parents=True)
    (first / "proxy.yaml").write_text(config(port, tmp_path / "cache", [empty]))
    (mount / "..data").symlink_to("..2026_01")
    (mount / "proxy.yaml").symlink_to("..data/proxy.yaml")
    serve(mount / "proxy.yaml", port)  # type: ignore[operator]
    assert status(port) == 404

    second = mount / "..2026_02"
    second.mkdir()
    (second / "proxy.yaml").write_text(config(port, tmp_path / "cache", [empty, full]))
    (mount / "..data_tmp").symlink_to("..2026_02")
    os.replace(mount / "..data_tmp", mount / "..data")
    wait_for(lambda: status(port) == 200)
    assert reloads(port, "success") == 1

    third = mount / "..2026_03"
    third.mkdir()
    (third / "proxy.yaml").write_text("sources: [{id: x, type: s3}]\n")
    (mount / "..data_tmp").symlink_to("..2026_03")
    os.replace(mount / "..data_tmp", mount / "..data")
    wait_for(lambda: reloads(port, "failure") == 1)
    assert status(port) == 200  # the old configuration keeps serving
    log = (tmp_path / "proxy.log").read_text()
    assert "configuration not reloaded" in log and "sources[0].bucket" in log


def test_sighup_reloads_the_file(tmp_path: Path, stores: tuple[Path, Path], serve: object) -> None:
    empty, full = stores
    port = free_port()
    path = tmp_path / "proxy.yaml"
    path.write_text(config(port, tmp_path / "cache", [empty], poll=0))  # no polling: only SIGHUP
    process = serve(path, port)  # type: ignore[operator]
    assert status(port) == 404
    path.write_text(config(port, tmp_path / "cache", [full], poll=0))
    time.sleep(0.5)
    assert status(port) == 404
    process.send_signal(signal.SIGHUP)  # type: ignore[attr-defined]
    wait_for(lambda: status(port) == 200)
    assert process.poll() is None  # type: ignore[attr-defined]
