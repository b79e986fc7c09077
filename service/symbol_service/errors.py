"""Azure's error vocabulary: every failure the API reports is a ``ServiceError`` with a ``typeKey``.

Clients map ``typeKey`` to exception classes (symbol.exe exits 17 on ``RequestExistsException``), so
the key decides the HTTP status through one table (spec §12) and the body is the VSS
"WrappedException" JSON. Messages are written for users and never carry a token or a header value.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

__all__ = ["STATUS_BY_TYPE_KEY", "ServiceError", "wrapped_exception"]

_NAMESPACE = "Microsoft.VisualStudio.Services.Symbol.WebApi"

STATUS_BY_TYPE_KEY: dict[str, int] = {
    **dict.fromkeys(
        (
            "ClientNotFoundException",
            "ClientTypeInvalidException",
            "CollectionNotFoundException",
            "DebugEntryNotFoundException",
            "RequestNotFoundException",
            # Ours: an unknown route or blob, in the same body shape.
            "ResourceNotFoundException",
            "BlobNotFoundException",
        ),
        404,
    ),
    **dict.fromkeys(
        (
            "DebugEntryExistsException",
            "DebugEntryNotDeletedException",
            "RequestExistsException",
            "RequestNotDeletedException",
            "RequestUpdateConflictException",
        ),
        409,
    ),
    **dict.fromkeys(
        (
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
            # Ours: an uploaded blob or block whose content does not hash to its name.
            "BlobHashMismatchException",
        ),
        400,
    ),
    "NotAuthorizedException": 401,
    "ArtifactBillingException": 402,
    **dict.fromkeys(("RequestSealedException", "PackageExtensionNotInstalledException"), 403),
    # Ours: a valid token without the scope the operation needs.
    "AccessDeniedException": 403,
    "MethodNotAllowedException": 405,
    "RequestEntityTooLargeException": 413,
    "DebugEntryNotCreatedException": 500,
    "ServiceUnavailableException": 503,
    "InternalServerErrorException": 500,
}


class ServiceError(Exception):
    """An API failure with its Azure ``typeKey``; the status follows from the key."""

    def __init__(self, type_key: str, message: str) -> None:
        if type_key not in STATUS_BY_TYPE_KEY:
            raise ValueError(f"unknown typeKey {type_key!r}")
        super().__init__(message)
        self.type_key = type_key
        self.message = message

    @property
    def status(self) -> int:
        return STATUS_BY_TYPE_KEY[self.type_key]

    def header(self) -> str:
        """The message for ``X-TFS-ServiceError`` (URL-encoded, as VSS servers send it)."""
        return urllib.parse.quote(self.message, safe="")


def wrapped_exception(error: ServiceError) -> dict[str, Any]:
    """The VSS WrappedException body for ``error``."""
    return {
        "$id": "1",
        "innerException": None,
        "message": error.message,
        "typeName": f"{_NAMESPACE}.{error.type_key}, {_NAMESPACE}",
        "typeKey": error.type_key,
        "errorCode": 0,
        "eventId": 3000,
    }
