"""Clock skew: no client's clock decides when a log chunk may be removed (issue 12, item 3).

Each store here reads its own clock as ``real time + offset`` - a client on a machine whose
clock is an hour off - while the object store keeps its real clock (file mtimes on local
disk; ``LastModified`` and the answer's ``Date`` on S3 and GCS). Before kvstore dated
chunks by the object store, a compactor an hour ahead (or a writer an hour behind) took
seconds-old chunks for old, merged and deleted them, and a writer still holding one of
their slots as its tail re-created it inside the new segment: ``append`` acknowledged a
record that no read ever returned.

The multi-process runs at the end race writers, readers, a compactor and a trimmer whose
clocks are an hour apart (tests/stress_logs.py ``--skew``), on local disk and on a real S3
server (SeaweedFS).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from conftest import FakeClock, Target, open_clocked

import kvstore
import kvstore.logs as logs_module
from kvstore.blob import DatedListing, WrapperBlobStore, open_blob_store
from kvstore.blob.base import DatedPage
from kvstore.stats import Stats

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import stress_logs  # noqa: E402

KEY = "session:skewed"


@pytest.fixture(autouse=True)
def _no_settling(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check which chunks compaction merges and deletes; settling adds segments
    over young chunks (never deleting one: tests/test_primitives.py)."""
    monkeypatch.setattr(logs_module.limits, "SETTLE", False)


HOUR = 3600.0
DATED = ["memory", "local", "s3", "gcs", "seaweedfs"]


def skewed(offset_s: float) -> Callable[[], int]:
    """A client's clock ``offset_s`` seconds off the real time (ms since the epoch)."""
    offset_ms = int(offset_s * 1000)
    return lambda: time.time_ns() // 1_000_000 + offset_ms


def open_skewed(target: Target, offset_s: float) -> kvstore.KVStore:
    """A store whose clock is ``offset_s`` off, on the object store's real clock."""
    return open_clocked(target, skewed(offset_s), store_clock=False)


@pytest.fixture
def quick_ages(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """MIN_AGE_MS of 1.5 s (the rule's ratio to TAIL_REFRESH_MS kept), so a test can wait
    for chunks to grow old by the object store's clock."""
    monkeypatch.setattr(logs_module.limits, "MIN_AGE_MS", 1500)
    monkeypatch.setattr(logs_module.limits, "TAIL_REFRESH_MS", 150)
    monkeypatch.setattr(logs_module.limits, "AUTO_COMPACT", False)
    yield


@pytest.mark.parametrize("backend", DATED)
@pytest.mark.parametrize(
    ("writer_offset", "compactor_offset"),
    [(0.0, HOUR), (-HOUR, 0.0)],
    ids=["compactor-an-hour-ahead", "writers-an-hour-behind"],
)
def test_a_skewed_clock_never_loses_an_acknowledged_record(
    make_target: Callable[[str], Target],
    backend: str,
    writer_offset: float,
    compactor_offset: float,
) -> None:
    target = make_target(backend)
    with (
        open_skewed(target, writer_offset) as stale,
        open_skewed(target, writer_offset) as other,
        open_skewed(target, compactor_offset) as compactor,
    ):
        assert stale.append(KEY, "a") == 1  # `stale` now holds slot 1 as its tail
        for i in range(3):
            other.append(KEY, f"b{i}")  # chunks at 1, 2, 3: `stale` has not seen them
        # Every chunk is seconds old by the object store's clock, whatever the clocks of
        # the writers and of the compactor say: nothing may be merged or deleted.
        removed = compactor.compact(KEY)
        # `stale`'s create at slot 1 must meet b0's chunk and step over it: position 5.
        # (Had the compactor deleted chunks 0-2, the create would land inside the new
        # segment, and "c" would be acknowledged at position 2 and never read.)
        position = stale.append(KEY, "c")
        expected = [b"a", b"b0", b"b1", b"b2", b"c"]
        assert compactor.range(KEY, 0, -1) == expected
        assert stale.range(KEY, 0, -1) == expected
        assert position == 5
        assert compactor.length(KEY) == 5
        assert removed == 0
        assert [n for n in _names(compactor) if not n.startswith("c/")] == []


@pytest.mark.parametrize("backend", DATED)
@pytest.mark.parametrize(
    ("writer_offset", "compactor_offset"),
    [(HOUR, -HOUR), (-HOUR, HOUR)],
    ids=["writer-ahead-compactor-behind", "writer-behind-compactor-ahead"],
)
def test_old_chunks_are_compacted_whatever_the_clients_clocks_say(
    make_target: Callable[[str], Target],
    backend: str,
    writer_offset: float,
    compactor_offset: float,
    quick_ages: None,
) -> None:
    """Liveness: the object store's clock also says when chunks *are* old, so a compactor
    an hour behind its writers still compacts (it would have waited an hour), and one an
    hour ahead still waits for MIN_AGE_MS (it would have deleted at once)."""
    target = make_target(backend)
    with (
        open_skewed(target, writer_offset) as writer,
        open_skewed(target, compactor_offset) as compactor,
    ):
        started = time.monotonic()
        for i in range(4):
            writer.append(KEY, f"r{i}")
        if time.monotonic() - started < 1.5:  # (a loaded machine can take longer: then
            assert compactor.compact(KEY) == 0  # they may be old) young by the store's clock
        # 1.5 s, plus the store's resolution: S3 and HTTP dates are whole seconds.
        time.sleep(1.5 + (2.2 if backend in ("s3", "gcs", "seaweedfs") else 0.1))
        removed = compactor.compact(KEY)
        assert removed == 3  # chunks 0-2 merged into a segment; the tail chunk is kept
        names = _names(compactor)
        assert [n for n in names if n.startswith("s/")] and len(names) == 2, names
        assert compactor.range(KEY, 0, -1) == [b"r0", b"r1", b"r2", b"r3"]
        assert writer.append(KEY, "r4") == 5
        assert writer.range(KEY, 0, -1) == [b"r0", b"r1", b"r2", b"r3", b"r4"]


def _names(store: kvstore.KVStore) -> list[str]:
    return stress_logs.listing(store, KEY)


# -- several processes, an hour apart ------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "duration", "speed"),
    [("local", 12.0, 100.0), ("s3", 20.0, 50.0)],  # s3: SeaweedFS
)
def test_processes_an_hour_apart_lose_and_double_nothing(
    backend: str,
    duration: float,
    speed: float,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Writers (4 processes), readers, a compactor and a trimmer on one log,
    their clocks an hour apart (writers alternately ahead and behind, the compactor ahead,
    the trimmer behind), every invariant of tests/stress_logs.py checked on every read and
    at the end. MIN_AGE_MS and TAIL_REFRESH_MS are scaled down by ``speed`` (their ratio
    kept), so chunks grow old, and are compacted, within the run."""
    args = stress_logs.parse_args(
        [
            "--backend",
            backend,
            "--variant",
            "all",
            "--duration",
            str(duration),
            "--speed",
            str(speed),
            "--skew",
            str(HOUR),
            "--segment-records",
            "50",
            # Writers that pause between appends hold stale tails longest: before chunks
            # were dated by the object store, this run lost records within seconds.
            "--writers",
            "4",
            "--lanes",
            "1",
            "--pause",
            "0.15",
        ]
    )
    if backend == "local":
        summary = stress_logs.run(args, str(tmp_path / "store"), {})
    else:
        server = request.getfixturevalue("seaweedfs_server")
        url = server.url_for("kvstore-test", f"skew-{time.time_ns()}")
        summary = stress_logs.run(args, url, server.storage_options)
    assert summary.get("ok"), summary.get("failures") or summary
    assert summary["records_appended"] > 100, summary
    assert summary["compactor"]["objects_removed"] > 0, summary  # chunks did grow old
    assert summary["clock_offsets_s"]["compactor"] == HOUR


# -- stores that date objects badly, or not at all --------------------------------------------


class NoDatedListing(WrapperBlobStore):
    """A backend that cannot date its objects (a third-party one, say)."""

    dated_listing = False


class UndatedAnswers(WrapperBlobStore):
    """A store whose listing gives no readable date and no ``Date`` header."""

    async def _list_dated(self, prefix: str) -> AsyncIterator[DatedPage]:
        async for page in self.inner._list(prefix):
            yield [(path, None) for path in page], None


def test_without_a_dated_listing_compaction_falls_back_to_the_writers_dates(
    make_target: Callable[[str], Target],
) -> None:
    """The documented fallback: the date inside each chunk against the compactor's clock
    (so there, and only there, clients' clocks must agree)."""
    clock = FakeClock()
    target = make_target("memory")
    with open_clocked(target, clock, wrap=NoDatedListing, store_clock=False) as store:
        assert not store.aio._ctx.blob.dated_listing
        for i in range(4):
            store.append(KEY, f"r{i}")
        assert store.compact(KEY) == 0
        clock.advance(logs_module.limits.MIN_AGE_MS + 1)
        assert store.compact(KEY) == 3
        assert store.range(KEY, 0, -1) == [b"r0", b"r1", b"r2", b"r3"]


def test_objects_the_store_does_not_date_count_as_new(
    make_target: Callable[[str], Target], quick_ages: None
) -> None:
    target = make_target("local")
    with open_clocked(target, skewed(HOUR), wrap=UndatedAnswers, store_clock=False) as store:
        for i in range(4):
            store.append(KEY, f"r{i}")
        time.sleep(1.7)  # old by the disk's clock, but the listing does not say so
        assert store.compact(KEY) == 0
        assert len(_names(store)) == 4


def test_a_dated_listing_without_the_stores_time_measures_from_its_newest_object() -> None:
    listing = DatedListing(("a", "b"), (1_000, 5_000), 5_000)
    assert listing.ages() == {"a": 4_000, "b": 0}

    async def dated(pages: list[DatedPage]) -> DatedListing:
        class Pages(WrapperBlobStore):
            dated_listing = True

            async def _list_dated(self, prefix: str) -> AsyncIterator[DatedPage]:
                for page in pages:
                    yield page

        blob = Pages(open_blob_store("memory://dates", stats=Stats()))
        return await blob.list_dated("")

    got = asyncio.run(dated([([("a", 1_000), ("b", None)], None), ([("c", 3_000)], None)]))
    assert got.now == 3_000  # the newest date: never later than the store's real time
    assert got.ages() == {"a": 2_000, "b": 0, "c": 0}  # undated: new
    got = asyncio.run(dated([([("a", 1_000)], 9_000), ([("b", 2_000)], 8_000)]))
    assert got.now == 9_000 and got.ages() == {"a": 8_000, "b": 7_000}
