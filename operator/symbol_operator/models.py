"""The custom resources as typed values: SymbolSource spec and status, Secret key selectors, conditions.

Pure: no kopf, no HTTP. The API server validates objects against the CRD schema (``crds.py``) before
they reach us, so parsing here is defensive rather than the first line of defence: an object written
under an older schema, or a field the schema does not bound, ends up as a :class:`SpecError` that the
reconciler reports as ``Ready=False, reason=Invalid`` instead of an exception in a handler.

Names follow the Kubernetes API conventions (camelCase in the CRD); ``render.py`` maps them to the
proxy's snake_case configuration keys.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "API_VERSION",
    "GROUP",
    "PUBLICATION_ANNOTATION",
    "READY",
    "VERSION",
    "Condition",
    "FilesystemSpec",
    "FiltersSpec",
    "GcsSpec",
    "HeaderSpec",
    "HttpSpec",
    "LayoutSpec",
    "Reason",
    "S3Spec",
    "SecretKeySelector",
    "SentrySpec",
    "SourceSpec",
    "SourceType",
    "SpecError",
    "SymbolSource",
    "merge_conditions",
    "parse_source",
]

GROUP = "symbols.symbol-operator.dev"
PUBLICATION_ANNOTATION = f"{GROUP}/publication"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

READY = "Ready"
"""The one condition type of a SymbolSource: True once the source is part of the rendered config."""


class SourceType(enum.StrEnum):
    HTTP = "http"
    S3 = "s3"
    GCS = "gcs"
    SENTRY = "sentry"
    FILESYSTEM = "filesystem"


class Reason(enum.StrEnum):
    """Reasons of the ``Ready`` condition (machine-readable, CamelCase as metav1.Condition wants)."""

    RENDERED = "Rendered"
    """The source is in the rendered proxy configuration of its namespace."""
    SECRET_NOT_FOUND = "SecretNotFound"
    """A referenced Secret does not exist (yet); the source is left out until it does."""
    SECRET_KEY_MISSING = "SecretKeyMissing"
    """A referenced Secret exists but lacks the referenced key."""
    INVALID = "Invalid"
    """The spec or a resolved credential is not acceptable to the proxy; the message says why."""


class SpecError(ValueError):
    """A spec the schema let through but the operator cannot use; the message names the field."""


@dataclasses.dataclass(frozen=True)
class SecretKeySelector:
    """One key of a Secret in the SymbolSource's own namespace (cert-manager's ``SecretKeySelector``)."""

    name: str
    key: str

    def describe(self) -> str:
        return f"Secret {self.name!r} key {self.key!r}"


@dataclasses.dataclass(frozen=True)
class LayoutSpec:
    type: str = "native"
    casing: str = "default"


@dataclasses.dataclass(frozen=True)
class FiltersSpec:
    filetypes: tuple[str, ...] = ()
    path_patterns: tuple[str, ...] = ()
    requires_checksum: bool = False


@dataclasses.dataclass(frozen=True)
class HeaderSpec:
    """An HTTP header with a literal value or a value from a Secret key (exactly one)."""

    name: str
    value: str | None = None
    value_from: SecretKeySelector | None = None


@dataclasses.dataclass(frozen=True)
class HttpSpec:
    url: str
    headers: tuple[HeaderSpec, ...] = ()
    accept_invalid_certs: bool = False


@dataclasses.dataclass(frozen=True)
class S3Spec:
    bucket: str
    region: str
    prefix: str = ""
    endpoint: str | None = None
    provider: str = "static"
    access_key_id: SecretKeySelector | None = None
    secret_access_key: SecretKeySelector | None = None


@dataclasses.dataclass(frozen=True)
class GcsSpec:
    bucket: str
    prefix: str = ""
    service_account_key: SecretKeySelector | None = None
    """A Secret key holding a Google service-account JSON key file."""
    bearer_token: SecretKeySelector | None = None


@dataclasses.dataclass(frozen=True)
class SentrySpec:
    url: str
    token: SecretKeySelector | None = None
    cookies: SecretKeySelector | None = None


@dataclasses.dataclass(frozen=True)
class FilesystemSpec:
    path: str


Backend = HttpSpec | S3Spec | GcsSpec | SentrySpec | FilesystemSpec


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    type: SourceType
    backend: Backend
    priority: int = 100
    layout: LayoutSpec | None = None
    filters: FiltersSpec | None = None
    is_public: bool | None = None
    has_index: bool | None = None
    fallback: bool | None = None
    cluster_cache: bool | None = None

    def secret_refs(self) -> tuple[SecretKeySelector, ...]:
        """Every Secret key the source needs, in the order they appear in the spec."""
        backend = self.backend
        refs: list[SecretKeySelector | None] = []
        if isinstance(backend, HttpSpec):
            refs.extend(header.value_from for header in backend.headers)
        elif isinstance(backend, S3Spec):
            refs.extend([backend.access_key_id, backend.secret_access_key])
        elif isinstance(backend, GcsSpec):
            refs.extend([backend.service_account_key, backend.bearer_token])
        elif isinstance(backend, SentrySpec):
            refs.extend([backend.token, backend.cookies])
        return tuple(ref for ref in refs if ref is not None)

    def endpoint(self) -> str:
        """One line saying where the source points (``status.endpoint``, a printer column)."""
        backend = self.backend
        if isinstance(backend, HttpSpec | SentrySpec):
            return backend.url
        if isinstance(backend, S3Spec):
            where = f"s3://{backend.bucket}/{backend.prefix.strip('/')}".rstrip("/")
            return f"{where} ({backend.endpoint})" if backend.endpoint else where
        if isinstance(backend, GcsSpec):
            return f"gs://{backend.bucket}/{backend.prefix.strip('/')}".rstrip("/")
        return backend.path


@dataclasses.dataclass(frozen=True)
class Condition:
    """A metav1.Condition. ``last_transition_time`` is RFC 3339 in UTC with second precision."""

    type: str
    status: str
    reason: str
    message: str
    observed_generation: int
    last_transition_time: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "observedGeneration": self.observed_generation,
            "lastTransitionTime": self.last_transition_time,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Condition:
        return cls(
            type=str(raw.get("type", "")),
            status=str(raw.get("status", "Unknown")),
            reason=str(raw.get("reason", "")),
            message=str(raw.get("message", "")),
            observed_generation=int(raw.get("observedGeneration") or 0),
            last_transition_time=str(raw.get("lastTransitionTime", "")),
        )


def merge_conditions(existing: Sequence[Mapping[str, Any]], new: Condition, now: str) -> list[dict[str, Any]]:
    """Replace the condition of ``new.type``; keep its ``lastTransitionTime`` unless the status flips."""
    result: list[dict[str, Any]] = []
    placed = False
    for raw in existing:
        if raw.get("type") != new.type:
            result.append(dict(raw))
            continue
        old = Condition.from_dict(raw)
        since = old.last_transition_time if old.status == new.status and old.last_transition_time else now
        result.append(dataclasses.replace(new, last_transition_time=since).to_dict())
        placed = True
    if not placed:
        result.append(dataclasses.replace(new, last_transition_time=now).to_dict())
    return result


@dataclasses.dataclass(frozen=True)
class SymbolSource:
    """One SymbolSource object as the reconciler needs it: identity, parsed spec, current status."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: SourceSpec | SpecError
    status: Mapping[str, Any]
    resource_version: str = ""
    publication: str | None = None
    """The ``PUBLICATION_ANNOTATION``: changed by the operator each time it publishes a SymbolRequest
    into the store this source reads (rendered as the proxy's ``publication``)."""

    @property
    def conditions(self) -> list[Mapping[str, Any]]:
        raw = self.status.get("conditions")
        return [c for c in raw if isinstance(c, Mapping)] if isinstance(raw, list) else []

    def condition(self, type_: str) -> Condition | None:
        for raw in self.conditions:
            if raw.get("type") == type_:
                return Condition.from_dict(raw)
        return None


# --------------------------------------------------------------------------------------------------
# Parsing. Every helper takes the dotted path of the value it reads, so errors name the field.


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be an object")
    return value


def _optional_mapping(parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = parent.get(key)
    return None if value is None else _mapping(value, f"{where}.{key}")


def _string(
    parent: Mapping[str, Any], key: str, where: str, *, required: bool = True, default: str = ""
) -> str:
    value = parent.get(key)
    if value is None:
        if required:
            raise SpecError(f"{where}.{key} is required")
        return default
    if not isinstance(value, str):
        raise SpecError(f"{where}.{key} must be a string")
    if required and not value:
        raise SpecError(f"{where}.{key} must not be empty")
    return value


def _bool(parent: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = parent.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise SpecError(f"{where}.{key} must be true or false")


def _strings(parent: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = parent.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SpecError(f"{where}.{key} must be a list of strings")
    return tuple(value)


def _selector(value: Any, where: str) -> SecretKeySelector:
    ref = _mapping(_mapping(value, where).get("secretKeyRef"), f"{where}.secretKeyRef")
    return SecretKeySelector(
        name=_string(ref, "name", f"{where}.secretKeyRef"), key=_string(ref, "key", f"{where}.secretKeyRef")
    )


def _optional_selector(parent: Mapping[str, Any], key: str, where: str) -> SecretKeySelector | None:
    value = parent.get(key)
    return None if value is None else _selector(value, f"{where}.{key}")


def _http(raw: Mapping[str, Any]) -> HttpSpec:
    headers = []
    items = raw.get("headers") or []
    if not isinstance(items, list):
        raise SpecError("spec.http.headers must be a list")
    for index, item in enumerate(items):
        where = f"spec.http.headers[{index}]"
        header = _mapping(item, where)
        value_from = _optional_selector(header, "valueFrom", where)
        value = header.get("value")
        if value is not None and not isinstance(value, str):
            raise SpecError(f"{where}.value must be a string")
        if (value is None) == (value_from is None):
            raise SpecError(f"{where} takes exactly one of value or valueFrom")
        headers.append(HeaderSpec(name=_string(header, "name", where), value=value, value_from=value_from))
    return HttpSpec(
        url=_string(raw, "url", "spec.http"),
        headers=tuple(headers),
        accept_invalid_certs=bool(_bool(raw, "acceptInvalidCerts", "spec.http")),
    )


def _s3(raw: Mapping[str, Any]) -> S3Spec:
    credentials = _optional_mapping(raw, "credentials", "spec.s3")
    access = secret = None
    if credentials is not None:
        access = _selector(credentials.get("accessKeyId"), "spec.s3.credentials.accessKeyId")
        secret = _selector(credentials.get("secretAccessKey"), "spec.s3.credentials.secretAccessKey")
    return S3Spec(
        bucket=_string(raw, "bucket", "spec.s3"),
        region=_string(raw, "region", "spec.s3"),
        prefix=_string(raw, "prefix", "spec.s3", required=False),
        endpoint=_string(raw, "endpoint", "spec.s3", required=False) or None,
        provider=_string(raw, "provider", "spec.s3", required=False, default="static"),
        access_key_id=access,
        secret_access_key=secret,
    )


def _gcs(raw: Mapping[str, Any]) -> GcsSpec:
    return GcsSpec(
        bucket=_string(raw, "bucket", "spec.gcs"),
        prefix=_string(raw, "prefix", "spec.gcs", required=False),
        service_account_key=_optional_selector(raw, "serviceAccountKey", "spec.gcs"),
        bearer_token=_optional_selector(raw, "bearerToken", "spec.gcs"),
    )


def _sentry(raw: Mapping[str, Any]) -> SentrySpec:
    return SentrySpec(
        url=_string(raw, "url", "spec.sentry"),
        token=_optional_selector(raw, "token", "spec.sentry"),
        cookies=_optional_selector(raw, "cookies", "spec.sentry"),
    )


def _filesystem(raw: Mapping[str, Any]) -> FilesystemSpec:
    return FilesystemSpec(path=_string(raw, "path", "spec.filesystem"))


_BACKENDS: dict[SourceType, Callable[[Mapping[str, Any]], Backend]] = {
    SourceType.HTTP: _http,
    SourceType.S3: _s3,
    SourceType.GCS: _gcs,
    SourceType.SENTRY: _sentry,
    SourceType.FILESYSTEM: _filesystem,
}


def parse_spec(spec: Any) -> SourceSpec:
    """A SymbolSource ``spec`` as a :class:`SourceSpec`; raises :class:`SpecError` naming the field."""
    spec = _mapping(spec, "spec")
    raw_type = spec.get("type")
    try:
        type_ = SourceType(raw_type)
    except ValueError:
        raise SpecError(f"spec.type must be one of {', '.join(t.value for t in SourceType)}") from None
    blocks = [t.value for t in SourceType if spec.get(t.value) is not None]
    if blocks != [type_.value]:
        raise SpecError(f"spec.type is {type_.value!r}: set exactly the spec.{type_.value} block")
    backend = _BACKENDS[type_](_mapping(spec[type_.value], f"spec.{type_.value}"))

    priority = spec.get("priority", 100)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise SpecError("spec.priority must be an integer")
    layout = filters = None
    raw_layout = _optional_mapping(spec, "layout", "spec")
    if raw_layout is not None:
        layout = LayoutSpec(
            type=_string(raw_layout, "type", "spec.layout", required=False, default="native"),
            casing=_string(raw_layout, "casing", "spec.layout", required=False, default="default"),
        )
    raw_filters = _optional_mapping(spec, "filters", "spec")
    if raw_filters is not None:
        filters = FiltersSpec(
            filetypes=_strings(raw_filters, "filetypes", "spec.filters"),
            path_patterns=_strings(raw_filters, "pathPatterns", "spec.filters"),
            requires_checksum=bool(_bool(raw_filters, "requiresChecksum", "spec.filters")),
        )
    is_public = _bool(spec, "isPublic", "spec")
    has_index = _bool(spec, "hasIndex", "spec")
    fallback = _bool(spec, "fallback", "spec")
    cluster_cache = _bool(spec, "clusterCache", "spec")
    if fallback and cluster_cache:
        raise SpecError(
            "a cluster cache is asked first: spec.fallback and spec.clusterCache exclude each other"
        )
    if type_ is SourceType.SENTRY and (layout or filters or is_public is not None or has_index is not None):
        raise SpecError("a sentry source takes no layout, filters, isPublic or hasIndex")
    return SourceSpec(
        type=type_,
        backend=backend,
        priority=priority,
        layout=layout,
        filters=filters,
        is_public=is_public,
        has_index=has_index,
        fallback=fallback,
        cluster_cache=cluster_cache,
    )


def parse_source(body: Mapping[str, Any]) -> SymbolSource:
    """A SymbolSource object (as the API returns it) with its spec parsed, or the parse error kept."""
    metadata = body.get("metadata") or {}
    try:
        spec: SourceSpec | SpecError = parse_spec(body.get("spec"))
    except SpecError as exc:
        spec = exc
    status = body.get("status")
    return SymbolSource(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        generation=int(metadata.get("generation") or 0),
        resource_version=str(metadata.get("resourceVersion", "")),
        publication=(metadata.get("annotations") or {}).get(PUBLICATION_ANNOTATION),
        spec=spec,
        status=status if isinstance(status, Mapping) else {},
    )
