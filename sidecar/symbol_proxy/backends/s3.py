"""The ``s3`` backend: an S3 bucket, or any S3-compatible store, read through aiobotocore.

Why the SDK rather than presigned URLs over our own HTTP client (Symbolicator's way): the SDK owns
request signing, the whole AWS credential chain (static keys, environment, profiles, web identity
tokens for IRSA, ECS/EKS container credentials, instance profiles, with refresh) and S3's error
codes. Users of Symbolicator have asked for those credentials for years (symbolicator#143); we get
them by not choosing a provider ourselves unless told to.

Every object is opened with one plain GET, which streams at once and tells the size. Below
``upstream.s3_parallel_threshold`` that GET is the whole download: one request, one connection, no
store reading the object again for a range. From the threshold on, the object is read as ranged
parts of ``s3_part_size``: the first part comes from the opening GET (whose connection is then
dropped), and the next ``s3_part_concurrency - 1`` parts are prefetched while it streams. Each
prefetching part writes into a queue bounded to ``part_buffer`` bytes, so memory stays flat however
large the object is; parts are yielded strictly in order. Every later request (a part, or the rest
of a body that broke off) carries ``If-Match`` with the first response's ETag, so an object replaced
mid-download fails instead of mixing versions. A body that breaks off is re-requested from where it
stopped (up to ``retries`` times). At the end the total length is checked, and so is the ETag when it
is a plain MD5 (no ``-`` from a multipart upload, no SSE-KMS/SSE-C, whose ETags are not digests of
the content); a mismatch is ``Malformed``. A consumer that keeps the bytes anyway (the cache) may
take the MD5 check over with ``defer_md5()`` and hash its copy, off the streaming path.

Retries of whole requests are left to botocore's "standard" mode (exponential backoff with jitter,
throttling and 5xx only, never 403/404) with ``retries + 1`` attempts. Errors that come out after
that are raised with ``retryable = False``: the SDK has already retried them, and the resolver's own
retry loop would otherwise multiply the attempts.

Writes (publishing) buffer up to ``WRITE_PART_SIZE`` bytes: a smaller body is one PutObject, a larger
one a multipart upload of parts of that size (uploaded one after another, so memory holds one part),
aborted when anything fails, so no part ever becomes an object. ``create`` sends ``If-None-Match: *``
with the PutObject or the CompleteMultipartUpload, S3's conditional write: of two racing creators
exactly one succeeds, the other gets ``AlreadyExists``. A multipart upload cut off by a crash (no
abort ran) stays in the bucket, invisible but billed, until ``remove_incomplete`` (garbage
collection) aborts it; ``list`` pages through ListObjectsV2. ``copy`` is one server-side CopyObject (objects
up to 5 GiB, S3's limit for it).

Error codes follow Symbolicator (``shared/specs/layouts.md`` §10.5): ``NoSuchKey``/``NoSuchBucket``/
``NotFound`` and empty objects are ``NotFound``; 401/403 and the signature/credential codes are
``PermissionDenied``. S3 answers ``AccessDenied`` also for a *missing* key when the credentials lack
``s3:ListBucket``; the resolver treats ``PermissionDenied`` as a miss for the client and counts it
apart. Each (operation, code) refusal is logged at WARNING once per backend, then at DEBUG, naming the
source and the S3 error code and never a key value.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import botocore.exceptions
from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioContainerProvider, AioCredentialResolver
from aiobotocore.session import AioSession

from symbol_proxy import locations
from symbol_proxy.backends import base
from symbol_proxy.config import ConfigError, S3Source, UpstreamSettings

__all__ = ["S3Backend"]

log = logging.getLogger(__name__)

MIN_PART_SIZE = 256 * 1024
"""The smallest part size (``upstream.s3_part_size`` has the same lower bound)."""
READ_SIZE = 1024 * 1024
"""Largest chunk read from a response body at a time (a read returns what has arrived, up to this)."""
DEFAULT_PART_BUFFER = 8 * 1024**2
"""Bytes a prefetching part may hold before it waits for the reader: the memory bound per part."""

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "AuthorizationHeaderMalformed",
        "AuthorizationQueryParametersError",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
    }
)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_MD5_ETAG = re.compile(r"^[0-9a-fA-F]{32}$")


def _parse_content_range(value: str | None) -> tuple[int, int, int] | None:
    match = _CONTENT_RANGE.match(value or "")
    if not match or match.group(3) == "*":
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def _md5_etag(response: Mapping[str, Any]) -> str | None:
    """The ETag as an MD5 of the content, or ``None`` when S3 does not promise that."""
    etag = str(response.get("ETag") or "").strip('"')
    if not _MD5_ETAG.match(etag):
        return None  # multipart uploads ("<md5>-<parts>") and odd stores
    if response.get("SSECustomerAlgorithm") or str(response.get("ServerSideEncryption", "")).startswith(
        "aws:kms"
    ):
        return None  # S3 documents these ETags as not being an MD5 of the data
    return etag.lower()


def _final(exc: base.BackendError) -> base.BackendError:
    """Mark an error that botocore has already retried, so the resolver does not try again."""
    exc.retryable = False
    return exc


class S3Backend:
    """Read access to one S3 bucket (and prefix) with one lazily created aiobotocore client."""

    kind = "s3"

    def __init__(
        self,
        source: S3Source,
        settings: UpstreamSettings,
        *,
        part_size: int | None = None,
        concurrency: int | None = None,
        part_buffer: int = DEFAULT_PART_BUFFER,
        parallel_threshold: int | None = None,
    ) -> None:
        """``part_size``, ``concurrency`` and ``parallel_threshold`` default to the ``s3_*`` settings."""
        part_size = settings.s3_part_size if part_size is None else part_size
        concurrency = settings.s3_part_concurrency if concurrency is None else concurrency
        if parallel_threshold is None:
            parallel_threshold = settings.s3_parallel_threshold
        if bool(source.access_key.get_secret_value()) != bool(source.secret_key.get_secret_value()):
            raise ConfigError(
                f"sources: source {source.id!r}: access_key and secret_key must be set together"
            )
        if part_size < MIN_PART_SIZE or concurrency < 1 or part_buffer < 1:
            raise ValueError("part_size must be at least 256 KiB and concurrency/part_buffer positive")
        self._source = source
        self._settings = settings
        self.part_size = part_size
        self.concurrency = concurrency
        self.part_buffer = part_buffer
        self.parallel_threshold = parallel_threshold
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._lock = asyncio.Lock()
        self._reported: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"<S3Backend source={self._source.id!r} bucket={self._source.bucket!r}>"

    # ---------------------------------------------------------------------------------------------
    # The client

    def _client_arguments(self) -> dict[str, Any]:
        source, settings = self._source, self._settings
        arguments: dict[str, Any] = {}
        s3_options: dict[str, Any] = {}
        if isinstance(source.region, tuple):
            arguments["region_name"], arguments["endpoint_url"] = source.region
            s3_options["addressing_style"] = "path"  # S3-compatible stores rarely do virtual hosts
        else:
            arguments["region_name"] = source.region
        if source.aws_credentials_provider == "static" and source.access_key.get_secret_value():
            arguments["aws_access_key_id"] = source.access_key.get_secret_value()
            arguments["aws_secret_access_key"] = source.secret_key.get_secret_value()
        arguments["config"] = AioConfig(
            connect_timeout=settings.connect_timeout,
            # A socket-level backstop; the head and read timeouts proper are applied around calls.
            read_timeout=max(settings.head_timeout, settings.read_timeout),
            retries={"mode": "standard", "total_max_attempts": settings.retries + 1},
            # Every download may hold ``concurrency`` connections (its prefetching parts wait on full
            # buffers); a smaller pool could leave current parts waiting behind them.
            max_pool_connections=settings.max_concurrent_downloads * self.concurrency,
            user_agent_extra=settings.user_agent,
            s3=s3_options or None,
            # Our ranged reads cannot be checked against a whole-object checksum; we verify the MD5.
            response_checksum_validation="when_required",
            request_checksum_calculation="when_required",
        )
        return arguments

    async def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                session = AioSession()
                if self._source.aws_credentials_provider == "container":
                    # Only the ECS/EKS container endpoint (AWS_CONTAINER_CREDENTIALS_*), as asked.
                    resolver = AioCredentialResolver(providers=[AioContainerProvider()])
                    session.register_component("credential_provider", resolver)
                context = session.create_client("s3", **self._client_arguments())
                self._client = await self._stack.enter_async_context(context)
        return self._client

    async def aclose(self) -> None:
        async with self._lock:
            self._client = None
            await self._stack.aclose()
            self._stack = contextlib.AsyncExitStack()

    # ---------------------------------------------------------------------------------------------
    # Errors

    def _report(self, operation: str, code: str, key: str) -> None:
        """Log a refusal: at WARNING the first time per (operation, code), then at DEBUG."""
        first = (operation, code) not in self._reported
        self._reported.add((operation, code))
        if not first:
            log.debug("source %s: S3 %s refused (%s): %s", self._source.id, operation, code, key)
            return
        hint = "check the source's credentials and the bucket policy"
        if code == "AccessDenied":
            hint += " (S3 also answers AccessDenied for a missing key when s3:ListBucket is not granted)"
        log.warning(
            "source %s: S3 %s on bucket %r was refused (%s); %s",
            self._source.id,
            operation,
            self._source.bucket,
            code,
            hint,
        )

    def _translate(self, exc: BaseException, operation: str, key: str) -> base.BackendError:
        """One place where botocore's, aiohttp's and asyncio's errors become ours."""
        where = f"s3://{self._source.bucket}/{key}"
        if isinstance(exc, base.BackendError):
            return exc
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _NOT_FOUND_CODES or (status == 404 and not code):
                return base.NotFound(f"{where}: {code or 'not found'}")
            if code in _DENIED_CODES or status in (401, 403):
                self._report(operation, code or str(status), key)
                return base.PermissionDenied(
                    f"source {self._source.id}: S3 {operation} refused ({code or status})"
                )
            if code in ("PreconditionFailed", "412"):
                return base.UpstreamError(f"{where}: the object changed during the download", status=412)
            retryable = status is None or status >= 500 or status == 429
            return _final(
                base.UpstreamError(
                    f"{where}: S3 {operation} failed ({code or status})", status=status, retryable=retryable
                )
            )
        if isinstance(
            exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
        ):
            self._report(operation, "NoCredentials", key)
            return base.PermissionDenied(f"source {self._source.id}: no usable AWS credentials found")
        if isinstance(exc, botocore.exceptions.CredentialRetrievalError):
            self._report(operation, "CredentialRetrievalError", key)
            return base.PermissionDenied(f"source {self._source.id}: AWS credentials could not be retrieved")
        if isinstance(
            exc, botocore.exceptions.ConnectTimeoutError | botocore.exceptions.ReadTimeoutError | TimeoutError
        ):
            return _final(base.UpstreamTimeout(f"{where}: S3 {operation} timed out"))
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return _final(base.UpstreamError(f"{where}: S3 {operation} failed ({type(exc).__name__})"))
        return _final(base.UpstreamError(f"{where}: S3 {operation} failed ({type(exc).__name__})"))

    # ---------------------------------------------------------------------------------------------
    # Reading

    async def _get_object(self, key: str, deadline: float, **params: Any) -> dict[str, Any]:
        """One GetObject call, bounded by the head timeout and the download's deadline."""
        client = await self._get_client()
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(min(self._settings.head_timeout, remaining)):
                response: dict[str, Any] = await client.get_object(
                    Bucket=self._source.bucket, Key=key, **params
                )
        except Exception as exc:
            raise self._translate(exc, "GetObject", key) from None
        return response

    async def open(self, location: str, *, checksum: str | None = None) -> base.ObjectStream:
        """Open ``location`` below the prefix with one GET of the whole object."""
        key = locations.join_key(self._source.prefix, location)
        deadline = asyncio.get_running_loop().time() + self._settings.total_timeout
        first = await self._get_object(key, deadline)
        size = int(first.get("ContentLength") or 0)
        content_range = _parse_content_range(first.get("ContentRange"))
        if content_range is not None and content_range != (0, size - 1, size):
            # We asked for no range: a partial answer is not the object.
            first["Body"].close()
            raise base.Malformed(f"s3://{self._source.bucket}/{key}: unexpected Content-Range")
        if size == 0:
            # As in Symbolicator: an empty object is no debug file, and not worth caching as one.
            first["Body"].close()
            raise base.NotFound(f"s3://{self._source.bucket}/{key}: empty object")
        etag = first.get("ETag")
        in_parts = size >= self.parallel_threshold and size > self.part_size
        return _RangedStream(
            self,
            key,
            first,
            base.ObjectInfo(size=size, etag=etag),
            part_size=self.part_size if in_parts else size,
            md5=_md5_etag(first),
            deadline=deadline,
        )

    # ---------------------------------------------------------------------------------------------
    # Writing (publishing)

    async def _call(
        self, operation: str, key: str, *, listing: bool = False, **params: Any
    ) -> dict[str, Any]:
        """One S3 call on the bucket, bounded by the total timeout, with its errors translated; on
        the object ``key``, or with ``listing`` on every key starting with it (a ``Prefix``)."""
        client = await self._get_client()
        method = getattr(client, _SNAKE[operation])
        params["Prefix" if listing else "Key"] = key
        try:
            async with asyncio.timeout(self._settings.total_timeout):
                response: dict[str, Any] = await method(Bucket=self._source.bucket, **params)
        except Exception as exc:
            if params.get("IfNoneMatch") == "*" and _error_code(exc) in ("PreconditionFailed", "412"):
                raise base.AlreadyExists(f"s3://{self._source.bucket}/{key}") from None
            raise self._translate(exc, operation, key) from None
        return response

    async def _upload(
        self, location: str, chunks: AsyncIterator[bytes], size: int | None, *, only_if_absent: bool
    ) -> None:
        key = locations.join_key(self._source.prefix, location)
        condition: dict[str, Any] = {"IfNoneMatch": "*"} if only_if_absent else {}
        buffer = bytearray()
        parts: list[dict[str, Any]] = []
        upload_id: str | None = None
        written = 0

        async def send_part(data: bytes) -> None:
            assert upload_id is not None
            number = len(parts) + 1
            response = await self._call("UploadPart", key, UploadId=upload_id, PartNumber=number, Body=data)
            parts.append({"ETag": response["ETag"], "PartNumber": number})

        try:
            async for chunk in chunks:
                written += len(chunk)
                if size is not None and written > size:
                    raise base.Malformed(
                        f"s3://{self._source.bucket}/{key}: more than the declared {size} bytes"
                    )
                buffer += chunk
                while len(buffer) >= WRITE_PART_SIZE:
                    if upload_id is None:
                        upload_id = (await self._call("CreateMultipartUpload", key))["UploadId"]
                    part = bytes(buffer[:WRITE_PART_SIZE])
                    del buffer[:WRITE_PART_SIZE]
                    await send_part(part)
            if size is not None and written != size:
                raise base.Malformed(
                    f"s3://{self._source.bucket}/{key}: {written} bytes, not the declared {size}"
                )
            if upload_id is None:
                await self._call("PutObject", key, Body=bytes(buffer), **condition)
                return
            if buffer:
                await send_part(bytes(buffer))
            await self._call(
                "CompleteMultipartUpload",
                key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **condition,
            )
            upload_id = None
        finally:
            if upload_id is not None:
                with contextlib.suppress(base.BackendError):
                    await asyncio.shield(self._call("AbortMultipartUpload", key, UploadId=upload_id))

    async def put(self, location: str, chunks: AsyncIterator[bytes], *, size: int | None = None) -> None:
        await self._upload(location, chunks, size, only_if_absent=False)

    async def create(self, location: str, chunks: AsyncIterator[bytes], *, size: int | None = None) -> None:
        await self._upload(location, chunks, size, only_if_absent=True)

    async def head(self, location: str) -> base.ObjectInfo:
        key = locations.join_key(self._source.prefix, location)
        response = await self._call("HeadObject", key)
        return base.ObjectInfo(size=int(response.get("ContentLength") or 0), etag=response.get("ETag"))

    async def copy(self, source: str, destination: str) -> None:
        source_key = locations.join_key(self._source.prefix, source)
        key = locations.join_key(self._source.prefix, destination)
        await self._call("CopyObject", key, CopySource={"Bucket": self._source.bucket, "Key": source_key})

    async def delete(self, location: str) -> None:
        key = locations.join_key(self._source.prefix, location)
        try:
            await self._call("DeleteObject", key)
        except base.NotFound:
            pass

    # ---------------------------------------------------------------------------------------------
    # Listing (garbage collection)

    async def list(self, prefix: str) -> AsyncIterator[base.Listed]:
        root = len(locations.join_key(self._source.prefix, ""))
        params: dict[str, Any] = {}
        while True:
            key = locations.join_key(self._source.prefix, prefix)
            page = await self._call("ListObjectsV2", key, listing=True, **params)
            for item in page.get("Contents") or []:
                yield base.Listed(str(item["Key"])[root:], int(item.get("Size") or 0), item["LastModified"])
            if not page.get("IsTruncated"):
                return
            params = {"ContinuationToken": page["NextContinuationToken"]}

    async def remove_incomplete(self, before: datetime.datetime) -> int:
        # The whole bucket's uploads, filtered here: MinIO lists uploads only for an empty prefix or
        # one exact key, not below a folder prefix (S3 does both); unfinished uploads are few.
        root = locations.join_key(self._source.prefix, "")
        removed = 0
        params: dict[str, Any] = {}
        while True:
            page = await self._call("ListMultipartUploads", "", listing=True, **params)
            for upload in page.get("Uploads") or []:
                if not str(upload["Key"]).startswith(root) or upload["Initiated"] >= before:
                    continue  # not ours, or may be an upload in progress
                try:
                    await self._call("AbortMultipartUpload", upload["Key"], UploadId=upload["UploadId"])
                except (base.NotFound, base.UpstreamError) as exc:
                    if isinstance(exc, base.UpstreamError) and exc.status != 404:
                        raise
                    continue  # completed or aborted meanwhile (NoSuchUpload)
                removed += 1
            if not page.get("IsTruncated"):
                return removed
            params = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}


WRITE_PART_SIZE = 8 * 1024**2
"""Bytes per part of a multipart upload (S3 wants at least 5 MiB for every part but the last)."""

_SNAKE = {
    "PutObject": "put_object",
    "HeadObject": "head_object",
    "CopyObject": "copy_object",
    "DeleteObject": "delete_object",
    "CreateMultipartUpload": "create_multipart_upload",
    "UploadPart": "upload_part",
    "CompleteMultipartUpload": "complete_multipart_upload",
    "AbortMultipartUpload": "abort_multipart_upload",
    "ListObjectsV2": "list_objects_v2",
    "ListMultipartUploads": "list_multipart_uploads",
}


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "")
    return ""


_END = object()


class _RangedStream:
    """The body of one object: the opening GET's body, or consecutive ranged parts with bounded
    prefetching (the first of them read from the opening GET)."""

    def __init__(
        self,
        backend: S3Backend,
        key: str,
        first: dict[str, Any],
        info: base.ObjectInfo,
        *,
        part_size: int,
        md5: str | None,
        deadline: float,
    ) -> None:
        assert info.size is not None
        self._backend = backend
        self._key = key
        self._info = info
        self._md5 = md5
        self._deadline = deadline
        self._parts = [
            (start, min(start + part_size, info.size) - 1) for start in range(0, info.size, part_size)
        ]
        self._first: dict[str, Any] | None = first
        self._bodies: set[Any] = {first["Body"]}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._queues: dict[int, asyncio.Queue[object]] = {}
        self._started = False
        self._closed = False
        self._md5_deferred = False

    @property
    def info(self) -> base.ObjectInfo:
        return self._info

    def _where(self) -> str:
        return f"s3://{self._backend._source.bucket}/{self._key}"

    def defer_md5(self) -> str | None:
        """Stop checking the body against its MD5 ETag, and return that MD5 for the caller to check."""
        self._md5_deferred = True
        return self._md5

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._started:
            raise RuntimeError("the body of an object can be read only once")
        self._started = True
        digest = hashlib.md5(usedforsecurity=False) if self._md5 else None
        received = 0
        try:
            for index in range(len(self._parts)):
                self._prefetch(index + 1)
                # The first part, and every part when nothing is prefetched (concurrency 1), is read
                # directly; prefetched parts come out of their queues.
                parts = self._drain(index) if index in self._tasks else self._read_part(index, self._first)
                self._first = None
                async for chunk in parts:
                    received += len(chunk)
                    if digest is not None and not self._md5_deferred:
                        digest.update(chunk)
                    yield chunk
            if received != self._info.size:
                raise base.Malformed(f"{self._where()}: got {received} bytes, expected {self._info.size}")
            if digest is not None and not self._md5_deferred and digest.hexdigest() != self._md5:
                raise base.Malformed(f"{self._where()}: content does not match its ETag (MD5)")
        finally:
            await self.aclose()

    def _prefetch(self, start: int) -> None:
        """Keep ``concurrency - 1`` parts after the current one in flight."""
        maxsize = max(1, self._backend.part_buffer // READ_SIZE)
        for index in range(start, min(start + self._backend.concurrency - 1, len(self._parts))):
            if index not in self._tasks:
                queue: asyncio.Queue[object] = asyncio.Queue(maxsize=maxsize)
                self._queues[index] = queue
                self._tasks[index] = asyncio.create_task(self._pump(index, queue))

    async def _pump(self, index: int, queue: asyncio.Queue[object]) -> None:
        try:
            async for chunk in self._read_part(index, None):
                await queue.put(chunk)
        except base.BackendError as exc:
            await queue.put(exc)
        else:
            await queue.put(_END)

    async def _drain(self, index: int) -> AsyncIterator[bytes]:
        queue = self._queues[index]
        while True:
            item = await queue.get()
            if item is _END:
                break
            if isinstance(item, base.BackendError):
                raise item
            assert isinstance(item, bytes)
            yield item
        del self._queues[index]

    async def _read_part(self, index: int, response: dict[str, Any] | None) -> AsyncIterator[bytes]:
        """The bytes of one part; a body that breaks off is resumed with a new ranged request."""
        backend = self._backend
        settings = backend._settings
        loop = asyncio.get_running_loop()
        position, end = self._parts[index]
        failures = 0
        while position <= end:
            if response is None:
                response = await backend._get_object(
                    self._key, self._deadline, Range=f"bytes={position}-{end}", IfMatch=self._info.etag or "*"
                )
                self._bodies.add(response["Body"])
                got = _parse_content_range(response.get("ContentRange"))
                if got is None or got[0] != position or got[2] != self._info.size:
                    raise base.Malformed(f"{self._where()}: the store answered a different range")
            body = response["Body"]
            try:
                while position <= end:
                    remaining = self._deadline - loop.time()
                    if remaining <= 0:
                        raise base.UpstreamTimeout(f"{self._where()}: download took too long")
                    async with asyncio.timeout(min(settings.read_timeout, remaining)):
                        data = await body.read(min(READ_SIZE, end + 1 - position))
                    if not data:
                        raise botocore.exceptions.IncompleteReadError(
                            actual_bytes=position, expected_bytes=end + 1
                        )
                    position += len(data)
                    yield data
            except (botocore.exceptions.BotoCoreError, aiohttp.ClientError, OSError) as exc:
                # Streaming broke off (reset, timeout, short body): resume where it stopped.
                failures += 1
                if failures > settings.retries:
                    raise backend._translate(exc, "GetObject", self._key) from None
                log.debug("%s: part %d broke off (%s), resuming", self._where(), index, type(exc).__name__)
            finally:
                body.close()
                self._bodies.discard(body)
            response = None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for body in list(self._bodies):
            body.close()
        self._bodies.clear()
        self._queues.clear()
