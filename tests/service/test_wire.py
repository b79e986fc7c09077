"""The wire rules of the Symbol Service (spec §1, §5, §10, §12), table-driven.

Covered: camelCase out with nulls omitted, enums in as strings of any case or integers and out as
camelCase names, information level flags, base64 blob ids (the spec's example), ``hashBytes`` in
either case, dates with and without ``Z``, the ``{"count","value"}`` wrapper; the WrappedException body
and the status of every typeKey of §12; api-version from the query or Accept; client keys from
``ssqp_vectors.json`` accepted and matched case-insensitively, malformed ones refused; entry ids.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pydantic
import pytest

from symbol_service import apiversion, entries, errors, vsohash, wire
from tests.support import shared


def azure_key_vectors() -> list[dict[str, Any]]:
    data = json.loads((shared.VECTORS / "ssqp_vectors.json").read_text())
    return [v for v in data if str(v.get("kind", "")).startswith("azure-clientkey")]


def azure_example() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((shared.VECTORS / "vsohash_vectors.json").read_text())
    return data["azure_example"]


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("sealed", wire.RequestStatus.SEALED),
        ("SEALED", wire.RequestStatus.SEALED),
        (3, wire.RequestStatus.SEALED),
        ("3", wire.RequestStatus.SEALED),
        ("none", wire.RequestStatus.NONE),
        (0, wire.RequestStatus.NONE),
        ("Unavailable", wire.RequestStatus.UNAVAILABLE),
        ("created", wire.RequestStatus.CREATED),
    ],
)
def test_request_status_accepts_names_of_any_case_and_integers(
    sent: Any, expected: wire.RequestStatus
) -> None:
    assert wire.Request.model_validate({"status": sent}).status is expected


@pytest.mark.parametrize("sent", [2, "inProgress", "sealedd", True, 99])
def test_request_status_refuses_values_that_do_not_exist(sent: Any) -> None:
    with pytest.raises(pydantic.ValidationError):
        wire.Request.model_validate({"status": sent})


def test_a_request_goes_out_in_camel_case_without_nulls() -> None:
    request = wire.Request.model_validate(
        {
            "name": "n",
            "status": 1,
            "expirationDate": "2015-08-16T20:14:39",
            "storageETag": 'W/"1"',
            "isChunked": False,
        }
    )
    out = wire.dump(request)
    assert out == {
        "name": "n",
        "status": "created",
        "expirationDate": "2015-08-16T20:14:39.000000Z",
        "storageETag": 'W/"1"',
        "isChunked": False,
    }


@pytest.mark.parametrize(
    "text",
    [
        "2015-08-16T20:14:39",
        "2015-08-16T20:14:39Z",
        "2015-08-16T20:14:39.7774173Z"[:26] + "Z",
        "2015-08-16T22:14:39+02:00",
    ],
)
def test_dates_are_accepted_with_or_without_zone_and_fraction(text: str) -> None:
    parsed = wire.Request.model_validate({"expirationDate": text}).expiration_date
    assert parsed is not None
    assert wire.format_date(parsed).startswith("2015-08-16T20:14:39")


@pytest.mark.parametrize(
    ("sent", "value", "text"),
    [
        ("binary", 0x1, "binary"),
        ("private", 0x154, "private"),
        (0x154, 0x154, "private"),
        ("PUBLICS", 0x4, "publics"),
        ("publics, typeInfo", 0x14, "publics, typeInfo"),
        (0x401, 0x401, "binary, sourceIndexed"),
        ("1024", 0x400, "sourceIndexed"),
    ],
)
def test_information_levels_in_and_out(sent: Any, value: int, text: str) -> None:
    entry = wire.DebugEntry.model_validate({"informationLevel": sent})
    assert int(entry.information_level) == value
    assert wire.dump(entry)["informationLevel"] == text


def test_the_spec_example_debug_entry_batch_parses() -> None:
    example = azure_example()
    batch = wire.DebugEntryCreateBatch.model_validate(
        {
            "createBehavior": "throwIfExists",
            "debugEntries": [
                {
                    "clientKey": "symbol.exe/557a1d8ee000/symbol.exe",
                    "informationLevel": "binary",
                    "blobIdentifier": {"identifierValue": example["identifierValue_base64"]},
                }
            ],
        }
    )
    entry = batch.debug_entries[0]
    assert entry.blob_identifier is not None
    assert entry.blob_identifier.blob_id.hex == example["blob_id_hex"]
    assert batch.create_behavior is wire.CreateBehavior.THROW_IF_EXISTS


def test_the_legacy_blob_identifier_shapes_are_accepted() -> None:
    example = azure_example()
    blob_id = vsohash.BlobId.from_hex(example["blob_id_hex"])
    shapes = [
        {"valueString": example["blob_id_hex"]},
        {"algorithmId": 0, "algorithmResultBytes": base64.b64encode(blob_id.raw[:-1]).decode()},
        {"algorithmId": 0, "algorithmResultString": example["blob_id_hex"][:-2]},
    ]
    for shape in shapes:
        assert wire.JsonBlobIdentifier.model_validate(shape).blob_id == blob_id
    with pytest.raises(pydantic.ValidationError):
        wire.JsonBlobIdentifier.model_validate({"valueString": "XYZ"})


@pytest.mark.parametrize("field", ["hashBytes", "HashBytes"])
def test_block_hashes_are_read_in_either_case(field: str) -> None:
    digest = vsohash.block_hash(b"abc")
    blob = vsohash.vso_hash(b"abc")
    import base64

    details = wire.JsonBlobIdentifierWithBlocks.model_validate(
        {"identifierValue": blob.base64, "blockHashes": [{field: base64.b64encode(digest).decode()}]}
    )
    assert details.block_hashes[0].digest == digest


@pytest.mark.parametrize("value", ["%%%", base64.b64encode(b"short").decode()])
def test_block_hashes_that_are_not_32_bytes_of_base64_are_validation_errors(value: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        wire.JsonBlobBlockHash.model_validate({"hashBytes": value})


def test_a_blob_identifier_that_is_not_base64_is_a_validation_error() -> None:
    with pytest.raises(pydantic.ValidationError):
        wire.JsonBlobIdentifier.model_validate({"identifierValue": "%%%"})


def test_collections_are_wrapped_with_count_and_value() -> None:
    out = wire.collection([wire.Request(name="a"), wire.Request(name="b")])
    assert out == {"count": 2, "value": [{"name": "a"}, {"name": "b"}]}
    assert wire.collection([]) == {"count": 0, "value": []}


# -------------------------------------------------------------------------------------------------
# Errors (§12)

SPEC_STATUS = {
    404: [
        "ClientNotFoundException",
        "ClientTypeInvalidException",
        "CollectionNotFoundException",
        "DebugEntryNotFoundException",
        "RequestNotFoundException",
    ],
    409: [
        "DebugEntryExistsException",
        "DebugEntryNotDeletedException",
        "RequestExistsException",
        "RequestNotDeletedException",
        "RequestUpdateConflictException",
    ],
    400: [
        "DebugEntryNotChunkedException",
        "InvalidEndpointParameterException",
        "QueryParameterIsNotNumericException",
        "QueryParameterMustNotBeNegativeException",
        "RequestNameRequiredException",
        "RequestUpdateInvalidException",
        "PutBlobUsingHttpException",
        "RequestListInvalidQueryParameterValuesException",
        "InvalidCastException",
        "SerializationException",
        "ContentMissingException",
    ],
    401: ["NotAuthorizedException"],
    403: ["RequestSealedException", "PackageExtensionNotInstalledException"],
    402: ["ArtifactBillingException"],
    500: ["DebugEntryNotCreatedException"],
}


@pytest.mark.parametrize(
    ("type_key", "status"), [(key, status) for status, keys in SPEC_STATUS.items() for key in keys]
)
def test_every_type_key_of_the_spec_has_its_status(type_key: str, status: int) -> None:
    error = errors.ServiceError(type_key, "m")
    assert error.status == status
    body = errors.wrapped_exception(error)
    assert body["typeKey"] == type_key
    assert body["typeName"].startswith(f"Microsoft.VisualStudio.Services.Symbol.WebApi.{type_key}, ")
    assert set(body) >= {"$id", "innerException", "message", "typeName", "typeKey", "errorCode", "eventId"}


def test_an_unknown_type_key_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        errors.ServiceError("NoSuchException", "m")


def test_the_error_header_is_url_encoded() -> None:
    assert errors.ServiceError("RequestExistsException", "Request 'a b' exists.").header() == (
        "Request%20%27a%20b%27%20exists."
    )


# -------------------------------------------------------------------------------------------------
# api-version (§1)


@pytest.mark.parametrize(
    ("query", "accept", "expected"),
    [
        ("7.1", None, "7.1"),
        (None, "application/json; api-version=2.0-preview", "2.0-preview"),
        (None, "text/html, application/json;api-version=7.2-preview.1;q=0.9", "7.2-preview.1"),
        ("1.0", "application/json; api-version=7.1", "1.0"),
        ("bogus", "application/json; api-version=6.0", "6.0"),
        (None, "application/json", None),
        ("", "", None),
        ("7.1-PREVIEW.2", None, "7.1-preview.2"),
    ],
)
def test_api_version_from_query_or_accept_never_rejected(
    query: str | None, accept: str | None, expected: str | None
) -> None:
    assert apiversion.api_version(query, accept) == expected


# -------------------------------------------------------------------------------------------------
# Client keys and entry ids (§5.3, §10)


@pytest.mark.parametrize("vector", azure_key_vectors(), ids=lambda v: v["key"])
def test_azure_client_keys_are_valid_and_match_their_canonical_form(vector: dict[str, Any]) -> None:
    assert entries.check_client_key(vector["key"]) == vector["key"]
    assert entries.lookup_key(vector["key"]) == entries.lookup_key(vector["canonical_ssqp"])


def test_entry_id_is_key_and_eight_hex_level() -> None:
    vector = next(v for v in azure_key_vectors() if v["kind"] == "azure-clientkey-pdb")
    assert entries.entry_id(vector["key"], 0x154) == vector["key"] + "/00000154"
    assert entries.parse_entry_id(vector["key"] + "/00000154") == (vector["key"], 0x154)


@pytest.mark.parametrize(
    "key", ["a/b", "a/b/c/d", "a//c", "./b/c", "a/../c", "a/b/c:d", "a/b\\x/c", "", "a/b/" + "c" * 2000]
)
def test_malformed_client_keys_are_refused_with_400(key: str) -> None:
    with pytest.raises(errors.ServiceError) as caught:
        entries.check_client_key(key)
    assert caught.value.status == 400


@pytest.mark.parametrize("value", ["a/b/c/1", "a/b/c/0000000g", "a/b/00000001"])
def test_malformed_entry_ids_are_not_found(value: str) -> None:
    with pytest.raises(errors.ServiceError) as caught:
        entries.parse_entry_id(value)
    assert caught.value.status == 404
