"""Render docs/configuration.md from the configuration models (their field docstrings).

Run ``.venv/bin/python scripts/gen_config_docs.py > docs/configuration.md``; a test fails when the
committed file differs from what this prints.
"""

from __future__ import annotations

import json
import sys
import typing

import pydantic

from symbol_proxy import config as cfg

SECTIONS: list[tuple[str, type[pydantic.BaseModel], str]] = [
    ("listen", cfg.ListenSettings, "Where the proxy listens."),
    (
        "cache",
        cfg.CacheSettings,
        "The disk cache. Durations accept `500ms`, `30s`, `10m`, `1h`, `7d`; sizes `512MiB`, `10GB`.",
    ),
    ("upstream", cfg.UpstreamSettings, "Requests to sources."),
    (
        "admin",
        cfg.AdminSettings,
        "The purge endpoint: `DELETE /admin/cache` and "
        "`DELETE /admin/cache/{symbols|unified|buildid}/<path>`.",
    ),
    ("reload", cfg.ReloadSettings, "Reloading the configuration file (also on SIGHUP)."),
    ("sources[] (common keys of http, s3, gcs, filesystem)", cfg.HttpSource, ""),
    ("sources[] type: filesystem", cfg.FilesystemSource, ""),
    ("sources[] type: http", cfg.HttpSource, ""),
    ("sources[] type: s3", cfg.S3Source, ""),
    ("sources[] type: gcs", cfg.GcsSource, ""),
    ("sources[] type: sentry", cfg.SentrySource, "No layout and no filters: Sentry is searched by id."),
    ("layout", cfg.Layout, ""),
    ("filters", cfg.SourceFilters, ""),
]
COMMON = set(cfg._CommonSource.model_fields)


def _type_name(annotation: typing.Any) -> str:
    text = str(annotation)
    for old, new in (
        ("typing.", ""),
        ("<class '", ""),
        ("'>", ""),
        ("pydantic.types.", ""),
        ("symbol_proxy.config.", ""),
        ("symbol_proxy.objects.", ""),
        ("NoneType", "null"),
        ("Annotated[", ""),
    ):
        text = text.replace(old, new)
    if "FileType" in text:
        return "list of file types"
    text = text.replace(" | ", " or ")
    if " or " not in text and text.startswith(("float", "int", "str")):
        return text.split(",")[0].rstrip("]")
    return text


def _default(field: pydantic.fields.FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.default
    if isinstance(value, pydantic.BaseModel):
        return "see below"
    if isinstance(value, pydantic.SecretStr):
        return '""' if not value.get_secret_value() else "(secret)"
    if hasattr(value, "value"):
        value = value.value
    return f"`{json.dumps(value, default=str)}`"


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from `sidecar/symbol_proxy/config.py` by `scripts/gen_config_docs.py`; do not edit.",
        "",
        "The file is YAML or JSON. Every key is optional except where it says *required*; unknown keys",
        "are rejected at start with a message naming them. Any string may be written `${VAR}` (an",
        "environment variable) or `${file:/path}` (the content of a file, e.g. a mounted Secret).",
        "`sources` uses Symbolicator's source schema unchanged, so its `sources:` lists can be pasted.",
        "",
    ]
    for title, model, intro in SECTIONS:
        lines += [f"## `{title}`", ""]
        if intro:
            lines += [intro, ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            is_common = name in COMMON
            if title.startswith("sources[] (common") and not is_common:
                continue
            if title.startswith("sources[] type") and is_common and model is not cfg.SentrySource:
                continue
            if name == "type":
                continue
            doc = (field.description or "").replace("\n", " ").replace("|", "\\|")
            kind = _type_name(field.annotation)
            for meta in field.metadata:
                func = getattr(meta, "func", None)
                if func is cfg.parse_duration:
                    kind = "duration"
                elif func is cfg.parse_size:
                    kind = "size"
            lines.append(f"| `{name}` | {kind} | {_default(field)} | {doc} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render())
