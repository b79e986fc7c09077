"""Configuration swaps while downloads run, against a real proxy process watching its file.

A broken YAML file, a file that is not UTF-8 and then a valid one are swapped in (atomically, as
the kubelet does) while large files stream from a slow upstream. Each bad file is one logged,
counted rejection and the watcher goes on; the downloads finish with the right bytes; the valid
file is applied, and the reload that adds a source (or fixes a source's credentials) drops the
remembered misses it invalidates, although ``negative_ttl`` is an hour.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.reliability.harness import FaultyUpstream, ProxyProcess, replace_file, running_proxy
from tests.support import polling
from tests.support.shared import keyed_objects

PDB = next(o for o in keyed_objects() if o.filetype.value == "pdb")
KEY = PDB.keys["symsrv"][0]
MiB = 1024 * 1024


def wait_for(predicate: Callable[[], bool]) -> None:
    polling.wait_for(predicate, timeout=20.0)  # reloads under load take longer than the default


def reloads(proxy: ProxyProcess, result: str) -> float:
    text = requests.get(f"{proxy.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f'symproxy_config_reloads_total{{result="{result}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_bad_and_good_files_swapped_in_during_downloads(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / KEY).parent.mkdir(parents=True)
    (store / KEY).write_bytes(PDB.data)
    rng = random.Random(5)
    with FaultyUpstream() as upstream:
        upstream.slow_body_pause = 0.01
        big = {f"b{i}.exe/5AB38077{i + 1:x}000/b{i}.exe": b"MZ" + rng.randbytes(6 * MiB) for i in range(4)}
        for name, data in big.items():
            upstream.put(name, data)
            upstream.faults[name] = "slow_body"
        upstream.put("locked.exe/5AB3807710000/locked.exe", b"MZ" + rng.randbytes(1000))
        upstream.required_header = ("Authorization", "Bearer right")
        upstream.protected.add("locked.exe/5AB3807710000/locked.exe")
        http_source: dict[str, Any] = {
            "id": "up",
            "type": "http",
            "url": upstream.url,
            "layout": {"type": "symstore"},
            "headers": {"Authorization": "Bearer right"},
        }
        config: dict[str, Any] = {
            "cache": {"dir": str(tmp_path / "cache"), "negative_ttl": "1h"},
            "reload": {"poll_interval": 0.1},
            "sources": [http_source],
        }
        with running_proxy(tmp_path, config) as proxy:
            # A miss remembered for an hour, and one remembered after a refusal (wrong credentials).
            assert requests.get(f"{proxy.url}/symbols/{KEY}", timeout=30).status_code == 404
            wrong_credentials = {**http_source, "headers": {"Authorization": "Bearer wrong"}}
            proxy.write_config({**config, "sources": [wrong_credentials]})
            wait_for(lambda: reloads(proxy, "success") == 1)
            locked = f"{proxy.url}/symbols/locked.exe/5AB3807710000/locked.exe"
            assert requests.get(locked, timeout=30).status_code == 404

            results: dict[str, bytes | str] = {}

            def download(name: str) -> None:
                try:
                    results[name] = requests.get(f"{proxy.url}/symbols/{name}", timeout=120).content
                except requests.RequestException as exc:
                    results[name] = repr(exc)

            threads = [threading.Thread(target=download, args=(name,)) for name in big]
            for thread in threads:
                thread.start()
            wait_for(lambda: proxy.metric("symproxy_downloads_in_flight") >= 1)

            replace_file(proxy.config_path, b"sources:\n  - id: [unclosed\n")
            wait_for(lambda: reloads(proxy, "failure") == 1)
            replace_file(proxy.config_path, b"sources: []\n# \xff\xfe not UTF-8 \xe9\n")
            wait_for(lambda: reloads(proxy, "failure") == 2)
            fixed = {
                **config,
                "sources": [
                    http_source,
                    {"id": "local", "type": "filesystem", "path": str(store), "layout": {"type": "symstore"}},
                ],
            }
            replace_file(proxy.config_path, json.dumps({**fixed, "listen": proxy.config["listen"]}).encode())
            wait_for(lambda: reloads(proxy, "success") == 2)

            for thread in threads:
                thread.join(120)
            assert {name: results.get(name) == data for name, data in big.items()} == dict.fromkeys(big, True)
            # The reload added a source and fixed the credentials: no remembered miss stands.
            response = requests.get(f"{proxy.url}/symbols/{KEY}", timeout=30)
            assert response.status_code == 200 and response.content == PDB.data
            assert requests.get(locked, timeout=30).status_code == 200
            log = proxy.log()
            assert log.count("configuration not reloaded") == 2, log
            assert "Traceback" not in log
