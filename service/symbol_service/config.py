"""The service's configuration: where to listen, the publish store, the tokens, the limits.

A YAML file (``symbol-service serve --config``). The store is a source entry in the proxy's own
schema (``filesystem``, ``s3`` or ``gcs``), so the operator can render the
publish-target ``SymbolSource`` for the service and the sidecars alike. Tokens are a file of hashes,
in a deployment the mount of a Kubernetes Secret. Each default carries its reason.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Annotated, Any

import pydantic
import yaml

from symbol_proxy.config import (
    ConfigError,
    Duration,
    FilesystemSource,
    GcsSource,
    S3Source,
    Size,
    UpstreamSettings,
)
from symbol_service import tokens

__all__ = ["Collection", "Limits", "ServiceConfig", "TokenFile", "load_config", "load_tokens"]

log = logging.getLogger(__name__)


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Limits(_Model):
    max_json_body: Size = 4 * 1024**2
    """Largest JSON body: a batch of 1,000 entries is about 400 KiB; BuildXL sends 100 at a time."""
    max_blob_size: Size = 8 * 1024**3
    """Largest blob; symbol files above a few GiB are rare, and an upload is held by one replica."""
    max_block_size: Size = 2 * 1024**2
    """One block of a multi-block upload: exactly the VSO-Hash block size."""
    max_entries_per_batch: Annotated[int, pydantic.Field(ge=1)] = 1000
    max_name_length: Annotated[int, pydantic.Field(ge=1)] = 256
    """Request names carry project/definition/build/id/guid; 256 fits them and a Kubernetes label."""
    default_expiration_days: Annotated[int, pydantic.Field(ge=1)] = 30
    """Azure's default for a request created without ``expirationDate``."""


MIN_GRACE_PERIOD = 3600.0


class Collection(_Model):
    """Garbage collection of the store (``symbol-service gc``, ``symbol_service.collecting``)."""

    grace_period: Annotated[Duration, pydantic.Field(ge=MIN_GRACE_PERIOD)] = 86400.0
    """Only objects older than this are removed: a day is far longer than any upload, block-by-block
    upload or batch takes, so nothing in progress is ever a candidate. At least an hour: the service
    trusts for 10 minutes that a blob it has just stored still exists (``blobs.STORED_TRUST``)."""


class Listen(_Model):
    host: str = "127.0.0.1"
    port: Annotated[int, pydantic.Field(ge=0, le=65535)] = 8090


StoreSource = Annotated[FilesystemSource | S3Source | GcsSource, pydantic.Field(discriminator="type")]


class ServiceConfig(_Model):
    listen: Listen = Listen()
    store: StoreSource
    """The publish target: blobs, manifests and (once the operator publishes) the files themselves."""
    tokens_file: str
    """YAML list of ``{name, hash: sha256:<hex>, scopes: [...]}``; there is no anonymous write."""
    public_url: str | None = None
    """Base URL clients reach us at (for ``blobUri`` and ``url``); default: the request's own host."""
    limits: Limits = Limits()
    upstream: UpstreamSettings = UpstreamSettings()
    """Timeouts and retries of the store's client (the proxy's settings)."""
    gc: Collection = Collection()


def load_config(path: Path) -> ServiceConfig:
    try:
        document: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return ServiceConfig.model_validate(document or {})
    except pydantic.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_tokens(path: Path) -> list[dict[str, Any]]:
    try:
        document: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"tokens file {path}: {exc}") from None
    if not isinstance(document, list):
        raise ConfigError(f"tokens file {path}: expected a list of {{name, hash, scopes}}")
    return document


class TokenFile:
    """The token table of a file that may change (a mounted Secret is updated in place).

    The file is checked at most every ``interval`` seconds (one ``stat``); when it changed it is
    read again, so a rotated or revoked token takes effect without a restart. A file that has
    become unreadable or invalid keeps the last good table and is reported once per change.
    """

    def __init__(self, path: Path, *, interval: float = 5.0) -> None:
        self.path = path
        self.interval = interval
        self._table = tokens.TokenTable(load_tokens(path))
        self._stamp = self._stat()
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.interval:
            return
        self._checked = now
        stamp = self._stat()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._table = tokens.TokenTable(load_tokens(self.path))
        except (ConfigError, ValueError) as exc:
            log.warning(
                "tokens file %s changed but cannot be used (keeping the previous tokens): %s", self.path, exc
            )
            return
        log.info("tokens file %s reloaded: %d tokens", self.path, len(self._table))

    def authenticate(self, token: str | None) -> tokens.Principal | None:
        self._refresh()
        return self._table.authenticate(token)
