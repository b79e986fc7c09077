"""The real control plane tier: one etcd + kube-apiserver per test session (``control_plane``) and a
fresh namespace per test (``namespace``). See ``tests/support/controlplane.py``."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator

import pytest

from tests.operator_tests.k8s.kube import Kube
from tests.support.controlplane import ControlPlane, start_control_plane


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A running API server with RBAC; ``KUBECONFIG`` points at its admin kubeconfig meanwhile."""
    with start_control_plane() as plane:
        previous = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = str(plane.kubeconfig)
        try:
            yield plane
        finally:
            if previous is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = previous


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> str:
    """A new namespace named after the test. It is not deleted: without the namespace controller a
    deleted namespace stays Terminating, and every test has its own anyway."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    Kube(control_plane.kubeconfig).create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    return name
