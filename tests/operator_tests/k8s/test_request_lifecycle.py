"""The operator's SymbolRequest lifecycle on a real API server, with the publishing service (its
Kubernetes request store) in process over a filesystem store, and a real proxy reading that store as
an ordinary ``symstore`` source.

Covered: a request sealed through REST is published — each entry's file at its SymSrv key and its
unified path, byte-identical, and served by the proxy; a short ``expirationDate`` expires it (object
gone, files gone); two requests sharing a file, one expires, the file stays for the other; delete by
``kubectl`` and by REST withdraws the files through the finalizer; the lifecycle's metrics move
(seal-to-publish, withdraw duration, requests by phase); an operator stopped in the middle of an
expiry (its store failing after some deletions) leaves the request behind its finalizer, and a
restarted one finishes the expiry without touching what another live request provides; one stopped
in the middle of a publish (its store failing after some copies) leaves the request unmarked, and a
restarted one publishes every path, byte-identical, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import kopf
import pytest
from aiohttp.test_utils import TestServer
from kopf.testing import KopfRunner
from prometheus_client import CollectorRegistry

from symbol_operator.cli import register_lifecycle
from symbol_operator.handlers import configure
from symbol_operator.kubeapi import KubeApi
from symbol_operator.lifecycle import Lifecycle, register
from symbol_operator.metrics import Metrics
from symbol_proxy.backends import base
from symbol_proxy.backends.filesystem import FilesystemBackend
from symbol_proxy.config import FilesystemSource
from symbol_service import tokens
from symbol_service.app import create_app
from symbol_service.config import Limits
from symbol_service.kuberequests import KubeRequestStore, object_name
from symbol_service.publication import Publisher, entry_paths
from symbol_service.requeststore import RequestStore
from tests.conftest import StartProxy
from tests.interop.test_debuginfod_clients import compile_and_split, run
from tests.operator_tests.k8s.conftest import restored_logging
from tests.operator_tests.k8s.kube import Kube
from tests.publish.conftest import run_process
from tests.service.conftest import ORG, Service
from tests.service.test_api import keyed_fixture
from tests.service.test_cli import write_config

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(180)]


@contextlib.contextmanager
def lifecycle_operator(
    config: Path,
    namespace: str,
    *,
    source: str | None = None,
    operator_settings: bool = False,
    metrics: Metrics | None = None,
    store: base.WritableBackend | None = None,
) -> Iterator[KopfRunner]:
    """The operator with only the SymbolRequest handlers (its own registry), publishing into the
    store of the service configuration ``config``; with ``operator_settings``, under the operator's
    own kopf settings (no CRD/namespace scanning, so the chart's namespaced RBAC is enough); with
    ``metrics``, recording into them (the operator's startup puts its own into the memo); with
    ``store``, writing through that backend instead of the one the configuration names."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_with_kubeconfig)  # the default registry has it built in
    if operator_settings:

        @kopf.on.startup(registry=registry)
        def _settings(settings: kopf.OperatorSettings, **_: object) -> None:
            configure(settings)

    if metrics is not None:

        @kopf.on.startup(registry=registry)
        def _metrics(memo: kopf.Memo, **_: object) -> None:
            memo.metrics = metrics

    if store is None:
        register_lifecycle(config, registry, interval=0.5, source=source)
    else:
        register(registry, Lifecycle(KubeApi(), Publisher(store), source=source), interval=0.5)
    args = ["run", "--standalone", "--namespace", namespace]
    # kopf's CLI makes a registry it is given the process's default one; put the default back, or
    # every operator run later in this process would have only these handlers.
    default = kopf.get_default_registry()
    try:
        with restored_logging(), KopfRunner(args, registry=registry, timeout=60) as runner:
            yield runner
    finally:
        kopf.set_default_registry(default)
    assert runner.exception is None, runner.output
    assert "Traceback" not in runner.output, runner.output


@pytest.fixture
async def service(kube: Kube, namespace: str, tmp_path: Path) -> AsyncIterator[Service]:
    made = {role: tokens.new_token() for role in ("writer", "manager")}
    scopes = {"writer": "vso.symbols_write", "manager": "vso.symbols_manage"}
    table = tokens.TokenTable(
        [{"name": r, "hash": tokens.hash_token(t), "scopes": [scopes[r]]} for r, t in made.items()]
    )
    write_config(tmp_path, 0, "unused")  # the service.yaml the operator reads: store at tmp_path/store
    store = tmp_path / "store"
    store.mkdir()
    backend = FilesystemBackend(
        FilesystemSource.model_validate({"id": "publish", "type": "filesystem", "path": str(store)})
    )
    api = KubeApi()
    requests: RequestStore = KubeRequestStore(api, namespace)
    server = TestServer(create_app(backend, requests, table, limits=Limits()), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield Service(f"http://127.0.0.1:{server.port}/{ORG}", store, session, made)
    await server.close()
    await api.close()


async def eventually(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def publish(service: Service, name: str, files: list[tuple[str, bytes]], **request: str) -> str:
    """Create, fill and seal a request as a client does; its id."""
    _, created, _ = await service.call(
        "POST", "/_apis/symbol/requests", json={"name": name, **request}, expect=201
    )
    entries = []
    for key, data in files:
        _, blob, _ = await service.call("PUT", "/_apis/blob/blobs", data=data)
        entries.append({"clientKey": key, "blobIdentifier": {"identifierValue": blob["identifierValue"]}})
    _, batch, _ = await service.call(
        "POST",
        f"/_apis/symbol/requests/{created['id']}/debugentries",
        json={"debugEntries": entries},
        expect=200,
    )
    assert all(e["status"] == "created" for e in batch["value"])
    await service.call(
        "PATCH", f"/_apis/symbol/requests/{created['id']}", json={"status": "sealed"}, expect=200
    )
    return str(created["id"])


async def shorten(service: Service, request_id: str, *, seconds: float) -> None:
    """Let the request expire ``seconds`` from now. Tests shorten a request once it is published: an
    expiry set at creation can pass before a loaded machine publishes it, leaving nothing to withdraw."""
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    await service.call(
        "PATCH",
        f"/_apis/symbol/requests/{request_id}",
        json={"expirationDate": soon.isoformat().replace("+00:00", "Z")},
        expect=200,
    )


def is_published(kube: Kube, request_name: str, namespace: str) -> bool:
    """Whether the operator has written ``Published=True`` on the request ``request_name``."""
    condition = published_condition(kube, object_name(request_name), namespace) or {}
    return condition.get("status") == "True"


def published(store: Path, key: str, data: bytes) -> bool:
    return all((store / path).is_file() and (store / path).read_bytes() == data for path in entry_paths(key))


def withdrawn(store: Path, key: str) -> bool:
    return not any((store / path).exists() for path in entry_paths(key))


async def test_sealed_requests_are_published_and_served_by_a_proxy(
    service: Service, kube: Kube, namespace: str, tmp_path: Path, start_proxy: StartProxy
) -> None:
    assert service.store is not None
    files = [keyed_fixture(0), keyed_fixture(1)]
    with lifecycle_operator(tmp_path / "service.yaml", namespace):
        await publish(service, "team/build/1", [(key, data) for data, key in files])
        for data, key in files:
            await eventually(lambda: published(service.store, key, data), f"{key} to be published")  # noqa: B023
        # Besides the keys themselves, the proxy's layouts add paths (the PDB's unified one).
        assert sum(len(entry_paths(key)) for _, key in files) > len(files)
        # The condition is written after the files: wait for it, then it is the only one.
        await eventually(lambda: is_published(kube, "team/build/1", namespace), "the condition")
        stored = kube.get("SymbolRequest", object_name("team/build/1"), namespace)
        assert stored is not None
        assert [c["status"] for c in stored["status"]["conditions"] if c["type"] == "Published"] == ["True"]
        proxy = await start_proxy(
            [
                {
                    "id": "published",
                    "type": "filesystem",
                    "path": str(service.store),
                    "layout": {"type": "symstore"},
                }
            ]
        )
        async with aiohttp.ClientSession(auto_decompress=False) as http:
            for data, key in files:
                async with http.get(proxy.make_url(f"/symbols/{key}")) as response:
                    assert response.status == 200
                    assert await response.read() == data


async def test_gdb_fetches_a_debug_file_published_with_the_cli_through_a_proxy(
    service: Service, kube: Kube, namespace: str, tmp_path: Path, start_proxy: StartProxy
) -> None:
    # A program built here: its debug file, split off, is published with symbol-publish; the
    # stripped binary stays behind, and gdb resolves a line of it only with the published file.
    assert service.store is not None
    build = tmp_path / "build"
    build.mkdir()
    binary, debug = await compile_and_split(tmp_path / "square.c", tmp_path)
    debug.rename(build / debug.name)
    env = dict(os.environ, SYMBOL_PUBLISH_TOKEN=service.tokens["writer"])
    with lifecycle_operator(tmp_path / "service.yaml", namespace):
        done = await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: run_process(build, "--server", service.url, "--request", "gdb/1", "--no-state", env=env),
        )
        assert done.code == 0, done.out + done.err
        await eventually(lambda: is_published(kube, "gdb/1", namespace), "the publish")
    proxy = await start_proxy(
        [{"id": "published", "type": "filesystem", "path": str(service.store), "layout": {"type": "unified"}}]
    )
    gdb = ["gdb", "-q", "-nx", "-batch", "-iex", "set debuginfod enabled on", "-ex", "info line main"]
    client = {"DEBUGINFOD_CACHE_PATH": str(tmp_path / "client-cache"), "HOME": str(tmp_path)}
    code, out = await run(*gdb, str(binary), env={**client, "DEBUGINFOD_URLS": ""})
    assert "square.c" not in out, out  # nothing else gives gdb the line table
    urls = str(proxy.make_url("")).rstrip("/")
    code, out = await run(*gdb, str(binary), env={**client, "DEBUGINFOD_URLS": urls})
    assert code == 0 and "square.c" in out and "Line" in out, out


async def test_expiry_keeps_what_another_live_request_provides(
    service: Service, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    assert service.store is not None
    (shared_data, shared_key), (own_data, own_key) = keyed_fixture(0), keyed_fixture(1)
    with lifecycle_operator(tmp_path / "service.yaml", namespace):
        await publish(service, "keeps", [(shared_key, shared_data)])
        expires = await publish(service, "expires", [(shared_key, shared_data), (own_key, own_data)])
        await eventually(
            lambda: published(service.store, own_key, own_data), "the short-lived request's file"
        )
        await shorten(service, expires, seconds=2)
        await eventually(
            lambda: kube.get("SymbolRequest", object_name("expires"), namespace) is None,
            "the expired request to go",
        )
        assert withdrawn(service.store, own_key)
        assert published(service.store, shared_key, shared_data)
        assert not list((service.store / "_publish" / "requests").glob("*/entries/*.json"))[
            1:
        ]  # only "keeps"
        assert kube.get("SymbolRequest", object_name("keeps"), namespace) is not None


async def test_delete_by_kubectl_and_by_rest_withdraws_the_files(
    service: Service, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    assert service.store is not None
    (first_data, first_key), (second_data, second_key) = keyed_fixture(0), keyed_fixture(1)
    with lifecycle_operator(tmp_path / "service.yaml", namespace):
        await publish(service, "by-kubectl", [(first_key, first_data)])
        second = await publish(service, "by-rest", [(second_key, second_data)])
        await eventually(lambda: published(service.store, first_key, first_data), "the first file")
        await eventually(lambda: published(service.store, second_key, second_data), "the second file")

        kube.delete("SymbolRequest", object_name("by-kubectl"), namespace)
        await eventually(lambda: withdrawn(service.store, first_key), "kubectl's delete to withdraw the file")
        await eventually(
            lambda: kube.get("SymbolRequest", object_name("by-kubectl"), namespace) is None, "the finalizer"
        )
        assert published(service.store, second_key, second_data)

        await service.call("DELETE", f"/_apis/symbol/requests/{second}", role="manager", expect=200)
        await eventually(lambda: withdrawn(service.store, second_key), "the REST delete to withdraw the file")
        await eventually(
            lambda: kube.get("SymbolRequest", object_name("by-rest"), namespace) is None,
            "the soft delete's purge",
        )
        assert not list((service.store / "_publish" / "requests").glob("*/entries/*.json"))


async def test_the_lifecycle_metrics_move(
    service: Service, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    metrics = Metrics(CollectorRegistry())

    def sample(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    data, key = keyed_fixture(0)
    with lifecycle_operator(tmp_path / "service.yaml", namespace, metrics=metrics):
        request_id = await publish(service, "metrics/sealed", [(key, data)])
        await service.call("POST", "/_apis/symbol/requests", json={"name": "metrics/open"}, expect=201)
        await eventually(
            lambda: sample("symbol_operator_request_seal_to_publish_seconds_count") == 1, "seal-to-publish"
        )
        await eventually(
            lambda: (
                (
                    sample("symbol_operator_requests", phase="published"),
                    sample("symbol_operator_requests", phase="created"),
                )
                == (1, 1)
            ),
            "the phases",
        )
        assert sample("symbol_operator_request_seal_to_publish_seconds_sum") > 0
        assert sample("symbol_operator_request_withdraw_seconds_count") == 0

        await service.call("DELETE", f"/_apis/symbol/requests/{request_id}", role="manager", expect=200)
        await eventually(
            lambda: sample("symbol_operator_request_withdraw_seconds_count") == 1, "the withdraw"
        )
        await eventually(
            lambda: sample("symbol_operator_requests", phase="published") == 0, "the gone request"
        )
        assert sample("symbol_operator_requests", phase="created") == 1


class FailingStore(FilesystemBackend):
    """The filesystem store, whose deletes (or copies) start failing after ``deletes`` (``copies``)
    of them: the operator's connection to the store is gone, as in a crash in the middle of a sweep
    (or of a publish). ``None`` never fails."""

    def __init__(self, root: Path, *, deletes: int | None = None, copies: int | None = None) -> None:
        super().__init__(
            FilesystemSource.model_validate({"id": "publish", "type": "filesystem", "path": str(root)})
        )
        self.left = {"delete": deletes, "copy": copies}
        self.failures = 0

    def _allow(self, what: str) -> None:
        left = self.left[what]
        if left is None:
            return
        if left == 0:
            self.failures += 1
            raise OSError(f"injected: the store went away in the middle of a {what}")
        self.left[what] = left - 1

    async def delete(self, location: str) -> None:
        self._allow("delete")
        # Shielded: a sibling's failure cancels this coroutine, which would otherwise drop an unlink
        # still queued for a worker thread; the deletes that got through must happen.
        await asyncio.shield(super().delete(location))

    async def copy(self, source: str, destination: str) -> None:
        self._allow("copy")
        await asyncio.shield(super().copy(source, destination))


def files_of(store: Path) -> dict[str, bytes]:
    """Every file below the store (temporary files too), by path, with its content."""
    return {
        path.relative_to(store).as_posix(): path.read_bytes() for path in store.rglob("*") if path.is_file()
    }


def published_condition(kube: Kube, name: str, namespace: str) -> dict[str, str] | None:
    stored = kube.get("SymbolRequest", name, namespace) or {}
    conditions = (stored.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Published"), None)


async def test_a_publish_cut_off_midway_is_finished_by_the_next_operator(
    service: Service, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    assert service.store is not None
    files = [(f"part{i}.dll/5AB3807{i}9000/part{i}.dll", f"part file {i}".encode() * 100) for i in range(4)]
    paths = {path: data for key, data in files for path in entry_paths(key)}
    name = object_name("cut-off-publish")
    await publish(service, "cut-off-publish", files)  # sealed before any operator runs
    before = files_of(service.store)
    assert not set(paths) & set(before)
    failing = FailingStore(service.store, copies=3)
    with lifecycle_operator(tmp_path / "service.yaml", namespace, store=failing):
        await eventually(lambda: failing.failures >= 2, "the publish to start and fail", timeout=60)
        # The user sees why, in the condition (one line, not a traceback in the operator's log).
        await eventually(
            lambda: (published_condition(kube, name, namespace) or {}).get("reason") == "PublishFailed",
            "the PublishFailed condition",
        )
    # Stopped in the middle: three copies got through (their links may still be finishing in the
    # stopped operator's worker threads), the request is not marked published.
    await eventually(
        lambda: sum((service.store / path).exists() for path in paths) == 3,
        "the three copies that got through",
    )
    failed = published_condition(kube, name, namespace)
    assert failed is not None and failed["status"] == "False"
    assert "injected: the store went away in the middle of a copy" in failed["message"]

    with lifecycle_operator(tmp_path / "service.yaml", namespace):
        await eventually(
            lambda: (published_condition(kube, name, namespace) or {}).get("status") == "True",
            "the finished publish",
        )
    condition = published_condition(kube, name, namespace)
    assert condition is not None and f"at {len(paths)} paths" in condition["message"]
    # Every path byte-identical, nothing else written, changed or removed (no temporary file left).
    assert files_of(service.store) == {**before, **paths}


async def test_an_expiry_cut_off_midway_is_finished_by_the_next_operator(
    service: Service, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    assert service.store is not None
    shared_data, shared_key = keyed_fixture(0)
    own = [(f"own{i}.dll/5AB3807{i}9000/own{i}.dll", f"own file {i}".encode() * 100) for i in range(4)]
    own_paths = {path for key, _ in own for path in entry_paths(key)}
    name = object_name("cut-off")
    failing = FailingStore(service.store, deletes=2)
    with lifecycle_operator(tmp_path / "service.yaml", namespace, store=failing):
        keeps = await publish(service, "keeps", [(shared_key, shared_data)])
        cut_off = await publish(service, "cut-off", [(shared_key, shared_data), *own])
        await eventually(lambda: all(published(service.store, k, d) for k, d in own), "the files")
        await shorten(service, cut_off, seconds=2)
        await eventually(lambda: failing.failures >= 2, "the expiry to start and fail", timeout=60)
    # The operator has stopped in the middle: two paths gone (their unlinks may still be finishing in
    # the stopped operator's worker threads), the rest and the object still there.
    await eventually(
        lambda: sum((service.store / path).exists() for path in own_paths) == len(own_paths) - 2,
        "the two deletes that got through",
    )
    stored = kube.get("SymbolRequest", name, namespace)
    assert stored is not None and stored["metadata"].get("deletionTimestamp")
    assert published(service.store, shared_key, shared_data)

    with lifecycle_operator(tmp_path / "service.yaml", namespace):
        await eventually(lambda: kube.get("SymbolRequest", name, namespace) is None, "the finished expiry")
    assert all(withdrawn(service.store, key) for key, _ in own)
    assert published(service.store, shared_key, shared_data)  # "keeps" still provides it
    manifests = list((service.store / "_publish" / "requests").glob("*/entries/*.json"))
    assert [m.parent.parent.name for m in manifests] == [keeps]
