"""The publication annotation of a SymbolSource (set by the SymbolRequest lifecycle after each
publish) is rendered as the source's ``publication``, which the proxy accepts; a source without it
renders without it."""

from __future__ import annotations

import yaml

from symbol_operator.models import PUBLICATION_ANNOTATION, Reason, parse_source
from symbol_operator.render import render
from tests.operator_tests.manifests import source


def test_the_publication_annotation_is_rendered() -> None:
    published = source("publish", {"type": "filesystem", "filesystem": {"path": "/symbols"}})
    published["metadata"]["annotations"] = {PUBLICATION_ANNOTATION: "20261206T101500.000000Z-abc"}
    plain = source("plain", {"type": "filesystem", "filesystem": {"path": "/other"}})
    rendering = render("team", [parse_source(published), parse_source(plain)], {})
    entries = {e["id"]: e for e in yaml.safe_load(rendering.text)["sources"]}
    assert entries["publish"]["publication"] == "20261206T101500.000000Z-abc"
    assert "publication" not in entries["plain"]


def test_a_sentry_source_is_rendered_without_a_publication() -> None:
    # Sentry is searched, never published into, and the proxy's Sentry sources have no such key.
    sentry = source(
        "errors",
        {
            "type": "sentry",
            "sentry": {
                "url": "https://sentry.example/api/0/projects/o/p/files/dsyms/",
                "token": {"secretKeyRef": {"name": "creds", "key": "token"}},
            },
        },
    )
    sentry["metadata"]["annotations"] = {PUBLICATION_ANNOTATION: "20261206T101500.000000Z-abc"}
    rendering = render("team", [parse_source(sentry)], {"creds": {"token": b"sntrys_token"}})
    assert rendering.outcomes["errors"].reason == Reason.RENDERED, rendering.outcomes["errors"].message
    [entry] = yaml.safe_load(rendering.text)["sources"]
    assert entry["id"] == "errors"
    assert "publication" not in entry
