"""The CRDs: ``crds/`` is the generator's current output, the schemas are structural and bounded, and
they agree with the proxy's configuration models — every key of every proxy source model has a
SymbolSource field (credentials as Secret key references), the enums are the proxy's, and every
example in ``examples/k8s/`` renders into a document the proxy accepts."""

from __future__ import annotations

import subprocess
import sys
import typing
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
import yaml

from symbol_operator import crds
from symbol_operator.models import parse_source
from symbol_operator.render import FIELD_SOURCES, render
from symbol_proxy.config import (
    Casing,
    FilesystemSource,
    GcsSource,
    HttpSource,
    Layout,
    LayoutType,
    S3Source,
    SentrySource,
    SourceFilters,
    load_text,
)
from symbol_proxy.objects import FileType
from tests.operator_tests.manifests import CRDS, REPO, examples_of_kind, secret_data

SOURCE_SCHEMA = crds.symbol_source_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
MODELS: dict[str, type[pydantic.BaseModel]] = {
    "http": HttpSource,
    "filesystem": FilesystemSource,
    "s3": S3Source,
    "gcs": GcsSource,
    "sentry": SentrySource,
}


def test_crds_directory_holds_exactly_the_generated_files() -> None:
    expected = crds.render_files()
    actual = {path.name: path.read_text(encoding="utf-8") for path in CRDS.glob("*.yaml")}
    assert sorted(actual) == sorted(expected), "run: python -m symbol_operator.crds --write crds"
    for name, content in expected.items():
        assert actual[name] == content, (
            f"crds/{name} is stale: run python -m symbol_operator.crds --write crds"
        )


def test_the_check_command_agrees() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "symbol_operator.crds", "--check", str(CRDS)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr


def test_the_print_command_emits_every_crd() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "symbol_operator", "crds"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    kinds = [doc["spec"]["names"]["kind"] for doc in yaml.safe_load_all(result.stdout)]
    assert kinds == ["SymbolSource", "SymbolRequest"]


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in (schema.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}" if path else name)
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


@pytest.mark.parametrize("definition", crds.all_crds(), ids=lambda d: d["spec"]["names"]["kind"])
def test_schemas_are_structural_and_bounded(definition: dict[str, Any]) -> None:
    version = definition["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    for path, node in walk(schema):
        if path == "metadata":
            continue
        assert "type" in node, f"{path} has no type"
        assert path in ("", "apiVersion", "kind") or node.get("description"), f"{path} has no description"
        if node["type"] == "string" and path not in ("apiVersion", "kind"):
            assert "maxLength" in node, f"{path} is an unbounded string"
        if node["type"] == "array":
            assert "maxItems" in node, f"{path} is an unbounded list"
            assert "x-kubernetes-list-type" in node
    assert version["subresources"] == {"status": {}}
    assert definition["spec"]["names"]["categories"] == ["symbols"]
    assert schema["properties"]["status"]["properties"]["observedGeneration"]["format"] == "int64"
    condition = schema["properties"]["status"]["properties"]["conditions"]
    assert condition["x-kubernetes-list-map-keys"] == ["type"]
    assert condition["items"]["required"] == ["type", "status", "lastTransitionTime", "reason", "message"]
    columns = {column["name"]: column for column in version["additionalPrinterColumns"]}
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Message"]["priority"] == 1
    assert columns["Age"]["type"] == "date"


def schema_at(path: str) -> dict[str, Any]:
    node = SOURCE_SCHEMA
    for part in path.split("."):
        if node.get("type") == "array":
            node = node["items"]
        node = node["properties"][part]
    return node


def is_secret(annotation: Any) -> bool:
    return annotation is pydantic.SecretStr or any(is_secret(arg) for arg in typing.get_args(annotation))


@pytest.mark.parametrize("source_type", sorted(MODELS))
def test_every_proxy_source_field_is_represented_in_the_crd(source_type: str) -> None:
    model = MODELS[source_type]
    mapping = FIELD_SOURCES[source_type] | ({} if source_type == "sentry" else FIELD_SOURCES["common"])
    assert set(mapping) == set(model.model_fields), "FIELD_SOURCES and the proxy model disagree"
    for field, info in model.model_fields.items():
        for path in mapping[field]:
            if path.startswith("metadata."):  # the name, and the lifecycle's publication annotation
                continue
            assert path.startswith("spec."), path
            node = schema_at(path)
            assert node, f"{field} → {path} is not in the CRD"
        if is_secret(info.annotation):
            refs = [path for path in mapping[field] if path.endswith(".secretKeyRef")]
            assert refs, f"secret field {source_type}.{field} is not a Secret key reference"
            for ref in refs:
                selector = schema_at(ref)
                assert selector["required"] == ["name", "key"]
    # The backend block exists, and nothing in it is unmapped.
    block = set(SOURCE_SCHEMA["properties"]["spec"]["properties"][source_type]["properties"])
    mapped = {
        path.split(".")[2]
        for paths in mapping.values()
        for path in paths
        if path.startswith(f"spec.{source_type}.")
    }
    assert block == mapped


@pytest.mark.parametrize(
    ("model", "section"), [(SourceFilters, "filters"), (Layout, "layout")], ids=["filters", "layout"]
)
def test_nested_proxy_models_are_represented(model: type[pydantic.BaseModel], section: str) -> None:
    assert set(FIELD_SOURCES[section]) == set(model.model_fields)
    for paths in FIELD_SOURCES[section].values():
        for path in paths:
            schema_at(path)


def test_enums_are_the_proxys() -> None:
    spec = SOURCE_SCHEMA["properties"]["spec"]["properties"]
    assert spec["layout"]["properties"]["type"]["enum"] == [v.value for v in LayoutType]
    assert spec["layout"]["properties"]["casing"]["enum"] == [v.value for v in Casing]
    assert spec["filters"]["properties"]["filetypes"]["items"]["enum"] == [v.value for v in FileType]
    provider = S3Source.model_fields["aws_credentials_provider"].annotation
    assert spec["s3"]["properties"]["provider"]["enum"] == list(typing.get_args(provider))
    assert spec["type"]["enum"] == sorted(MODELS, key=["http", "s3", "gcs", "sentry", "filesystem"].index)


def test_every_example_renders_into_a_configuration_the_proxy_accepts() -> None:
    bodies = examples_of_kind("SymbolSource")
    secrets = {doc["metadata"]["name"]: secret_data(doc) for doc in examples_of_kind("Secret")}
    assert {body["spec"]["type"] for body in bodies} == set(MODELS), "an example per backend type"
    for body in bodies:
        body.setdefault("metadata", {})["namespace"] = "examples"
        body["metadata"]["generation"] = 1
    rendering = render("examples", [parse_source(body) for body in bodies], secrets)
    failed = {name: outcome for name, outcome in rendering.outcomes.items() if not outcome.ready}
    assert not failed
    config = load_text(rendering.text)
    assert len(config.sources) == len(bodies)
    assert config.sources[0].id == "local-store"  # priority 0 goes first
