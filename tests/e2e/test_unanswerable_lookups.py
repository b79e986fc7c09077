"""Requests a store's layout cannot answer are 404s, and counted (issue 7, item 8).

A debuginfod ``executable`` request and a Breakpad ``.sym`` request carry no name that a
``symstore``/``ssqp`` store could file them under; such a source is never asked, and
``symproxy_unanswerable_lookups_total`` says so, by layout and file type.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import StartProxy

BUILD_ID = "ab" * 20
BREAKPAD = "/symbols/crash.pdb/3249D99D0C4049318610F4E4FB0B69361/crash.sym"


async def unanswerable(http: aiohttp.ClientSession, url: object) -> dict[tuple[str, str], float]:
    async with http.get(str(url)) as response:
        text = await response.text()
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "symproxy_unanswerable_lookups":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["layout"], sample.labels["filetype"]] = sample.value
    return counts


@pytest.mark.parametrize("layout", ["symstore", "ssqp"])
async def test_requests_without_a_file_name_are_counted_on_symstore_layouts(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession, layout: str
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    proxy = await start_proxy(
        [{"id": "s", "type": "filesystem", "path": str(store), "layout": {"type": layout}}]
    )
    for path in (f"/buildid/{BUILD_ID}/executable", BREAKPAD, f"/buildid/{BUILD_ID}/debuginfo"):
        async with http.get(proxy.make_url(path)) as response:
            assert response.status == 404, path
    counts = await unanswerable(http, proxy.make_url("/metrics"))
    assert counts.get((layout, "elf_code")) == 1
    assert counts.get((layout, "breakpad")) == 1
    # `_.debug/elf-buildid-sym-<id>/_.debug` is a place a symstore has for debug files: answerable.
    assert (layout, "elf_debug") not in counts


async def test_layouts_that_can_answer_are_not_counted(
    tmp_path: Path, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    proxy = await start_proxy(
        [{"id": "n", "type": "filesystem", "path": str(store), "layout": {"type": "native"}}]
    )
    for path in (f"/buildid/{BUILD_ID}/executable", BREAKPAD):
        async with http.get(proxy.make_url(path)) as response:
            assert response.status == 404, path
    assert await unanswerable(http, proxy.make_url("/metrics")) == {}
