"""``symbol-proxy serve`` as a process, on each event loop it offers: hits come back byte-identical
on the lean path (the metric says so) and through the full path, and SIGTERM ends it cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.net import free_port
from tests.support.polling import wait_for
from tests.support.shared import keyed_objects

PDB = next(o for o in keyed_objects() if o.filetype.value == "pdb" and len(o.data) > 512 * 1024)
PE = next(o for o in keyed_objects() if o.filetype.value == "pe" and len(o.data) < 64 * 1024)
KEY = PDB.keys["symsrv"][0]
PE_KEY = PE.keys["symsrv"][0]


def _metric(port: int, name: str) -> float:
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def _up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_hits_on_either_loop_are_byte_identical_and_sigterm_ends_the_process(
    loop: str, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    (store / KEY).parent.mkdir(parents=True)
    (store / KEY).write_bytes(PDB.data)
    (store / PE_KEY).parent.mkdir(parents=True)
    (store / PE_KEY).write_bytes(PE.data)
    port = free_port()
    config = tmp_path / "proxy.json"
    config.write_text(
        json.dumps(
            {
                "listen": {"host": "127.0.0.1", "port": port},
                "cache": {"dir": str(tmp_path / "cache")},
                "sources": [
                    {"id": "s", "type": "filesystem", "path": str(store), "layout": {"type": "symstore"}}
                ],
            }
        )
    )
    with open(tmp_path / "proxy.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "symbol_proxy", "serve", "--loop", loop, "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: _up(port))
        lean_before = _metric(port, "symproxy_lean_path_answers_total")
        with requests.Session() as session:  # one keep-alive connection, as debuggers keep one
            for _ in range(4):
                for key, obj in ((KEY, PDB), (PE_KEY, PE)):
                    response = session.get(f"http://127.0.0.1:{port}/symbols/{key}", timeout=10)
                    assert response.status_code == 200 and response.content == obj.data
        for _ in range(3):  # new connections: each starts on the lean path
            for key, obj in ((PE_KEY, PE), (KEY, PDB)):
                response = requests.get(f"http://127.0.0.1:{port}/symbols/{key}", timeout=10)
                assert response.status_code == 200 and response.content == obj.data
        assert _metric(port, "symproxy_lean_path_answers_total") >= lean_before + 3
    finally:
        process.terminate()
        code = process.wait(15)
    assert code == 0, (tmp_path / "proxy.log").read_text()
    assert "Traceback" not in (tmp_path / "proxy.log").read_text()


def test_the_probe_port_answers_health_readiness_and_metrics_and_no_symbols(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / KEY).parent.mkdir(parents=True)
    (store / KEY).write_bytes(PDB.data)
    port, probe_port = free_port(), free_port()
    config = tmp_path / "proxy.json"
    config.write_text(
        json.dumps(
            {
                "listen": {"host": "127.0.0.1", "port": port, "probe_host": "127.0.0.1"},
                "cache": {"dir": str(tmp_path / "cache")},
                "sources": [
                    {"id": "s", "type": "filesystem", "path": str(store), "layout": {"type": "symstore"}}
                ],
            }
        )
    )
    argv = [
        sys.executable,
        "-m",
        "symbol_proxy",
        "serve",
        "--config",
        str(config),
        "--probe-port",
        str(probe_port),
    ]
    with open(tmp_path / "proxy.log", "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _up(probe_port))
        probe = f"http://127.0.0.1:{probe_port}"
        assert requests.get(f"{probe}/healthz", timeout=5).text == "ok\n"
        assert "symproxy_cache_size_bytes" in requests.get(f"{probe}/metrics", timeout=5).text
        assert requests.get(f"{probe}/symbols/{KEY}", timeout=5).status_code == 404
        response = requests.get(f"http://127.0.0.1:{port}/symbols/{KEY}", timeout=10)
        assert response.status_code == 200 and response.content == PDB.data
    finally:
        process.terminate()
        code = process.wait(15)
    assert code == 0, (tmp_path / "proxy.log").read_text()
