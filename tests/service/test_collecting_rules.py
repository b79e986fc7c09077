"""The garbage collector's rules one at a time (``symbol_service.collecting``), beside the end-to-end
runs of ``test_collecting.py`` and the interleavings of ``test_collecting_window.py``:

- which locations are blobs and manifest segments (nothing else is read as one);
- the grace period's edge: an object exactly as old as the cutoff is young;
- a tombstone says until when it holds, an hour ahead, in UTC;
- blobs are deleted only while the run is in the first half of its tombstones' lifetime (measured
  on the collector's own monotonic clock, here a clock the test moves);
- the wait between condemning and deleting is ``SETTLE`` seconds unless a test replaces it;
- tombstones a crashed run left are removed once expired, and only they;
- the collector's clock is used when no time is given; its one log line says what it removed.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import uuid
from pathlib import Path

import pytest

from symbol_proxy.backends.base import Listed
from symbol_service import collecting, vsohash
from symbol_service.blobs import BlobStore, tombstone
from symbol_service.collecting import BLOBS, BLOCKS, REQUESTS, UPLOADS
from symbol_service.requeststore import MemoryRequestStore
from tests.service.test_collecting_window import SharedStore, old_blob

GRACE = datetime.timedelta(hours=24)
LOGGER = "symbol_service.collecting"


@pytest.fixture
def store(tmp_path: Path) -> SharedStore:
    root = tmp_path / "store"
    root.mkdir()
    return SharedStore(root)


def age(path: Path, by: datetime.timedelta) -> None:
    """Make the file ``by`` older (its modification time is what listings report)."""
    stamp = (datetime.datetime.now(datetime.UTC) - by).timestamp()
    os.utime(path, (stamp, stamp))


@pytest.mark.parametrize(
    ("location", "blob"),
    [
        (f"{BLOBS}0A1B2C.blob", "0A1B2C"),
        (f"{BLOBS}nested/0A1B2C.blob", None),
        (f"{BLOBS}0A1B2C.json", None),
        (f"{BLOBS}0A1B2C", None),
        (f"{BLOCKS}0A1B2C/ff.block", None),
    ],
)
def test_what_is_a_blob(location: str, blob: str | None) -> None:
    assert collecting.blob_of(location) == blob


@pytest.mark.parametrize(
    ("location", "request_id"),
    [
        (f"{REQUESTS}r1/entries/00000003.json", "r1"),
        (f"{REQUESTS}r1/other/00000003.json", None),
        (f"{REQUESTS}r1/entries", None),
        (f"{REQUESTS}r1/entries/x/00000003.json", None),
        # Not under the requests: as long as the requests' prefix, then what a segment looks like.
        (f"{UPLOADS}{'x' * (len(REQUESTS) - len(UPLOADS))}r1/entries/00000003.json", None),
    ],
)
def test_what_is_a_manifest_segment(location: str, request_id: str | None) -> None:
    assert collecting.request_of_segment(location) == request_id


def test_an_object_exactly_as_old_as_the_cutoff_is_young() -> None:
    cutoff = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)
    before = cutoff - datetime.timedelta(microseconds=1)
    listed = [
        Listed(f"{BLOBS}AA.blob", 1, cutoff),
        Listed(f"{BLOBS}BB.blob", 1, before),
        Listed(f"{BLOCKS}CC/1.block", 1, cutoff),
        Listed(f"{UPLOADS}DD", 1, before),
    ]
    decided = collecting.plan(listed, set(), {}, cutoff)
    assert (decided.blobs, decided.blocks, decided.uploads, decided.kept_young) == (
        [f"{BLOBS}BB.blob"],
        [],
        [f"{UPLOADS}DD"],
        2,
    )
    segment = f"{REQUESTS}gone/entries/00000000.json"
    assert collecting.orphans([Listed(segment, 1, cutoff)], set(), cutoff) == {}
    assert collecting.orphans([Listed(segment, 1, before)], set(), cutoff) == {"gone": [segment]}


class Clock:
    """The collector's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("minutes", "deleted"),
    [(29, True), (30, False), (59, False), (121, False)],
)
async def test_blobs_are_deleted_only_in_the_first_half_of_their_tombstones_life(
    store: SharedStore, monkeypatch: pytest.MonkeyPatch, minutes: int, deleted: bool
) -> None:
    blob_id = await old_blob(store, b"nobody names me " + uuid.uuid4().bytes)
    clock = Clock()
    monkeypatch.setattr(collecting.time, "monotonic", clock)
    seen: list[dict[str, str]] = []

    async def settle() -> None:
        (path,) = store.tombstones()
        seen.append(json.loads(path.read_bytes()))
        clock.now += minutes * 60  # a slow round: the wait, the second reading, many deletes

    later = datetime.datetime.now(datetime.UTC) + GRACE * 2
    collected = await collecting.collect(store, MemoryRequestStore(), grace=GRACE, now=later, settle=settle)
    assert collected.blobs == (1 if deleted else 0)
    assert (store.root / BlobStore.blob_location(blob_id)).exists() != deleted
    assert store.tombstones() == []  # removed either way: the blob is kept or gone

    (content,) = seen
    until = datetime.datetime.fromisoformat(content["until"])
    assert until.utcoffset() == datetime.timedelta(0)
    ahead = until - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(minutes=59) < ahead <= collecting.TOMBSTONE_LIFETIME


async def test_without_a_replacement_the_run_waits_settle_seconds(
    store: SharedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob_id = await old_blob(store, b"waited for " + uuid.uuid4().bytes)
    waits: list[float] = []
    real_sleep = collecting.asyncio.sleep

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(collecting.asyncio, "sleep", sleep)
    later = datetime.datetime.now(datetime.UTC) + GRACE * 2
    collected = await collecting.collect(store, MemoryRequestStore(), grace=GRACE, now=later)
    assert waits == [collecting.SETTLE] and collected.blobs == 1
    assert not (store.root / BlobStore.blob_location(blob_id)).exists()

    # A replacement is used instead of the wait.
    await old_blob(store, b"not waited for " + uuid.uuid4().bytes)
    calls: list[str] = []

    async def settle() -> None:
        calls.append("settle")

    async def no_wait() -> None:
        raise AssertionError("waited although a replacement was given")

    monkeypatch.setattr(collecting, "_sleep", no_wait)

    await collecting.collect(store, MemoryRequestStore(), grace=GRACE, now=later, settle=settle)
    assert calls == ["settle"] and waits == [collecting.SETTLE]


async def test_only_expired_tombstones_of_a_crashed_run_are_removed(store: SharedStore) -> None:
    fresh, stale = vsohash.vso_hash(b"fresh"), vsohash.vso_hash(b"stale")
    for blob_id in (fresh, stale):
        path = store.root / BlobStore.tombstone_location(blob_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tombstone(datetime.datetime.now(datetime.UTC)))
    age(store.root / BlobStore.tombstone_location(stale), collecting.TOMBSTONE_LIFETIME * 2)
    # Other objects as old, which the tombstone rule must not touch (a blob, kept while young, and
    # a staged block kept by a long grace).
    kept_blob = await old_blob(store, b"an old blob " + uuid.uuid4().bytes)
    age(store.root / BlobStore.blob_location(kept_blob), collecting.TOMBSTONE_LIFETIME * 2)

    async def settle() -> None:
        raise AssertionError("no blob is old enough to condemn")

    await collecting.collect(store, MemoryRequestStore(), grace=GRACE, settle=settle)
    assert [p.name for p in store.tombstones()] == [f"{fresh.hex}.json"]
    assert (store.root / BlobStore.blob_location(kept_blob)).exists()  # younger than the grace


async def test_the_collectors_own_clock_when_no_time_is_given_and_one_line_says_what_went(
    store: SharedStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    old = await old_blob(store, b"two days old " + uuid.uuid4().bytes)
    age(store.root / BlobStore.blob_location(old), GRACE * 2)
    young = await old_blob(store, b"new " + uuid.uuid4().bytes)

    async def settle() -> None:
        pass

    dry = await collecting.collect(store, MemoryRequestStore(), grace=GRACE, dry_run=True, settle=settle)
    assert (dry.blobs, dry.kept_young) == (1, 1)
    collected = await collecting.collect(store, MemoryRequestStore(), grace=GRACE, settle=settle)
    assert (collected.blobs, collected.kept_young) == (1, 1)
    assert not (store.root / BlobStore.blob_location(old)).exists()
    assert (store.root / BlobStore.blob_location(young)).exists()
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "garbage collection (dry run) (grace 1 day, 0:00:00): "
        "blobs 1, blocks 0, uploads 0, manifests 0, incomplete 0, kept_young 1",
        "garbage collection (grace 1 day, 0:00:00): "
        "blobs 1, blocks 0, uploads 0, manifests 0, incomplete 0, kept_young 1",
    ]
