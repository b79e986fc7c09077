"""Operator scale benchmark: many SymbolSources across namespaces, against a real kube-apiserver.

    .venv/bin/python bench/operator_scale.py --kubeconfig PATH [--namespaces 10] [--sources 1000]

Without ``--kubeconfig`` (or ``$KUBECONFIG``) it starts the test control plane (kube-apiserver + etcd
built from the Go module proxy, ``tests/support/controlplane.py``) for the run and stops it at
the end. Not a timed test: it prints what it measured, as Markdown, and writes
``bench/results/operator_scale.json``.

Phases, each ending at a *stable* state (every namespace's rendered Secret lists exactly its usable
sources, and every SymbolSource has a Ready condition for its current generation):

1. cold start: all objects exist before the operator (``symbol-operator run`` as a process) starts;
2. rotation: one credential Secret per namespace changes;
3. edit burst: every source of one namespace gets a new priority at once;
4. restart: the operator is stopped and started again; nothing may be written.

For each phase: wall time to stable, the CPU time the operator process used meanwhile (all its
threads; on a shared machine a steadier figure than wall time), rendered-Secret writes (from the
operator's metrics and checked against the Secrets' resourceVersions), status writes, and reconcile
errors. Every namespace also holds one source whose Secret does not exist, so the failure path is
part of the load.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.operator_tests.k8s.kube import Kube, wait_for  # noqa: E402
from tests.support.net import free_port  # noqa: E402

API_VERSION = "symbols.symbol-operator.dev/v1alpha1"
CONFIG = "symbol-proxy-config"


def ref(name: str, key: str) -> dict[str, Any]:
    return {"secretKeyRef": {"name": name, "key": key}}


def spec_for(index: int) -> dict[str, Any]:
    """A mix of every backend type; credentials spread over five Secrets per namespace."""
    secret = f"creds-{index % 5}"
    kind = index % 20
    if kind < 8:
        headers = [{"name": "Authorization", "valueFrom": ref(secret, "authorization")}] if kind % 2 else []
        return {
            "type": "http",
            "http": {"url": f"https://symbols-{index}.example.com/", "headers": headers},
            "layout": {"type": "symstore"},
        }
    if kind < 12:
        return {
            "type": "s3",
            "s3": {
                "bucket": f"bucket-{index}",
                "region": "eu-west-1",
                "credentials": {
                    "accessKeyId": ref(secret, "access-key-id"),
                    "secretAccessKey": ref(secret, "secret-access-key"),
                },
            },
            "layout": {"type": "unified"},
        }
    if kind < 15:
        return {"type": "gcs", "gcs": {"bucket": f"gcs-{index}", "bearerToken": ref(secret, "token")}}
    if kind < 17:
        return {
            "type": "sentry",
            "sentry": {
                "url": f"https://sentry.example.com/api/0/projects/o/p{index}/files/dsyms/",
                "token": ref(secret, "token"),
            },
        }
    return {
        "type": "filesystem",
        "filesystem": {"path": f"/var/lib/symbols/{index}"},
        "filters": {"filetypes": ["pdb"]},
    }


def secret_body(name: str, generation: int) -> dict[str, Any]:
    values = {
        "authorization": f"Bearer token-{generation}",
        "access-key-id": "AKIA0000",
        "secret-access-key": f"secret-{generation}",
        "token": f"token-{generation}",
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "stringData": values,
    }


class Bench:
    def __init__(
        self, kube: Kube, kubeconfig: Path, namespaces: list[str], per_namespace: int, work: Path
    ) -> None:
        self.kube = kube
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.per_namespace = per_namespace
        self.work = work
        self.metrics_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = work / "operator.log"

    # Objects ------------------------------------------------------------------------------------
    def create_objects(self) -> float:
        started = time.monotonic()
        for namespace in self.namespaces:
            self.kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            for index in range(5):
                self.kube.create(secret_body(f"creds-{index}", 1), namespace)
            for index in range(self.per_namespace - 1):
                body = {
                    "apiVersion": API_VERSION,
                    "kind": "SymbolSource",
                    "metadata": {"name": f"src-{index:04d}"},
                    "spec": spec_for(index),
                }
                self.kube.create(body, namespace)
            broken = {
                "apiVersion": API_VERSION,
                "kind": "SymbolSource",
                "metadata": {"name": "broken"},
                "spec": {"type": "gcs", "gcs": {"bucket": "b", "bearerToken": ref("missing", "token")}},
            }
            self.kube.create(broken, namespace)
        return time.monotonic() - started

    # Operator -----------------------------------------------------------------------------------
    def start(self) -> None:
        self.metrics_port = free_port()
        scope = [arg for namespace in self.namespaces for arg in ("--namespace", namespace)]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "symbol_operator",
                    "run",
                    *scope,
                    "--log-format",
                    "json",
                    "--metrics-address",
                    "127.0.0.1",
                    "--metrics-port",
                    str(self.metrics_port),
                ],
                cwd=REPO,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=10)
        self.process = None
        if code != 0:
            raise RuntimeError(f"the operator exited with {code}; see {self.log}")

    def sample(self, name: str, **labels: str) -> float:
        wanted = "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
        try:
            text = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        except requests.RequestException:
            return 0.0
        for line in text.splitlines():
            if line.startswith(f"{name}{wanted} "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def cpu(self) -> tuple[int | None, float]:
        """The operator process and the CPU seconds it has used (all threads, user + system)."""
        if self.process is None:
            return None, 0.0
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return self.process.pid, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def writes(self) -> float:
        return sum(
            self.sample("symbol_operator_secret_writes_total", operation=op)
            for op in ("create", "update", "delete")
        )

    def errors(self) -> float:
        return self.sample("symbol_operator_reconciles_total", kind="ProxyConfig", outcome="error")

    # State ----------------------------------------------------------------------------------------
    def rendered(self, namespace: str) -> dict[str, Any] | None:
        body = self.kube.get("Secret", CONFIG, namespace)
        return None if body is None else yaml.safe_load(base64.b64decode(body["data"]["proxy.yaml"]))

    def stable(self, expect: dict[str, Any] | None = None) -> bool:
        for namespace in self.namespaces:
            sources = self.kube.list("SymbolSource", namespace)
            if len(sources) != self.per_namespace:
                return False
            for body in sources:
                status = body.get("status") or {}
                if status.get("observedGeneration") != body["metadata"]["generation"]:
                    return False
                if not any(c["type"] == "Ready" for c in status.get("conditions") or []):
                    return False
            document = self.rendered(namespace)
            if document is None or len(document["sources"]) != self.per_namespace - 1:
                return False
            concerned = expect and expect.get("namespace", namespace) == namespace
            if expect and concerned and not expect_met(document, expect):
                return False
        return True

    def versions(self) -> dict[str, str]:
        found = {}
        for namespace in self.namespaces:
            body = self.kube.get("Secret", CONFIG, namespace) or {"metadata": {"resourceVersion": ""}}
            found[namespace] = body["metadata"]["resourceVersion"]
        return found

    def source_versions(self) -> dict[str, str]:
        return {
            f"{namespace}/{body['metadata']['name']}": body["metadata"]["resourceVersion"]
            for namespace in self.namespaces
            for body in self.kube.list("SymbolSource", namespace)
        }

    def phase(
        self, name: str, action: Any, expect: dict[str, Any] | None = None, passes: int = 0
    ) -> dict[str, Any]:
        """Run ``action``, then wait for a stable state (and, with ``passes``, for that many unchanged
        reconciles: after a restart the state is stable before the operator has looked at it)."""
        writes, errors = self.writes(), self.errors()
        secrets, sources = self.versions(), self.source_versions()
        process_before, cpu_before = self.cpu()
        started = time.monotonic()
        action()
        if passes:
            wait_for(
                lambda: (
                    self.sample("symbol_operator_reconciles_total", kind="ProxyConfig", outcome="unchanged")
                    >= passes
                ),
                timeout=600,
                interval=0.2,
                what=f"{passes} reconcile passes",
            )
        wait_for(lambda: self.stable(expect), timeout=600, interval=0.5, what=f"a stable state after {name}")
        elapsed = time.monotonic() - started
        process_after, cpu_after = self.cpu()
        cpu = cpu_after - (cpu_before if process_after == process_before else 0.0)
        time.sleep(2)  # a late write after the stable state would show up below
        after_secrets, after_sources = self.versions(), self.source_versions()
        return {
            "phase": name,
            "seconds_to_stable": round(elapsed, 2),
            "operator_cpu_seconds": round(cpu, 2),
            "secret_writes": int(self.writes() - (0 if passes else writes)),
            "secrets_changed": sum(1 for ns in after_secrets if after_secrets[ns] != secrets.get(ns)),
            "status_writes": sum(1 for key in after_sources if after_sources[key] != sources.get(key)),
            "reconcile_errors": int(self.errors() - (0 if passes else errors)),
        }


def expect_met(document: dict[str, Any], expect: dict[str, Any]) -> bool:
    if "token" in expect:
        tokens = [
            s.get("bearer_token") or s.get("token")
            for s in document["sources"]
            if s["type"] in ("gcs", "sentry")
        ]
        return all(token == expect["token"] for token in tokens)
    if "first" in expect:
        return bool(document["sources"][0]["id"] == expect["first"])
    return True


@contextlib.contextmanager
def control_plane(kubeconfig: str | None) -> Iterator[Path]:
    if kubeconfig:
        yield Path(kubeconfig)
        return
    from tests.support.controlplane import start_control_plane

    with start_control_plane() as plane:
        yield Path(plane.kubeconfig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument(
        "--sources", type=int, default=1000, help="in total, spread evenly over the namespaces"
    )
    args = parser.parse_args()
    per_namespace = args.sources // args.namespaces
    run = uuid.uuid4().hex[:6]
    namespaces = [f"bench-{run}-{index}" for index in range(args.namespaces)]

    with control_plane(args.kubeconfig) as kubeconfig, tempfile.TemporaryDirectory() as work:
        kube = Kube(kubeconfig)
        for path in sorted((REPO / "crds").glob("*.yaml")):
            kube.apply(yaml.safe_load(path.read_text(encoding="utf-8")))
        wait_for(
            lambda: kube.request("GET", "/apis/symbols.symbol-operator.dev/v1alpha1").get("resources"),
            timeout=60,
            what="the CRDs",
        )
        bench = Bench(kube, kubeconfig, namespaces, per_namespace, Path(work))
        created = bench.create_objects()
        results = []
        try:
            results.append(bench.phase("cold start", bench.start))
            results.append(
                bench.phase(
                    "rotation (all 5 Secrets of every namespace)",
                    lambda: [
                        kube.patch("Secret", f"creds-{i}", ns, {"stringData": {"token": "token-2"}})
                        for ns in namespaces
                        for i in range(5)
                    ],
                    expect={"token": "token-2"},
                )
            )
            burst_ns = namespaces[0]
            last = f"src-{per_namespace - 2:04d}"
            results.append(
                bench.phase(
                    f"edit burst ({per_namespace - 1} sources of one namespace)",
                    lambda: [
                        kube.patch("SymbolSource", f"src-{i:04d}", burst_ns, {"spec": {"priority": 1000 - i}})
                        for i in range(per_namespace - 1)
                    ],
                    expect={"first": last, "namespace": burst_ns},
                )
            )
            bench.stop()
            results.append(bench.phase("restart", bench.start, passes=len(namespaces)))
        finally:
            bench.stop()
        log_errors = [
            line
            for line in bench.log.read_text(encoding="utf-8").splitlines()
            if '"levelname": "ERROR"' in line or "Traceback" in line
        ]

    print(f"## Operator scale: {args.sources} SymbolSources in {args.namespaces} namespaces\n")
    print(
        f"Objects created in {created:.1f} s ({per_namespace - 1} usable + 1 broken source per namespace, "
        f"5 Secrets per namespace). Operator log errors: {len(log_errors)}.\n"
    )
    print(
        "| phase | time to stable | operator CPU | rendered-Secret writes | Secrets changed | status writes "
        "| errors |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in results:
        print(
            f"| {row['phase']} | {row['seconds_to_stable']:.2f} s | {row['operator_cpu_seconds']:.2f} s | "
            f"{row['secret_writes']} | "
            f"{row['secrets_changed']} | {row['status_writes']} | {row['reconcile_errors']} |"
        )
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "operator_scale.json").write_text(
        json.dumps({"results": results, "log_errors": log_errors[:20]}, indent=2)
    )
    failed = log_errors or any(row["reconcile_errors"] for row in results) or results[-1]["secret_writes"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
