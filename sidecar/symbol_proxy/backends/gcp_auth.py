"""OAuth2 access tokens for Google Cloud Storage, fetched over the proxy's own aiohttp session.

Three credential forms reach the GCS backend: a service account (``client_email`` + ``private_key``),
a bearer token used verbatim, or nothing, meaning Application Default Credentials (ADC): the file in
``GOOGLE_APPLICATION_CREDENTIALS`` or gcloud's well-known file, else the metadata server, which is
how Workload Identity on GKE hands out tokens.

Why not google-auth or gcloud-aio-auth: google-auth is synchronous (its refresh would block the
event loop or need a thread per refresh) and brings requests; gcloud-aio-auth opens its own client
session and reports failures as its own exceptions with the upstream's text. The flows are small and
documented (RFC 7523 JWT bearer grant; the metadata server's token endpoint), so we sign the JWT
with ``cryptography`` (maintained by the PyCA, already used by the project) and exchange it with the
borrowed session. That keeps one connection pool, our timeouts, and errors translated into the backend
vocabulary in this module, without a credential ever reaching a message. ``cryptography`` is imported
only when a service account is configured, so bearer tokens, ADC via the metadata server and the
Sentry backend do not need it.

Tokens are cached until shortly before they expire (five minutes, or half the lifetime for short
ones), refreshed by one request however many downloads wait for it, and never cached on failure.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

from symbol_proxy.backends import base
from symbol_proxy.config import UpstreamSettings

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "DEFAULT_TOKEN_URL",
    "SCOPE_READ_ONLY",
    "ApplicationDefaultTokens",
    "AuthorizedUserTokens",
    "BadCredentials",
    "MetadataServerTokens",
    "ServiceAccountTokens",
    "StaticToken",
    "TokenRefused",
    "TokenSource",
]

log = logging.getLogger(__name__)

SCOPE_READ_ONLY = "https://www.googleapis.com/auth/devstorage.read_only"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
"""Google's token endpoint, as written into service-account key files (``token_uri``)."""
JWT_LIFETIME = 3600
"""Longest lifetime Google accepts for a JWT assertion."""
REFRESH_MARGIN = 300.0
"""Refresh this long before a token expires, so no request goes out with a token about to lapse."""
METADATA_HOST = "metadata.google.internal"
"""The GCE/GKE metadata server; ``GCE_METADATA_HOST`` overrides it, as in Google's own libraries."""


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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class _CachedTokens:
    """A token fetched over HTTP and kept until shortly before it expires."""

    refreshable = True
    what = "token"

    def __init__(self, session: aiohttp.ClientSession, settings: UpstreamSettings) -> None:
        self._session = session
        self._settings = settings
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
                token, lifetime = await self._fetch()
                self.fetches += 1
                self._token = token
                self._refresh_at = started + max(lifetime - REFRESH_MARGIN, lifetime / 2)
            return self._token

    def invalidate(self, token: str) -> None:
        if token == self._token:
            self._token = None

    async def _fetch(self) -> tuple[str, float]:
        raise NotImplementedError

    async def _request(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """One small JSON exchange with a token endpoint, translated into backend errors."""
        settings = self._settings
        timeout = aiohttp.ClientTimeout(
            sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
        )
        try:
            async with asyncio.timeout(settings.head_timeout + settings.read_timeout):
                async with self._session.request(method, url, timeout=timeout, **kwargs) as response:
                    status = response.status
                    text = await response.content.read(64 * 1024)
        except aiohttp.ClientConnectorDNSError:
            raise TokenRefused(
                f"{self.what}: {url.split('/')[2]} cannot be resolved", code="no_credentials"
            ) from None
        except TimeoutError:
            raise base.UpstreamTimeout(f"{self.what}: the token endpoint did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise base.UpstreamError(f"{self.what}: token request failed ({type(exc).__name__})") from None
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if status in (400, 401, 403, 404):
            code = str(payload.get("error") or status) if isinstance(payload, dict) else str(status)
            raise TokenRefused(f"{self.what}: the token endpoint refused the credentials ({code})", code=code)
        if status != 200:
            raise base.UpstreamError(f"{self.what}: the token endpoint answered {status}", status=status)
        if not isinstance(payload, dict) or not isinstance(payload.get("access_token"), str):
            raise base.UpstreamError(f"{self.what}: the token endpoint sent no access token", retryable=False)
        return payload

    @staticmethod
    def _lifetime(payload: dict[str, Any]) -> float:
        try:
            return max(float(payload.get("expires_in", JWT_LIFETIME)), 1.0)
        except (TypeError, ValueError):
            return float(JWT_LIFETIME)


class ServiceAccountTokens(_CachedTokens):
    """A service account's key signs a JWT (RS256) that the token endpoint exchanges for a token."""

    what = "service account token"

    def __init__(
        self,
        client_email: str,
        private_key: str,
        token_url: str,
        session: aiohttp.ClientSession,
        settings: UpstreamSettings,
        scope: str = SCOPE_READ_ONLY,
    ) -> None:
        # ``cryptography`` is needed only here; importing it now makes a missing install fail when the
        # configuration is loaded (as a missing optional dependency), not at the first download.
        import cryptography  # noqa: F401

        super().__init__(session, settings)
        self.client_email = client_email
        # Keys pasted from a JSON key file often keep its literal "\n" escapes.
        self._pem = private_key.replace("\\n", "\n")
        self._key: rsa.RSAPrivateKey | None = None
        self.token_url = token_url
        self.scope = scope

    def _private_key(self) -> rsa.RSAPrivateKey:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        if self._key is None:
            try:
                key = serialization.load_pem_private_key(self._pem.encode(), password=None)
            except (ValueError, TypeError, UnsupportedAlgorithm):
                key = None
            if not isinstance(key, rsa.RSAPrivateKey):
                raise BadCredentials(
                    "failed encoding JWT: private_key is not an unencrypted RSA key in PEM form",
                    code="bad_private_key",
                )
            self._key = key
        return self._key

    def assertion(self, now: int | None = None) -> str:
        """The signed JWT for the token request (RFC 7523 §2.1)."""
        now = int(time.time()) if now is None else now
        header = {"alg": "RS256", "typ": "JWT"}
        claims = {
            "iss": self.client_email,
            "scope": self.scope,
            "aud": self.token_url,
            "iat": now,
            "exp": now + JWT_LIFETIME,
        }
        signing_input = ".".join(
            _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        signature = self._private_key().sign(
            signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{_b64(signature)}"

    async def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": self.assertion()}
        payload = await self._request("POST", self.token_url, data=form)
        return payload["access_token"], self._lifetime(payload)


class AuthorizedUserTokens(_CachedTokens):
    """A user's refresh token (``gcloud auth application-default login``) exchanged for access tokens."""

    what = "user token"

    def __init__(
        self, info: dict[str, Any], session: aiohttp.ClientSession, settings: UpstreamSettings
    ) -> None:
        super().__init__(session, settings)
        self._form = {
            "grant_type": "refresh_token",
            "client_id": str(info.get("client_id", "")),
            "client_secret": str(info.get("client_secret", "")),
            "refresh_token": str(info.get("refresh_token", "")),
        }
        self.token_url = str(info.get("token_uri") or DEFAULT_TOKEN_URL)

    async def _fetch(self) -> tuple[str, float]:
        payload = await self._request("POST", self.token_url, data=self._form)
        return payload["access_token"], self._lifetime(payload)


class MetadataServerTokens(_CachedTokens):
    """The default service account's token from the metadata server (GCE, Cloud Run, GKE Workload
    Identity)."""

    what = "metadata server token"

    def __init__(
        self, session: aiohttp.ClientSession, settings: UpstreamSettings, scope: str = SCOPE_READ_ONLY
    ) -> None:
        super().__init__(session, settings)
        host = os.environ.get("GCE_METADATA_HOST") or METADATA_HOST
        self.url = f"http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
        self.scope = scope

    async def _fetch(self) -> tuple[str, float]:
        payload = await self._request(
            "GET", self.url, params={"scopes": self.scope}, headers={"Metadata-Flavor": "Google"}
        )
        return payload["access_token"], self._lifetime(payload)


def _well_known_file() -> Path:
    config = os.environ.get("CLOUDSDK_CONFIG")
    root = Path(config) if config else Path.home() / ".config" / "gcloud"
    return root / "application_default_credentials.json"


class ApplicationDefaultTokens:
    """Application Default Credentials, resolved on first use as Google's libraries do.

    1. ``GOOGLE_APPLICATION_CREDENTIALS`` names a key file (service account or authorized user);
    2. gcloud's well-known file, if present;
    3. otherwise the metadata server.
    """

    refreshable = True

    def __init__(self, session: aiohttp.ClientSession, settings: UpstreamSettings) -> None:
        self._session = session
        self._settings = settings
        self._lock = asyncio.Lock()
        self.resolved: _CachedTokens | None = None

    def __repr__(self) -> str:
        return "<ApplicationDefaultTokens ****>"

    def _from_file(self, path: Path) -> _CachedTokens:
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise BadCredentials(
                f"application default credentials: cannot read {path.name}", code="bad_adc_file"
            ) from None
        kind = info.get("type") if isinstance(info, dict) else None
        if kind == "service_account":
            try:
                import cryptography  # noqa: F401
            except ImportError:
                raise BadCredentials(
                    "application default credentials: a service-account key file needs the cryptography "
                    "package",
                    code="missing_cryptography",
                ) from None
            return ServiceAccountTokens(
                str(info.get("client_email", "")),
                str(info.get("private_key", "")),
                str(info.get("token_uri") or DEFAULT_TOKEN_URL),
                self._session,
                self._settings,
            )
        if kind == "authorized_user":
            return AuthorizedUserTokens(info, self._session, self._settings)
        raise BadCredentials(
            f"application default credentials: credential type {kind!r} is not supported",
            code="unsupported_adc",
        )

    def _resolve(self) -> _CachedTokens:
        named = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if named:
            return self._from_file(Path(named))
        well_known = _well_known_file()
        if well_known.is_file():
            return self._from_file(well_known)
        return MetadataServerTokens(self._session, self._settings)

    async def token(self) -> str:
        if self.resolved is None:
            async with self._lock:
                if self.resolved is None:
                    loop = asyncio.get_running_loop()
                    self.resolved = await loop.run_in_executor(None, self._resolve)
                    log.debug("application default credentials: using %s", type(self.resolved).__name__)
        return await self.resolved.token()

    def invalidate(self, token: str) -> None:
        if self.resolved is not None:
            self.resolved.invalidate(token)
