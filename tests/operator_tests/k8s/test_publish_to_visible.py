"""Publish-to-visible, end to end on a real API server: a running sidecar has answered 404 for a key
(and cached the miss for an hour); the key is then published through the REST API and sealed. The
SymbolRequest lifecycle publishes it and changes the publish SymbolSource's publication annotation;
the operator renders that into the proxy configuration Secret; the Secret's document is written to
the sidecar's configuration file (as the kubelet updates a mounted Secret) and the sidecar's reload
poll picks it up and drops its cached misses. The sidecar then serves the file, byte-identical.

The time from the seal's answer to the first 200 is written to stderr, not asserted: it is a
measurement for docs/publishing.md, and the shared machine makes any bound meaningless.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from symbol_operator.models import API_VERSION
from symbol_proxy.config import load_text
from symbol_proxy.server.app import create_app
from tests.operator_tests.k8s.conftest import running_operator
from tests.operator_tests.k8s.kube import Kube
from tests.operator_tests.k8s.test_request_lifecycle import eventually, lifecycle_operator, publish, service
from tests.service.conftest import Service
from tests.service.test_api import keyed_fixture

__all__ = ["service"]

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(180)]

CONFIG = "symbol-proxy-config"


async def test_a_cached_404_turns_into_the_published_file(
    service: Service,
    kube: Kube,
    admin_kubeconfig: Path,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    assert service.store is not None
    # kopf's built-in login reads the kubeconfig path the client computed when it was imported
    # (at collection here, before the control plane existed); point it at this one.
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(admin_kubeconfig))
    data, key = keyed_fixture(1)
    base = tmp_path / "base.yaml"
    base.write_text(
        yaml.safe_dump(
            {
                "cache": {"dir": str(tmp_path / "cache"), "negative_ttl": 3600},
                "reload": {"poll_interval": 0.2},
            }
        )
    )
    kube.create(
        {
            "apiVersion": API_VERSION,
            "kind": "SymbolSource",
            "metadata": {"name": "published"},
            "spec": {
                "type": "filesystem",
                "filesystem": {"path": str(service.store)},
                "layout": {"type": "symstore"},
            },
        },
        namespace,
    )

    def rendered() -> bytes | None:
        body = kube.get("Secret", CONFIG, namespace)
        return None if body is None else base64.b64decode(body["data"]["proxy.yaml"])

    with (
        running_operator(monkeypatch, [namespace], base_config=base),
        lifecycle_operator(tmp_path / "service.yaml", namespace, source="published"),
    ):
        await eventually(lambda: rendered() is not None, "the rendered configuration")
        proxy_file = tmp_path / "proxy.yaml"
        document = rendered()
        assert document is not None
        proxy_file.write_bytes(document)
        proxy = await aiohttp_server(
            create_app(load_text(document.decode()), registry=CollectorRegistry(), config_path=proxy_file)
        )

        async def kubelet() -> None:
            """Keep the mounted file in step with the Secret, as the kubelet does (every 0.2 s here)."""
            while True:
                current = await asyncio.to_thread(rendered)
                if current is not None and current != proxy_file.read_bytes():
                    proxy_file.write_bytes(current)
                await asyncio.sleep(0.2)

        syncing = asyncio.create_task(kubelet())
        try:
            async with aiohttp.ClientSession(auto_decompress=False) as http:

                async def fetch() -> tuple[int, bytes]:
                    async with http.get(proxy.make_url(f"/symbols/{key}")) as response:
                        return response.status, await response.read()

                assert (await fetch())[0] == 404  # and the miss is cached for an hour
                await publish(service, "late/build/1", [(key, data)])
                sealed = time.monotonic()
                while (result := await fetch())[0] != 200:
                    assert time.monotonic() - sealed < 60, (
                        "the published file never became visible",
                        (kube.get("SymbolSource", "published", namespace) or {}).get("metadata"),
                        proxy_file.read_text(),
                    )
                    await asyncio.sleep(0.05)
                elapsed = time.monotonic() - sealed
                assert result == (200, data)
                sys.__stderr__.write(f"\nseal-to-200 in a running sidecar: {elapsed:.2f} s\n")
        finally:
            syncing.cancel()
