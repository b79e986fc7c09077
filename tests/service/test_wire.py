"""The wire rules of the Symbol Service (spec §1, §5, §10, §12), table-driven.

Covered: camelCase out with nulls omitted, enums in as strings of any case or integers and out as
camelCase names, information level flags, base64 blob ids (the spec's example), ``hashBytes`` in
either case, dates with and without ``Z``, the ``{"count","value"}`` wrapper; the WrappedException body
and the status of every typeKey of §12; api-version from the query or Accept; client keys from
``ssqp_vectors.json`` accepted and matched case-insensitively, malformed ones refused; entry ids.
"""

from __future__ import annotations

import base64
import datetime
import json
import time
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


def test_the_lookup_key_is_the_lower_case_form_of_any_spelling() -> None:
    for vector in azure_key_vectors():
        for spelling in (vector["key"], vector["canonical_ssqp"]):
            assert entries.lookup_key(spelling) == vector["key"].lower()


def test_a_client_key_of_exactly_the_maximum_length_is_valid() -> None:
    stem = "a/b/"
    longest = stem + "c" * (entries.MAX_KEY_LENGTH - len(stem))
    assert entries.check_client_key(longest) == longest
    with pytest.raises(errors.ServiceError):
        entries.check_client_key(longest + "c")


def is_sentence(message: str) -> bool:
    return message[:1].isupper() and message.endswith(".")


def test_a_malformed_client_key_is_refused_with_a_message_that_says_what_a_key_is() -> None:
    with pytest.raises(errors.ServiceError) as caught:
        entries.check_client_key("a/b")
    assert caught.value.type_key == "InvalidEndpointParameterException"
    message = caught.value.message
    assert "clientKey" in message and "three non-empty parts" in message and "without '.', '..'" in message
    assert is_sentence(message)


@pytest.mark.parametrize("value", ["a/b/c/0000000g", "a/b/00000001"], ids=["bad-level", "bad-key"])
def test_a_malformed_entry_id_is_refused_with_a_message_that_says_what_an_id_is(value: str) -> None:
    with pytest.raises(errors.ServiceError) as caught:
        entries.parse_entry_id(value)
    assert caught.value.type_key == "DebugEntryNotFoundException"
    assert "debug entry id (key/8-hex-level)" in caught.value.message
    assert is_sentence(caught.value.message)


# -------------------------------------------------------------------------------------------------
# Edges of the wire models: ranges, refusals and what they say, dates in other zones, domain ids.


def validation_message(model: type[pydantic.BaseModel], data: dict[str, Any]) -> str:
    with pytest.raises(pydantic.ValidationError) as caught:
        model.model_validate(data)
    return str(caught.value)


def test_a_status_that_does_not_exist_is_refused_with_the_names_it_could_have() -> None:
    names = sorted(member.name.lower() for member in wire.RequestStatus)
    assert f"'sealedd' is not a RequestStatus (one of {', '.join(names)})" in validation_message(
        wire.Request, {"status": "sealedd"}
    )
    assert "99 is not a RequestStatus" in validation_message(wire.Request, {"status": 99})


@pytest.mark.parametrize("value", [0, 0xFFFFFFFF])
def test_information_levels_at_both_ends_of_the_range_are_accepted(value: int) -> None:
    assert int(wire.DebugEntry.model_validate({"informationLevel": value}).information_level) == value


@pytest.mark.parametrize("value", [-1, 0x1_0000_0000])
def test_information_levels_out_of_range_are_refused(value: int) -> None:
    message = validation_message(wire.DebugEntry, {"informationLevel": value})
    assert "informationLevel is out of range" in message


@pytest.mark.parametrize(
    ("sent", "phrase"),
    [
        ("publics, bogus", "'bogus' is not a DebugInformationLevel"),
        (1.5, "1.5 is not a DebugInformationLevel"),
    ],
)
def test_information_levels_that_are_not_names_say_which_part_is_wrong(sent: Any, phrase: str) -> None:
    assert phrase in validation_message(wire.DebugEntry, {"informationLevel": sent})


def test_an_information_level_with_bits_without_a_name_goes_out_as_its_number() -> None:
    entry = wire.DebugEntry.model_validate({"informationLevel": 0x2 | 0x1})
    assert wire.dump(entry)["informationLevel"] == str(0x3)


def test_dates_go_out_in_utc_whatever_the_servers_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "IST-05:30")  # POSIX form: no time zone database needed
    time.tzset()
    try:
        aware = datetime.datetime(
            2015, 8, 16, 22, 14, 39, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
        )
        request = wire.Request.model_validate({"expirationDate": aware, "createdDate": "2015-08-16T20:14:39"})
        out = wire.dump(request)
        assert out["expirationDate"] == out["createdDate"] == "2015-08-16T20:14:39.000000Z"
        assert request.created_date is not None and request.created_date.utcoffset() == datetime.timedelta(0)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("sent", "phrase"),
    [
        ("16 August 2015", "'16 August 2015' is not an ISO-8601 date"),
        (1439756079, "1439756079 is not a date"),
    ],
)
def test_a_date_that_is_not_iso_8601_is_refused_saying_so(sent: Any, phrase: str) -> None:
    assert phrase in validation_message(wire.Request, {"expirationDate": sent})


@pytest.mark.parametrize(("sent", "kept"), [(5, "5"), ("abc", "abc")])
def test_a_domain_id_is_a_number_or_a_string_kept_as_text(sent: Any, kept: str) -> None:
    assert wire.Request.model_validate({"domainId": sent}).domain_id == kept


@pytest.mark.parametrize("sent", [True, 1.5, ["1"]])
def test_other_domain_ids_are_refused(sent: Any) -> None:
    assert "domainId is a number or a string" in validation_message(wire.Request, {"domainId": sent})


def test_a_collection_takes_plain_mappings_as_they_are() -> None:
    items = [{"id": "a", "anything": 1}, wire.Request(name="b")]
    assert wire.collection(items) == {"count": 2, "value": [{"id": "a", "anything": 1}, {"name": "b"}]}
