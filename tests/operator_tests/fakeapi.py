"""An in-memory stand-in for ``symbol_operator.kubeapi.KubeApi``: the reconciler's seven calls, with
resourceVersions, merge-patch semantics for the parts we use, and a log of every write.

Only for the unit tests of ``reconciling.py``; the real API server tier (``tests/operator_tests/k8s``)
checks the same behaviour against kube-apiserver.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from typing import Any

from symbol_operator import kubeapi


class FakeApi:
    def __init__(self) -> None:
        self.sources: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.writes: list[tuple[str, str, str]] = []
        self.calls = 0
        self.fail_next: kubeapi.ApiError | None = None
        self._versions = itertools.count(1)

    # Test-side helpers.
    def put_source(self, body: Mapping[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(dict(body))
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        old = self.sources.get(key)
        meta["generation"] = (old["metadata"]["generation"] + 1) if old else 1
        meta["resourceVersion"] = str(next(self._versions))
        meta.setdefault("uid", f"uid-{meta['name']}")
        body["status"] = old.get("status", {}) if old else {}
        self.sources[key] = body
        return body

    def put_secret(self, namespace: str, body: Mapping[str, Any]) -> None:
        body = copy.deepcopy(dict(body))
        body["metadata"]["namespace"] = namespace
        body["metadata"]["resourceVersion"] = str(next(self._versions))
        self.secrets[(namespace, body["metadata"]["name"])] = body

    def _check(self) -> None:
        self.calls += 1
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error

    # The KubeApi surface.
    async def list_sources(self, namespace: str) -> list[dict[str, Any]]:
        self._check()
        return [copy.deepcopy(body) for (ns, _), body in sorted(self.sources.items()) if ns == namespace]

    async def patch_source_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        self._check()
        body = self.sources.get((namespace, name))
        if body is None:
            raise kubeapi.NotFound(404, "NotFound", name)
        merged = {**body.get("status", {}), **status}
        body["status"] = {key: value for key, value in merged.items() if value is not None}
        body["metadata"]["resourceVersion"] = str(next(self._versions))
        self.writes.append(("status", namespace, name))
        return copy.deepcopy(body)

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._check()
        body = self.secrets.get((namespace, name))
        return copy.deepcopy(body) if body else None

    async def create_secret(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        name = body["metadata"]["name"]
        if (namespace, name) in self.secrets:
            raise kubeapi.Conflict(409, "AlreadyExists", name)
        self.put_secret(namespace, body)
        self.writes.append(("create", namespace, name))
        return copy.deepcopy(self.secrets[(namespace, name)])

    async def patch_secret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        body = self.secrets.get((namespace, name))
        if body is None:
            raise kubeapi.NotFound(404, "NotFound", name)
        meta = dict(patch.get("metadata") or {})
        if (
            meta.pop("resourceVersion", body["metadata"]["resourceVersion"])
            != body["metadata"]["resourceVersion"]
        ):
            raise kubeapi.Conflict(409, "Conflict", name)
        for field in ("labels", "annotations"):
            body["metadata"].setdefault(field, {}).update(meta.get(field) or {})
        body.setdefault("data", {}).update(patch.get("data") or {})
        body["metadata"]["resourceVersion"] = str(next(self._versions))
        self.writes.append(("update", namespace, name))
        return copy.deepcopy(body)

    async def delete_secret(self, namespace: str, name: str, resource_version: str) -> None:
        self._check()
        body = self.secrets.get((namespace, name))
        if body is None:
            raise kubeapi.NotFound(404, "NotFound", name)
        if body["metadata"]["resourceVersion"] != resource_version:
            raise kubeapi.Conflict(409, "Conflict", name)
        del self.secrets[(namespace, name)]
        self.writes.append(("delete", namespace, name))

    async def post_event(
        self, namespace: str, involved: Mapping[str, str], *, type_: str, reason: str, message: str
    ) -> None:
        self._check()
        self.events.append(
            {"namespace": namespace, "name": involved["name"], "type": type_, "reason": reason}
        )
