"""``client`` and ``client/{clientType}``: the running service hands out its own publish CLI as a wheel.

Covered: ``HEAD client`` answers the version header; ``GET client/wheel`` gives a wheel whose
``RECORD`` hashes hold, with an ``ETag`` that a conditional GET answers with 304; Azure's own client
types and unknown ones get the spec's 404s. The wheel fetched from the service is ``pip install``-ed
(offline, ``--no-deps``) into a fresh virtualenv that sees only this environment's third-party
packages (not this checkout's code): ``pip check`` finds every declared requirement met, the
installed ``symbol-publish`` runs ``--help`` and publishes fixtures into the service, sealed, from
the installed copy. ``requirements`` (pure) keeps version ranges and platform markers and drops the
``extra`` markers, and refuses an import this distribution does not declare.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import subprocess
import sys
import sysconfig
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from symbol_publish.cli import ExitCode
from symbol_service import clientwheel
from tests.publish.test_service import Service, service  # noqa: F401  (the running service fixture)
from tests.support import shared


def _open(
    target: Service, path: str, method: str = "GET", **headers: str
) -> tuple[int, bytes, dict[str, str]]:
    auth = "Basic " + base64.b64encode(f":{target.token}".encode()).decode()
    request = urllib.request.Request(
        f"{target.url}/_apis/symbol/{path}", method=method, headers={"Authorization": auth, **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _check_record(wheel: bytes) -> list[str]:
    """Every member's hash and size as ``RECORD`` states them; the member names."""
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        names = archive.namelist()
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        rows = list(csv.reader(io.StringIO(archive.read(record).decode())))
        assert sorted(row[0] for row in rows) == sorted(names)
        for name, digest, size in rows:
            if name == record:
                assert (digest, size) == ("", "")
                continue
            data = archive.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (f"sha256={expected}", len(data)), name
    return names


def _run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, timeout=300)


def test_the_service_hands_out_a_wheel_that_installs_and_publishes(service: Service, tmp_path: Path) -> None:  # noqa: F811
    version = importlib.metadata.version("symbol-operator")
    status, _, headers = _open(service, "client", method="HEAD")
    assert (status, headers.get("symbol-client-version")) == (200, version)

    status, wheel, headers = _open(service, "Client/WHEEL")
    assert status == 200 and headers["Content-Type"] == "application/zip"
    filename = f"symbol_publish-{version}-py3-none-any.whl"
    assert headers["Content-Disposition"] == f'attachment; filename="{filename}"'
    assert headers["ETag"] == f'"{hashlib.sha256(wheel).hexdigest()}"'
    status, body, _ = _open(service, "client/wheel", **{"If-None-Match": headers["ETag"]})
    assert (status, body) == (304, b"")
    for kind, type_key in (("EXE", "ClientNotFoundException"), ("zipapp", "ClientTypeInvalidException")):
        status, body, _ = _open(service, f"client/{kind}")
        assert status == 404 and f'"typeKey":"{type_key}"' in body.decode(), kind

    names = _check_record(wheel)
    assert "symbol_publish/cli.py" in names and "symbol_service/vsohash.py" in names
    assert "symbol_service/app.py" not in names  # only what the CLI imports
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        metadata = archive.read(f"symbol_publish-{version}.dist-info/METADATA").decode()
    assert "Requires-Dist: symbolic" in metadata and "extra ==" not in metadata

    path = tmp_path / filename
    path.write_bytes(wheel)
    venv = tmp_path / "venv"
    assert _run(sys.executable, "-m", "venv", venv).returncode == 0
    python, script = venv / "bin" / "python", venv / "bin" / "symbol-publish"
    site = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    )
    # This environment's third-party packages, without processing its .pth files: this checkout's
    # editable install stays out of sight.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    assert _run(python, "-c", "import symbol_publish").returncode != 0
    assert _run(python, "-c", "import aiohttp, symbolic").returncode == 0

    installed = _run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", path)
    assert installed.returncode == 0, installed.stderr
    checked = _run(python, "-m", "pip", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    where = _run(python, "-c", "import symbol_publish; print(symbol_publish.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout
    helped = _run(script, "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: symbol-publish"), helped.stderr

    published = _run(
        script, shared.FIXTURES / "pe", "--server", service.url, "--request", "wheel/1", env=service.env()
    )
    assert published.returncode in (ExitCode.OK, ExitCode.SKIPPED), published.stderr
    request = service.get("requests?requestName=wheel/1")
    assert request["status"] == "sealed" and request["size"] > 0


def test_requirements_keep_ranges_and_markers_and_drop_extras() -> None:
    declared = [
        "aiohttp<4,>=3.10",
        'uvloop>=0.19; sys_platform != "win32"',
        'symbolic<14,>=13.9; extra == "publish"',
        'kopf>=1.37; extra == "operator"',
        "PyYAML>=6",
    ]
    found = clientwheel.requirements(
        ["aiohttp", "symbolic", "yaml", "uvloop"], declared, {"yaml": ["PyYAML"]}
    )
    assert found == [
        "PyYAML>=6",
        "aiohttp<4,>=3.10",
        "symbolic<14,>=13.9",
        'uvloop>=0.19; sys_platform != "win32"',
    ]
    with pytest.raises(LookupError, match="numpy"):
        clientwheel.requirements(["numpy"], declared, {})


def test_the_wheel_holds_the_import_closure_of_the_cli() -> None:
    wheel = clientwheel.from_installed()
    names = _check_record(wheel.data)
    modules = {
        n.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for n in names if n.endswith(".py")
    }
    publish_dir = Path(clientwheel.__file__).parents[2] / "publish" / "symbol_publish"
    assert {f"symbol_publish.{p.stem}" for p in publish_dir.glob("*.py") if p.stem != "__init__"} <= modules
    assert "symbol_proxy.server" not in modules and "symbol_service.handlers" not in modules
    assert clientwheel.from_installed().data == wheel.data  # the same bytes every time: one ETag


def test_the_closure_follows_relative_and_function_local_imports(tmp_path: Path) -> None:
    package = tmp_path / "symbol_publish"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n\ndef later():\n    import rich.console\n")
    (package / "b.py").write_text("from .c import thing\nfrom symbol_service.vsohash import BlobId\n")
    (package / "c.py").write_text("import aiohttp\nthing = 1\n")
    (package / "unused.py").write_text("import kopf\n")
    service_package = tmp_path / "symbol_service"
    service_package.mkdir()
    (service_package / "__init__.py").write_text("")
    (service_package / "vsohash.py").write_text("import hashlib\n")

    def find(module: str) -> tuple[Path, bool] | None:
        base = tmp_path.joinpath(*module.split("."))
        if (base / "__init__.py").is_file():
            return base / "__init__.py", True
        return (base.with_suffix(".py"), False) if base.with_suffix(".py").is_file() else None

    modules, third_party = clientwheel.closure(["symbol_publish.a"], find)
    assert set(modules) == {
        "symbol_publish",
        "symbol_publish.a",
        "symbol_publish.b",
        "symbol_publish.c",
        "symbol_service",
        "symbol_service.vsohash",
    }
    assert third_party == {"rich", "aiohttp"}
