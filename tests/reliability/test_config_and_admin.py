"""Configuration files an operator gets wrong, and the admin endpoint, against real processes.

Covers: ``check-config`` on a file that is not UTF-8 (one line, exit 2, no traceback) and on a
YAML syntax error next to a secret (the secret is never echoed); a filesystem source whose
directory is missing (a warning, a metric and a ``/readyz`` detail, the other sources serve); the
admin endpoint off (404 for every method) and on without a configured token (a generated token in
a 0600 file, never logged; requests without it refused).
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import requests

from tests.reliability.harness import running_proxy
from tests.support.shared import keyed_objects

PDB = next(o for o in keyed_objects() if o.filetype.value == "pdb")
KEY = PDB.keys["symsrv"][0]
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "symbol_proxy", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_rejects_a_file_that_is_not_utf8_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_bytes(b"sources: []\n# caf\xe9 \xff\xfe\n")
    result = check_config(path)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "UTF-8" in result.stderr


def test_a_yaml_syntax_error_never_echoes_the_value_next_to_it(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(
        "sources:\n"
        "  - id: bucket\n"
        "    type: s3\n"
        "    bucket: symbols\n"
        "    region: us-east-1\n"
        f'    secret_key: "{SECRET}\n'
    )
    result = check_config(path)
    assert result.returncode == 2, result
    assert "not valid YAML" in result.stderr and "line" in result.stderr
    for start in range(0, len(SECRET) - 4):
        assert SECRET[start : start + 5] not in result.stderr + result.stdout, result.stderr


def test_a_filesystem_source_without_its_directory_is_reported_and_the_others_serve(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / KEY).parent.mkdir(parents=True)
    (store / KEY).write_bytes(PDB.data)
    config = {
        "cache": {"dir": str(tmp_path / "cache")},
        "sources": [
            {"id": "not-mounted", "type": "filesystem", "path": str(tmp_path / "nowhere")},
            {"id": "local", "type": "filesystem", "path": str(store), "layout": {"type": "symstore"}},
        ],
    }
    with running_proxy(tmp_path, config) as proxy:
        ready = requests.get(f"{proxy.url}/readyz", timeout=10)
        assert ready.status_code == 200
        assert "not-mounted" in ready.text and "does not exist" in ready.text
        assert proxy.metric("symproxy_config_sources_unavailable") == 1
        response = requests.get(f"{proxy.url}/symbols/{KEY}", timeout=30)
        assert response.status_code == 200 and response.content == PDB.data
        assert "WARNING" in proxy.log() and "'not-mounted'" in proxy.log()


def test_the_admin_endpoint_when_off_is_an_unknown_path_for_every_method(tmp_path: Path) -> None:
    config = {"cache": {"dir": str(tmp_path / "cache")}, "sources": []}
    with running_proxy(tmp_path, config) as proxy:
        for method in ("GET", "DELETE", "POST", "HEAD"):
            for path in ("/admin/cache", f"/admin/cache/symbols/{KEY}"):
                response = requests.request(method, f"{proxy.url}{path}", timeout=10)
                assert response.status_code == 404, (method, path, response.status_code)


def test_the_admin_endpoint_when_on_always_needs_a_token(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    config = {"cache": {"dir": str(cache)}, "admin": {"enabled": True}, "sources": []}
    with running_proxy(tmp_path, config) as proxy:
        assert requests.delete(f"{proxy.url}/admin/cache", timeout=10).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert requests.delete(f"{proxy.url}/admin/cache", headers=wrong, timeout=10).status_code == 401
        token_file = cache / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        right = {"Authorization": f"Bearer {token}"}
        response = requests.delete(f"{proxy.url}/admin/cache", headers=right, timeout=10)
        assert response.status_code == 200 and json.loads(response.text) == {"removed": 0}
        assert requests.get(f"{proxy.url}/admin/cache", headers=right, timeout=10).status_code == 405
        assert token not in proxy.log()
        assert str(token_file) in proxy.log()
