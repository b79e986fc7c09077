"""SymbolSources of one namespace + the data of the Secrets they reference → the proxy's configuration.

Pure and deterministic: the same sources and Secret data give byte-identical text, so the hash of the
text decides whether the rendered Secret needs a write at all. The sidecar owns the format; this
module writes its keys (``symbol_proxy.config``) and validates the result with the sidecar's own
``load_text`` — first every source alone, so a bad source is reported on that source and left out
while the others still reach the proxy, then the whole document.

Decisions:

* Source ids are the SymbolSources' names (unique in a namespace); order is ``spec.priority``
  ascending, ties broken by name.
* A source with ``spec.clusterCache`` (the chart's central cache, the namespace's opt-in) comes first
  whatever its priority, and every other source of the namespace is rendered ``fallback: true``: it
  is asked only when the central cache misses or fails. Without one, ``spec.fallback`` is rendered as
  written.
* A source whose Secret or key is missing, or whose resolved values the proxy rejects, is left out
  of the document (its status says why). The document is rendered as long as one SymbolSource exists
  in the namespace, even with no usable source, so pods mounting it can start.
* Secret values are decoded as UTF-8. Single-line values (tokens, keys, header values) lose trailing
  line breaks — ``kubectl create secret --from-file`` keeps the file's final newline — and any
  other line break makes the source Invalid. JSON key files are used as they are.
* The sidecar reads ``${VAR}`` and ``${file:…}`` in any value. The rendered document must be
  self-contained, so it is validated without environment or files: a value containing ``${`` is
  rejected rather than expanded in the sidecar's pod.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from symbol_operator.models import (
    PUBLICATION_ANNOTATION,
    READY,
    Condition,
    FilesystemSpec,
    GcsSpec,
    HttpSpec,
    Reason,
    S3Spec,
    SecretKeySelector,
    SentrySpec,
    SourceSpec,
    SpecError,
    SymbolSource,
    merge_conditions,
)
from symbol_proxy.config import ConfigError, load_text

__all__ = [
    "FIELD_SOURCES",
    "Outcome",
    "RenderError",
    "Rendering",
    "SecretData",
    "desired_status",
    "render",
]

MESSAGE_MAX = 4096
"""Longest condition message written (the schema allows 32768; a longer one helps nobody)."""

SecretData = Mapping[str, Mapping[str, bytes]]
"""Secret name → key → decoded bytes, for the Secrets that exist in the namespace."""

FIELD_SOURCES: dict[str, dict[str, tuple[str, ...]]] = {
    "common": {
        "id": ("metadata.name",),
        "type": ("spec.type",),
        "filters": ("spec.filters",),
        "layout": ("spec.layout",),
        "is_public": ("spec.isPublic",),
        "has_index": ("spec.hasIndex",),
        "publication": (f"metadata.annotations[{PUBLICATION_ANNOTATION}]",),
        "fallback": ("spec.fallback", "spec.clusterCache"),
    },
    "filters": {
        "filetypes": ("spec.filters.filetypes",),
        "path_patterns": ("spec.filters.pathPatterns",),
        "requires_checksum": ("spec.filters.requiresChecksum",),
    },
    "layout": {"type": ("spec.layout.type",), "casing": ("spec.layout.casing",)},
    "http": {
        "url": ("spec.http.url",),
        "headers": (
            "spec.http.headers.name",
            "spec.http.headers.value",
            "spec.http.headers.valueFrom.secretKeyRef",
        ),
        "accept_invalid_certs": ("spec.http.acceptInvalidCerts",),
    },
    "filesystem": {"path": ("spec.filesystem.path",)},
    "s3": {
        "bucket": ("spec.s3.bucket",),
        "prefix": ("spec.s3.prefix",),
        "region": ("spec.s3.region", "spec.s3.endpoint"),
        "aws_credentials_provider": ("spec.s3.provider",),
        "access_key": ("spec.s3.credentials.accessKeyId.secretKeyRef",),
        "secret_key": ("spec.s3.credentials.secretAccessKey.secretKeyRef",),
    },
    "gcs": {
        "bucket": ("spec.gcs.bucket",),
        "prefix": ("spec.gcs.prefix",),
        "private_key": ("spec.gcs.serviceAccountKey.secretKeyRef",),
        "client_email": ("spec.gcs.serviceAccountKey.secretKeyRef",),
        "bearer_token": ("spec.gcs.bearerToken.secretKeyRef",),
    },
    "sentry": {
        "id": ("metadata.name",),
        "type": ("spec.type",),
        "url": ("spec.sentry.url",),
        "token": ("spec.sentry.token.secretKeyRef",),
        "cookies": ("spec.sentry.cookies.secretKeyRef",),
        "fallback": ("spec.fallback", "spec.clusterCache"),
    },
}
"""Where each key of the proxy's source models comes from in a SymbolSource (``common`` applies to
every file-like source). Documentation for humans and the contract of the schema agreement test."""


class RenderError(RuntimeError):
    """The whole document failed the proxy's validation: a bug here or a bad base configuration."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What rendering made of one SymbolSource: becomes its ``Ready`` condition."""

    reason: Reason
    message: str

    @property
    def ready(self) -> bool:
        return self.reason is Reason.RENDERED


@dataclasses.dataclass(frozen=True)
class Rendering:
    text: str
    """The proxy configuration document (YAML)."""
    digest: str
    """sha256 of ``text``, hex; stored as an annotation on the rendered Secret."""
    outcomes: Mapping[str, Outcome]
    """Per SymbolSource name."""
    rendered: tuple[str, ...]
    """Names of the sources in the document, in the proxy's order."""


class _Problem(Exception):
    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _check_refs(spec: SourceSpec, secrets: SecretData) -> None:
    refs = spec.secret_refs()
    missing = sorted({ref.name for ref in refs if ref.name not in secrets})
    if missing:
        names = ", ".join(repr(name) for name in missing)
        raise _Problem(Reason.SECRET_NOT_FOUND, f"Secret{'s' if len(missing) > 1 else ''} {names} not found")
    absent = [ref for ref in refs if ref.key not in secrets[ref.name]]
    if absent:
        described = ", ".join(f"{ref.name!r} has no key {ref.key!r}" for ref in dict.fromkeys(absent))
        raise _Problem(Reason.SECRET_KEY_MISSING, f"Secret {described}")


def _text(ref: SecretKeySelector, secrets: SecretData) -> str:
    try:
        value = secrets[ref.name][ref.key].decode("utf-8")
    except UnicodeDecodeError:
        raise _Problem(Reason.INVALID, f"{ref.describe()} is not UTF-8 text") from None
    if "${" in value:
        raise _Problem(
            Reason.INVALID, f"{ref.describe()} contains '${{', which the proxy reads as a reference"
        )
    return value


def _line(ref: SecretKeySelector, secrets: SecretData) -> str:
    value = _text(ref, secrets).rstrip("\r\n")
    if "\n" in value or "\r" in value:
        raise _Problem(Reason.INVALID, f"{ref.describe()} must be a single line")
    return value


def _service_account(ref: SecretKeySelector, secrets: SecretData) -> tuple[str, str]:
    try:
        key = json.loads(_text(ref, secrets))
    except json.JSONDecodeError:
        key = None
    if (
        not isinstance(key, dict)
        or not isinstance(key.get("private_key"), str)
        or not isinstance(key.get("client_email"), str)
    ):
        raise _Problem(
            Reason.INVALID,
            f"{ref.describe()} is not a service-account JSON key (needs private_key and client_email)",
        )
    return key["private_key"], key["client_email"]


def _entry(name: str, spec: SourceSpec, secrets: SecretData) -> dict[str, Any]:
    """The proxy's source entry for one spec, credentials resolved."""
    _check_refs(spec, secrets)
    entry: dict[str, Any] = {"id": name, "type": spec.type.value}
    backend = spec.backend
    if isinstance(backend, HttpSpec):
        entry["url"] = backend.url
        if backend.headers:
            entry["headers"] = {
                header.name: header.value if header.value_from is None else _line(header.value_from, secrets)
                for header in backend.headers
            }
        if backend.accept_invalid_certs:
            entry["accept_invalid_certs"] = True
    elif isinstance(backend, S3Spec):
        entry["bucket"] = backend.bucket
        if backend.prefix:
            entry["prefix"] = backend.prefix
        entry["region"] = [backend.region, backend.endpoint] if backend.endpoint else backend.region
        entry["aws_credentials_provider"] = backend.provider
        if backend.access_key_id is not None:
            entry["access_key"] = _line(backend.access_key_id, secrets)
        if backend.secret_access_key is not None:
            entry["secret_key"] = _line(backend.secret_access_key, secrets)
    elif isinstance(backend, GcsSpec):
        entry["bucket"] = backend.bucket
        if backend.prefix:
            entry["prefix"] = backend.prefix
        if backend.service_account_key is not None:
            entry["private_key"], entry["client_email"] = _service_account(
                backend.service_account_key, secrets
            )
        if backend.bearer_token is not None:
            entry["bearer_token"] = _line(backend.bearer_token, secrets)
    elif isinstance(backend, SentrySpec):
        entry["url"] = backend.url
        if backend.token is not None:
            entry["token"] = _line(backend.token, secrets)
        if backend.cookies is not None:
            entry["cookies"] = _line(backend.cookies, secrets)
    elif isinstance(backend, FilesystemSpec):
        entry["path"] = backend.path
    if spec.layout is not None:
        entry["layout"] = {"type": spec.layout.type, "casing": spec.layout.casing}
    if spec.filters is not None:
        entry["filters"] = {
            "filetypes": list(spec.filters.filetypes),
            "path_patterns": list(spec.filters.path_patterns),
            "requires_checksum": spec.filters.requires_checksum,
        }
    if spec.is_public is not None:
        entry["is_public"] = spec.is_public
    if spec.has_index is not None:
        entry["has_index"] = spec.has_index
    if spec.fallback:
        entry["fallback"] = True
    return entry


def _dump(document: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True, width=4096)


def _crd_path(source_type: str, key: str) -> str:
    """The SymbolSource field behind a proxy key such as ``filters.path_patterns`` (for messages)."""
    parts = key.split(".")
    if len(parts) >= 2 and parts[0] in ("filters", "layout") and parts[1] in FIELD_SOURCES[parts[0]]:
        return FIELD_SOURCES[parts[0]][parts[1]][0] + "".join(f".{part}" for part in parts[2:])
    paths = FIELD_SOURCES[source_type].get(parts[0]) or FIELD_SOURCES["common"].get(parts[0])
    return paths[0] + "".join(f".{part}" for part in parts[1:]) if paths else key


def _explain(error: ConfigError, source_type: str) -> str:
    """The proxy's message for a one-source document, its keys named as the SymbolSource's fields."""
    lines = str(error).removeprefix("invalid configuration:").strip().splitlines()
    cleaned = []
    for line in lines:
        line = line.strip().removeprefix("sources[0]").lstrip(".")
        head, sep, rest = line.partition(": ")
        head = head.split(" (source ", 1)[0]
        cleaned.append(f"{_crd_path(source_type, head)}{sep}{rest}" if sep else line)
    return "; ".join(cleaned)


def _validated_entry(source: SymbolSource, secrets: SecretData) -> dict[str, Any]:
    if isinstance(source.spec, SpecError):
        raise _Problem(Reason.INVALID, str(source.spec))
    entry = _entry(source.name, source.spec, secrets)
    if source.publication and entry["type"] != "sentry":
        entry["publication"] = source.publication  # the publish store's generation: docs/publishing.md
    try:
        load_text(_dump({"sources": [entry]}))
    except ConfigError as exc:
        raise _Problem(
            Reason.INVALID, f"rejected by the proxy's configuration: {_explain(exc, entry['type'])}"
        ) from None
    return entry


def render(
    namespace: str,
    sources: Sequence[SymbolSource],
    secrets: SecretData,
    base: Mapping[str, Any] | None = None,
) -> Rendering:
    """Render the proxy configuration of one namespace; ``base`` holds the proxy's other settings."""
    outcomes: dict[str, Outcome] = {}
    entries: list[tuple[bool, int, str, dict[str, Any]]] = []
    for source in sources:
        try:
            entry = _validated_entry(source, secrets)
        except _Problem as problem:
            outcomes[source.name] = Outcome(problem.reason, problem.message)
            continue
        assert isinstance(source.spec, SourceSpec)
        entries.append((not source.spec.cluster_cache, source.spec.priority, source.name, entry))
        # The message stays the same when other sources come and go: a status write per source
        # and per change of its neighbours would make reconciles quadratic.
        outcomes[source.name] = Outcome(Reason.RENDERED, "included in the proxy configuration")
    entries.sort(key=lambda item: item[:3])
    if any(not behind for behind, *_ in entries):  # a cluster cache first, the others behind it
        for behind, _, _, entry in entries:
            if behind:
                entry["fallback"] = True

    document = {key: value for key, value in (base or {}).items() if key != "sources"}
    document["sources"] = [entry for *_, entry in entries]
    header = (
        "# Proxy configuration rendered by symbol-operator from the SymbolSources of namespace "
        f"{namespace!r}.\n# Changes made here are overwritten.\n"
    )
    text = header + _dump(document)
    try:
        load_text(text)
    except ConfigError as exc:
        raise RenderError(
            f"the rendered configuration of namespace {namespace!r} is invalid: {exc}"
        ) from None
    return Rendering(
        text=text,
        digest=hashlib.sha256(text.encode()).hexdigest(),
        outcomes=outcomes,
        rendered=tuple(name for _, _, name, _ in entries),
    )


def ready_condition(source: SymbolSource, outcome: Outcome) -> Condition:
    return Condition(
        type=READY,
        status="True" if outcome.ready else "False",
        reason=outcome.reason.value,
        message=outcome.message[:MESSAGE_MAX],
        observed_generation=source.generation,
    )


def desired_status(source: SymbolSource, outcome: Outcome, config_secret: str, now: str) -> dict[str, Any]:
    """The status the reconciler wants on ``source``; equal to the current one when nothing changed."""
    status: dict[str, Any] = {
        "observedGeneration": source.generation,
        "conditions": merge_conditions(source.conditions, ready_condition(source, outcome), now),
        "configSecret": config_secret if outcome.ready else None,
    }
    status["endpoint"] = source.spec.endpoint() if isinstance(source.spec, SourceSpec) else None
    return status


def status_differs(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """True when a status patch is needed (absent and ``None`` count as the same)."""
    return any(current.get(key) != value for key, value in desired.items())
