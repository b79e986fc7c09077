"""Tokens from a file that changes (a mounted Secret): rotation and revocation without a restart.

Covered: a token works; after the file is rewritten the old token is refused and the new one works;
a rewrite into something invalid, or removing the file, keeps the last good tokens; between checks
the file is not read again (``interval``).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from symbol_service import tokens
from symbol_service.config import TokenFile


def write(path: Path, *named: tuple[str, str]) -> None:
    records = [
        {"name": name, "hash": tokens.hash_token(token), "scopes": ["vso.symbols"]} for name, token in named
    ]
    path.write_text(yaml.safe_dump(records))
    stamp = path.stat().st_mtime_ns + 1_000_000_000  # a distinct mtime even on coarse clocks
    os.utime(path, ns=(stamp, stamp))


def test_rotation_revocation_and_bad_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    old, new = tokens.new_token(), tokens.new_token()
    write(path, ("old", old))
    source = TokenFile(path, interval=0)
    principal = source.authenticate(old)
    assert principal is not None and principal.name == "old"
    write(path, ("new", new))
    assert source.authenticate(old) is None
    assert source.authenticate(new) is not None
    path.write_text("- name: broken\n  hash: md5:nope\n  scopes: [vso.symbols]\n")
    assert source.authenticate(new) is not None
    path.unlink()
    assert source.authenticate(new) is not None


def test_the_file_is_not_read_between_checks(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    old, new = tokens.new_token(), tokens.new_token()
    write(path, ("old", old))
    source = TokenFile(path, interval=3600)
    write(path, ("new", new))
    assert source.authenticate(old) is not None
    assert source.authenticate(new) is None
