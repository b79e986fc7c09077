"""A real Kubernetes control plane on loopback: etcd and kube-apiserver (and, on request,
kube-controller-manager) of the release pinned in ``tests/controlplane/``, built from the Go module
proxy by ``tests/controlplane/build.sh``.

The API server runs with RBAC authorization, a serving certificate signed by a test CA, service
account signing keys (so the TokenRequest API mints real ServiceAccount tokens) and one static admin
token in ``system:masters``. etcd keeps its data on tmpfs when there is one.

Used by the test fixtures (``tests/operator_tests/conftest.py``), the operator benchmark, and by hand::

    python -m tests.support.controlplane        # prints KUBECONFIG=..., runs until Ctrl-C
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "tests" / "controlplane" / "build.sh"
CRDS = REPO / "crds"


class ControlPlaneError(RuntimeError):
    pass


def binaries() -> Path:
    """The directory of the pinned binaries, built on first use (``KUBEBUILDER_ASSETS`` wins)."""
    result = subprocess.run([str(BUILD)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ControlPlaneError(f"{BUILD} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    sans: Sequence[str] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        names: list[x509.GeneralName] = []
        for san in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def kubeconfig_document(server: str, ca_pem: bytes, token: str, user: str, namespace: str = "default") -> str:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "test",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": user, "namespace": namespace}}],
        "current-context": "test",
    }
    return yaml.safe_dump(document, sort_keys=False)


class ControlPlane:
    """etcd + kube-apiserver on free loopback ports, in ``workdir``; ``start()`` / ``stop()``."""

    def __init__(self, workdir: Path, bin_dir: Path) -> None:
        self.workdir = workdir
        self.bin_dir = bin_dir
        self.etcd_port = free_port()
        self.api_port = free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.admin_token = secrets.token_urlsafe(24)
        self.kubeconfig = workdir / "admin.kubeconfig"
        self.ca_file = workdir / "pki" / "ca.crt"
        self._processes: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}

    # -- files ------------------------------------------------------------------------------------

    def _write_pki(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("symbol-operator test CA", ca_key, None)
        serving_key = ec.generate_private_key(ec.SECP256R1())
        serving = _certificate(
            "kube-apiserver",
            serving_key,
            (ca, ca_key),
            sans=["127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
        )
        self.ca_file.write_bytes(_pem_cert(ca))
        (pki / "apiserver.crt").write_bytes(_pem_cert(serving) + _pem_cert(ca))
        (pki / "apiserver.key").write_bytes(_pem_key(serving_key))
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (pki / "sa.key").write_bytes(_pem_key(sa_key))
        (pki / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        (pki / "tokens.csv").write_text(
            f'{self.admin_token},admin,admin,"system:masters"\n', encoding="utf-8"
        )
        for path in pki.iterdir():
            path.chmod(0o600)
        self.kubeconfig.write_text(
            kubeconfig_document(self.server, self.ca_file.read_bytes(), self.admin_token, "admin"),
            encoding="utf-8",
        )
        self.kubeconfig.chmod(0o600)

    def token_kubeconfig(self, token: str, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig for this API server that authenticates with ``token`` (a ServiceAccount's)."""
        path.write_text(
            kubeconfig_document(self.server, self.ca_file.read_bytes(), token, "token-user", namespace),
            encoding="utf-8",
        )
        path.chmod(0o600)
        return path

    # -- processes --------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [str(self.bin_dir / name), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._processes[name] = (process, log)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def _wait(self, name: str, url: str, *, timeout: float, **kwargs: object) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            process = self._processes[name][0]
            if process.poll() is not None:
                raise ControlPlaneError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")
            try:
                response = requests.get(url, timeout=2, **kwargs)  # type: ignore[arg-type]
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[-500:]}"
            except requests.RequestException as exc:
                last = str(exc)
            time.sleep(0.2)
        raise ControlPlaneError(f"{name} not ready after {timeout:.0f}s ({last}):\n{self.log_tail(name)}")

    def start(self) -> None:
        self._write_pki()
        etcd_dir = self.workdir / "etcd"
        self._spawn(
            "etcd",
            [
                f"--data-dir={etcd_dir}",
                f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{free_port()}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", f"http://127.0.0.1:{self.etcd_port}/health", timeout=60)
        pki = self.workdir / "pki"
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                f"--service-account-issuer={self.server}/",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--authorization-mode=RBAC",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--v=0",
            ],
        )
        self._wait(
            "kube-apiserver",
            f"{self.server}/readyz",
            timeout=120,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            verify=str(self.ca_file),
        )

    def start_controller_manager(self) -> None:
        """The garbage collector and namespace controllers, for tests that need cascades."""
        if "kube-controller-manager" in self._processes:
            return
        port = free_port()
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.kubeconfig}",
                "--controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token",
                "--leader-elect=false",
                f"--service-account-private-key-file={self.workdir / 'pki' / 'sa.key'}",
                "--use-service-account-credentials=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                # The loopback serving certificate of the test CA serves here too.
                f"--tls-cert-file={self.workdir / 'pki' / 'apiserver.crt'}",
                f"--tls-private-key-file={self.workdir / 'pki' / 'apiserver.key'}",
            ],
        )
        self._wait(
            "kube-controller-manager",
            f"https://127.0.0.1:{port}/healthz",
            timeout=60,
            verify=str(self.ca_file),
        )

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> str:
        """Run the pinned kubectl as the admin; returns stdout."""
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            input=input,
            check=False,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def stop(self) -> None:
        for name in reversed(list(self._processes)):
            process, log = self._processes.pop(name)
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=5)
            log.close()


def scratch_root() -> str | None:
    """tmpfs for etcd's data when the machine has one (no fsync cost)."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@contextlib.contextmanager
def start_control_plane(workdir: Path | None = None, *, keep: bool = False) -> Iterator[ControlPlane]:
    """Build (once) and start a control plane; stop it and remove its directory afterwards."""
    bin_dir = binaries()
    created = workdir is None
    root = (
        Path(tempfile.mkdtemp(prefix="symbol-operator-cp-", dir=scratch_root()))
        if workdir is None
        else workdir
    )
    root.mkdir(parents=True, exist_ok=True)
    plane = ControlPlane(root, bin_dir)
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
        if created and not keep:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the test control plane until interrupted.")
    parser.add_argument("--dir", type=Path, help="working directory (default: a new one on tmpfs)")
    parser.add_argument("--controller-manager", action="store_true", help="also run GC + namespaces")
    parser.add_argument("--no-crds", action="store_true", help="do not install crds/")
    args = parser.parse_args(argv)
    stopping = False

    def interrupt(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    with start_control_plane(args.dir) as plane:
        if args.controller_manager:
            plane.start_controller_manager()
        if not args.no_crds:
            plane.kubectl("apply", "--server-side", "-f", str(CRDS))
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        print(f"export PATH={plane.bin_dir}:$PATH   # kubectl of the same release", flush=True)
        print("control plane running; Ctrl-C stops it", file=sys.stderr, flush=True)
        while not stopping:
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
