"""Rendering without a cluster: SymbolSources + Secret data → the proxy configuration and per-source outcomes.

Matrix: every backend type → the exact proxy entry; ordering by priority then name; each failure
reason (missing Secret, missing key, bad credential, spec the schema should have stopped) leaving the
other sources rendered; determinism of the text and its hash; base settings; status bookkeeping
(``lastTransitionTime`` moves only when ``status`` flips).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from symbol_operator.models import Reason, parse_source
from symbol_operator.render import desired_status, render, status_differs
from symbol_proxy.config import load_text
from tests.operator_tests.manifests import source

REF = {"secretKeyRef": {"name": "creds", "key": "token"}}
SA_KEY = json.dumps(
    {"type": "service_account", "private_key": "-----BEGIN KEY-----\nabc\n", "client_email": "a@b.c"}
)
SECRETS = {
    "creds": {
        "token": b"s3cr3t\n",
        "access": b"AKIA1",
        "secret": b"shh",
        "key.json": SA_KEY.encode(),
        "cookie": b"session=1",
    }
}


def entries(*bodies: dict[str, Any], secrets: Any = None) -> list[dict[str, Any]]:
    rendering = render(
        "team", [parse_source(body) for body in bodies], SECRETS if secrets is None else secrets
    )
    document = yaml.safe_load(rendering.text)
    return list(document["sources"])


CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "http with an inline and a secret header",
        {
            "type": "http",
            "http": {
                "url": "https://symbols.example.com/",
                "headers": [
                    {"name": "User-Agent", "value": "ua/1"},
                    {"name": "Authorization", "valueFrom": REF},
                ],
                "acceptInvalidCerts": True,
            },
            "layout": {"type": "symstore", "casing": "lowercase"},
            "filters": {"filetypes": ["pe", "pdb"], "pathPatterns": ["*.dll"], "requiresChecksum": True},
            "isPublic": True,
            "hasIndex": False,
        },
        {
            "id": "src",
            "type": "http",
            "url": "https://symbols.example.com/",
            "headers": {"User-Agent": "ua/1", "Authorization": "s3cr3t"},
            "accept_invalid_certs": True,
            "layout": {"type": "symstore", "casing": "lowercase"},
            "filters": {"filetypes": ["pe", "pdb"], "path_patterns": ["*.dll"], "requires_checksum": True},
            "is_public": True,
            "has_index": False,
        },
    ),
    (
        "s3 with static credentials",
        {
            "type": "s3",
            "s3": {
                "bucket": "b",
                "prefix": "p/",
                "region": "eu-west-1",
                "provider": "static",
                "credentials": {
                    "accessKeyId": {"secretKeyRef": {"name": "creds", "key": "access"}},
                    "secretAccessKey": {"secretKeyRef": {"name": "creds", "key": "secret"}},
                },
            },
        },
        {
            "id": "src",
            "type": "s3",
            "bucket": "b",
            "prefix": "p/",
            "region": "eu-west-1",
            "aws_credentials_provider": "static",
            "access_key": "AKIA1",
            "secret_key": "shh",
        },
    ),
    (
        "s3-compatible endpoint with ambient credentials",
        {
            "type": "s3",
            "s3": {"bucket": "b", "region": "r", "endpoint": "http://minio:9000", "provider": "default"},
        },
        {
            "id": "src",
            "type": "s3",
            "bucket": "b",
            "region": ["r", "http://minio:9000"],
            "aws_credentials_provider": "default",
        },
    ),
    (
        "gcs with a service-account key file",
        {
            "type": "gcs",
            "gcs": {
                "bucket": "g",
                "prefix": "x",
                "serviceAccountKey": {"secretKeyRef": {"name": "creds", "key": "key.json"}},
            },
        },
        {
            "id": "src",
            "type": "gcs",
            "bucket": "g",
            "prefix": "x",
            "private_key": "-----BEGIN KEY-----\nabc\n",
            "client_email": "a@b.c",
        },
    ),
    (
        "gcs with a bearer token",
        {"type": "gcs", "gcs": {"bucket": "g", "bearerToken": REF}},
        {"id": "src", "type": "gcs", "bucket": "g", "bearer_token": "s3cr3t"},
    ),
    (
        "gcs with application default credentials",
        {"type": "gcs", "gcs": {"bucket": "g"}},
        {"id": "src", "type": "gcs", "bucket": "g"},
    ),
    (
        "sentry with a token",
        {
            "type": "sentry",
            "sentry": {"url": "https://sentry.io/api/0/projects/o/p/files/dsyms/", "token": REF},
        },
        {
            "id": "src",
            "type": "sentry",
            "url": "https://sentry.io/api/0/projects/o/p/files/dsyms/",
            "token": "s3cr3t",
        },
    ),
    (
        "sentry with cookies",
        {
            "type": "sentry",
            "sentry": {
                "url": "https://s.io/",
                "cookies": {"secretKeyRef": {"name": "creds", "key": "cookie"}},
            },
        },
        {"id": "src", "type": "sentry", "url": "https://s.io/", "cookies": "session=1"},
    ),
    (
        "filesystem",
        {
            "type": "filesystem",
            "filesystem": {"path": "/srv/symbols"},
            "layout": {"type": "native", "casing": "default"},
        },
        {
            "id": "src",
            "type": "filesystem",
            "path": "/srv/symbols",
            "layout": {"type": "native", "casing": "default"},
        },
    ),
]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [(spec, expected) for _, spec, expected in CASES],
    ids=[name for name, _, _ in CASES],
)
def test_each_backend_renders_to_the_proxys_source_entry(
    spec: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert entries(source("src", spec)) == [expected]


def test_sources_are_ordered_by_priority_then_name() -> None:
    def fs(name: str, priority: int | None) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": "filesystem", "filesystem": {"path": f"/{name}"}}
        if priority is not None:
            spec["priority"] = priority
        return source(name, spec)

    rendered = entries(fs("zeta", 5), fs("alpha", 100), fs("beta", 5), fs("default-priority", None))
    assert [entry["id"] for entry in rendered] == ["beta", "zeta", "alpha", "default-priority"]


def fs_source(name: str, **spec: Any) -> dict[str, Any]:
    return source(name, {"type": "filesystem", "filesystem": {"path": f"/{name}"}, **spec})


def test_fallback_is_rendered_as_written() -> None:
    rendered = entries(fs_source("first", priority=1), fs_source("second", priority=2, fallback=True))
    assert [entry.get("fallback") for entry in rendered] == [None, True]


def test_a_cluster_cache_comes_first_and_makes_every_other_source_a_fallback() -> None:
    central = source(
        "cluster-cache",
        {"type": "http", "http": {"url": "http://cache.ns.svc:8080/symbols/"}, "clusterCache": True},
    )
    rendered = entries(fs_source("local", priority=0), central, fs_source("public", fallback=False))
    assert [entry["id"] for entry in rendered] == ["cluster-cache", "local", "public"]
    assert [entry.get("fallback") for entry in rendered] == [None, True, True]
    assert load_text(yaml.safe_dump({"sources": rendered})).sources[1].fallback


def test_a_cluster_cache_cannot_be_a_fallback() -> None:
    bad = parse_source(fs_source("bad", clusterCache=True, fallback=True))
    rendering = render("team", [bad, parse_source(fs_source("good"))], {})
    assert rendering.rendered == ("good",)
    assert "spec.fallback and spec.clusterCache exclude each other" in rendering.outcomes["bad"].message


def test_the_text_and_its_hash_do_not_depend_on_listing_order() -> None:
    bodies = [source(f"s{i}", {"type": "filesystem", "filesystem": {"path": f"/s{i}"}}) for i in range(5)]
    forward = render("team", [parse_source(b) for b in bodies], {})
    backward = render("team", [parse_source(b) for b in reversed(bodies)], {})
    assert forward.text == backward.text
    assert forward.digest == backward.digest
    assert len(forward.digest) == 64


def test_the_rendered_document_is_accepted_by_the_proxy() -> None:
    bodies = [source(name, spec) for name, (_, spec, _) in zip("abcdefghi", CASES, strict=True)]
    rendering = render("team", [parse_source(b) for b in bodies], SECRETS)
    config = load_text(rendering.text)
    assert [s.id for s in config.sources] == list(rendering.rendered)
    assert len(config.sources) == len(CASES)
    assert all(outcome.ready for outcome in rendering.outcomes.values())


FAILURES: list[tuple[str, dict[str, Any], dict[str, Any], Reason, str]] = [
    (
        "missing secret",
        {"type": "gcs", "gcs": {"bucket": "g", "bearerToken": REF}},
        {},
        Reason.SECRET_NOT_FOUND,
        "Secret 'creds' not found",
    ),
    (
        "missing key",
        {
            "type": "gcs",
            "gcs": {"bucket": "g", "bearerToken": {"secretKeyRef": {"name": "creds", "key": "nope"}}},
        },
        SECRETS,
        Reason.SECRET_KEY_MISSING,
        "Secret 'creds' has no key 'nope'",
    ),
    (
        "key file that is not JSON",
        {"type": "gcs", "gcs": {"bucket": "g", "serviceAccountKey": REF}},
        SECRETS,
        Reason.INVALID,
        "is not a service-account JSON key",
    ),
    (
        "multi-line token",
        {"type": "gcs", "gcs": {"bucket": "g", "bearerToken": REF}},
        {"creds": {"token": b"one\ntwo\n"}},
        Reason.INVALID,
        "must be a single line",
    ),
    (
        "token that is not UTF-8",
        {"type": "gcs", "gcs": {"bucket": "g", "bearerToken": REF}},
        {"creds": {"token": b"\xff\xfe"}},
        Reason.INVALID,
        "is not UTF-8 text",
    ),
    (
        "token with a reference",
        {"type": "gcs", "gcs": {"bucket": "g", "bearerToken": REF}},
        {"creds": {"token": b"${HOME}"}},
        Reason.INVALID,
        "reads as a reference",
    ),
    (
        "url the proxy rejects",
        {"type": "http", "http": {"url": "ftp://x/"}},
        {},
        Reason.INVALID,
        "rejected by the proxy's configuration: spec.http.url:",
    ),
    (
        "glob the proxy rejects",
        {"type": "filesystem", "filesystem": {"path": "/x"}, "filters": {"pathPatterns": ["a**b"]}},
        {},
        Reason.INVALID,
        "spec.filters.pathPatterns: ",
    ),
    (
        "block that does not match the type",
        {"type": "s3", "gcs": {"bucket": "g"}},
        {},
        Reason.INVALID,
        "set exactly the spec.s3 block",
    ),
    (
        "sentry with a layout",
        {"type": "sentry", "sentry": {"url": "https://s/", "token": REF}, "layout": {"type": "native"}},
        SECRETS,
        Reason.INVALID,
        "a sentry source takes no layout",
    ),
]


@pytest.mark.parametrize(
    ("spec", "secrets", "reason", "message"),
    [case[1:] for case in FAILURES],
    ids=[case[0] for case in FAILURES],
)
def test_a_failing_source_is_left_out_and_the_others_still_render(
    spec: dict[str, Any], secrets: Any, reason: Reason, message: str
) -> None:
    good = source("good", {"type": "filesystem", "filesystem": {"path": "/good"}})
    rendering = render("team", [parse_source(source("bad", spec)), parse_source(good)], secrets)
    assert rendering.rendered == ("good",)
    assert rendering.outcomes["good"].ready
    outcome = rendering.outcomes["bad"]
    assert outcome.reason is reason
    assert message in outcome.message
    assert "s3cr3t" not in outcome.message


def test_all_missing_secrets_are_named_at_once() -> None:
    spec = {
        "type": "s3",
        "s3": {
            "bucket": "b",
            "region": "r",
            "credentials": {
                "accessKeyId": {"secretKeyRef": {"name": "one", "key": "k"}},
                "secretAccessKey": {"secretKeyRef": {"name": "two", "key": "k"}},
            },
        },
    }
    rendering = render("team", [parse_source(source("s", spec))], {})
    assert rendering.outcomes["s"].message == "Secrets 'one', 'two' not found"


def test_a_namespace_whose_sources_all_fail_still_gets_a_valid_document() -> None:
    spec = {"type": "gcs", "gcs": {"bucket": "g", "bearerToken": REF}}
    rendering = render("team", [parse_source(source("s", spec))], {})
    assert rendering.rendered == ()
    assert load_text(rendering.text).sources == ()


def test_base_settings_are_copied_and_base_sources_ignored() -> None:
    base = {
        "cache": {"dir": "/var/cache/symbols"},
        "sources": [{"id": "x", "type": "filesystem", "path": "/x"}],
    }
    rendering = render(
        "team", [parse_source(source("a", {"type": "filesystem", "filesystem": {"path": "/a"}}))], {}, base
    )
    config = load_text(rendering.text)
    assert config.cache.dir == "/var/cache/symbols"
    assert [s.id for s in config.sources] == ["a"]


def test_the_document_says_where_it_comes_from() -> None:
    rendering = render("team-a", [], {})
    assert rendering.text.startswith("# Proxy configuration rendered by symbol-operator")
    assert "'team-a'" in rendering.text.splitlines()[0]


# --------------------------------------------------------------------------------------------------
# Status bookkeeping.


def test_status_carries_the_ready_condition_generation_and_facts() -> None:
    body = source(
        "s",
        {"type": "s3", "s3": {"bucket": "b", "prefix": "/p/", "region": "r", "provider": "default"}},
        generation=3,
    )
    parsed = parse_source(body)
    rendering = render("team", [parsed], {})
    status = desired_status(parsed, rendering.outcomes["s"], "symbol-proxy-config", "2026-01-01T00:00:00Z")
    assert status == {
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Rendered",
                "message": "included in the proxy configuration",
                "observedGeneration": 3,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
        "configSecret": "symbol-proxy-config",
        "endpoint": "s3://b/p",
    }


def test_transition_time_moves_only_when_the_status_flips() -> None:
    spec = {"type": "gcs", "gcs": {"bucket": "g", "bearerToken": REF}}
    first = parse_source(source("s", spec))
    missing = render("team", [first], {}).outcomes["s"]
    status = desired_status(first, missing, "cfg", "T1")
    assert status["configSecret"] is None

    # Same outcome later: nothing to write.
    again = parse_source(source("s", spec, **status))
    assert not status_differs(again.status, desired_status(again, missing, "cfg", "T2"))

    # Another failure reason: a write, but the False status has been False since T1.
    key_missing = render("team", [again], {"creds": {}}).outcomes["s"]
    changed = desired_status(again, key_missing, "cfg", "T3")
    assert status_differs(again.status, changed)
    assert changed["conditions"][0]["reason"] == "SecretKeyMissing"
    assert changed["conditions"][0]["lastTransitionTime"] == "T1"

    # Recovery flips the status and moves the time.
    recovered = parse_source(source("s", spec, **changed))
    ready = render("team", [recovered], SECRETS).outcomes["s"]
    final = desired_status(recovered, ready, "cfg", "T4")
    assert final["conditions"][0]["status"] == "True"
    assert final["conditions"][0]["lastTransitionTime"] == "T4"


def test_a_new_generation_needs_a_status_write_even_with_the_same_outcome() -> None:
    spec = {"type": "filesystem", "filesystem": {"path": "/x"}}
    first = parse_source(source("s", spec, generation=1))
    outcome = render("team", [first], {}).outcomes["s"]
    status = desired_status(first, outcome, "cfg", "T1")
    second = parse_source(source("s", spec, generation=2, **status))
    assert status_differs(second.status, desired_status(second, outcome, "cfg", "T2"))
