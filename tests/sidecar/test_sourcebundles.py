"""Reading sources out of Symbolicator source bundles."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from symbol_proxy import sourcebundles
from tests.support.sourcebundles import write_source_bundle

SOURCES = {"/home/ci/src/main.c": b"int main(void) { return 0; }\n", "C:\\src\\win.c": b"// windows\n"}


def bundle(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "bundle.zip"
    path.write_bytes(data)
    return path


def written(tmp_path: Path) -> Path:
    return bundle(tmp_path, write_source_bundle(SOURCES, code_id="ab" * 20, debug_id="ab" * 16, name="x"))


@pytest.mark.parametrize(
    ("asked", "original"),
    [
        ("/home/ci/src/main.c", "/home/ci/src/main.c"),
        ("/home/ci//src/./main.c", "/home/ci/src/main.c"),
        ("C:\\src\\win.c", "C:\\src\\win.c"),
        ("C:/src/win.c", "C:\\src\\win.c"),
    ],
)
def test_sources_are_found_by_their_original_path(tmp_path: Path, asked: str, original: str) -> None:
    assert sourcebundles.read_source(written(tmp_path), asked, max_size=1 << 20) == SOURCES[original]


def test_a_path_the_bundle_lacks_is_none(tmp_path: Path) -> None:
    assert sourcebundles.read_source(written(tmp_path), "/home/ci/src/other.c", max_size=1 << 20) is None


def test_a_plain_zip_with_a_manifest_is_a_bundle_too(tmp_path: Path) -> None:
    data = write_source_bundle(SOURCES, code_id="ab" * 20, debug_id="ab" * 16, name="x")[8:]
    assert sourcebundles.read_source(bundle(tmp_path, data), "/home/ci/src/main.c", max_size=1 << 20)


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        b"SYSB\x02\x00\x00\x00 not a zip",
        zipped({"files/a.c": b"x"}),
        zipped({"manifest.json": b"{not json"}),
        zipped({"manifest.json": b'{"files": []}'}),
        zipped({"manifest.json": b'{"files": {"files/a.c": {"type": "source", "path": "/a.c"}}}'}),
    ],
    ids=["not-zip", "no-manifest", "bad-json", "no-files-table", "member-missing"],
)
def test_unreadable_bundles_are_refused(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(sourcebundles.BadBundle):
        sourcebundles.read_source(bundle(tmp_path, data), "/a.c", max_size=1 << 20)


def test_a_member_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(sourcebundles.BadBundle):
        sourcebundles.read_source(written(tmp_path), "/home/ci/src/main.c", max_size=4)
