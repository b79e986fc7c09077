"""The GCS backend against fake-gcs-server (a real GCS emulator) and, for what an emulator cannot
do, a small JSON-API server with token endpoints (``tests/support/gcsserver.py``), on 127.0.0.1.

fake-gcs-server serves the downloads of fixture files, quoted names, missing objects, its MD5 hashes
and ``STORAGE_EMULATOR_HOST``. The small server stays for the rest, because fake-gcs-server accepts
any token or none: it has no OAuth token endpoint to verify a service account's JWT, no STS or IAM
Credentials endpoint, no metadata server, never answers 401 or 403, and cannot lie about an MD5,
hang, stall a body, or show the raw request path.

Covered: fixture files byte-identical below a prefix; object names quoted completely; the
service-account flow (the JWT verified with the public key by PyJWT, its claims, token caching,
refresh before expiry, one token request for many concurrent downloads, a revoked token replaced
once); a verbatim bearer token; Application Default Credentials from a key file and from the
metadata server; ``STORAGE_EMULATOR_HOST``; 404, 401, 403, refused and unusable keys, a failing
token endpoint that is not cached; an MD5 mismatch; no credential in messages, logs or reprs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import google.auth.compute_engine._metadata
import jwt
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from symbol_proxy.backends import base, gcp_auth
from symbol_proxy.backends.gcs import GcsBackend
from symbol_proxy.config import GcsSource, UpstreamSettings
from tests.support import shared
from tests.support.gcsserver import GcsServer
from tests.support.objectstores import FakeGcs

EMAIL = "symbols-reader@example-project.iam.gserviceaccount.com"


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def service_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def gcs(
    aiohttp_server: Callable[..., Awaitable[TestServer]], service_key: rsa.RSAPrivateKey
) -> tuple[GcsServer, TestServer]:
    store = GcsServer(client_email=EMAIL, public_key=service_key.public_key())
    server = await aiohttp_server(store.app)
    return store, server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def source(**fields: Any) -> GcsSource:
    values: dict[str, Any] = {"id": "gcs-test", "type": "gcs", "bucket": "symbols"}
    values.update(fields)
    return GcsSource.model_validate(values)


def service_account(key: rsa.RSAPrivateKey, **fields: Any) -> GcsSource:
    return source(client_email=EMAIL, private_key=_pem(key), **fields)


@pytest.fixture
def make(
    gcs: tuple[GcsServer, TestServer], session: aiohttp.ClientSession, settings: UpstreamSettings
) -> Callable[[GcsSource], GcsBackend]:
    _, server = gcs

    def build(config: GcsSource) -> GcsBackend:
        root = str(server.make_url("")).rstrip("/")
        return GcsBackend(config, settings, session=session, token_url=f"{root}/token", api_root=root)

    return build


async def read_all(stream: base.ObjectStream) -> bytes:
    try:
        return b"".join([chunk async for chunk in stream.chunks()])
    finally:
        await stream.aclose()


def emulated(
    fake_gcs: FakeGcs, session: aiohttp.ClientSession, settings: UpstreamSettings, **fields: Any
) -> GcsBackend:
    """A backend on fake-gcs-server (which takes any bearer token)."""
    config = source(bearer_token="ya29.any-token", **fields)
    return GcsBackend(config, settings, session=session, api_root=fake_gcs.endpoint)


async def test_fixture_files_come_back_byte_identical_from_below_a_prefix(
    fake_gcs: FakeGcs, session: aiohttp.ClientSession, settings: UpstreamSettings
) -> None:
    objects = [o for o in shared.keyed_objects() if o.keys.get("symsrv")]
    assert len(objects) > 8
    for item in objects:
        fake_gcs.upload("symbols", f"team-a/{item.keys['symsrv'][0]}", item.data)
    backend = emulated(fake_gcs, session, settings, prefix="/team-a/")
    for item in objects:
        stream = await backend.open(item.keys["symsrv"][0])
        assert stream.info.size == len(item.data)
        assert await read_all(stream) == item.data


async def test_a_missing_object_in_the_emulator_is_not_found(
    fake_gcs: FakeGcs, session: aiohttp.ClientSession, settings: UpstreamSettings
) -> None:
    with pytest.raises(base.NotFound):
        await emulated(fake_gcs, session, settings).open("crash.pdb/0000/crash.pdb")


async def test_object_names_travel_fully_quoted_in_the_path(
    gcs: tuple[GcsServer, TestServer], make: Callable[[GcsSource], GcsBackend]
) -> None:
    store, _ = gcs
    token = store.grant()
    store.objects[("symbols", "crash.pdb/3249D99D0C4049318610F4E4FB0B69361/crash.pdb")] = b"MSF data"
    backend = make(source(bearer_token=token))
    assert (
        await read_all(await backend.open("crash.pdb/3249D99D0C4049318610F4E4FB0B69361/crash.pdb"))
        == b"MSF data"
    )
    assert store.media_paths == [
        "/storage/v1/b/symbols/o/crash.pdb%2F3249D99D0C4049318610F4E4FB0B69361%2Fcrash.pdb"
    ]


async def test_the_service_account_jwt_is_signed_with_rs256_and_carries_the_expected_claims(
    gcs: tuple[GcsServer, TestServer], make: Callable[[GcsSource], GcsBackend], service_key: rsa.RSAPrivateKey
) -> None:
    store, _ = gcs
    store.objects[("symbols", "a")] = b"x"
    before = int(time.time())
    await read_all(await make(service_account(service_key)).open("a"))
    (assertion,) = store.assertions
    # Posted to the configured token URL; the audience is Google's endpoint whatever that URL is, as
    # google-auth writes it (Google checks that audience only).
    claims = jwt.decode(
        assertion, service_key.public_key(), algorithms=["RS256"], audience=gcp_auth.DEFAULT_TOKEN_URL
    )
    assert jwt.get_unverified_header(assertion)["alg"] == "RS256"
    assert claims["iss"] == EMAIL
    assert claims["scope"] == "https://www.googleapis.com/auth/devstorage.read_only"
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == 3600


async def test_a_token_is_fetched_once_for_many_concurrent_downloads(
    gcs: tuple[GcsServer, TestServer], make: Callable[[GcsSource], GcsBackend], service_key: rsa.RSAPrivateKey
) -> None:
    store, _ = gcs
    for n in range(10):
        store.objects[("symbols", f"file-{n}")] = bytes([n]) * 100
    backend = make(service_account(service_key))

    async def fetch(name: str) -> bytes:
        return await read_all(await backend.open(name))

    bodies = await asyncio.gather(*(fetch(f"file-{n}") for n in range(10)))
    assert bodies == [bytes([n]) * 100 for n in range(10)]
    assert len(store.assertions) == 1


async def test_a_token_is_refreshed_shortly_before_it_expires(
    gcs: tuple[GcsServer, TestServer], make: Callable[[GcsSource], GcsBackend], service_key: rsa.RSAPrivateKey
) -> None:
    store, _ = gcs
    store.token_lifetime = 1  # refreshed after half its lifetime, as it is shorter than the margin
    store.objects[("symbols", "a")] = b"x"
    backend = make(service_account(service_key))
    await read_all(await backend.open("a"))
    await read_all(await backend.open("a"))
    assert len(store.assertions) == 1
    await asyncio.sleep(0.6)
    await read_all(await backend.open("a"))
    assert len(store.assertions) == 2


async def test_a_revoked_token_is_replaced_once_after_a_401(
    gcs: tuple[GcsServer, TestServer], make: Callable[[GcsSource], GcsBackend], service_key: rsa.RSAPrivateKey
) -> None:
    store, _ = gcs
    store.objects[("symbols", "a")] = b"x"
    backend = make(service_account(service_key))
    await read_all(await backend.open("a"))
    store.tokens.clear()  # revoked upstream
    assert await read_all(await backend.open("a")) == b"x"
    assert len(store.assertions) == 2
    assert len(store.media_paths) == 3


async def test_a_bearer_token_is_sent_verbatim_and_never_refreshed(
    gcs: tuple[GcsServer, TestServer], make: Callable[[GcsSource], GcsBackend]
) -> None:
    store, _ = gcs
    token = store.grant(token="ya29.configured-token")
    store.objects[("symbols", "a")] = b"x"
    backend = make(source(bearer_token=token))
    assert await read_all(await backend.open("a")) == b"x"
    store.tokens.clear()
    with pytest.raises(base.PermissionDenied, match="401"):
        await backend.open("a")
    assert store.authorizations == ["Bearer ya29.configured-token"] * 2
    assert store.assertions == []


async def test_a_token_without_access_to_the_bucket_is_denied_and_reported_once(
    gcs: tuple[GcsServer, TestServer],
    make: Callable[[GcsSource], GcsBackend],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="symbol_proxy.backends.gcs")
    store, _ = gcs
    token = store.grant(buckets={"another-bucket"})
    backend = make(source(id="gcs-forbidden", bearer_token=token))
    for _ in range(3):
        with pytest.raises(base.PermissionDenied, match="403 forbidden"):
            await backend.open("a")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "gcs-forbidden" in warnings[0] and "download" in warnings[0] and "403 forbidden" in warnings[0]
    assert token not in caplog.text
    assert token not in repr(backend) and token not in repr(backend.auth)


async def test_a_key_the_token_endpoint_rejects_is_denied_with_the_oauth_error(
    gcs: tuple[GcsServer, TestServer],
    make: Callable[[GcsSource], GcsBackend],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    backend = make(service_account(other_key, id="gcs-wrong-key"))
    for _ in range(2):
        with pytest.raises(base.PermissionDenied, match="invalid_grant") as caught:
            await backend.open("a")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "gcs-wrong-key" in warnings[0] and "token" in warnings[0] and "invalid_grant" in warnings[0]
    secret_line = _pem(other_key).splitlines()[1]
    assert secret_line not in caplog.text and secret_line not in str(caught.value)


async def test_an_unusable_private_key_is_a_download_error_not_a_refusal(
    make: Callable[[GcsSource], GcsBackend],
) -> None:
    backend = make(source(client_email=EMAIL, private_key="-----BEGIN PRIVATE KEY-----\nnot a key\n"))
    with pytest.raises(base.UpstreamError, match="failed encoding JWT") as caught:
        await backend.open("a")
    assert not isinstance(caught.value, base.PermissionDenied)
    assert caught.value.retryable is False


async def test_a_private_key_pasted_with_literal_newline_escapes_works(
    gcs: tuple[GcsServer, TestServer], make: Callable[[GcsSource], GcsBackend], service_key: rsa.RSAPrivateKey
) -> None:
    store, _ = gcs
    store.objects[("symbols", "a")] = b"x"
    escaped = _pem(service_key).replace("\n", "\\n")
    assert await read_all(await make(source(client_email=EMAIL, private_key=escaped)).open("a")) == b"x"


async def test_a_failing_token_endpoint_is_an_upstream_error_and_is_not_cached(
    gcs: tuple[GcsServer, TestServer], make: Callable[[GcsSource], GcsBackend], service_key: rsa.RSAPrivateKey
) -> None:
    store, _ = gcs
    store.objects[("symbols", "a")] = b"x"
    store.fail_token_endpoint = 503
    backend = make(service_account(service_key))
    with pytest.raises(base.UpstreamError) as caught:
        await backend.open("a")
    assert caught.value.retryable and caught.value.status == 503
    store.fail_token_endpoint = None
    assert await read_all(await backend.open("a")) == b"x"


async def test_a_body_that_does_not_match_its_md5_is_malformed(
    gcs: tuple[GcsServer, TestServer], make: Callable[[GcsSource], GcsBackend]
) -> None:
    store, _ = gcs
    store.wrong_md5 = True
    store.objects[("symbols", "a")] = b"x" * 1000
    with pytest.raises(base.Malformed, match="MD5"):
        await read_all(await make(source(bearer_token=store.grant())).open("a"))


async def test_the_metadata_server_supplies_tokens_when_no_credentials_are_configured(
    gcs: tuple[GcsServer, TestServer],
    make: Callable[[GcsSource], GcsBackend],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, server = gcs
    address = f"{server.host}:{server.port}"
    monkeypatch.setenv("GCE_METADATA_IP", address)  # where google-auth looks for the server
    # google-auth reads GCE_METADATA_HOST once, when it is imported; the test sets what it read.
    monkeypatch.setattr(google.auth.compute_engine._metadata, "_GCE_METADATA_HOST", address)
    store.objects[("symbols", "a")] = b"x"
    backend = make(source())
    assert await read_all(await backend.open("a")) == b"x"
    assert await read_all(await backend.open("a")) == b"x"
    assert store.metadata_requests == 1
    assert store.assertions == []


async def test_application_default_credentials_read_a_service_account_key_file(
    gcs: tuple[GcsServer, TestServer],
    make: Callable[[GcsSource], GcsBackend],
    service_key: rsa.RSAPrivateKey,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    store, server = gcs
    key_file = tmp_path / "key.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "client_email": EMAIL,
                "private_key": _pem(service_key),
                "token_uri": str(server.make_url("/token")),
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    store.objects[("symbols", "a")] = b"x"
    assert await read_all(await make(source()).open("a")) == b"x"
    assert len(store.assertions) == 1 and store.metadata_requests == 0


async def test_workload_identity_federation_with_impersonation_from_an_adc_file(
    gcs: tuple[GcsServer, TestServer],
    make: Callable[[GcsSource], GcsBackend],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """An ``external_account`` file, as ``gcloud iam workload-identity-pools create-cred-config``
    writes it: the pod's OIDC token is exchanged at the STS endpoint, and the federated token
    impersonates a service account, whose token reads the bucket."""
    store, server = gcs
    store.subject_token = "eyJ.oidc-token-of-the-pod.sig"
    subject = tmp_path / "oidc-token"
    subject.write_text(store.subject_token)
    config = {
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k8s",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": str(server.make_url("/sts")),
        "credential_source": {"file": str(subject)},
        "service_account_impersonation_url": str(
            server.make_url(f"/v1/projects/-/serviceAccounts/{EMAIL}:generateAccessToken")
        ),
    }
    (tmp_path / "adc.json").write_text(json.dumps(config))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "adc.json"))
    store.objects[("symbols", "a")] = b"federated"
    assert await read_all(await make(source()).open("a")) == b"federated"
    (exchange,) = store.exchanges
    assert exchange["subject_token"] == store.subject_token
    assert store.impersonated == [EMAIL]
    assert store.metadata_requests == 0 and store.assertions == []


async def test_no_credentials_anywhere_is_denied(
    make: Callable[[GcsSource], GcsBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The autouse fixture points GCE_METADATA_IP at a closed port: no metadata server either.
    with pytest.raises(base.PermissionDenied, match="none found") as caught:
        await make(source()).open("a")
    assert isinstance(caught.value, gcp_auth.TokenRefused) and caught.value.code == "no_credentials"


async def test_storage_emulator_host_redirects_downloads_and_drops_authentication(
    fake_gcs: FakeGcs,
    session: aiohttp.ClientSession,
    settings: UpstreamSettings,
    service_key: rsa.RSAPrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_gcs.upload("symbols", "emulated/a", b"emulated")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"127.0.0.1:{fake_gcs.port}")
    backend = GcsBackend(service_account(service_key), settings, session=session)
    assert backend.api_root == fake_gcs.endpoint
    assert backend.auth is None  # no token is fetched, none is sent
    assert await read_all(await backend.open("emulated/a")) == b"emulated"


def test_the_default_endpoints_are_googles() -> None:
    assert gcp_auth.DEFAULT_TOKEN_URL == "https://oauth2.googleapis.com/token"
    assert gcp_auth.SCOPE_READ_ONLY.endswith("/devstorage.read_only")


@pytest.mark.parametrize("fault", ["hang", "stall_body"])
async def test_a_server_that_stops_answering_is_a_timeout(
    gcs: tuple[GcsServer, TestServer], session: aiohttp.ClientSession, fault: str
) -> None:
    store, server = gcs
    setattr(store, fault, True)
    store.objects[("symbols", "a")] = b"x" * 100_000
    settings = UpstreamSettings(connect_timeout=2, head_timeout=0.3, read_timeout=0.3, total_timeout=30)
    root = str(server.make_url("")).rstrip("/")
    backend = GcsBackend(source(bearer_token=store.grant()), settings, session=session, api_root=root)
    with pytest.raises(base.UpstreamTimeout):
        await read_all(await backend.open("a"))
