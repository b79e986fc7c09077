"""OAuth2 access tokens for Google Cloud Storage, from ``google-auth``, refreshed off the event loop.

Three credential forms reach the GCS backend: a service account (``client_email`` + ``private_key``),
a bearer token used verbatim, or nothing, meaning Application Default Credentials (ADC) as Google's
libraries resolve them: ``GOOGLE_APPLICATION_CREDENTIALS`` (a service-account key, an authorized
user, an ``external_account`` configuration for workload identity federation from AWS, Azure or an
OIDC provider, an ``impersonated_service_account``), gcloud's well-known file, else the metadata
server (GCE, Cloud Run, Workload Identity on GKE).

google-auth (Google's own library) owns the credential flows: JWT signing, token exchanges, STS,
impersonation, the metadata server. It is synchronous, so every refresh runs in a small dedicated
thread pool (``REFRESH_WORKERS`` threads) and the event loop never waits on it; the token endpoints
are reached through one shared ``requests`` session. The data path does not change: downloads go
through the proxy's aiohttp session with ``Authorization: Bearer <token>``. This module is the only
one that imports google-auth and translates its exceptions into the backend vocabulary
(:class:`TokenRefused`, :class:`BadCredentials`, ``base.UpstreamError``), with the OAuth error code
and never the credential or the server's text.

Our own caching policy stays on top of google-auth's: a token is kept until five minutes before it
expires (half its lifetime for short ones), one refresh serves every download waiting for it, a
failed refresh is not cached, and a 401 from the bucket drops the token once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import google.auth
import google.auth.exceptions
import google.auth.transport
import google.auth.transport.requests
import requests
from google.auth import credentials as ga_credentials
from google.oauth2 import service_account

from symbol_proxy.backends import base
from symbol_proxy.config import UpstreamSettings

__all__ = [
    "DEFAULT_TOKEN_URL",
    "SCOPE_READ_ONLY",
    "ApplicationDefaultTokens",
    "BadCredentials",
    "GoogleTokens",
    "ServiceAccountTokens",
    "StaticToken",
    "TokenRefused",
    "TokenSource",
]

log = logging.getLogger(__name__)

SCOPE_READ_ONLY = "https://www.googleapis.com/auth/devstorage.read_only"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
"""Google's token endpoint, as written into service-account key files (``token_uri``)."""
REFRESH_MARGIN = 300.0
"""Refresh this long before a token expires, so no request goes out with a token about to lapse."""
DEFAULT_LIFETIME = 3600.0
"""Assumed when a credential reports no expiry (Google's tokens live an hour)."""
REFRESH_WORKERS = 4
"""Threads for refreshes. A refresh happens about once an hour per source, so four are plenty; the
bound keeps a token endpoint that hangs from taking more threads than that."""


class TokenRefused(base.PermissionDenied):
    """The token endpoint refused our credentials; ``code`` is its OAuth error (``invalid_grant``)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class BadCredentials(base.UpstreamError):
    """The configured credentials cannot even be used (an unreadable private key, an odd ADC file).

    A download error, not "permission denied", as in Symbolicator: nothing was refused upstream.
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, retryable=False)
        self.code = code


class TokenSource(Protocol):
    """Where the ``Authorization: Bearer`` value of a request comes from."""

    #: Whether a new token may differ from a refused one (worth one more try after a 401).
    refreshable: bool

    async def token(self) -> str: ...

    def invalidate(self, token: str) -> None:
        """Forget ``token`` if it is the cached one (the server said 401)."""
        ...


class StaticToken:
    """A bearer token from the configuration, used verbatim and never refreshed."""

    refreshable = False

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "<StaticToken ****>"

    async def token(self) -> str:
        return self._token

    def invalidate(self, token: str) -> None:
        return None


_executor = concurrent.futures.ThreadPoolExecutor(REFRESH_WORKERS, thread_name_prefix="gcp-auth")
_session_lock = threading.Lock()
_session: requests.Session | None = None


def _shared_session() -> requests.Session:
    global _session
    with _session_lock:
        if _session is None:
            _session = requests.Session()
        return _session


class _Transport(google.auth.transport.Request):
    """google-auth's ``requests`` transport with our timeouts, remembering the last status seen."""

    def __init__(self, settings: UpstreamSettings) -> None:
        self._request = google.auth.transport.requests.Request(_shared_session())
        self._timeout = (settings.connect_timeout, settings.read_timeout)
        self.last_status: int | None = None

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> google.auth.transport.Response:
        response: google.auth.transport.Response = self._request(
            url, method=method, body=body, headers=headers, timeout=self._timeout, **kwargs
        )
        self.last_status = response.status
        return response


def _oauth_code(exc: google.auth.exceptions.RefreshError, status: int | None) -> str:
    """The OAuth ``error`` field of a refused refresh, else the HTTP status (never the server's text)."""
    for arg in exc.args[1:]:
        if isinstance(arg, Mapping) and arg.get("error"):
            return str(arg["error"])
    return str(status) if status else "refused"


def _translated(exc: Exception, what: str, status: int | None) -> Exception:
    """Our error for one of google-auth's (or its transport's) exceptions."""
    if isinstance(exc, google.auth.exceptions.RefreshError):
        if isinstance(exc.__cause__, google.auth.exceptions.TransportError):
            return _translated(exc.__cause__, what, status)
        code = _oauth_code(exc, status)
        if status in (400, 401, 403, 404):
            return TokenRefused(f"{what}: the token endpoint refused the credentials ({code})", code=code)
        if status is not None and (status == 429 or status >= 500):
            return base.UpstreamError(f"{what}: the token endpoint answered {status}", status=status)
        return base.UpstreamError(f"{what}: the token endpoint sent no token ({code})", retryable=False)
    if isinstance(exc, google.auth.exceptions.TransportError):
        if isinstance(exc.__cause__, requests.Timeout):
            return base.UpstreamTimeout(f"{what}: the token endpoint did not answer in time")
        cause = exc.__cause__ or exc
        return base.UpstreamError(f"{what}: token request failed ({type(cause).__name__})")
    return exc


class GoogleTokens:
    """Access tokens from google-auth credentials, loaded and refreshed in the refresh threads.

    ``load`` builds the credentials (reads key files, resolves ADC); it runs once, in a thread, on
    the first refresh, and raises :class:`BadCredentials` or :class:`TokenRefused` for unusable ones.
    """

    refreshable = True

    def __init__(
        self, load: Callable[[], ga_credentials.Credentials], settings: UpstreamSettings, *, what: str
    ) -> None:
        self._load = load
        self._settings = settings
        self.what = what
        self.credentials: ga_credentials.Credentials | None = None
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.fetches = 0
        """How many tokens were fetched: a number for tests and debugging, never a token."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} ****>"

    async def token(self) -> str:
        if self._token is not None and time.monotonic() < self._refresh_at:
            return self._token
        async with self._lock:
            if self._token is None or time.monotonic() >= self._refresh_at:
                started = time.monotonic()
                loop = asyncio.get_running_loop()
                budget = self._settings.head_timeout + self._settings.read_timeout
                try:
                    async with asyncio.timeout(budget):
                        token, lifetime = await loop.run_in_executor(_executor, self._refresh)
                except TimeoutError:
                    raise base.UpstreamTimeout(f"{self.what}: no token within {budget:g} s") from None
                self.fetches += 1
                self._token = token
                self._refresh_at = started + max(lifetime - REFRESH_MARGIN, lifetime / 2)
            return self._token

    def invalidate(self, token: str) -> None:
        if token == self._token:
            self._token = None

    def _refresh(self) -> tuple[str, float]:
        """In a refresh thread: load the credentials if needed, refresh them, return token and lifetime."""
        if self.credentials is None:
            self.credentials = self._load()
        transport = _Transport(self._settings)
        try:
            self.credentials.refresh(transport)  # type: ignore[no-untyped-call]
        except (google.auth.exceptions.RefreshError, google.auth.exceptions.TransportError) as exc:
            raise _translated(exc, self.what, transport.last_status) from None
        token = self.credentials.token
        if not isinstance(token, str) or not token:
            raise base.UpstreamError(f"{self.what}: the token endpoint sent no access token", retryable=False)
        return token, _lifetime(self.credentials.expiry)


def _lifetime(expiry: datetime.datetime | None) -> float:
    """Seconds until ``expiry`` (google-auth keeps naive UTC datetimes), at least one."""
    if expiry is None:
        return DEFAULT_LIFETIME
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=datetime.UTC)
    return max((expiry - datetime.datetime.now(datetime.UTC)).total_seconds(), 1.0)


class ServiceAccountTokens(GoogleTokens):
    """A service account's key: google-auth signs the JWT and exchanges it at ``token_url``."""

    def __init__(
        self,
        client_email: str,
        private_key: str,
        token_url: str,
        settings: UpstreamSettings,
        scope: str = SCOPE_READ_ONLY,
    ) -> None:
        # Keys pasted from a JSON key file often keep its literal "\n" escapes.
        info = {
            "type": "service_account",
            "client_email": client_email,
            "private_key": private_key.replace("\\n", "\n"),
            "token_uri": token_url,
        }

        def load() -> ga_credentials.Credentials:
            try:
                credentials: ga_credentials.Credentials = (
                    service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                        info, scopes=[scope]
                    )
                )
                return credentials
            except (ValueError, TypeError, IndexError):
                raise BadCredentials(
                    "failed encoding JWT: private_key is not an unencrypted RSA key in PEM form",
                    code="bad_private_key",
                ) from None

        super().__init__(load, settings, what="service account token")
        self.client_email = client_email
        self.token_url = token_url
        self.scope = scope


def _well_known_file() -> Path:
    config = os.environ.get("CLOUDSDK_CONFIG")
    root = Path(config) if config else Path.home() / ".config" / "gcloud"
    return root / "application_default_credentials.json"


def _application_default(scope: str) -> ga_credentials.Credentials:
    """ADC as ``google.auth.default`` finds them, scoped afterwards: asked with scopes, ``default``
    would look up an ``external_account``'s project id at Cloud Resource Manager, a request we
    neither need nor may be allowed to make."""
    try:
        found: ga_credentials.Credentials = google.auth.default()[0]
    except google.auth.exceptions.DefaultCredentialsError:
        named = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        path = Path(named) if named else _well_known_file()
        if named or path.is_file():
            raise BadCredentials(
                f"application default credentials: {path.name} cannot be used", code="bad_adc_file"
            ) from None
        raise TokenRefused(
            "application default credentials: none found (no GOOGLE_APPLICATION_CREDENTIALS, no gcloud "
            "credentials file, no metadata server)",
            code="no_credentials",
        ) from None
    if isinstance(found, ga_credentials.Scoped):
        found = found.with_scopes([scope])  # type: ignore[no-untyped-call]
    log.debug("application default credentials: using %s", type(found).__name__)
    return found


class ApplicationDefaultTokens(GoogleTokens):
    """Application Default Credentials, resolved on first use by ``google.auth.default``."""

    def __init__(self, settings: UpstreamSettings, scope: str = SCOPE_READ_ONLY) -> None:
        super().__init__(lambda: _application_default(scope), settings, what="application default token")
