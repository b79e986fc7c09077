"""What the resolver probes and how it keys answers, for the keys real stores use (issue 7, part A).

Pure checks over every key of ``MANIFEST.json``: asked for by its own key, a store that holds the file
under that key is probed there; answers are shared only between spellings that probe the same
locations; nil ids, ``SymbolChecksum`` parsing and the portable-PDB id offset.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry

from symbol_proxy import checksums, keys
from symbol_proxy.breakers import Breakers
from symbol_proxy.config import load_text
from symbol_proxy.metrics import Metrics
from symbol_proxy.resolving import Resolver
from symbol_proxy.runtime import build_runtime
from tests.support.shared import FIXTURES, manifest


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def resolver_for(session: aiohttp.ClientSession, *layouts: dict[str, str]) -> Resolver:
    document = {
        "cache": {"dir": "/nonexistent"},
        "sources": [
            {"id": f"s{i}", "type": "filesystem", "path": "/nonexistent", "layout": layout}
            for i, layout in enumerate(layouts)
        ],
    }
    runtime = build_runtime(
        load_text(yaml.safe_dump(document)),
        session=session,
        metrics=Metrics(CollectorRegistry()),
        breakers=Breakers(threshold=5, window=60, block_time=60),
    )
    return runtime.resolver


def probed(resolver: Resolver, lookup: keys.Lookup) -> list[str]:
    return [c.location for source in resolver.sources for c in resolver.candidates(source, lookup)]


def manifest_keys(name: str) -> list[str]:
    return sorted(
        {
            key
            for entry in manifest()["files"]
            for obj in entry.get("objects") or []
            for key in (obj.get("keys") or {}).get(name, [])
        }
    )


def index2(key: str) -> str:
    head = key[:2]
    return f"{head[:1] if head.endswith(('.', '/')) else head}/{key}"


@pytest.mark.parametrize(
    ("layout", "key_name"),
    [("symstore", "symsrv"), ("native", "symsrv"), ("symstore_index2", "symsrv"), ("ssqp", "ssqp")],
)
async def test_every_manifest_key_is_probed_where_the_store_keeps_it(
    layout: str, key_name: str, session: aiohttp.ClientSession
) -> None:
    resolver = resolver_for(session, {"type": layout})
    missing = []
    for key in manifest_keys(key_name):
        stored = index2(key) if layout == "symstore_index2" else key
        if stored not in probed(resolver, keys.parse_symsrv_request(key)):
            missing.append(key)
    assert not missing, missing  # e.g. portable PDBs' …FFFFFFFF, SSQP PE keys' uppercase stamps


async def test_answers_are_shared_only_by_spellings_that_probe_the_same_locations(
    session: aiohttp.ClientSession,
) -> None:
    key = manifest_keys("symsrv")[0]
    name, ident, _ = key.split("/")
    mixed = keys.parse_symsrv_request(f"{name.title()}/{ident}/{name.title()}")
    lower = keys.parse_symsrv_request(f"{name.lower()}/{ident.lower()}/{name.lower()}")
    assert mixed.cache_key == lower.cache_key  # one canonical key for the object

    keeping = resolver_for(session, {"type": "ssqp"}, {"type": "symstore"})
    assert keeping.cache_key(lower) == lower.cache_key
    assert keeping.cache_key(mixed) != keeping.cache_key(lower)
    assert name.title() in keeping.cache_key(mixed)

    for folding in (
        resolver_for(session, {"type": "ssqp"}),
        resolver_for(session, {"type": "symstore", "casing": "lowercase"}),
        resolver_for(session, {"type": "unified"}),
    ):
        assert folding.cache_key(mixed) == folding.cache_key(lower) == lower.cache_key


@pytest.mark.parametrize("name", ["app.exe", "mscordaccore.dll"])
@pytest.mark.parametrize("size_digits", [6, 8])
async def test_pe_ids_spelled_with_a_padded_size_share_an_answer_only_when_probing_the_same_locations(
    session: aiohttp.ClientSession, name: str, size_digits: int
) -> None:
    resolver = resolver_for(session, {"type": "symstore"})
    timestamp, size = "5AB38077", 0x2A000
    canonical = keys.parse_symsrv_request(f"{name}/{timestamp}{size:X}/{name}")
    spelled = keys.parse_symsrv_request(f"{name}/{timestamp}{size:0{size_digits}X}/{name}")
    locations = set(probed(resolver, spelled))
    assert spelled.cache_key != canonical.cache_key or locations == set(probed(resolver, canonical))
    assert set(probed(resolver, canonical)) <= locations


def test_nil_ids_alone_are_refused_and_with_a_name_keep_it() -> None:
    nil_key = next(k for k in manifest_keys("breakpad") if not k.split("/")[1].strip("0"))
    nil_id = nil_key.split("/")[1]
    for parse in (
        lambda: keys.parse_unified_request(f"{nil_id[:2]}/{nil_id[2:]}/breakpad"),
        lambda: keys.parse_debuginfod_request("0" * 40, "debuginfo"),
        lambda: keys.parse_symsrv_request(f"_.debug/elf-buildid-sym-{'0' * 40}/_.debug"),
        lambda: keys.parse_symsrv_request(f"_.dwarf/mach-uuid-sym-{'0' * 32}/_.dwarf"),
    ):
        with pytest.raises(keys.NotALookup, match="zeros"):
            parse()
    lookup = keys.parse_symsrv_request(nil_key)
    assert lookup.name_required == nil_key.split("/")[0].lower()
    assert keys.parse_symsrv_request(manifest_keys("breakpad")[0]).name_required is None


def test_a_symbol_checksum_is_forwarded_as_sent_and_keyed_normalised() -> None:
    lookup = keys.parse_symsrv_request(manifest_keys("symsrv")[0])
    digest = "Ab" * 32
    sent = f"sha256:{digest}"
    checked = keys.with_checksum(lookup, sent)
    assert {a.query.debug_checksum for a in checked.alternatives} == {sent}
    assert checked.cache_key == keys.with_checksum(lookup, f"SHA256:{digest.lower()}").cache_key
    assert checked.cache_key != lookup.cache_key
    assert checked.cache_key != keys.with_checksum(lookup, "SHA256:" + "cd" * 32).cache_key
    for bad in ("", "SHA256", "SHA256:xyz", "SHA256:abcd;"):
        with pytest.raises(keys.BadChecksum):
            keys.with_checksum(lookup, bad)


def _portable_fixtures() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(e, e["objects"][0]) for e in manifest()["files"] if e["format"] == "portablepdb"]


@pytest.mark.parametrize("entry", [e for e, _ in _portable_fixtures()], ids=lambda e: e["path"])
def test_the_pdb_id_offset_points_at_the_manifests_debug_id(entry: dict[str, Any]) -> None:
    data = (FIXTURES / entry["path"]).read_bytes()
    offset = checksums.pdb_id_offset(data[:4096])
    assert offset is not None
    guid, stamp = entry["objects"][0]["debug_id"].rsplit("-", 1)
    pdb_id = data[offset : offset + checksums.PDB_ID_SIZE]
    assert pdb_id == uuid.UUID(guid).bytes_le + struct.pack("<I", int(stamp, 16))


def test_no_pdb_id_offset_outside_a_portable_pdb() -> None:
    windows_pdb = next(e for e in manifest()["files"] if e["format"] == "pdb")
    portable = (FIXTURES / _portable_fixtures()[0][0]["path"]).read_bytes()
    assert checksums.pdb_id_offset((FIXTURES / windows_pdb["path"]).read_bytes()[:4096]) is None
    assert checksums.pdb_id_offset(portable[:20]) is None  # cut inside the header
    assert checksums.pdb_id_offset(b"") is None
