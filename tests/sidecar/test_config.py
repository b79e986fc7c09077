"""The configuration format: Symbolicator sources pasted unchanged, defaults, and error messages
that name the key. Also the CLI's ``check-config`` exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from symbol_proxy.config import ConfigError, HttpSource, S3Source, load_text

SENTRY_BUILTIN_STYLE = """
sources:
  - id: sentry:microsoft
    type: http
    url: https://msdl.microsoft.com/download/symbols/
    layout: {type: symstore}
    filters: {filetypes: [pe, pdb, portablepdb]}
    is_public: true
  - id: sentry:intel
    type: http
    url: https://software.intel.com/sites/downloads/symbols/
    layout: {type: symstore}
    filters: {filetypes: [pe, pdb]}
    headers: {User-Agent: curl/7.72.0}
    has_index: true
    is_public: true
  - id: sentry:electron
    type: http
    url: https://symbols.electronjs.org/
    layout: {type: native}
    filters:
      filetypes: [pdb, breakpad, sourcebundle]
      path_patterns: ["*electron*", "*ffmpeg*"]
  - id: sentry:ubuntu
    type: http
    url: https://debuginfod.ubuntu.com/buildid/
    layout: {type: debuginfod}
    filters: {filetypes: [elf_code, elf_debug]}
  - id: my-minio
    type: s3
    bucket: symbols
    prefix: team-a
    region: [minio, "http://127.0.0.1:9000"]
    access_key: ${S3_KEY}
    secret_key: ${file:SECRET_PATH}
    layout: {type: ssqp, casing: lowercase}
"""


def test_symbolicator_sources_are_accepted_unchanged(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value\n")
    config = load_text(
        SENTRY_BUILTIN_STYLE.replace("SECRET_PATH", str(secret)),
        env={"S3_KEY": "AKIAEXAMPLE"},
        read_file=lambda p: Path(p).read_text(),
    )
    assert [s.id for s in config.sources] == [
        "sentry:microsoft",
        "sentry:intel",
        "sentry:electron",
        "sentry:ubuntu",
        "my-minio",
    ]
    s3 = config.sources[4]
    assert isinstance(s3, S3Source)
    assert s3.region == ("minio", "http://127.0.0.1:9000")
    assert s3.secret_key.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(config) and "AKIAEXAMPLE" not in repr(config)
    intel = config.sources[1]
    assert isinstance(intel, HttpSource) and intel.has_index


def test_every_setting_has_a_default() -> None:
    config = load_text("")
    assert config.sources == ()
    assert config.listen.host == "127.0.0.1"
    assert config.cache.max_size > 0 and config.cache.negative_ttl > config.cache.error_ttl


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ("cache: {max_sise: 1GiB}", "cache.max_sise: unknown setting"),
        ("cache: {max_size: lots}", "cache.max_size"),
        ("cache: {negative_ttl: -5}", "cache.negative_ttl"),
        ("listen: {port: 70000}", "listen.port"),
        ("sources: [{id: a, type: s3, region: us-east-1}]", "sources[0].bucket (source 'a'): Field required"),
        ("sources: [{id: a, type: http, url: not-a-url}]", "sources[0].url (source 'a')"),
        (
            "sources: [{id: a, type: http, url: 'http://x/', bukcet: b}]",
            "sources[0].bukcet (source 'a'): unknown",
        ),
        ("sources: [{id: a, type: ftp}]", "sources[0]"),
        ("sources: [{id: a, type: s3, bucket: b, region: [x]}]", "sources[0].region"),
        ("sources: [{id: a, type: sentry, url: 'https://s/'}]", "exactly one of token or cookies"),
        ("sources: [{id: a, type: gcs, bucket: b, private_key: k}]", "private_key and client_email"),
        ("sources: [{id: a, type: filesystem, path: /x}, {id: a, type: filesystem, path: /y}]", "duplicate"),
        ("sources: [{id: a, type: http, url: 'http://x/', layout: {type: flat}}]", "sources[0].layout.type"),
        ("sources: [{id: a, type: http, url: 'http://x/', filters: {filetypes: [exe]}}]", "filetypes"),
        (
            "sources: [{id: a, type: http, url: 'http://x/', filters: {path_patterns: ['a**b']}}]",
            "must be a whole path component",
        ),
        (
            "sources: [{id: a, type: http, url: 'http://x/', filters: {path_patterns: ['[abc']}}]",
            "invalid glob",
        ),
        (
            "sources: [{id: a, type: http, url: '${MISSING}'}]",
            "sources[0].url: environment variable 'MISSING'",
        ),
        ("- just\n- a list", "must be a mapping"),
        ("sources: [unclosed", "not valid YAML"),
    ],
)
def test_invalid_settings_fail_with_a_message_naming_the_key(document: str, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_text(document, env={})
    assert named in str(error.value)


def test_check_config_exits_nonzero_and_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cache: {dir: /tmp/x, max_sise: 1}\n")
    result = subprocess.run(
        [sys.executable, "-m", "symbol_proxy", "check-config", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "cache.max_sise: unknown setting" in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text("sources: [{id: a, type: filesystem, path: /srv/symbols}]\n")
    result = subprocess.run(
        [sys.executable, "-m", "symbol_proxy", "check-config", str(good)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "ok: 1 sources" in result.stdout
