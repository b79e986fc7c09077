"""A Kubernetes API and a publisher that record what the lifecycle asks of them (unit tests of
``symbol_operator.lifecycle``; the real API server and stores are in ``k8s/``)."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from symbol_operator import kubeapi


class RecordingApi:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        """Every call, with its arguments, in order."""
        self.patches: list[Mapping[str, Any]] = []
        self.events: list[dict[str, str]] = []
        self.deleted: list[str] = []
        self.requests: list[dict[str, Any]] = []
        """What ``list_requests`` answers."""
        self.fail_events: kubeapi.ApiError | None = None
        self.fail_sources: kubeapi.ApiError | None = None

    async def patch_request(
        self, namespace: str, name: str, patch: Mapping[str, Any], *, status: bool = False
    ) -> None:
        self.calls.append(("patch_request", namespace, name, patch, status))
        self.patches.append(patch)

    async def delete_request(self, namespace: str, name: str, uid: str) -> None:
        self.calls.append(("delete_request", namespace, name, uid))
        self.deleted.append(name)

    async def list_requests(self, namespace: str) -> list[dict[str, Any]]:
        self.calls.append(("list_requests", namespace))
        return self.requests

    async def patch_source(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self.calls.append(("patch_source", namespace, name, patch))
        if self.fail_sources is not None:
            raise self.fail_sources

    async def post_event(self, namespace: str, involved: Mapping[str, str], **event: str) -> None:
        self.calls.append(("post_event", namespace, dict(involved), event))
        if self.fail_events is not None:
            raise self.fail_events
        self.events.append({"name": involved["name"], **event})


class RecordingPublisher:
    def __init__(self, written: int = 1, removed: int = 1) -> None:
        self.arguments: list[tuple[Any, ...]] = []
        """Every call with all its arguments."""
        self.failures: list[BaseException] = []
        """Raised, in turn, by the next publishes or withdraws (the store refusing)."""
        self.written = written
        self.removed = removed

    @property
    def calls(self) -> list[tuple[str, str]]:
        """Every call as (what, request id)."""
        return [(what, request_id) for what, request_id, *_ in self.arguments]

    def _fail(self) -> None:
        if self.failures:
            raise self.failures.pop(0)

    async def publish(self, request_id: str, segments: int) -> int:
        self.arguments.append(("publish", request_id, segments))
        self._fail()
        return self.written

    async def withdraw(self, request_id: str, segments: int | None, others: Iterable[tuple[str, int]]) -> int:
        self.arguments.append(("withdraw", request_id, segments, list(others)))
        self._fail()
        return self.removed

    async def forget(self, request_id: str) -> None:
        self.arguments.append(("forget", request_id))


def stamp(moment: datetime.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def request(
    name: str,
    store: str | None = None,
    *,
    expired: bool = False,
    sealed: bool = True,
    segments: int | None = 1,
    sealed_ago: float = 2.0,
    namespace: str = "ns",
    **status: Any,
) -> dict[str, Any]:
    """A SymbolRequest as the service writes it: ``name``, sealed (its second step done, with
    ``segments``) or open, expiring in a day or (``expired``) a day ago."""
    now = datetime.datetime.now(datetime.UTC)
    expiry = now + datetime.timedelta(days=-1 if expired else 1)
    spec: dict[str, Any] = {
        "name": name,
        "requestId": f"id-{name}",
        "sealed": sealed,
        "expirationTime": stamp(expiry),
        "createdDate": stamp(now - datetime.timedelta(seconds=60)),
    }
    if store is not None:
        spec["store"] = store
    fields: dict[str, Any] = {"requestStatus": "Sealed" if sealed else "Created", "debugEntries": 1}
    if sealed and segments is not None:
        sealed_time = now - datetime.timedelta(seconds=sealed_ago)
        fields |= {"sealedSegments": segments, "sealedTime": stamp(sealed_time)}
    return {
        "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}", "resourceVersion": "7"},
        "spec": spec,
        "status": fields | status,
    }
