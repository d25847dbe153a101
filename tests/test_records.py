"""Records (``store.records(name)``, kvstore.records): time-ordered collections, partitioned
by time - on memory, local disk and a real S3 server; the requests a range query costs
(only the partitions it covers are read); bad input refused with nothing written;
processes appending at once lose and double nothing; fsck and purge know the area."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import FakeClock, Target

import kvstore
from kvstore.records import Record
from kvstore.testing import request_delta, run_in_processes

BACKENDS = ["memory", "local", "seaweedfs"]
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
HOUR = 3600


@pytest.fixture(params=BACKENDS)
def store(
    request: pytest.FixtureRequest, make_target: Callable[[str], Target]
) -> Iterator[kvstore.KVStore]:
    with make_target(request.param).open(cache=kvstore.LocalCache()) as s:
        yield s


def test_records_round_trip_in_time_order_with_labels(store: kvstore.KVStore) -> None:
    metrics = store.records("metrics", partition="hour")
    assert metrics.query() == [] and metrics.partitions() == []
    written = [
        metrics.append(
            {"cpu": i, "raw": bytes([i])}, timestamp=T0 + i * 1800, labels={"host": f"h{i % 2}"}
        )
        for i in range(6)
    ]
    assert [r.seq for r in written] == [0, 1, 0, 1, 0, 1]
    assert [r.partition for r in written] == [
        "2026-01-01T00",
        "2026-01-01T00",
        "2026-01-01T01",
        "2026-01-01T01",
        "2026-01-01T02",
        "2026-01-01T02",
    ]
    found = metrics.query()
    assert found == written
    assert found[3] == Record(
        T0 + 3 * 1800, {"cpu": 3, "raw": b"\x03"}, {"host": "h1"}, "2026-01-01T01", 1
    )
    # [start, end): end excluded, to the millisecond; datetimes as well as seconds
    assert [r.data["cpu"] for r in metrics.query(T0 + 1800, T0 + 3 * 1800)] == [1, 2]
    assert [r.data["cpu"] for r in metrics.query(T0 + 1800.001, T0 + 3 * 1800 + 0.001)] == [2, 3]
    moment = datetime.datetime.fromtimestamp(T0 + HOUR, tz=datetime.timezone.utc)
    assert [r.data["cpu"] for r in metrics.query(start=moment)] == [2, 3, 4, 5]
    assert [r.data["cpu"] for r in metrics.query(labels={"host": "h1"})] == [1, 3, 5]
    assert [r.data["cpu"] for r in metrics.query(labels={"host": "h1"}, limit=2)] == [1, 3]
    assert metrics.query(labels={"host": "nobody"}) == []
    assert metrics.query(T0 + HOUR, T0) == []
    assert metrics.partitions() == ["2026-01-01T00", "2026-01-01T01", "2026-01-01T02"]
    assert metrics.partitions(T0 + HOUR, T0 + 2 * HOUR) == ["2026-01-01T01"]
    # out of order: a late record goes to its own (older) partition, and sorts by time
    late = metrics.append({"cpu": -1}, timestamp=T0 + 10)
    assert late.partition == "2026-01-01T00" and late.seq == 2
    assert [r.data["cpu"] for r in metrics.query(end=T0 + HOUR)] == [0, -1, 1]
    # a collection is as the first append made it: the span is stored
    with pytest.raises(kvstore.ConfigurationError, match="partitioned by hour"):
        store.records("metrics", partition="day").query()
    assert store.records("metrics", partition="hour").query(limit=1) == [written[0]]


def test_spans_name_partitions_in_utc() -> None:
    with kvstore.open(f"memory://spans-{uuid.uuid4().hex}", cache=None) as store:
        for span, name in (("hour", "2026-02-28T23"), ("day", "2026-02-28"), ("month", "2026-02")):
            r = store.records(f"by-{span}", partition=span)
            written = r.append(
                "x",
                timestamp=datetime.datetime(2026, 2, 28, 23, 59, 59, tzinfo=datetime.timezone.utc),
            )
            assert written.partition == name
            following = r.append(
                "y", timestamp=datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc)
            )
            assert following.partition != name
            assert r.partitions() == [name, following.partition]


def test_now_is_the_stores_clock() -> None:
    clock = FakeClock(now=T0 * 1000 + 1234)
    blob = kvstore.open_async(f"memory://clock-{uuid.uuid4().hex}", cache=None)._ctx.blob
    with kvstore.KVStore(kvstore.AsyncKVStore(blob, kvstore.NoCache(), clock=clock)) as store:
        assert store.records("r").append("now").timestamp == T0 + 1.234


def test_bad_input_is_refused_and_writes_nothing() -> None:
    with kvstore.open(f"memory://bad-{uuid.uuid4().hex}", cache=None) as store:
        r = store.records("r")
        bad_calls: list[tuple[type[Exception], Callable[[], Any]]] = [
            (kvstore.ConfigurationError, lambda: store.records("r", partition="week")),
            (kvstore.InvalidKeyError, lambda: store.records("\ud800")),
            (kvstore.InvalidKeyError, lambda: store.records("x" * 2000)),
            (kvstore.ConfigurationError, lambda: r.append(1, timestamp="yesterday")),
            (kvstore.ConfigurationError, lambda: r.append(1, timestamp=float("nan"))),
            (kvstore.ConfigurationError, lambda: r.append(1, timestamp=-1)),
            (kvstore.ConfigurationError, lambda: r.append(1, timestamp=1e12)),
            (kvstore.InvalidValueError, lambda: r.append(1, labels={"a": 1})),
            (kvstore.InvalidValueError, lambda: r.append(1, labels=["a"])),
            (kvstore.InvalidValueError, lambda: r.append(object())),
            (kvstore.ConfigurationError, lambda: r.extend([1])),
            (kvstore.ConfigurationError, lambda: r.extend([(1, None, None, "extra")])),
            (kvstore.InvalidValueError, lambda: r.extend([(1,), (object(),)])),
            (kvstore.ConfigurationError, lambda: r.query(limit=-1)),
            (kvstore.ConfigurationError, lambda: r.query(start="today")),
            (kvstore.ConfigurationError, lambda: r.drop_before(None)),
        ]
        for error, call in bad_calls:
            with pytest.raises(error):
                call()
        assert r.query() == [] and store.fsck()["objects"] == 0  # nothing written


def test_a_range_query_reads_only_the_partitions_it_covers(
    make_target: Callable[[str], Target],
) -> None:
    """48 hourly partitions, one record each: a query of 3 hours lists once from the first
    of them and reads those 3 logs - no object of the other 45 is read."""
    target = make_target("seaweedfs")
    with target.open(cache=None) as writer:
        writer.records("hourly", partition="hour").extend(
            [({"h": h}, T0 + h * HOUR + 60) for h in range(48)]
        )
    with target.open(cache=None) as store:  # a cold reader: nothing known in this process
        r = store.records("hourly", partition="hour")
        assert r.query(limit=0) == []  # reads the span (once per process), no partition
        stats = store.aio._ctx.stats
        with request_delta(stats) as spent:
            found = r.query(T0 + 10 * HOUR, T0 + 13 * HOUR)
        assert [x.data["h"] for x in found] == [10, 11, 12]
        # 1 LIST of the partitions (from the first one), then each log: a GET (its plan
        # made from that listing)
        assert spent.get("requests.get", 0) == 3, spent
        assert spent.get("requests.list", 0) == 1, spent
        with request_delta(stats) as spent:
            assert [x.data["h"] for x in r.query(T0 + 47 * HOUR)] == [47]
        assert spent.get("requests.get", 0) == 1, spent
        with request_delta(stats) as spent:  # the oldest 2: the first batch of partitions
            assert [x.data["h"] for x in r.query(limit=2)] == [0, 1]
        assert spent.get("requests.get", 0) <= 16, spent


def test_drop_before_deletes_whole_partitions_and_purge_frees_them(
    make_target: Callable[[str], Target],
) -> None:
    with make_target("local").open(cache=None) as store:
        r = store.records("events", partition="day")
        r.extend([({"d": d}, T0 + d * 86400 + 5) for d in range(5)])
        # a cut inside day 2: days 0 and 1 end before it and go, day 2 stays whole
        assert r.drop_before(T0 + 2 * 86400 + 3600) == 2
        assert [x.data["d"] for x in r.query()] == [2, 3, 4]
        assert r.partitions() == ["2026-01-03", "2026-01-04", "2026-01-05"]
        assert r.drop_before(T0) == 0
        assert store.fsck()["ok"]


def test_fsck_checks_records_and_reports_damage(make_target: Callable[[str], Target]) -> None:
    target = make_target("local")
    with target.open(cache=None) as store:
        store.records("r", partition="hour").extend([(i, T0 + i) for i in range(3)])
        report = store.fsck()
        assert report["ok"] and report["objects"] >= 2, report
        chunk = next(
            p for p in asyncio.run(_paths(target)) if p.startswith("rec/") and "/log/" in p
        )
        data = bytearray(asyncio.run(_get(target, chunk)))
        data[-5] ^= 0xFF
        asyncio.run(_put(target, chunk, bytes(data)))
        report = store.fsck()
        assert not report["ok"]
        assert any(d["path"] == chunk and d["kind"] == "corrupt" for d in report["damage"]), report
    with target.open(cache=None) as fresh, pytest.raises(kvstore.CorruptDataError):
        fresh.records("r", partition="hour").query()  # a reader that did not write it


async def _paths(target: Target) -> list[str]:
    blob = target.blob_store()
    try:
        return [p async for page in blob.list_pages("") for p in page]
    finally:
        await blob.close()


async def _get(target: Target, path: str) -> bytes:
    blob = target.blob_store()
    try:
        found = await blob.get(path)
        assert found is not None
        return found.data
    finally:
        await blob.close()


async def _put(target: Target, path: str, data: bytes) -> None:
    blob = target.blob_store()
    try:
        await blob.put(path, data)
    finally:
        await blob.close()


def append_records(url: str, options: dict[str, Any], me: int, count: int, *, barrier: Any) -> int:
    """A racer: ``count`` records over 4 hourly partitions, one append each."""
    with kvstore.open(url, storage_options=options or None, cache=None) as store:
        r = store.records("shared", partition="hour")
        r.query(limit=1)
        barrier.wait(timeout=60)
        for i in range(count):
            r.append({"by": me, "i": i}, timestamp=T0 + (i % 4) * HOUR + me)
        return count


@pytest.mark.parametrize("backend", ["local", "seaweedfs"])
def test_processes_appending_at_once_lose_and_double_nothing(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    target = make_target(backend)
    racers, count = 4, 30
    run_in_processes(
        append_records,
        [(target.url, target.storage_options, me, count) for me in range(racers)],
        barrier=True,
        timeout=180,
    )
    with target.open(cache=None) as store:
        found = store.records("shared", partition="hour").query()
    got = sorted((r.data["by"], r.data["i"]) for r in found)
    assert got == sorted((m, i) for m in range(racers) for i in range(count))
    assert [r.timestamp for r in found] == sorted(r.timestamp for r in found)
    seqs = [(r.partition, r.seq) for r in found]
    assert len(set(seqs)) == len(seqs)  # no two records share a place
