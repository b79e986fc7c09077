"""Edges of rendering that ``test_render.py`` does not reach (found by mutation testing, see
``docs/testing.md``): the rendered text keeps the order and spelling a reader expects, and a source
that is not ready says so with the Kubernetes condition status ``False``."""

from __future__ import annotations

import json

import pytest
import yaml

from symbol_operator.models import PUBLICATION_ANNOTATION, parse_source
from symbol_operator.render import _crd_path, _explain, desired_status, render
from symbol_proxy.config import ConfigError, load_text
from tests.operator_tests.manifests import source

LONG_PATH = "/données de symboles/" + " ".join(["équipe partagée"] * 12)


def test_the_rendered_text_keeps_field_order_unicode_and_long_values_on_one_line() -> None:
    spec = {"type": "filesystem", "filesystem": {"path": LONG_PATH}}
    rendering = render("team", [parse_source(source("s", spec))], {})
    lines = rendering.text.splitlines()
    fields = [line.strip(" -").split(":", 1)[0] for line in lines if line.startswith(("- ", "  "))]
    assert fields[:3] == ["id", "type", "path"]  # as written, not sorted
    assert any(LONG_PATH in line for line in lines)  # not escaped, not folded
    assert yaml.safe_load(rendering.text)["sources"][0]["path"] == LONG_PATH


def test_the_sources_of_the_base_document_are_replaced_and_come_last() -> None:
    base = {"sources": [{"id": "stale", "type": "filesystem", "path": "/old"}], "cache": {"max_size": "1G"}}
    spec = {"type": "filesystem", "filesystem": {"path": "/x"}}
    rendering = render("team", [parse_source(source("s", spec))], {}, base)
    document = yaml.safe_load(rendering.text)
    assert list(document) == ["cache", "sources"]
    assert [entry["id"] for entry in document["sources"]] == ["s"]


def test_a_source_that_is_not_ready_has_a_false_ready_condition() -> None:
    spec = {
        "type": "gcs",
        "gcs": {"bucket": "g", "bearerToken": {"secretKeyRef": {"name": "creds", "key": "token"}}},
    }
    parsed = parse_source(source("s", spec))
    outcome = render("team", [parsed], {}).outcomes["s"]  # the Secret is missing
    assert outcome.reason.value == "SecretNotFound"
    status = desired_status(parsed, outcome, "cfg", "T1")
    assert status["conditions"][0]["status"] == "False"
    assert status["configSecret"] is None


def gcs_token(secret: bytes) -> tuple[str, str | None]:
    """(reason, rendered bearer token) for a gcs source whose token Secret holds ``secret``."""
    ref = {"secretKeyRef": {"name": "creds", "key": "token"}}
    spec = {"type": "gcs", "gcs": {"bucket": "g", "bearerToken": ref}}
    rendering = render("team", [parse_source(source("s", spec))], {"creds": {"token": secret}})
    outcome = rendering.outcomes["s"]
    if not outcome.ready:
        return outcome.message, None
    return outcome.reason.value, yaml.safe_load(rendering.text)["sources"][0]["bearer_token"]


def test_a_one_line_secret_loses_only_its_line_break() -> None:
    assert gcs_token(b"abcX \r\n") == ("Rendered", "abcX ")
    assert gcs_token(b"abcX\r\n") == ("Rendered", "abcX")
    message, token = gcs_token(b"one\rtwo")
    assert token is None and "must be a single line" in message


def test_a_service_account_key_needs_both_the_private_key_and_the_client_email() -> None:
    ref = {"secretKeyRef": {"name": "creds", "key": "key.json"}}
    spec = {"type": "gcs", "gcs": {"bucket": "g", "serviceAccountKey": ref}}
    for fields in ({"private_key": "k"}, {"client_email": "a@b.c"}):
        secrets = {"creds": {"key.json": json.dumps(fields).encode()}}
        outcome = render("team", [parse_source(source("s", spec))], secrets).outcomes["s"]
        assert "is not a service-account JSON key" in outcome.message, fields


def test_every_missing_key_is_named_in_one_readable_message() -> None:
    headers = [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": "creds", "key": key}}}
        for name, key in (("A", "a"), ("B", "b"))
    ]
    spec = {"type": "http", "http": {"url": "https://x/", "headers": headers}}
    outcome = render("team", [parse_source(source("s", spec))], {"creds": {}}).outcomes["s"]
    assert outcome.message == "Secret 'creds' has no key 'a', 'creds' has no key 'b'"


def test_an_invalid_source_has_no_endpoint() -> None:
    invalid = parse_source(source("s", {"type": "s3", "gcs": {"bucket": "g"}}))
    outcome = render("team", [invalid], {}).outcomes["s"]
    assert desired_status(invalid, outcome, "cfg", "T1")["endpoint"] is None


# How the proxy's configuration errors are renamed to SymbolSource fields in the Ready message.
# Most bad specs are refused by the operator's own models first, so several proxy errors at once and
# the ``layout.*`` keys are checked here against the renaming itself, with real proxy errors.


def test_every_key_in_a_rejection_is_named_as_the_symbolsource_field_in_one_message() -> None:
    document = {
        "sources": [
            {
                "id": "x",
                "type": "http",
                "url": "ftp://host/",
                "layout": {"type": "bogus", "casing": "loud"},
                "filters": {"path_patterns": ["a**b"], "filetypes": ["nope"]},
                "is_public": "maybe",
                "has_index": "maybe",
                "fallback": "maybe",
            }
        ]
    }
    with pytest.raises(ConfigError) as rejected:
        load_text(yaml.safe_dump(document))
    proxy_lines = str(rejected.value).splitlines()[1:]
    reasons = {
        line.strip().split(": ", 1)[0].split(" (source ")[0]: line.split(": ", 1)[1] for line in proxy_lines
    }
    assert len(reasons) == 8

    message = _explain(rejected.value, "http")
    fields = {
        "sources[0].url": "spec.http.url",
        "sources[0].layout.type": "spec.layout.type",
        "sources[0].layout.casing": "spec.layout.casing",
        "sources[0].filters.path_patterns": "spec.filters.pathPatterns",
        "sources[0].filters.filetypes[0]": "spec.filters.filetypes[0]",
        "sources[0].is_public": "spec.isPublic",
        "sources[0].has_index": "spec.hasIndex",
        "sources[0].fallback": "spec.fallback",
    }
    assert message.split("; ") == [f"{fields[key]}: {reason}" for key, reason in reasons.items()]


def test_a_rejection_line_without_a_key_is_kept_as_it_is() -> None:
    error = ConfigError(
        "invalid configuration:\n  sources[0].url (source 'x'): bad\n  a remark: without a key\n  the end\n"
    )
    assert _explain(error, "http") == "spec.http.url: bad; a remark: without a key; the end"


@pytest.mark.parametrize(
    ("source_type", "key", "field"),
    [
        ("http", "url", "spec.http.url"),
        ("s3", "region", "spec.s3.region"),  # the first of the fields a key comes from
        ("s3", "bucket", "spec.s3.bucket"),
        ("gcs", "bucket", "spec.gcs.bucket"),
        ("sentry", "id", "metadata.name"),
        ("sentry", "url", "spec.sentry.url"),
        ("filesystem", "id", "metadata.name"),  # from the common fields
        ("filesystem", "publication", f"metadata.annotations[{PUBLICATION_ANNOTATION}]"),
        ("http", "layout", "spec.layout"),
        ("http", "layout.type", "spec.layout.type"),
        ("http", "layout.casing", "spec.layout.casing"),
        ("http", "layout.unknown", "spec.layout.unknown"),
        ("http", "filters", "spec.filters"),
        ("http", "filters.requires_checksum", "spec.filters.requiresChecksum"),
        ("http", "filters.path_patterns.0", "spec.filters.pathPatterns.0"),
        ("s3", "filters.path_patterns.0.x", "spec.filters.pathPatterns.0.x"),
        ("http", "headers.0", "spec.http.headers.name.0"),
        ("http", "headers.0.value", "spec.http.headers.name.0.value"),
        ("http", "no_such_key", "no_such_key"),
        ("http", "no_such_key.0", "no_such_key.0"),
    ],
)
def test_a_proxy_key_is_named_as_the_symbolsource_field_it_comes_from(
    source_type: str, key: str, field: str
) -> None:
    assert _crd_path(source_type, key) == field
