"""Issue 11's whole path: every fixture published with ``symbol-publish`` into the service, visible
through a sidecar.

Real parts throughout: the control plane (SymbolRequests in the Kubernetes API through the
service's Kubernetes request store), MinIO as the publish store (an S3-compatible server), the
operator's SymbolRequest lifecycle (kopf, publishing a sealed request's entries at their lookup
paths in the bucket), the CLI as a child process, and a real proxy reading the bucket as ordinary
sources. Every key ``MANIFEST.json`` lists for every fixture file, of the kinds a symbol server
answers from a SymSrv store (``symsrv``, ``ssqp``, ``breakpad``) and from the unified layout
(``debuginfod``), comes back through the proxy byte-identical to the file that owns it (the first in
path order when two files claim a key). ``--dry-run`` equalling the manifest's keys is
``tests/publish/test_scanning.py``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import boto3
import pytest
import yaml
from aiohttp.test_utils import TestServer

from symbol_operator.kubeapi import KubeApi
from symbol_proxy.backends.s3 import S3Backend
from symbol_proxy.config import S3Source, UpstreamSettings
from symbol_publish.cli import ExitCode
from symbol_service import tokens
from symbol_service.app import create_app
from symbol_service.config import Limits
from symbol_service.kuberequests import KubeRequestStore, object_name
from tests.conftest import StartProxy
from tests.operator_tests.k8s.kube import Kube
from tests.operator_tests.k8s.test_request_lifecycle import eventually, lifecycle_operator
from tests.publish.conftest import KEYLESS_OK, manifest_keys, run_process
from tests.support import shared
from tests.support.objectstores import Minio, start_minio

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]

ORG = "fabrikam"
BUCKET = "symbols"
EXCLUDES = [arg for pattern in KEYLESS_OK for arg in ("--exclude", pattern)]
SERVED = ("symsrv", "ssqp", "breakpad", "debuginfod")


@pytest.fixture(scope="module")
def minio() -> Iterator[Minio]:
    with start_minio() as server:
        boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=server.endpoint,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
        ).create_bucket(Bucket=BUCKET)
        yield server


def _source(minio: Minio, prefix: str, **extra: object) -> dict[str, object]:
    return {
        "id": "published",
        "type": "s3",
        "bucket": BUCKET,
        "prefix": prefix,
        "region": ["us-east-1", minio.endpoint],
        "access_key": minio.access_key,
        "secret_key": minio.secret_key,
        **extra,
    }


def _published_as(kind: str, key: str, keys: dict[str, list[str]]) -> bool:
    """Whether the request's client keys say the file is what ``key`` asks for. An unstripped ELF's
    only SSQP key is its debug key (``_.debug/elf-buildid-sym-…``, as the manifest lists it), so the
    operator places it at the unified ``debuginfo`` path only: a debuginfod ``executable`` request
    for it is not answered from a published store (docs/publish-cli.md)."""
    if kind == "debuginfod" and key.endswith("/executable"):
        return any(not k.startswith("_.") for k in keys.get("ssqp", []))
    return True


async def test_every_fixture_published_with_the_cli_is_served_by_a_sidecar(
    kube: Kube, namespace: str, tmp_path: Path, minio: Minio, start_proxy: StartProxy
) -> None:
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    token = tokens.new_token()
    table = tokens.TokenTable(
        [{"name": "ci", "hash": tokens.hash_token(token), "scopes": ["vso.symbols_write"]}]
    )
    (tmp_path / "tokens.yaml").write_text(yaml.safe_dump([]))
    config = tmp_path / "service.yaml"  # what the operator reads: the same store
    config.write_text(
        yaml.safe_dump({"store": _source(minio, prefix), "tokens_file": str(tmp_path / "tokens.yaml")})
    )
    source = S3Source.model_validate(_source(minio, prefix))
    api = KubeApi()
    server = TestServer(
        create_app(
            S3Backend(source, UpstreamSettings()), KubeRequestStore(api, namespace), table, limits=Limits()
        ),
        host="127.0.0.1",
    )
    await server.start_server()
    try:
        with lifecycle_operator(config, namespace):
            env = dict(os.environ, SYMBOL_PUBLISH_TOKEN=token)
            url = f"http://127.0.0.1:{server.port}/{ORG}"
            published = await asyncio.get_running_loop().run_in_executor(
                None,
                lambda: run_process(
                    shared.FIXTURES, "--server", url, "--request", "e2e/1", "--no-state", *EXCLUDES, env=env
                ),
            )
            # The fixtures hold keyless and conflicting files: published what could be, said so.
            assert published.code == ExitCode.SKIPPED, published.err
            assert "sealed" in published.out

            def visible() -> bool:
                stored = kube.get("SymbolRequest", object_name("e2e/1"), namespace) or {}
                conditions = (stored.get("status") or {}).get("conditions") or []
                return any(c["type"] == "Published" and c["status"] == "True" for c in conditions)

            await eventually(visible, "the operator to publish the sealed request", timeout=120)
    finally:
        await server.close()
        await api.close()

    proxy = await start_proxy(
        [
            _source(minio, prefix, id="symstore", layout={"type": "symstore"}),
            _source(minio, prefix, id="native", layout={"type": "native"}),  # Breakpad's place
            _source(minio, prefix, id="unified", layout={"type": "unified"}),
        ]
    )
    owners: dict[str, str] = {}
    claims: dict[str, set[str]] = {}
    for path, objects in manifest_keys().items():
        for keys in objects:
            for key in keys.get("debuginfod", []):
                claims.setdefault(key, set()).add(path)
    fetched: dict[str, int] = {}
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        for path in sorted(manifest_keys()):
            for keys in manifest_keys()[path]:
                for kind in SERVED:
                    for key in keys.get(kind, []):
                        if not _published_as(kind, key, keys):
                            continue
                        owner = owners.setdefault(key.lower(), path)
                        url = f"/{key}" if kind == "debuginfod" else f"/symbols/{key}"
                        async with http.get(proxy.make_url(url)) as response:
                            body = await response.read()
                            assert response.status == 200, (kind, key)
                        if kind == "debuginfod":
                            # Files with one build id under different names are different client
                            # keys, all published; the unified path holds one of them.
                            assert body in {(shared.FIXTURES / p).read_bytes() for p in claims[key]}, key
                        else:  # the CLI publishes a client key from the first file in path order
                            assert body == (shared.FIXTURES / owner).read_bytes(), (kind, key, owner)
                        fetched[kind] = fetched.get(kind, 0) + 1
    assert set(fetched) == set(SERVED) and sum(fetched.values()) > 40, fetched
