"""A small Google Cloud Storage for tests: the JSON API subset the GCS backend uses, plus the token
endpoints it talks to. One aiohttp application, run on 127.0.0.1 by the tests.

- ``GET /storage/v1/b/{bucket}/o/{object}?alt=media``: the object's bytes, with ``ETag`` and
  ``x-goog-hash`` (md5); 401 without a known bearer token, 403 when the token may not read the
  bucket, 404 for a missing object; error bodies in the JSON API's shape.
- ``POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name=…``: store an object (test setup).
- ``POST /token``: the OAuth2 JWT-bearer grant. The assertion's RS256 signature is checked with the
  public key of the one service account the server knows; every assertion is kept for the test.
- ``POST /sts``: Security Token Service token exchange (RFC 8693) of ``subject_token`` for a federated
  token that may read no bucket; ``POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken``
  (IAM Credentials) turns a known token into a service account's token that may read every bucket.
- ``GET /computeMetadata/v1/instance/service-accounts/default/token``: the metadata server's token,
  only with ``Metadata-Flavor: Google``; ``.../default/?recursive=true`` describes the account, and
  ``GET /`` answers with ``Metadata-Flavor: Google``, which is how google-auth detects the server.

The object name is taken from the raw path, so a test can see that ``/`` travelled as ``%2F``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import itertools
import json
import urllib.parse
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["GcsServer"]


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _error(status: int, reason: str, message: str) -> web.Response:
    body = {"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}}
    return web.json_response(body, status=status)


class GcsServer:
    def __init__(
        self,
        *,
        client_email: str = "",
        public_key: rsa.RSAPublicKey | None = None,
        token_lifetime: int = 3600,
    ) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.tokens: dict[str, set[str] | None] = {}
        """Known access tokens and the buckets each may read (``None``: all)."""
        self.client_email = client_email
        self.public_key = public_key
        self.token_lifetime = token_lifetime
        self.assertions: list[str] = []
        self.metadata_requests = 0
        self.media_paths: list[str] = []
        self.authorizations: list[str | None] = []
        self.fail_token_endpoint: int | None = None
        self.subject_token: str | None = None
        """The external identity's token that ``/sts`` accepts (workload identity federation)."""
        self.exchanges: list[dict[str, str]] = []
        self.impersonated: list[str] = []
        self.anonymous = False
        """Serve objects without a token, as emulators do."""
        self.wrong_md5 = False
        """Announce an MD5 that does not match the body."""
        self.hang = False
        """Never answer object downloads."""
        self.stall_body = False
        """Send half of an object's body, then nothing more."""
        self._counter = itertools.count(1)
        self.app = web.Application()
        self.app.router.add_get("/storage/v1/b/{bucket}/o/{name:.+}", self.get_object)
        self.app.router.add_post("/upload/storage/v1/b/{bucket}/o", self.upload)
        self.app.router.add_post("/token", self.token)
        self.app.router.add_get("/computeMetadata/v1/instance/service-accounts/default/token", self.metadata)
        self.app.router.add_get("/computeMetadata/v1/instance/service-accounts/default/", self.account)
        self.app.router.add_get("/", self.ping)
        self.app.router.add_post("/sts", self.exchange)
        self.app.router.add_post("/v1/projects/-/serviceAccounts/{account}", self.impersonate)

    def grant(self, buckets: set[str] | None = None, token: str | None = None) -> str:
        token = token or f"ya29.test-token-{next(self._counter)}"
        self.tokens[token] = buckets
        return token

    def _bearer(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        return header[7:] if header.startswith("Bearer ") else None

    def _authorize(self, request: web.Request, bucket: str) -> web.Response | None:
        if self.anonymous:
            return None
        token = self._bearer(request)
        if token is None or token not in self.tokens:
            return _error(401, "required", "Anonymous caller does not have storage.objects.get access.")
        allowed = self.tokens[token]
        if allowed is not None and bucket not in allowed:
            return _error(403, "forbidden", "The caller does not have storage.objects.get access.")
        return None

    async def get_object(self, request: web.Request) -> web.StreamResponse:
        raw = request.rel_url.raw_path
        self.media_paths.append(raw)
        self.authorizations.append(request.headers.get("Authorization"))
        bucket = urllib.parse.unquote(request.match_info["bucket"])
        name = urllib.parse.unquote(raw.split("/o/", 1)[1])
        refused = self._authorize(request, bucket)
        if refused is not None:
            return refused
        data = self.objects.get((bucket, name))
        if data is None:
            return _error(404, "notFound", f"No such object: {bucket}/{name}")
        if request.query.get("alt") != "media":
            return web.json_response({"bucket": bucket, "name": name, "size": str(len(data))})
        if self.hang:
            await asyncio.sleep(3600)
        md5 = base64.b64encode(hashlib.md5(data + b"!" if self.wrong_md5 else data).digest()).decode()
        headers = {"ETag": f'"{hashlib.md5(data).hexdigest()}"', "x-goog-hash": f"crc32c=AAAAAA==,md5={md5}"}
        if not self.stall_body:
            return web.Response(body=data, headers=headers, content_type="application/octet-stream")
        response = web.StreamResponse(headers=headers)
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        await asyncio.sleep(3600)
        return response

    async def upload(self, request: web.Request) -> web.Response:
        bucket = request.match_info["bucket"]
        refused = self._authorize(request, bucket)
        if refused is not None:
            return refused
        name = request.query["name"]
        self.objects[(bucket, name)] = await request.read()
        return web.json_response({"bucket": bucket, "name": name})

    async def token(self, request: web.Request) -> web.Response:
        if self.fail_token_endpoint is not None:
            return web.json_response({"error": "internal_failure"}, status=self.fail_token_endpoint)
        form = await request.post()
        assertion = str(form.get("assertion", ""))
        self.assertions.append(assertion)
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            claims: dict[str, Any] = json.loads(_unb64(claims_b64))
            if self.public_key is None:
                raise InvalidSignature
            self.public_key.verify(
                _unb64(signature_b64),
                f"{header_b64}.{claims_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (ValueError, InvalidSignature):
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, status=400
            )
        if claims.get("iss") != self.client_email:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid issuer."}, status=400
            )
        token = self.grant()
        return web.json_response(
            {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        )

    async def metadata(self, request: web.Request) -> web.Response:
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing Metadata-Flavor header")
        self.metadata_requests += 1
        token = self.grant()
        return web.json_response(
            {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        )

    async def account(self, request: web.Request) -> web.Response:
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing Metadata-Flavor header")
        return web.json_response(
            {"email": "default@example-project.iam.gserviceaccount.com", "aliases": ["default"], "scopes": []}
        )

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(text="ok", headers={"Metadata-Flavor": "Google"})

    async def exchange(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.exchanges.append(form)
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if self.subject_token is None or form.get("subject_token") != self.subject_token:
            return web.json_response({"error": "invalid_grant"}, status=400)
        token = self.grant(buckets=set())
        return web.json_response(
            {
                "access_token": token,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
            }
        )

    async def impersonate(self, request: web.Request) -> web.Response:
        account, _, method = request.match_info["account"].rpartition(":")
        if method != "generateAccessToken":
            return _error(404, "notFound", "no such method")
        if self._bearer(request) not in self.tokens:
            return _error(401, "required", "Request had invalid authentication credentials.")
        self.impersonated.append(account)
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=self.token_lifetime)
        return web.json_response(
            {"accessToken": self.grant(), "expireTime": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
        )
