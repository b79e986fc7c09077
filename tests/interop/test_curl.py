"""curl against the proxy: what a download script or a CI job does with a symbol server's URL.

``curl --fail`` must get the exact bytes of a hit and of a miss-then-download, exit 22 on a file no
source has (a 404, not a 5xx), resume a partial download with ``-C -`` (a Range request), and get
the same bytes when it offers compressed encodings.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import StartProxy
from tests.interop.test_debuginfod_clients import require, run
from tests.support.shared import keyed_objects
from tests.support.upstream import UpstreamStore

pytestmark = pytest.mark.interop

PDB = next(o for o in keyed_objects() if o.filetype.value == "pdb" and o.keys.get("symsrv"))
PDB_KEY = PDB.keys["symsrv"][0]


async def test_curl_downloads_resumes_and_fails_cleanly_through_the_proxy(
    tmp_path: Path, start_proxy: StartProxy, upstream: tuple[UpstreamStore, str]
) -> None:
    curl = require("curl")
    store, url = upstream
    store.put(PDB_KEY, PDB.data)
    proxy = await start_proxy([{"id": "up", "type": "http", "url": url, "layout": {"type": "symstore"}}])
    target = str(proxy.make_url(f"/symbols/{PDB_KEY}"))

    for attempt in ("miss", "hit"):
        out = tmp_path / f"{attempt}.pdb"
        code, text = await run(curl, "-sS", "--fail", "-o", str(out), target)
        assert code == 0, text
        assert out.read_bytes() == PDB.data, attempt

    # An interrupted download resumed with -C - (curl sends a Range from the size it has).
    partial = tmp_path / "resumed.pdb"
    partial.write_bytes(PDB.data[: len(PDB.data) // 3])
    code, text = await run(curl, "-sS", "--fail", "-C", "-", "-o", str(partial), target)
    assert code == 0, text
    assert partial.read_bytes() == PDB.data

    # Offering compressed encodings changes nothing about the bytes written.
    compressed = tmp_path / "compressed.pdb"
    code, text = await run(curl, "-sS", "--fail", "--compressed", "-o", str(compressed), target)
    assert code == 0, text
    assert compressed.read_bytes() == PDB.data

    # A file no source has: curl --fail exits 22 and sees a 404.
    name, _, _ = PDB_KEY.split("/")
    missing = str(proxy.make_url(f"/symbols/{name}/{'0' * 32}1/{name}"))
    code, text = await run(
        curl, "-sS", "--fail", "-o", str(tmp_path / "missing"), "-w", "%{http_code}", missing
    )
    assert code == 22, text
    assert text.strip().endswith("404"), text
