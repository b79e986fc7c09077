"""The API server itself enforces the CRDs: bad SymbolSources and SymbolRequests are rejected with the
schema's or CEL rule's message, defaults are filled in, printer columns and short names work, and
every example manifest is accepted. No operator runs here."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from symbol_operator.models import API_VERSION
from tests.operator_tests.k8s.kube import Kube, KubeError
from tests.operator_tests.manifests import example_documents

pytestmark = pytest.mark.k8s

REF = {"secretKeyRef": {"name": "creds", "key": "token"}}
S3_CREDS = {"accessKeyId": REF, "secretAccessKey": REF}


def symbol_source(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "SymbolSource", "metadata": {"name": name}, "spec": spec}


INVALID: list[tuple[str, dict[str, Any], str]] = [
    (
        "s3 without a bucket",
        {"type": "s3", "s3": {"region": "r", "credentials": S3_CREDS}},
        "spec.s3.bucket: Required value",
    ),
    (
        "http with a relative url",
        {"type": "http", "http": {"url": "/symbols/"}},
        "http.url must be an absolute http:// or https:// URL",
    ),
    (
        "http with an ftp url",
        {"type": "http", "http": {"url": "ftp://example.com/"}},
        "http.url must be an absolute http:// or https:// URL",
    ),
    (
        "type without its block",
        {"type": "http", "s3": {"bucket": "b", "region": "r", "credentials": S3_CREDS}},
        "spec.http is required when type is http",
    ),
    (
        "a second block",
        {"type": "http", "http": {"url": "https://x/"}, "filesystem": {"path": "/x"}},
        "set only the block that matches type",
    ),
    (
        "sentry with a layout",
        {"type": "sentry", "sentry": {"url": "https://s/", "token": REF}, "layout": {"type": "native"}},
        "a sentry source takes no layout, filters, isPublic or hasIndex",
    ),
    (
        "sentry with token and cookies",
        {"type": "sentry", "sentry": {"url": "https://s/", "token": REF, "cookies": REF}},
        "sentry needs exactly one of token or cookies",
    ),
    (
        "sentry without credentials",
        {"type": "sentry", "sentry": {"url": "https://s/"}},
        "sentry needs exactly one of token or cookies",
    ),
    (
        "inline Authorization header",
        {
            "type": "http",
            "http": {"url": "https://x/", "headers": [{"name": "authorization", "value": "Bearer x"}]},
        },
        "must come from a Secret (valueFrom.secretKeyRef), never inline",
    ),
    (
        "header with value and valueFrom",
        {
            "type": "http",
            "http": {"url": "https://x/", "headers": [{"name": "X-Key", "value": "a", "valueFrom": REF}]},
        },
        "a header takes exactly one of value or valueFrom",
    ),
    (
        "headers differing only in case",
        {
            "type": "http",
            "http": {
                "url": "https://x/",
                "headers": [{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}],
            },
        },
        "header names must be unique, ignoring case",
    ),
    (
        "static s3 without credentials",
        {"type": "s3", "s3": {"bucket": "b", "region": "r"}},
        "s3.credentials is required with provider static",
    ),
    (
        "ambient s3 with credentials",
        {"type": "s3", "s3": {"bucket": "b", "region": "r", "provider": "default", "credentials": S3_CREDS}},
        "s3.credentials is only used with provider static",
    ),
    (
        "gcs with two credentials",
        {"type": "gcs", "gcs": {"bucket": "b", "serviceAccountKey": REF, "bearerToken": REF}},
        "gcs takes at most one of serviceAccountKey or bearerToken",
    ),
    (
        "a cluster cache marked fallback",
        {"type": "http", "http": {"url": "https://x/"}, "clusterCache": True, "fallback": True},
        "fallback and clusterCache exclude each other",
    ),
    (
        "relative filesystem path",
        {"type": "filesystem", "filesystem": {"path": "symbols"}},
        "filesystem.path must be an absolute path",
    ),
    (
        "glob with a partial **",
        {"type": "filesystem", "filesystem": {"path": "/s"}, "filters": {"pathPatterns": ["a**b"]}},
        "'**' must be a whole path component",
    ),
    (
        "unknown layout",
        {"type": "filesystem", "filesystem": {"path": "/s"}, "layout": {"type": "flat"}},
        'spec.layout.type: Unsupported value: "flat"',
    ),
    (
        "unknown file type",
        {"type": "filesystem", "filesystem": {"path": "/s"}, "filters": {"filetypes": ["exe"]}},
        "Unsupported value",
    ),
    (
        "secret reference without a key",
        {"type": "gcs", "gcs": {"bucket": "b", "bearerToken": {"secretKeyRef": {"name": "c"}}}},
        "spec.gcs.bearerToken.secretKeyRef.key: Required value",
    ),
    (
        "negative priority",
        {"type": "filesystem", "filesystem": {"path": "/s"}, "priority": -1},
        "spec.priority: Invalid value",
    ),
]


@pytest.mark.parametrize(
    ("spec", "message"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid_sources_are_rejected_with_a_clear_message(
    kube: Kube, namespace: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(KubeError) as caught:
        kube.create(symbol_source("bad", spec), namespace)
    assert caught.value.status == 422
    assert message in caught.value.message


def test_unknown_fields_are_rejected_under_strict_validation(kube: Kube, namespace: str) -> None:
    body = symbol_source(
        "typo", {"type": "s3", "s3": {"bukcet": "b", "bucket": "b", "region": "r", "provider": "default"}}
    )
    with pytest.raises(KubeError) as caught:
        kube.request(
            "POST", kube.path("SymbolSource", namespace), body=body, params={"fieldValidation": "Strict"}
        )
    assert 'unknown field "spec.s3.bukcet"' in caught.value.message


def test_a_name_longer_than_a_proxy_source_id_is_rejected(kube: Kube, namespace: str) -> None:
    body = symbol_source("a" * 201, {"type": "filesystem", "filesystem": {"path": "/s"}})
    with pytest.raises(KubeError) as caught:
        kube.create(body, namespace)
    assert "at most 200 characters" in caught.value.message


def test_the_type_is_immutable(kube: Kube, namespace: str) -> None:
    kube.create(symbol_source("fixed", {"type": "filesystem", "filesystem": {"path": "/s"}}), namespace)
    with pytest.raises(KubeError) as caught:
        kube.patch(
            "SymbolSource",
            "fixed",
            namespace,
            {"spec": {"type": "http", "filesystem": None, "http": {"url": "https://x/"}}},
        )
    assert "type is immutable" in caught.value.message


def test_defaults_are_filled_in(kube: Kube, namespace: str) -> None:
    created = kube.create(
        symbol_source(
            "defaults",
            {
                "type": "s3",
                "s3": {"bucket": "b", "region": "r", "credentials": S3_CREDS},
                "layout": {},
                "filters": {},
            },
        ),
        namespace,
    )
    spec = created["spec"]
    assert spec["priority"] == 100
    assert spec["s3"]["provider"] == "static"
    assert spec["layout"] == {"type": "native", "casing": "default"}
    assert spec["filters"] == {"requiresChecksum": False}
    sentry = kube.create(
        symbol_source("no-layout", {"type": "sentry", "sentry": {"url": "https://s/", "token": REF}}),
        namespace,
    )
    assert "layout" not in sentry["spec"]


def test_printer_columns_short_names_and_category(kube: Kube, namespace: str) -> None:
    kube.create(symbol_source("printed", {"type": "filesystem", "filesystem": {"path": "/s"}}), namespace)
    table = kube.table("SymbolSource", namespace)
    names = [column["name"] for column in table["columnDefinitions"]]
    assert names == ["Name", "Type", "Layout", "Priority", "Ready", "Reason", "Age", "Endpoint", "Message"]
    assert [column["priority"] for column in table["columnDefinitions"]][-2:] == [1, 1]
    assert table["rows"][0]["cells"][:4] == ["printed", "filesystem", None, 100]
    resources = kube.request("GET", "/apis/symbols.symbol-operator.dev/v1alpha1")["resources"]
    by_name = {resource["name"]: resource for resource in resources}
    assert by_name["symbolsources"]["shortNames"] == ["ssrc"]
    assert by_name["symbolrequests"]["shortNames"] == ["sreq"]
    assert by_name["symbolsources"]["categories"] == ["symbols"]
    assert "symbolsources/status" in by_name


def test_every_example_is_accepted(kube: Kube, namespace: str) -> None:
    created = []
    for _, document in example_documents():
        if document["kind"] in ("SymbolSource", "SymbolRequest", "Secret"):
            kube.create(copy.deepcopy(document), namespace)
            created.append(document["metadata"]["name"])
    assert len(created) >= 12


def symbol_request(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "SymbolRequest", "metadata": {"name": "req"}, "spec": spec}


def test_symbol_requests_are_validated(kube: Kube, namespace: str) -> None:
    with pytest.raises(KubeError) as caught:
        kube.create(symbol_request({"name": "a/b", "isChunked": True}), namespace)
    assert "chunked requests are not supported" in caught.value.message
    with pytest.raises(KubeError) as caught:
        kube.create(symbol_request({"name": "a/b", "expirationTime": "next week"}), namespace)
    assert "spec.expirationTime" in caught.value.message

    created = kube.create(symbol_request({"name": "a/b", "sealed": True}), namespace)
    assert created["spec"]["isChunked"] is False
    with pytest.raises(KubeError) as caught:
        kube.patch("SymbolRequest", "req", namespace, {"spec": {"sealed": False}})
    assert "a sealed request cannot be unsealed" in caught.value.message
    with pytest.raises(KubeError) as caught:
        kube.patch("SymbolRequest", "req", namespace, {"spec": {"name": "c/d"}})
    assert "name is immutable" in caught.value.message
    with pytest.raises(KubeError) as caught:
        kube.create(
            symbol_request({"name": "x/y", "store": "not a source id"}) | {"metadata": {"name": "bad"}},
            namespace,
        )
    assert "spec.store" in caught.value.message
    kube.patch("SymbolRequest", "req", namespace, {"spec": {"store": "publish"}})  # a request made before
    for change in ("elsewhere", None):
        with pytest.raises(KubeError) as caught:
            kube.patch("SymbolRequest", "req", namespace, {"spec": {"store": change}})
        assert "store is immutable" in caught.value.message
    status = {"status": {"requestStatus": "Sealed", "observedGeneration": 1}}
    patched = kube.request(
        "PATCH",
        kube.path("SymbolRequest", namespace, "req") + "/status",
        body=status,
        content_type="application/merge-patch+json",
    )
    assert patched["status"]["requestStatus"] == "Sealed"
    table = kube.table("SymbolRequest", namespace)
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Request",
        "Status",
        "Store",
        "Ready",
        "Expires",
        "Message",
        "Age",
    ]
