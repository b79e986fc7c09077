"""The ``gcs`` backend: a Google Cloud Storage bucket, read with the JSON API over aiohttp.

One media download per object: ``GET {api_root}/storage/v1/b/{bucket}/o/{object}?alt=media`` with the
object name quoted completely (``/`` becomes ``%2F``), as the JSON API requires. We talk HTTP
ourselves instead of using gcloud-aio-storage because a download is a single GET, and doing it here
keeps the proxy's one session, its timeouts and the error mapping in one module (the style of
Symbolicator's ``gcs.rs``). Tokens come from ``gcp_auth`` (google-auth, refreshed in threads): a
service account, a verbatim bearer token, or Application Default Credentials when the source names
neither (Symbolicator has no ADC; users asked for it, symbolicator#561).

``api_root`` points the backend at an emulator; ``STORAGE_EMULATOR_HOST`` does the same when no
``api_root`` is given, and then, as gcloud-aio does, no token is fetched or sent.

Errors follow ``shared/specs/layouts.md`` §10.5: 404 (and other 4xx) is ``NotFound``, 401/403
``PermissionDenied``, 429 and 5xx ``UpstreamError`` (retryable). A 401 with a cached token is retried
once with a fresh one; no read is retried here otherwise: aiohttp retries nothing by default, and
the resolver's retry loop wraps every backend (writes: below). Refusals are logged once per
backend, operation and code.

**Writes** (publishing, ``WritableBackend`` and ``ListableBackend``) use the same JSON API. A body is
buffered up to ``WRITE_PART_SIZE``: a smaller one is one media upload (``uploadType=media``); a
larger one a resumable upload whose chunks of that size are sent one after another (memory holds one
chunk), the last one with the total size, which is when GCS makes the object; anything failing before
that cancels the session (``DELETE`` of its URI), and a session nobody finishes or cancels (a crash)
expires by itself after a week, never an object. ``create`` adds ``ifGenerationMatch=0``, GCS's
"only if no live object has this name": of two racing creators exactly one succeeds, the other gets
412, which is ``AlreadyExists``. ``copy`` is a server-side ``rewriteTo`` (repeated with its
``rewriteToken`` until done, as large objects need); ``delete`` a ``DELETE``; ``head`` the object's
metadata; ``list`` pages through the objects with a ``prefix``. GCS cannot list resumable sessions,
so ``remove_incomplete`` has nothing to remove (they expire). Bodies are checked against a declared
size before the last request, so a wrong size stores nothing.

All responses are translated in one place (``_error``); a write's other 4xx is an ``UpstreamError``
that is not retried (a bad request stays bad), a read's is ``NotFound``. aiohttp's own errors are
translated by ``httpio.send``. The 401 retry with a fresh token holds for every call. Publishing
calls (uploads but the chunks of a resumable one, head, copy, delete, list) are retried here on 429,
5xx and timeouts, ``upstream.retries`` times with a jittered exponential backoff, as botocore
retries S3's; reads are not (the resolver retries them).

``HttpBodyStream`` is also used by the Sentry backend: an aiohttp response body with the read
timeout, the download deadline and aiohttp's errors translated.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import logging
import os
import random
import re
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from yarl import URL

from symbol_proxy import locations
from symbol_proxy.backends import base, gcp_auth
from symbol_proxy.backends.httpio import HttpBodyStream, error_detail, send
from symbol_proxy.config import GcsSource, UpstreamSettings

__all__ = ["DEFAULT_API_ROOT", "WRITE_PART_SIZE", "GcsBackend"]

log = logging.getLogger(__name__)

DEFAULT_API_ROOT = "https://storage.googleapis.com"
WRITE_PART_SIZE = 8 * 1024**2
"""Bytes per chunk of a resumable upload, and the largest body sent as one media upload. GCS wants
every chunk but the last to be a multiple of 256 KiB; 8 MiB is also what its own clients send."""
RETRY_BACKOFF = 0.2
"""Seconds before the first retry of a publishing call; doubled for each further one."""
_RANGE = re.compile(r"^bytes=0-(\d+)$")
_FRACTION = re.compile(r"(\.\d{6})\d+")


def _goog_md5(response: aiohttp.ClientResponse) -> str | None:
    """The MD5 from ``x-goog-hash`` (base64) as hex, when the body is sent as stored."""
    if response.headers.get("Content-Encoding"):
        return None
    for header in response.headers.getall("x-goog-hash", []):
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            if name == "md5" and value:
                try:
                    return base64.b64decode(value + "=" * (-len(value) % 4)).hex()
                except ValueError:
                    return None
    return None


def _parse_time(value: object) -> datetime.datetime:
    """An RFC 3339 time of the JSON API (``updated``); more than microseconds are dropped."""
    text = _FRACTION.sub(r"\1", str(value))
    parsed = datetime.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


class GcsBackend:
    """One GCS bucket (and prefix), over a borrowed aiohttp session or, without one, its own."""

    kind = "gcs"

    def __init__(
        self,
        source: GcsSource,
        settings: UpstreamSettings,
        *,
        session: aiohttp.ClientSession | None = None,
        token_url: str = gcp_auth.DEFAULT_TOKEN_URL,
        api_root: str = DEFAULT_API_ROOT,
    ) -> None:
        self._source = source
        self._settings = settings
        self._session = session
        self._own_session = session is None
        """Made on first use and closed by ``aclose`` (the publishing service and the operator have
        no session to lend; the proxy does)."""
        self._reported: set[tuple[str, str]] = set()
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        self.auth: gcp_auth.TokenSource | None
        if emulator and api_root == DEFAULT_API_ROOT:
            api_root = emulator if "://" in emulator else f"http://{emulator}"
            self.auth = None  # emulators take no credentials (gcloud-aio's behaviour)
        elif source.private_key is not None and source.client_email is not None:
            self.auth = gcp_auth.ServiceAccountTokens(
                source.client_email, source.private_key.get_secret_value(), token_url, settings
            )
        elif source.bearer_token is not None:
            self.auth = gcp_auth.StaticToken(source.bearer_token.get_secret_value())
        else:
            self.auth = gcp_auth.ApplicationDefaultTokens(settings)
        self.api_root = api_root.rstrip("/")

    def __repr__(self) -> str:
        return f"<GcsBackend source={self._source.id!r} bucket={self._source.bucket!r}>"

    def _report(self, operation: str, code: str, detail: str) -> None:
        first = (operation, code) not in self._reported
        self._reported.add((operation, code))
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "source %s: GCS %s for bucket %r was refused (%s)%s",
            self._source.id,
            operation,
            self._source.bucket,
            code,
            "; check the source's credentials and the bucket's IAM bindings" if first else f": {detail}",
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    # ---------------------------------------------------------------------------------------------
    # URLs: object names are quoted completely (``/`` as ``%2F``), as the JSON API requires

    def _object_url(self, key: str, suffix: str = "", **query: str) -> URL:
        bucket = urllib.parse.quote(self._source.bucket, safe="")
        name = urllib.parse.quote(key, safe="")
        encoded = f"?{urllib.parse.urlencode(query)}" if query else ""
        return URL(f"{self.api_root}/storage/v1/b/{bucket}/o/{name}{suffix}{encoded}", encoded=True)

    def _bucket_url(self, path: str, **query: str) -> URL:
        bucket = urllib.parse.quote(self._source.bucket, safe="")
        return URL(
            f"{self.api_root}{path.format(bucket=bucket)}?{urllib.parse.urlencode(query)}", encoded=True
        )

    def url_for(self, key: str) -> URL:
        return self._object_url(key, alt="media")

    async def _token(self) -> str | None:
        if self.auth is None:
            return None
        try:
            return await self.auth.token()
        except (gcp_auth.TokenRefused, gcp_auth.BadCredentials) as exc:
            self._report("token", exc.code, type(self.auth).__name__)
            raise

    # ---------------------------------------------------------------------------------------------
    # One call, and the one place where GCS's answers become our errors

    async def _call(
        self,
        method: str,
        url: URL,
        key: str,
        *,
        operation: str,
        ok: tuple[int, ...] = (200,),
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        create: bool = False,
        retry: bool = False,
    ) -> aiohttp.ClientResponse:
        """Send one request with a token (a fresh one once after a 401) and return the response when
        its status is ``ok``; raise the translated error otherwise. Reads wait for headers within the
        head timeout; writes, whose body is sent first, within the deadline (the total timeout).

        With ``retry`` (the store's calls for publishing, which no resolver retries, as botocore
        retries S3's), a retryable failure (429, 5xx, no answer) is tried again up to
        ``upstream.retries`` times after a jittered backoff, within the deadline."""
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self._settings.total_timeout
        attempts = self._settings.retries + 1 if retry else 1
        for attempt in range(attempts):
            try:
                return await self._attempt(method, url, key, operation, ok, data, headers, deadline, create)
            except base.BackendError as exc:
                await self._before_retry(exc, attempt, attempts, deadline, f"{operation} failed")
        raise AssertionError("unreachable")

    async def _before_retry(
        self, exc: base.BackendError, attempt: int, attempts: int, deadline: float, what: str
    ) -> None:
        """Wait a jittered backoff after failed try ``attempt`` (from 0) of ``attempts``; raise
        ``exc`` instead when it is not retryable, or no try or time is left."""
        delay = RETRY_BACKOFF * 2**attempt * random.uniform(0.5, 1.0)
        if (
            not exc.retryable
            or attempt + 1 == attempts
            or asyncio.get_running_loop().time() + delay >= deadline
        ):
            raise exc
        log.debug("%r: %s (%s), trying again", self, what, exc)
        await asyncio.sleep(delay)

    async def _attempt(
        self,
        method: str,
        url: URL,
        key: str,
        operation: str,
        ok: tuple[int, ...],
        data: bytes | None,
        headers: Mapping[str, str] | None,
        deadline: float,
        create: bool,
    ) -> aiohttp.ClientResponse:
        where = f"gs://{self._source.bucket}/{key}"
        wait = None if method == "GET" else max(deadline - asyncio.get_running_loop().time(), 0.0)
        for attempt in range(2):
            token = await self._token()
            sent = {"User-Agent": self._settings.user_agent, **(headers or {})}
            if token is not None:
                sent["Authorization"] = f"Bearer {token}"
            response = await send(
                self._client(),
                url,
                self._settings,
                deadline,
                headers=sent,
                where=where,
                method=method,
                data=data,
                wait=wait,
            )
            if response.status in ok:
                return response
            if (
                response.status == 401
                and attempt == 0
                and token is not None
                and self.auth
                and self.auth.refreshable
            ):
                response.release()
                self.auth.invalidate(token)  # revoked or expired early: one more try with a new token
                continue
            break
        raise await self._error(response, operation, key, create=create)

    async def _error(
        self, response: aiohttp.ClientResponse, operation: str, key: str, *, create: bool
    ) -> base.BackendError:
        where = f"gs://{self._source.bucket}/{key}"
        status = response.status
        if status in (401, 403):
            code = await error_detail(response)
            self._report(operation, f"{status} {code}", key)
            return base.PermissionDenied(
                f"source {self._source.id}: GCS {operation} refused ({status} {code})"
            )
        if status == 412 and create:
            response.release()
            return base.AlreadyExists(where)
        if status == 429 or status >= 500:
            response.release()
            return base.UpstreamError(f"{where}: GCS {operation} answered {status}", status=status)
        if status == 404 or operation == "download":
            response.release()
            return base.NotFound(f"{where}: GCS answered {status}")
        code = await error_detail(response)
        return base.UpstreamError(
            f"{where}: GCS {operation} failed ({status} {code})", status=status, retryable=False
        )

    async def _json(self, response: aiohttp.ClientResponse, key: str) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._settings.read_timeout):
                payload = json.loads(await response.read())
        except (TimeoutError, aiohttp.ClientError, ValueError):
            payload = None
        finally:
            response.release()
        if not isinstance(payload, dict):
            raise base.UpstreamError(f"gs://{self._source.bucket}/{key}: GCS answered no JSON object")
        return payload

    # ---------------------------------------------------------------------------------------------
    # Reading

    async def open(self, location: str, *, checksum: str | None = None) -> base.ObjectStream:
        key = locations.join_key(self._source.prefix, location)
        deadline = asyncio.get_running_loop().time() + self._settings.total_timeout
        response = await self._call("GET", self.url_for(key), key, operation="download", deadline=deadline)
        return self._stream(response, deadline, f"gs://{self._source.bucket}/{key}")

    def _stream(self, response: aiohttp.ClientResponse, deadline: float, where: str) -> HttpBodyStream:
        size = response.content_length if not response.headers.get("Content-Encoding") else None
        info = base.ObjectInfo(size=size, etag=response.headers.get("ETag"))
        return HttpBodyStream(response, info, self._settings, deadline, where=where, md5=_goog_md5(response))

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if self._own_session and session is not None:
            await session.close()
        elif not self._own_session:
            self._session = session  # borrowed: its owner closes it

    # ---------------------------------------------------------------------------------------------
    # Writing (publishing)

    async def _upload(
        self, location: str, chunks: AsyncIterator[bytes], size: int | None, *, only_if_absent: bool
    ) -> None:
        key = locations.join_key(self._source.prefix, location)
        where = f"gs://{self._source.bucket}/{key}"
        condition = {"ifGenerationMatch": "0"} if only_if_absent else {}
        deadline = asyncio.get_running_loop().time() + self._settings.total_timeout
        buffer = bytearray()
        session: URL | None = None
        sent = written = 0
        try:
            async for chunk in chunks:
                written += len(chunk)
                if size is not None and written > size:
                    raise base.Malformed(f"{where}: more than the declared {size} bytes")
                buffer += chunk
                # Strictly more than a chunk: the last request must carry bytes and the total.
                while len(buffer) > WRITE_PART_SIZE:
                    if session is None:
                        session = await self._start_resumable(key, condition, deadline)
                    sent, _ = await self._push(session, key, buffer, sent, None, deadline)
            if size is not None and written != size:
                raise base.Malformed(f"{where}: {written} bytes, not the declared {size}")
            if session is None:
                (await self._insert(key, "media", condition, bytes(buffer), deadline)).release()
                return
            done = False
            while not done:
                sent, done = await self._push(
                    session, key, buffer, sent, written, deadline, create=only_if_absent
                )
            session = None
        finally:
            if session is not None:
                with contextlib.suppress(base.BackendError):
                    await asyncio.shield(self._cancel(session, key))

    async def _insert(
        self, key: str, upload_type: str, condition: dict[str, str], data: bytes, deadline: float
    ) -> aiohttp.ClientResponse:
        """An upload request of ``upload_type`` (``media``: the whole object; ``resumable``: start a
        session); ``condition`` is ``ifGenerationMatch=0`` for a create."""
        url = self._bucket_url(
            "/upload/storage/v1/b/{bucket}/o", uploadType=upload_type, name=key, **condition
        )
        return await self._call(
            "POST",
            url,
            key,
            operation="upload",
            data=data,
            headers={
                "Content-Type": "application/octet-stream",
                "X-Upload-Content-Type": "application/octet-stream",
            },
            deadline=deadline,
            create=bool(condition),
            retry=True,
        )

    async def _start_resumable(self, key: str, condition: dict[str, str], deadline: float) -> URL:
        """A new resumable upload session (its preconditions are checked when it completes)."""
        response = await self._insert(key, "resumable", condition, b"", deadline)
        location = response.headers.get("Location")
        response.release()
        if not location:
            raise base.UpstreamError(f"gs://{self._source.bucket}/{key}: GCS started no upload session")
        return URL(location, encoded=True)

    async def _push(
        self,
        session: URL,
        key: str,
        buffer: bytearray,
        sent: int,
        total: int | None,
        deadline: float,
        *,
        create: bool = False,
    ) -> tuple[int, bool]:
        """Send the next chunk of ``buffer`` (all of it, with the ``total``, for the last one) at
        offset ``sent``, drop from ``buffer`` what GCS kept, and return the new offset and whether
        the object is complete.

        GCS may keep less of a chunk than it was sent (its 308's ``Range`` says how much): the rest
        goes again. A chunk that fails with a retryable error (429, 5xx, no answer) is not the end
        of the upload: after a backoff GCS is asked how much it has (a request without bytes, as its
        documentation for resuming says), and the upload goes on from there. Each chunk is tried at
        most ``upstream.retries`` + 1 times, within the deadline."""
        where = f"gs://{self._source.bucket}/{key}"
        part = bytes(buffer if total is not None else buffer[:WRITE_PART_SIZE])
        attempts = self._settings.retries + 1
        for attempt in range(attempts):
            try:
                persisted, done = await self._send_chunk(
                    session, key, part, sent, total, deadline, create=create
                )
            except base.BackendError as exc:
                await self._before_retry(exc, attempt, attempts, deadline, f"a chunk of {where} failed")
                persisted, done = await self._send_chunk(
                    session, key, b"", sent, total, deadline, create=create, retry=True
                )
            if persisted < sent:
                raise base.UpstreamError(f"{where}: GCS lost bytes it had acknowledged")
            if persisted > sent + len(part):
                raise base.UpstreamError(f"{where}: GCS has more bytes than it was sent")
            del buffer[: persisted - sent]
            if done or persisted > sent:
                return persisted, done
        raise base.UpstreamError(f"{where}: GCS kept none of a chunk sent {attempts} times")

    async def _send_chunk(
        self,
        session: URL,
        key: str,
        data: bytes,
        offset: int,
        total: int | None,
        deadline: float,
        *,
        create: bool = False,
        retry: bool = False,
    ) -> tuple[int, bool]:
        """Send ``data`` at ``offset`` of the upload (the last chunk with the ``total``; no data: ask
        how much GCS has, and with the ``total`` finish the upload if it has every byte); how many
        bytes GCS has kept so far, and whether the object is complete."""
        if data:
            span = f"bytes {offset}-{offset + len(data) - 1}/{'*' if total is None else total}"
        else:
            span = f"bytes */{'*' if total is None else total}"
        response = await self._call(
            "PUT",
            session,
            key,
            operation="upload",
            ok=(200, 201, 308),
            data=data,
            headers={"Content-Range": span, "Content-Type": "application/octet-stream"},
            deadline=deadline,
            create=create,
            retry=retry,
        )
        status, kept = response.status, response.headers.get("Range", "")
        response.release()
        if status != 308:
            if total is None:
                raise base.UpstreamError(f"gs://{self._source.bucket}/{key}: GCS finished an upload early")
            return total, True
        match = _RANGE.match(kept)
        return (int(match.group(1)) + 1 if match else 0), False

    async def _cancel(self, session: URL, key: str) -> None:
        # GCS answers 499 to the cancellation of a resumable upload.
        response = await self._call(
            "DELETE", session, key, operation="upload", ok=(200, 204, 404, 410, 499), data=b""
        )
        response.release()

    async def put(self, location: str, chunks: AsyncIterator[bytes], *, size: int | None = None) -> None:
        await self._upload(location, chunks, size, only_if_absent=False)

    async def create(self, location: str, chunks: AsyncIterator[bytes], *, size: int | None = None) -> None:
        await self._upload(location, chunks, size, only_if_absent=True)

    async def head(self, location: str) -> base.ObjectInfo:
        key = locations.join_key(self._source.prefix, location)
        response = await self._call("GET", self._object_url(key), key, operation="metadata", retry=True)
        metadata = await self._json(response, key)
        return base.ObjectInfo(size=int(metadata.get("size") or 0), etag=metadata.get("etag"))

    async def copy(self, source: str, destination: str) -> None:
        source_key = locations.join_key(self._source.prefix, source)
        key = locations.join_key(self._source.prefix, destination)
        bucket = urllib.parse.quote(self._source.bucket, safe="")
        suffix = f"/rewriteTo/b/{bucket}/o/{urllib.parse.quote(key, safe='')}"
        query: dict[str, str] = {}
        deadline = asyncio.get_running_loop().time() + self._settings.total_timeout
        while True:  # large objects (or another location or storage class) take several calls
            response = await self._call(
                "POST",
                self._object_url(source_key, suffix, **query),
                source_key,
                operation="copy",
                data=b"{}",
                headers={"Content-Type": "application/json"},
                deadline=deadline,
                retry=True,
            )
            progress = await self._json(response, key)
            if progress.get("done"):
                return
            if not progress.get("rewriteToken"):
                raise base.UpstreamError(
                    f"gs://{self._source.bucket}/{key}: GCS rewrite neither done nor resumable"
                )
            query = {"rewriteToken": str(progress["rewriteToken"])}

    async def delete(self, location: str) -> None:
        key = locations.join_key(self._source.prefix, location)
        try:
            response = await self._call(
                "DELETE", self._object_url(key), key, operation="delete", ok=(200, 204), retry=True
            )
        except base.NotFound:
            return
        response.release()

    # ---------------------------------------------------------------------------------------------
    # Listing (garbage collection)

    async def list(self, prefix: str) -> AsyncIterator[base.Listed]:
        root = len(locations.join_key(self._source.prefix, ""))
        key = locations.join_key(self._source.prefix, prefix)
        query = {"prefix": key, "fields": "items(name,size,updated),nextPageToken"}
        while True:
            response = await self._call(
                "GET",
                self._bucket_url("/storage/v1/b/{bucket}/o", **query),
                key,
                operation="list",
                retry=True,
            )
            page = await self._json(response, key)
            for item in page.get("items") or []:
                yield base.Listed(
                    str(item["name"])[root:], int(item.get("size") or 0), _parse_time(item["updated"])
                )
            if not page.get("nextPageToken"):
                return
            query["pageToken"] = str(page["nextPageToken"])

    async def remove_incomplete(self, before: datetime.datetime) -> int:
        """Nothing: GCS lists no resumable upload sessions; one nobody finished expires in a week."""
        return 0
