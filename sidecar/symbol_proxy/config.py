"""The proxy's configuration format: Symbolicator's ``sources`` plus the proxy's own settings.

The sidecar owns this format; the operator imports these models to validate and render it, and the
CRD schemas are checked against them. The module is pure: parsing a document is a function of its
text and an environment mapping (``load_text``); reading the file lives in ``loading``.

Source entries use Symbolicator's schema unchanged (``shared/specs/layouts.md`` §8), so a
Symbolicator user can paste their ``sources:`` list. Unlike Symbolicator we reject unknown keys:
a misspelt ``bukcet`` should fail at start with the key's name, not silently become "not found".
Any string value may be written as ``${VAR}`` (environment) or ``${file:/path}`` (a mounted Secret);
secret values are held as ``SecretStr`` so they never reach a log line or a ``repr``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from symbol_proxy.objects import FileType

__all__ = [
    "Casing",
    "ConfigError",
    "Duration",
    "FilesystemSource",
    "GcsSource",
    "HttpSource",
    "Layout",
    "LayoutType",
    "ProxyConfig",
    "S3Source",
    "SentrySource",
    "Size",
    "SourceConfig",
    "SourceFilters",
    "load_text",
    "parse_duration",
    "parse_size",
]


class ConfigError(ValueError):
    """A configuration document is invalid; the message names the key and the problem."""


# --------------------------------------------------------------------------------------------------
# Scalars: durations and sizes in human form.

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d|w)?\s*$")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from a number or a humantime-like string (``500ms``, ``30s``, ``1h``, ``7d``)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration such as 30s, 10m or 1h, got {value!r}")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_size(value: Any) -> int:
    """Bytes from a number or a string with a unit (``512MiB``, ``10GB``, ``1048576``)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512MiB or 10GB")
    if isinstance(value, int | float):
        size = int(value)
    else:
        match = _SIZE.match(str(value))
        unit = match.group(2).lower() if match else ""
        if not match or unit not in _SIZE_UNITS:
            raise ValueError(f"expected a size such as 512MiB or 10GB, got {value!r}")
        size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if size < 0:
        raise ValueError("a size cannot be negative")
    return size


Duration = Annotated[float, pydantic.BeforeValidator(parse_duration)]
Size = Annotated[int, pydantic.BeforeValidator(parse_size)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


# --------------------------------------------------------------------------------------------------
# Sources (Symbolicator's schema).


class LayoutType(enum.StrEnum):
    NATIVE = "native"
    SYMSTORE = "symstore"
    SYMSTORE_INDEX2 = "symstore_index2"
    SSQP = "ssqp"
    DEBUGINFOD = "debuginfod"
    UNIFIED = "unified"
    SLASHSYMBOLS = "slashsymbols"


class Casing(enum.StrEnum):
    DEFAULT = "default"
    LOWERCASE = "lowercase"
    UPPERCASE = "uppercase"


class Layout(_Model):
    """How a source lays out its files (§4 of the layout spec) and how it cases the paths."""

    type: LayoutType = LayoutType.NATIVE
    """Path scheme: native, symstore, symstore_index2, ssqp, debuginfod, unified, slashsymbols."""
    casing: Casing = Casing.DEFAULT
    """Applied to the whole path: default (as the layout says), lowercase, uppercase."""


class SourceFilters(_Model):
    """Which lookups a source takes part in; empty lists allow everything."""

    filetypes: tuple[FileType, ...] = ()
    """File types this source is asked for; empty means all."""
    path_patterns: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    """Globs matched case-insensitively against the code and debug file paths; empty means all."""
    requires_checksum: bool = False
    """Only ask this source for objects with a known checksum (NuGet's symbol server needs one)."""

    @pydantic.field_validator("path_patterns")
    @classmethod
    def _check_globs(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        from symbol_proxy import filters  # filters imports this module for its types only

        for pattern in patterns:
            try:
                filters.compile_glob(pattern)
            except filters.InvalidGlob as exc:
                raise ValueError(f"invalid glob {pattern!r}: {exc}") from None
        return patterns


SOURCE_ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
"""What a source id may be; also a SymbolRequest's ``spec.store`` (the publish store's id)."""


class _CommonSource(_Model):
    id: Annotated[str, Field(min_length=1, max_length=200, pattern=SOURCE_ID_PATTERN)]
    """Unique name of the source; used in logs, never in metric labels."""
    filters: SourceFilters = SourceFilters()
    """Which lookups the source takes part in."""
    layout: Layout = Layout()
    """How files are laid out in the source."""
    is_public: bool = False
    """Accepted for compatibility with Symbolicator (scope of its caches); the proxy has one scope."""
    has_index: bool = False
    """Accepted for compatibility with Symbolicator (SymStore ``000Admin`` index); not used yet."""
    publication: str | None = Field(default=None, max_length=200)
    """Publication generation of a store the publishing service writes into (set by the operator):
    when it changes on a reload, cached 404s are dropped, so files just published are found at once
    instead of after ``cache.negative_ttl`` (docs/publishing.md, "Publish-to-visible")."""
    fallback: bool = False
    """Ask this source only once every earlier source that is not itself a fallback has answered
    without the file or failed (a central cache first, the real sources as its fallbacks)."""


class HttpSource(_CommonSource):
    """A symbol server reached over HTTP(S); ``url`` is treated as a directory."""

    type: Literal["http"]
    url: Annotated[str, Field(pattern=r"^https?://[^/\s]+")]
    """Absolute http(s) URL of the store's root; treated as a directory."""
    headers: dict[str, SecretStr] = {}
    """Headers sent with every request (authorization, user agent); values are kept secret."""
    accept_invalid_certs: bool = False
    """Skip TLS certificate verification for this source."""


class FilesystemSource(_CommonSource):
    """A directory on the local filesystem (or a mounted share)."""

    type: Literal["filesystem"]
    path: Annotated[str, Field(min_length=1)]
    """Root directory of the store."""


class S3Source(_CommonSource):
    """An S3 bucket, or an S3-compatible store when ``region`` is ``[name, endpoint]``."""

    type: Literal["s3"]
    bucket: Annotated[str, Field(min_length=1)]
    """Bucket name."""
    prefix: str = ""
    """Key prefix; slashes at both ends are ignored."""
    region: str | tuple[str, str]
    """An AWS region, or ``[name, endpoint]`` for an S3-compatible store (path-style addressing)."""
    aws_credentials_provider: Literal["static", "container", "default"] = "static"
    """static: the keys below (or, when empty, the default chain); container: ECS/EKS container
    credentials; default: the AWS default chain (environment, web identity/IRSA, profiles, IMDS)."""
    access_key: SecretStr = SecretStr("")
    """Access key id for static credentials."""
    secret_key: SecretStr = SecretStr("")
    """Secret access key for static credentials."""

    @pydantic.field_validator("region", mode="before")
    @classmethod
    def _check_region(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) != 2:
            raise ValueError("region must be a name or a [name, endpoint] pair")
        return value


class GcsSource(_CommonSource):
    """A Google Cloud Storage bucket."""

    type: Literal["gcs"]
    bucket: Annotated[str, Field(min_length=1)]
    """Bucket name."""
    prefix: str = ""
    """Object name prefix; slashes at both ends are ignored."""
    private_key: SecretStr | None = None
    """Service-account RSA key (PEM); literal ``\\n`` sequences are accepted."""
    client_email: str | None = None
    """Service-account e-mail, together with ``private_key``."""
    bearer_token: SecretStr | None = None
    """An OAuth access token used verbatim. Without any credentials, Application Default
    Credentials (the metadata server, Workload Identity) are used."""

    @pydantic.model_validator(mode="after")
    def _check_credentials(self) -> GcsSource:
        if (self.private_key is None) != (self.client_email is None):
            raise ValueError("private_key and client_email must be given together")
        return self


class SentrySource(_Model):
    """A Sentry project's debug-file endpoint; no layout and no filters."""

    id: Annotated[str, Field(min_length=1, max_length=200)]
    """Unique name of the source."""
    type: Literal["sentry"]
    url: Annotated[str, Field(pattern=r"^https?://[^/\s]+")]
    """The project's debug-file endpoint: ``…/api/0/projects/{org}/{project}/files/dsyms/``."""
    token: SecretStr | None = None
    """Auth token, sent as ``Authorization: Bearer``."""
    cookies: SecretStr | None = None
    """A raw ``Cookie`` header, instead of a token."""
    fallback: bool = False
    """Ask this source only once every earlier source that is not itself a fallback has answered
    without the file or failed."""

    @pydantic.model_validator(mode="after")
    def _check_auth(self) -> SentrySource:
        if (self.token is None) == (self.cookies is None):
            raise ValueError("exactly one of token or cookies is required")
        return self


SourceConfig = Annotated[
    HttpSource | FilesystemSource | S3Source | GcsSource | SentrySource,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------------------------------
# The proxy's own settings. Each default carries its reason.


class ListenSettings(_Model):
    host: str = "127.0.0.1"
    """Loopback by default: the proxy is a sidecar and serves its own pod only."""
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    """TCP port; 0 picks a free one."""
    probe_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    """A second port that serves only ``/healthz``, ``/readyz`` and ``/metrics``, for the kubelet's
    probes and Prometheus, which reach a pod from outside its loopback; off when unset."""
    probe_host: str = "0.0.0.0"
    """Where the probe port listens: every address of the pod by default (it serves no symbols)."""


class CacheSettings(_Model):
    dir: str = "./symbol-cache"
    """Where cached files live; survives restarts. Use an emptyDir or a PVC in a pod."""
    max_size: Size = 10 * 1024**3
    """Hard cap on the bytes kept on disk; least recently used files are evicted first. Every
    reference proxy lacks one, and their users keep filling disks (symbolicator#1711)."""
    negative_ttl: Duration = 3600.0
    """How long a "not found" is remembered: Symbolicator's 1 h for private sources."""
    error_ttl: Duration = 30.0
    """How long an upstream failure (5xx, timeout) or refusal (401/403) is remembered, and the
    ``Retry-After`` of a 502/504. Short, because it is not a "not found": debuggers would otherwise
    see a miss for a file that exists."""
    max_file_size: Size = 16 * 1024**3
    """Larger upstream files are refused (Symbolicator's limit is 15 GiB)."""


class UpstreamSettings(_Model):
    connect_timeout: Duration = 5.0
    """Symbolicator's current default."""
    head_timeout: Duration = 30.0
    """Time to response headers (first byte) per request."""
    total_timeout: Duration = 1800.0
    """Wall clock per download; long because PDBs of several GiB exist (symbolicator#1646)."""
    read_timeout: Duration = 60.0
    """Longest silence between two chunks of a body."""
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    """Retries of idempotent failures (connect errors, 5xx) before a source counts as failed."""
    max_concurrent_downloads: Annotated[int, Field(ge=1)] = 64
    """Upstream requests open at the same time, over all sources."""
    max_redirects: Annotated[int, Field(ge=0, le=30)] = 10
    """Redirects followed per request (object stores answer with 302 to signed URLs)."""
    user_agent: str = "symbol-proxy/0.1"
    """Sent to HTTP sources unless a source's headers set one."""
    breaker_threshold: Annotated[int, Field(ge=1)] = 20
    """Failures of one host within ``breaker_window`` that open its breaker."""
    breaker_window: Duration = 60.0
    """The window in which ``breaker_threshold`` failures are counted."""
    breaker_block_time: Duration = 60.0
    """Short on purpose: Symbolicator's 24 h block took a self-hosted server offline for a day."""
    s3_parallel_threshold: Size = 1024**3
    """S3 objects from this size on are fetched as parallel ranged GETs of ``s3_part_size``; smaller
    ones stream from one GET. Parts raise throughput where one connection is the limit and make a
    broken connection cheap to redo, but every range is a request, and some S3-compatible stores
    (moto, simple gateways) read the whole object for each one. 0: parts for anything over one part."""
    s3_part_size: Annotated[int, pydantic.BeforeValidator(parse_size), Field(ge=256 * 1024)] = 16 * 1024**2
    """Size of each ranged GET when an S3 object is fetched in parts (at least 256 KiB)."""
    s3_part_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    """Parts of one S3 object in flight at a time, the one being streamed included (1: one after
    another). Each waiting part buffers at most 8 MiB, so memory stays flat whatever the size."""


class AdminSettings(_Model):
    enabled: bool = False
    """The purge endpoint is off unless asked for; when on it answers loopback clients only."""
    token: SecretStr | None = None
    """Purge requests need ``Authorization: Bearer <token>``. Without one, the proxy generates a
    token at start and writes it to ``<cache.dir>/admin-token`` (mode 0600); it is never logged."""


class ReloadSettings(_Model):
    poll_interval: Duration = 2.0
    """How often the configuration file is checked for changes; 0 turns polling off (SIGHUP still
    reloads). Kubernetes updates mounted volumes only about once a minute, so 2 s costs nothing."""


class ProxyConfig(_Model):
    """The whole configuration document."""

    listen: ListenSettings = ListenSettings()
    """Where the proxy listens."""
    cache: CacheSettings = CacheSettings()
    """The disk cache."""
    upstream: UpstreamSettings = UpstreamSettings()
    """Timeouts, retries and limits for requests to sources."""
    admin: AdminSettings = AdminSettings()
    """The cache purge endpoint."""
    reload: ReloadSettings = ReloadSettings()
    """Reloading the configuration file."""
    sources: tuple[SourceConfig, ...] = ()
    """Where symbols live, in priority order (Symbolicator's schema)."""

    @pydantic.field_validator("sources")
    @classmethod
    def _unique_ids(cls, sources: tuple[Any, ...]) -> tuple[Any, ...]:
        seen: set[str] = set()
        for source in sources:
            if source.id in seen:
                raise ValueError(f"duplicate source id {source.id!r}")
            seen.add(source.id)
        return sources


# --------------------------------------------------------------------------------------------------
# Parsing a document.

_REFERENCE = re.compile(r"\$\{([^}]*)\}")


def _substitute(node: Any, env: Mapping[str, str], read_file: Callable[[str], str], where: str) -> Any:
    if isinstance(node, dict):
        return {
            k: _substitute(v, env, read_file, f"{where}.{k}" if where else str(k)) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_substitute(v, env, read_file, f"{where}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def replace(match: re.Match[str]) -> str:
            ref = match.group(1)
            if ref.startswith("file:"):
                try:
                    return read_file(ref[5:]).rstrip("\n")
                except OSError as exc:
                    raise ConfigError(f"{where}: cannot read {ref[5:]!r}: {exc.strerror}") from None
                except UnicodeDecodeError:
                    raise ConfigError(f"{where}: {ref[5:]!r} is not UTF-8 text") from None
            if ref not in env:
                raise ConfigError(f"{where}: environment variable {ref!r} is not set")
            return env[ref]

        return _REFERENCE.sub(replace, node)
    return node


def _describe(error: pydantic.ValidationError, document: Mapping[str, Any]) -> str:
    lines = []
    for item in error.errors():
        loc = list(item["loc"])
        # Drop the discriminator tag pydantic inserts into tagged-union locations.
        if (
            len(loc) >= 3
            and loc[0] == "sources"
            and isinstance(loc[2], str)
            and loc[2] in ("http", "filesystem", "s3", "gcs", "sentry")
        ):
            del loc[2]
        parts: list[str] = []
        for part in loc:
            if isinstance(part, int):
                parts.append(f"[{part}]")
            else:
                parts.append(("." if parts else "") + str(part))
        key = "".join(parts) or "<document>"
        if loc and loc[0] == "sources" and len(loc) > 1 and isinstance(loc[1], int):
            try:
                key += f" (source {document['sources'][loc[1]].get('id')!r})"
            except (KeyError, IndexError, AttributeError, TypeError):
                pass
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown setting"
        lines.append(f"{key}: {message}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """Where and what, never the text around it: PyYAML's own message quotes the offending line,
    which may be a secret (an unterminated ``secret_key: "wJalr…``)."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return type(error).__name__
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = " ".join(part for part in (error.context, error.problem) if part)
    return where + (_QUOTED.sub("…", what) or "syntax error")


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
"""PyYAML's problem texts quote tokens and characters they found: dropped, as they may be values."""


def load_text(
    text: str,
    env: Mapping[str, str] | None = None,
    read_file: Callable[[str], str] | None = None,
) -> ProxyConfig:
    """Parse a YAML or JSON document into a validated ``ProxyConfig``.

    ``env`` and ``read_file`` resolve ``${VAR}`` and ``${file:/path}`` references; the caller passes
    ``os.environ`` and a file reader, tests pass dictionaries.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {_yaml_problem(exc)}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError("the configuration must be a mapping with keys such as 'sources' and 'cache'")

    def no_files(path: str) -> str:
        raise OSError(2, "file references are not allowed here")

    document = _substitute(document, env or {}, read_file or no_files, "")
    try:
        return ProxyConfig.model_validate(document)
    except pydantic.ValidationError as exc:
        raise ConfigError(_describe(exc, document)) from None
