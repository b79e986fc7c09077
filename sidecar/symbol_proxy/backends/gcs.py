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
once with a fresh one; nothing else is retried here: aiohttp retries nothing by default, and the
resolver's retry loop wraps every backend. Refusals are logged once per backend, operation and code.

``HttpBodyStream`` is also used by the Sentry backend: an aiohttp response body with the read
timeout, the download deadline and aiohttp's errors translated.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import urllib.parse

import aiohttp
from yarl import URL

from symbol_proxy import locations
from symbol_proxy.backends import base, gcp_auth
from symbol_proxy.backends.httpio import HttpBodyStream, error_detail, send
from symbol_proxy.config import GcsSource, UpstreamSettings

__all__ = ["DEFAULT_API_ROOT", "GcsBackend"]

log = logging.getLogger(__name__)

DEFAULT_API_ROOT = "https://storage.googleapis.com"


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


class GcsBackend:
    """Read access to one GCS bucket (and prefix) over a borrowed aiohttp session."""

    kind = "gcs"

    def __init__(
        self,
        source: GcsSource,
        settings: UpstreamSettings,
        *,
        session: aiohttp.ClientSession,
        token_url: str = gcp_auth.DEFAULT_TOKEN_URL,
        api_root: str = DEFAULT_API_ROOT,
    ) -> None:
        self._source = source
        self._settings = settings
        self._session = session
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

    def url_for(self, key: str) -> URL:
        bucket = urllib.parse.quote(self._source.bucket, safe="")
        name = urllib.parse.quote(key, safe="")
        return URL(f"{self.api_root}/storage/v1/b/{bucket}/o/{name}?alt=media", encoded=True)

    async def _token(self) -> str | None:
        if self.auth is None:
            return None
        try:
            return await self.auth.token()
        except (gcp_auth.TokenRefused, gcp_auth.BadCredentials) as exc:
            self._report("token", exc.code, type(self.auth).__name__)
            raise

    async def open(self, location: str, *, checksum: str | None = None) -> base.ObjectStream:
        key = locations.join_key(self._source.prefix, location)
        where = f"gs://{self._source.bucket}/{key}"
        deadline = asyncio.get_running_loop().time() + self._settings.total_timeout
        url = self.url_for(key)
        for attempt in range(2):
            token = await self._token()
            headers = {"User-Agent": self._settings.user_agent}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            response = await send(self._session, url, self._settings, deadline, headers=headers, where=where)
            if response.status == 200:
                return self._stream(response, deadline, where)
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
        status = response.status
        if status in (401, 403):
            code = await error_detail(response)
            self._report("download", f"{status} {code}", key)
            raise base.PermissionDenied(f"source {self._source.id}: GCS download refused ({status} {code})")
        response.release()
        if status == 429 or status >= 500:
            raise base.UpstreamError(f"{where}: GCS answered {status}", status=status)
        raise base.NotFound(f"{where}: GCS answered {status}")

    def _stream(self, response: aiohttp.ClientResponse, deadline: float, where: str) -> HttpBodyStream:
        size = response.content_length if not response.headers.get("Content-Encoding") else None
        info = base.ObjectInfo(size=size, etag=response.headers.get("ETag"))
        return HttpBodyStream(response, info, self._settings, deadline, where=where, md5=_goog_md5(response))

    async def aclose(self) -> None:
        return None  # the session is borrowed; its owner closes it
