"""The Symbol Service wire models (spec §5): camelCase JSON, null properties omitted.

Enums go out as camelCase strings and come in as strings of any case or as integers (the TS client
sends ``status: 3``). Byte arrays are base64 strings. Dates are ISO-8601, accepted with or without
``Z`` and fractions, sent in UTC with ``Z``. Unknown properties are ignored, as VSS servers do.
Array results are wrapped as ``{"count": n, "value": [...]}`` by ``collection``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import enum
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, TypeVar

import pydantic
from pydantic.alias_generators import to_camel

from symbol_service import vsohash

__all__ = [
    "CreateBehavior",
    "DebugEntry",
    "DebugEntryCreateBatch",
    "DebugEntryStatus",
    "InformationLevel",
    "JsonBlobBlockHash",
    "JsonBlobIdentifier",
    "JsonBlobIdentifierWithBlocks",
    "Request",
    "RequestStatus",
    "collection",
    "dump",
    "format_date",
]


class RequestStatus(enum.IntEnum):
    NONE = 0
    CREATED = 1
    SEALED = 3
    UNAVAILABLE = 4


class DebugEntryStatus(enum.IntEnum):
    NONE = 0
    CREATED = 1
    BLOB_MISSING = 2


class CreateBehavior(enum.IntEnum):
    THROW_IF_EXISTS = 0
    SKIP_IF_EXISTS = 1
    OVERWRITE_IF_EXISTS = 2


class InformationLevel(enum.IntFlag):
    NONE = 0x0
    BINARY = 0x1
    PUBLICS = 0x4
    TRACE_FORMAT_PRESENT = 0x8
    TYPE_INFO = 0x10
    LINE_NUMBERS = 0x40
    GLOBAL_SYMBOLS = 0x100
    PRIVATE = 0x154
    SOURCE_INDEXED = 0x400


def _camel(member: enum.Enum) -> str:
    return to_camel(member.name.lower())


E = TypeVar("E", bound=enum.IntEnum)
M = TypeVar("M", bound=pydantic.BaseModel)


def _enum_parser(kind: type[E]) -> Any:
    names = {_camel(member).lower(): member for member in kind}

    def parse(value: Any) -> E:
        if isinstance(value, kind):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return kind(value)
            except ValueError:
                raise ValueError(f"{value} is not a {kind.__name__}") from None
        if isinstance(value, str):
            text = value.strip()
            if text.isdigit():
                return parse(int(text))
            member = names.get(text.lower())
            if member is not None:
                return member
        raise ValueError(f"{value!r} is not a {kind.__name__} (one of {', '.join(sorted(names))})")

    return parse


# ``__members__``, not iteration: iterating a flag enum skips the multi-bit ``private``.
_LEVEL_NAMES = {_camel(member).lower(): member for member in InformationLevel.__members__.values()}
_LEVEL_TEXT = {int(member): _camel(member) for member in InformationLevel.__members__.values()}


def _parse_level(value: Any) -> InformationLevel:
    """An integer, a name, or comma-separated names ("publics, typeInfo")."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0 or value > 0xFFFFFFFF:
            raise ValueError("informationLevel is out of range")
        return InformationLevel(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return _parse_level(int(text))
        level = InformationLevel.NONE
        for name in text.split(","):
            member = _LEVEL_NAMES.get(name.strip().lower())
            if member is None:
                raise ValueError(f"{name.strip()!r} is not a DebugInformationLevel")
            level |= member
        return level
    raise ValueError(f"{value!r} is not a DebugInformationLevel")


def _level_text(level: InformationLevel) -> str:
    """The name of a named level, else its single-bit flags, comma-separated (as .NET writes them)."""
    value = int(level)
    if value in _LEVEL_TEXT:
        return _LEVEL_TEXT[value]
    if value & ~int(InformationLevel(0x55D)):
        return str(value)  # bits without a name: the number, which every client reads
    return ", ".join(
        text for bit, text in _LEVEL_TEXT.items() if bit and bit.bit_count() == 1 and value & bit
    )


def format_date(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_date(value: Any) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO-8601 date") from None
    else:
        raise ValueError(f"{value!r} is not a date")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _parse_domain(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("domainId is a number or a string")
    return str(value)


_AS_CAMEL = pydantic.PlainSerializer(_camel, return_type=str)
RequestStatusField = Annotated[
    RequestStatus, pydantic.BeforeValidator(_enum_parser(RequestStatus)), _AS_CAMEL
]
DebugEntryStatusField = Annotated[
    DebugEntryStatus, pydantic.BeforeValidator(_enum_parser(DebugEntryStatus)), _AS_CAMEL
]
CreateBehaviorField = Annotated[
    CreateBehavior, pydantic.BeforeValidator(_enum_parser(CreateBehavior)), _AS_CAMEL
]
LevelField = Annotated[
    InformationLevel,
    pydantic.BeforeValidator(_parse_level),
    pydantic.PlainSerializer(_level_text, return_type=str),
]
Date = Annotated[
    datetime.datetime,
    pydantic.BeforeValidator(_parse_date),
    pydantic.PlainSerializer(format_date, return_type=str),
]
DomainId = Annotated[str, pydantic.BeforeValidator(_parse_domain)]


class _Wire(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class JsonBlobIdentifier(_Wire):
    identifier_value: str

    @pydantic.model_validator(mode="before")
    @classmethod
    def _from_legacy_shape(cls, data: Any) -> Any:
        """Accept 4.1-preview's raw ``BlobIdentifier`` too: ``valueString`` (hex of all 33 bytes), or
        ``algorithmResultBytes`` (base64) / ``algorithmResultString`` (hex) with ``algorithmId``."""
        if not isinstance(data, dict) or "identifierValue" in data or "identifier_value" in data:
            return data
        try:
            if isinstance(data.get("valueString"), str):
                raw = bytes.fromhex(data["valueString"])
            elif "algorithmId" in data and isinstance(data.get("algorithmResultBytes"), str):
                raw = base64.b64decode(data["algorithmResultBytes"], validate=True) + bytes(
                    [int(data["algorithmId"])]
                )
            elif "algorithmId" in data and isinstance(data.get("algorithmResultString"), str):
                raw = bytes.fromhex(data["algorithmResultString"]) + bytes([int(data["algorithmId"])])
            else:
                return data
        except (binascii.Error, ValueError, OverflowError):
            raise ValueError("not a blob identifier") from None
        return {**data, "identifierValue": base64.b64encode(raw).decode("ascii")}

    @pydantic.field_validator("identifier_value")
    @classmethod
    def _is_blob_id(cls, value: str) -> str:
        vsohash.BlobId.from_base64(value)
        return value

    @property
    def blob_id(self) -> vsohash.BlobId:
        return vsohash.BlobId.from_base64(self.identifier_value)


class JsonBlobBlockHash(_Wire):
    hash_bytes: str = pydantic.Field(validation_alias=pydantic.AliasChoices("hashBytes", "HashBytes"))

    @pydantic.field_validator("hash_bytes")
    @classmethod
    def _is_block_hash(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("hashBytes is not base64") from None
        if len(raw) != 32:
            raise ValueError("a block hash is 32 bytes")
        return value

    @property
    def digest(self) -> bytes:
        return base64.b64decode(self.hash_bytes)


class JsonBlobIdentifierWithBlocks(JsonBlobIdentifier):
    block_hashes: list[JsonBlobBlockHash] = pydantic.Field(default_factory=list, max_length=1_000_000)


class _Resource(_Wire):
    id: str | None = None
    created_by: str | None = None
    created_date: Date | None = None
    storage_e_tag: str | None = pydantic.Field(
        default=None,
        alias="storageETag",
        validation_alias=pydantic.AliasChoices("storageETag", "storageEtag"),
    )
    url: str | None = None


class Request(_Resource):
    name: str | None = None
    description: str | None = None
    expiration_date: Date | None = None
    status: RequestStatusField | None = None
    size: int | None = None
    domain_id: DomainId | None = None
    is_chunked: bool | None = None


class DebugEntry(_Resource):
    blob_identifier: JsonBlobIdentifier | None = None
    blob_details: JsonBlobIdentifierWithBlocks | None = None
    blob_uri: str | None = None
    client_key: str | None = None
    information_level: LevelField = InformationLevel.NONE
    request_id: str | None = None
    status: DebugEntryStatusField | None = None
    size: int | None = None
    domain_id: DomainId | None = None


class DebugEntryCreateBatch(_Wire):
    create_behavior: CreateBehaviorField = CreateBehavior.THROW_IF_EXISTS
    debug_entries: list[DebugEntry]
    proof_nodes: list[str] | None = None


def dump(model: pydantic.BaseModel) -> dict[str, Any]:
    """The wire JSON of a model: camelCase, nulls omitted."""
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def collection(items: Iterable[pydantic.BaseModel | Mapping[str, Any]]) -> dict[str, Any]:
    """The VSS collection wrapper ``{"count": n, "value": [...]}``."""
    value = [dump(item) if isinstance(item, pydantic.BaseModel) else dict(item) for item in items]
    return {"count": len(value), "value": value}
