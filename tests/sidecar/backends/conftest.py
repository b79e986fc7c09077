"""Fixtures for the cloud backends: real servers on 127.0.0.1 and the fixture files to put in them.

fake-gcs-server (a real GCS JSON-API emulator, ``tests/support/objectstores.py``) is started once
per session too, with an empty bucket ``symbols``; tests upload what they need under their own names.

The S3 server (moto, in a child process) is started once per session and filled once: every keyed
fixture file under its SymStore key in bucket ``symbols`` and under its lowercased SSQP key below the
prefix ``team-a`` in bucket ``team-symbols``. Keys come from ``MANIFEST.json``, never from this code.

No test may reach a real cloud endpoint: the AWS variables of the environment are cleared, profiles
point at files that do not exist, and the EC2 instance metadata service is disabled (botocore would
otherwise probe 169.254.169.254 when the credential chain comes up empty).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest

from symbol_proxy.config import S3Source, UpstreamSettings
from tests.support import shared
from tests.support.net import free_port
from tests.support.objectstores import FakeGcs, Minio, start_fake_gcs, start_minio
from tests.support.s3server import S3Server, start_s3_server

REGION = "us-east-1"
ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


@dataclasses.dataclass(frozen=True)
class StoredFile:
    """A fixture file and the keys it was uploaded under."""

    path: Path
    symstore_key: str
    ssqp_key: str

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()


@dataclasses.dataclass(frozen=True)
class S3World:
    server: S3Server | Minio
    """moto (with a request log: ``requests()``) or MinIO; both have ``endpoint``."""
    admin: tuple[str, str]
    """Access key id and secret of an IAM user allowed everything."""
    powerless: tuple[str, str]
    """Access key id and secret of an IAM user with no policy: every read is AccessDenied."""
    files: list[StoredFile]

    def source(self, **overrides: Any) -> S3Source:
        """An ``s3`` source on the ``symbols`` bucket reached through the local server."""
        fields: dict[str, Any] = {
            "id": "s3-test",
            "type": "s3",
            "bucket": "symbols",
            "region": [REGION, self.server.endpoint],
            "access_key": self.admin[0],
            "secret_key": self.admin[1],
        }
        fields.update(overrides)
        return S3Source.model_validate(fields)

    def client(self) -> Any:
        """A synchronous boto3 client with the admin's keys, for test setup."""
        return boto3.client(
            "s3",
            region_name=REGION,
            endpoint_url=self.server.endpoint,
            aws_access_key_id=self.admin[0],
            aws_secret_access_key=self.admin[1],
        )


def keyed_files() -> list[StoredFile]:
    """Fixture files that have both a SymStore and an SSQP key in the manifest."""
    files = []
    for entry in shared.manifest()["files"]:
        objects = entry.get("objects") or []
        if len(objects) != 1:
            continue
        keys = objects[0].get("keys") or {}
        if keys.get("symsrv") and keys.get("ssqp"):
            files.append(
                StoredFile(shared.FIXTURES / entry["path"], keys["symsrv"][0], keys["ssqp"][0].lower())
            )
    return files


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "STORAGE_EMULATOR_HOST",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GCE_METADATA_HOST",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))  # no well-known ADC file
    # google-auth probes the metadata server's address before using it: a closed loopback port
    # answers at once, and no probe leaves the machine.
    monkeypatch.setenv("GCE_METADATA_IP", f"127.0.0.1:{free_port()}")


@pytest.fixture
def settings() -> UpstreamSettings:
    """Short timeouts, so a hanging test fails fast; one retry, as a small deployment would use."""
    return UpstreamSettings(connect_timeout=2, head_timeout=10, read_timeout=10, total_timeout=60, retries=1)


def _iam_user(iam: Any, name: str, policy: str | None) -> tuple[str, str]:
    iam.create_user(UserName=name)
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="all", PolicyDocument=policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture(scope="session")
def s3_world() -> Iterator[S3World]:
    if not (shared.FIXTURES / "MANIFEST.json").exists():
        pytest.fail("the shared fixtures are not beside the repository (set SYMBOL_SHARED_DIR)")
    server = start_s3_server()
    try:
        setup = {"region_name": REGION, "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", endpoint_url=server.endpoint, **setup)
        admin = _iam_user(iam, "symbol-admin", ALLOW_ALL)
        powerless = _iam_user(iam, "symbol-nobody", None)
        files = keyed_files()
        _fill(boto3.client("s3", endpoint_url=server.endpoint, **setup), files)
        server.enable_auth()
        yield S3World(server, admin, powerless, files)
    finally:
        server.stop()


def _fill(s3: Any, files: list[StoredFile]) -> None:
    """The buckets and objects every S3 world holds."""
    s3.create_bucket(Bucket="symbols")
    s3.create_bucket(Bucket="team-symbols")
    for stored in files:
        data = stored.data
        s3.put_object(Bucket="symbols", Key=stored.symstore_key, Body=data)
        s3.put_object(Bucket="team-symbols", Key=f"team-a/{stored.ssqp_key}", Body=data)
    s3.put_object(Bucket="symbols", Key="empty/object", Body=b"")


@pytest.fixture(scope="session")
def minio_world() -> Iterator[S3World]:
    """The same buckets and objects in MinIO, reached with the root user's keys. MinIO has no IAM
    user without policies here (that needs its admin API), so ``powerless`` is empty: tests of
    refusals by policy and of the request log run against moto only."""
    if not (shared.FIXTURES / "MANIFEST.json").exists():
        pytest.fail("the shared fixtures are not beside the repository (set SYMBOL_SHARED_DIR)")
    with start_minio() as server:
        keys = {"aws_access_key_id": server.access_key, "aws_secret_access_key": server.secret_key}
        files = keyed_files()
        _fill(boto3.client("s3", region_name=REGION, endpoint_url=server.endpoint, **keys), files)
        yield S3World(server, (server.access_key, server.secret_key), ("", ""), files)


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[FakeGcs]:
    with start_fake_gcs() as server:
        server.create_bucket("symbols")
        yield server
