"""The operator's own settings (kopf's are ``kopf.OperatorSettings``), each with the reason for its default.

``symbol-operator run`` builds them from its flags and hands them to the handlers through kopf's
``memo``. When the handlers module is run by kopf's own CLI (``kopf run -m symbol_operator.handlers``,
as ``kopf.testing.KopfRunner`` does) there are no flags, so the same settings are read from
``SYMBOL_OPERATOR_*`` environment variables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from symbol_proxy.config import ConfigError, load_text

__all__ = ["OperatorOptions", "load_base_config"]


@dataclasses.dataclass(frozen=True)
class OperatorOptions:
    config_secret: str = "symbol-proxy-config"
    """Name of the rendered Secret in every namespace. The RBAC rules name it (``resourceNames``), so
    changing it means changing ``examples/k8s/rbac.yaml`` too."""
    config_key: str = "proxy.yaml"
    """Key of the document in the rendered Secret: the file name sidecars see in their mount."""
    metrics_host: str = "0.0.0.0"
    """Address of the metrics endpoint; all interfaces so Prometheus can scrape the pod."""
    metrics_port: int | None = None
    """Port of ``GET /metrics``; ``None`` serves no metrics, 0 picks a free port (tests)."""
    debounce: float = 0.2
    """Wait after the first change before reconciling a namespace, so a burst of events (the initial
    listing, ``kubectl apply`` of many sources) becomes one render and at most one Secret write."""
    retry_delay: float = 1.0
    """First delay after a failed reconcile; doubled on each further failure."""
    retry_max: float = 60.0
    """Longest delay between retries of a failing namespace (kopf's default backoff is also 60 s)."""
    concurrency: int = 4
    """Namespaces reconciled at the same time: bounds the burst of API calls after a restart."""
    base: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Proxy settings besides ``sources`` (listen, cache, upstream) copied into every rendered
    document; empty means the sidecar's defaults."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OperatorOptions:
        def number(name: str) -> float | None:
            value = environ.get(name)
            return float(value) if value not in (None, "") else None

        port = number("SYMBOL_OPERATOR_METRICS_PORT")
        debounce = number("SYMBOL_OPERATOR_DEBOUNCE")
        retry_delay = number("SYMBOL_OPERATOR_RETRY_DELAY")
        base_path = environ.get("SYMBOL_OPERATOR_BASE_CONFIG")
        return cls(
            config_secret=environ.get("SYMBOL_OPERATOR_CONFIG_SECRET") or cls.config_secret,
            config_key=environ.get("SYMBOL_OPERATOR_CONFIG_KEY") or cls.config_key,
            metrics_host=environ.get("SYMBOL_OPERATOR_METRICS_HOST") or cls.metrics_host,
            metrics_port=None if port is None else int(port),
            debounce=cls.debounce if debounce is None else debounce,
            retry_delay=cls.retry_delay if retry_delay is None else retry_delay,
            base=load_base_config(Path(base_path)) if base_path else {},
        )


def load_base_config(path: Path) -> dict[str, Any]:
    """Read and validate the proxy settings every rendered document starts from; no ``sources``."""
    text = path.read_text(encoding="utf-8")
    try:
        load_text(text)
    except ConfigError as exc:
        raise ValueError(f"{path}: {exc}") from None
    document = yaml.safe_load(text) or {}
    if "sources" in document:
        raise ValueError(
            f"{path}: the base configuration must not list sources; they come from SymbolSources"
        )
    return dict(document)
