"""Reading the configuration file, and noticing when it changes.

In Kubernetes the file arrives through a Secret or ConfigMap volume: the kubelet writes a new
timestamped directory and atomically swaps the ``..data`` symlink, so the file's own mtime may never
change and inotify on the file misses the swap. We therefore poll the *resolved* path and its
content hash every couple of seconds (cheap: one ``stat`` and, on change, one read), and also
reload on SIGHUP. A new document is parsed completely before anything is swapped; a bad one is
logged and the old configuration keeps serving.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from symbol_proxy.config import ConfigError, ProxyConfig, load_text

__all__ = ["FileVersion", "read_config", "version_of"]


def _read_file(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def read_config(path: Path, env: Mapping[str, str] | None = None) -> ProxyConfig:
    """Read and validate the configuration file at ``path``."""
    try:
        text = _read_file(str(path))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {path}: not UTF-8 text (byte {exc.start})") from None
    return load_text(text, env=os.environ if env is None else env, read_file=_read_file)


@dataclasses.dataclass(frozen=True, slots=True)
class FileVersion:
    """Identifies one version of the file: where the path points, and what it contains."""

    target: str
    mtime_ns: int
    size: int
    digest: str


def version_of(path: Path) -> FileVersion | None:
    try:
        target = os.path.realpath(path)
        st = os.stat(target)
        with open(target, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None
    return FileVersion(target, st.st_mtime_ns, st.st_size, digest)
