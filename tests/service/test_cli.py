"""``symbol-service``: ``hash-token`` and ``serve`` as a user runs them.

Covered: a token read from stdin hashes to what the token table accepts, ``--new`` prints a token
and its hash; ``serve`` keeps requests as SymbolRequest resources by default and refuses to start,
clearly, without a way to reach Kubernetes; as a development server (``--requests memory``) it serves
a real publish flow step (create, 201) and ``/readyz`` from a child process over a filesystem store,
with the token never in its output. ``tests/operator_tests/k8s/test_publishing_kube.py`` runs the
default mode against a real API server.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from symbol_service import cli, tokens
from tests.support.net import free_port


def test_hash_token_from_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("my-token\n"))
    assert cli.main(["hash-token"]) == 0
    digest = capsys.readouterr().out.strip()
    table = tokens.TokenTable([{"name": "t", "hash": digest, "scopes": ["vso.symbols"]}])
    assert table.authenticate("my-token") is not None


def test_hash_token_new(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["hash-token", "--new"]) == 0
    token, digest = capsys.readouterr().out.split()
    assert tokens.hash_token(token) == digest


def write_config(tmp_path: Path, port: int, token: str) -> Path:
    tokens_file = tmp_path / "tokens.yaml"
    tokens_file.write_text(
        yaml.safe_dump([{"name": "ci", "hash": tokens.hash_token(token), "scopes": ["vso.symbols_write"]}])
    )
    config = tmp_path / "service.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": {"host": "127.0.0.1", "port": port},
                "store": {"id": "publish", "type": "filesystem", "path": str(tmp_path / "store")},
                "tokens_file": str(tokens_file),
            }
        )
    )
    return config


def start_service(
    config: Path,
    port: int,
    *,
    output: int = subprocess.DEVNULL,
    options: Sequence[str] = ("--requests", "memory"),
) -> subprocess.Popen[bytes]:
    """``symbol-service serve`` (development mode unless ``options`` say otherwise) in a child
    process, once it is ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "symbol_service.cli", "serve", "--config", str(config), *options],
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                if response.status == 200:
                    return process
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    process.kill()
    process.wait()
    pytest.fail("the service did not become ready")


def test_serve_needs_a_way_to_kubernetes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, free_port(), "t")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert cli.main(["serve", "--config", str(config)]) == 2
    assert "no usable kubeconfig" in capsys.readouterr().err


def test_serve_in_development_mode(tmp_path: Path) -> None:
    port = free_port()
    token = tokens.new_token()
    config = write_config(tmp_path, port, token)
    process = start_service(config, port, output=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        request = urllib.request.Request(
            f"{base}/org/_apis/symbol/requests",
            data=json.dumps({"name": "from-cli"}).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(f":{token}".encode()).decode(),
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
            assert json.load(response)["name"] == "from-cli"
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert b"DEVELOPMENT MODE" in output
    assert token.encode() not in output
