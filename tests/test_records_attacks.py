"""Attacks on kvstore.records, from an adversarial review: time math at partition
boundaries and at the ends of the time range (against a brute-force model), listing
(prefix names, foreign objects, dropped then rewritten partitions, namespaces), processes
racing (span creation, appends against drop_before and purge), bad input and corrupted
objects, and caches. The tests that once failed name the bug they found (an empty range
crashed a query, a record in 9999 made a collection unreadable, float comparisons missed
records at exact bounds, ...); the rest proved what held."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
from conftest import Target
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kvstore
from kvstore.records import model, record_collections
from kvstore.testing import run_in_processes

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
HOUR = 3600
DAY = 86400
UTC = datetime.timezone.utc


@pytest.fixture
def mem() -> Iterator[kvstore.KVStore]:
    with kvstore.open(f"memory://attack-{uuid.uuid4().hex}", cache=None) as store:
        yield store


def _objects(store: kvstore.KVStore) -> list[str]:
    async def run() -> list[str]:
        blob = store.aio._ctx.blob
        return [p async for page in blob.list_pages("") for p in page]

    return asyncio.run(run())


def _put(store: kvstore.KVStore, path: str, data: bytes) -> None:
    asyncio.run(store.aio._ctx.blob.put(path, data))


# -- 1. time math ------------------------------------------------------------------------------


def test_query_of_a_range_holding_no_partition_returns_nothing(mem: kvstore.KVStore) -> None:
    """BUG (store.py:177-179, AsyncRecords.query): when the range's listing finds no partition
    (a range before, after or between the stored ones - the commonest "nothing there"
    query), ``batch = len(parts)`` is 0 and ``range(0, 0, 0)`` raises a bare
    ``ValueError: range() arg 3 must not be zero``. Expected: ``[]``."""
    r = mem.records("r", partition="hour")
    r.append("only", timestamp=T0)
    assert r.query(T0 + 10 * HOUR, T0 + 11 * HOUR) == []  # after every partition
    assert r.query(T0 - 2 * HOUR, T0 - HOUR) == []  # before every partition
    assert r.query(start=T0 + HOUR) == []  # open-ended, past the last one


def test_query_of_a_span_with_nothing_in_range_returns_nothing_day_and_month(
    mem: kvstore.KVStore,
) -> None:
    """Same bug as above, for day and month spans and with labels/limit given."""
    for span in ("day", "month"):
        r = mem.records(f"by-{span}", partition=span)
        r.append("x", timestamp=T0)
        assert r.query(T0 + 400 * DAY, labels={"a": "b"}) == []
        assert r.query(end=T0 - 40 * DAY) == []


# ms whose float seconds do not multiply back exactly: (ms / 1000) * 1000 != ms.
# (found by brute force; ~1% to ~40% of the milliseconds of 1970, 1972, 1974, 1978, 1987,
# 2004 and 2038-2039 are like this.)
LOW_MS = 1_073_745_780_695  # 2004-01-10: (ms / 1000) * 1000 < ms
HIGH_MS = 1_073_745_982_584  # 2004-01-10: (ms / 1000) * 1000 > ms


def test_query_bounds_are_exact_to_the_millisecond_for_every_timestamp(
    mem: kvstore.KVStore,
) -> None:
    """BUG (store.py:187-188): the time filter compares ``r.timestamp * 1000`` (a float,
    rebuilt from ``ms / 1000``) with the integer bounds; for some milliseconds the product
    is not the ms it came from. So ``query(start=rec.timestamp)`` - the natural way to
    page on from a record - misses that very record, and ``query(end=rec.timestamp)``
    (end is exclusive) returns it. Expected: compare integer ms (keep the record's ms from
    decode, or ``round(r.timestamp * 1000)``)."""
    assert (LOW_MS / 1000) * 1000 < LOW_MS and (HIGH_MS / 1000) * 1000 > HIGH_MS
    r = mem.records("r", partition="hour")
    low = r.append("low", timestamp=LOW_MS / 1000)
    high = r.append("high", timestamp=HIGH_MS / 1000)
    assert round(low.timestamp * 1000) == LOW_MS and round(high.timestamp * 1000) == HIGH_MS
    assert [x.data for x in r.query(start=low.timestamp)] == ["low", "high"]
    assert [x.data for x in r.query(end=high.timestamp)] == ["low"]  # end excluded
    assert [x.data for x in r.query(high.timestamp, high.timestamp + 0.001)] == ["high"]


@pytest.mark.parametrize(
    ("span", "when"),
    [
        ("hour", datetime.datetime(9999, 12, 31, 23, 30, tzinfo=UTC)),
        ("day", datetime.datetime(9999, 12, 31, 1, tzinfo=UTC)),
        ("month", datetime.datetime(9999, 12, 2, tzinfo=UTC)),
    ],
)
def test_the_last_partition_before_year_10000_can_be_read(
    mem: kvstore.KVStore, span: str, when: datetime.datetime
) -> None:
    """BUG (model.py:68-85, partition_end/is_partition): a timestamp in 9999's last
    hour/day/month is accepted by append (to_ms allows up to 253402300800000), but the
    partition's end is in year 10000: ``start + timedelta`` raises OverflowError, which
    is_partition does not catch (it catches ValueError only). From then on every query(),
    partitions() and drop_before() of the collection raises OverflowError - one record
    makes the whole collection unreadable. Expected: the record reads back (cap the end at
    253402300800000, or catch OverflowError, or refuse such timestamps in to_ms)."""
    r = mem.records("r", partition=span)
    r.append("early", timestamp=T0)
    r.append("last", timestamp=when)
    assert [x.data for x in r.query()] == ["early", "last"]
    assert len(r.partitions()) == 2
    assert r.drop_before(T0 + DAY * 40) == 1


@pytest.mark.parametrize(
    "when",
    [
        datetime.datetime(1, 1, 1, tzinfo=UTC),  # accepted: writes a partition "1-01-01"
        datetime.datetime(1969, 12, 31, 23, tzinfo=UTC),  # accepted: before 1970
        datetime.datetime.max.replace(tzinfo=UTC),  # ValueError: year 10000 is out of range
        datetime.datetime(1, 1, 1),  # naive: ValueError: year 0 is out of range
    ],
)
def test_a_datetime_outside_1970_to_9999_is_refused_and_writes_nothing(
    mem: kvstore.KVStore, when: datetime.datetime
) -> None:
    """BUG (model.py:52-53, to_ms): a datetime skips the 1970..9999 check numbers get.
    Aware datetimes before 1970 are written (negative ms; year 1 gives the partition name
    "1-01-01", which does not even sort as times do: %Y is not zero-padded), and
    datetimes at the edges raise a bare ValueError from Python. Expected:
    ConfigurationError, as for ``timestamp=-1``, and nothing written."""
    r = mem.records("r", partition="day")
    with pytest.raises(kvstore.ConfigurationError):
        r.append("x", timestamp=when)
    with pytest.raises(kvstore.ConfigurationError):
        r.query(start=when)
    assert mem.fsck()["objects"] == 0


def test_boundaries_exact_to_the_ms_in_every_span(mem: kvstore.KVStore) -> None:
    """Passing: the first and last ms of hours, days and months (leap February, Dec ->
    Jan, the epoch) go to the right partitions, and drop_before exactly at a partition's
    end drops it while one ms earlier does not."""
    cases = [
        # (span, first ms of a partition, its name, the previous partition's name)
        ("hour", datetime.datetime(2028, 2, 29, 0, tzinfo=UTC), "2028-02-29T00", "2028-02-28T23"),
        ("day", datetime.datetime(2028, 3, 1, tzinfo=UTC), "2028-03-01", "2028-02-29"),
        ("day", datetime.datetime(2100, 3, 1, tzinfo=UTC), "2100-03-01", "2100-02-28"),
        ("month", datetime.datetime(2027, 1, 1, tzinfo=UTC), "2027-01", "2026-12"),
        ("month", datetime.datetime(2028, 3, 1, tzinfo=UTC), "2028-03", "2028-02"),
        ("hour", datetime.datetime(1970, 1, 1, 1, tzinfo=UTC), "1970-01-01T01", "1970-01-01T00"),
    ]
    for i, (span, moment, name, before) in enumerate(cases):
        r = mem.records(f"b{i}", partition=span)
        edge = moment.timestamp()
        a = r.append("before", timestamp=edge - 0.001)
        b = r.append("at", timestamp=moment)
        assert (a.partition, b.partition) == (before, name), (span, moment)
        assert [x.data for x in r.query(end=edge)] == ["before"]
        assert [x.data for x in r.query(start=edge)] == ["at"]
        assert r.partitions(edge, edge + 0.001) == [name]
        assert r.partitions(edge - 0.001, edge) == [before]
        assert r.drop_before(edge - 0.001) == 0
        assert r.drop_before(edge) == 1
        assert [x.data for x in r.query()] == ["at"]


def test_sub_ms_floats_round_to_the_nearest_ms_consistently(mem: kvstore.KVStore) -> None:
    """Passing: a timestamp 0.4 ms before a boundary is stored at the boundary (rounded),
    in the partition after it, and queries see it exactly there."""
    r = mem.records("r", partition="hour")
    early = r.append("early", timestamp=T0)
    rec = r.append("x", timestamp=T0 + HOUR - 0.0004)
    assert rec.partition == "2026-01-01T01" and rec.timestamp == T0 + HOUR
    assert r.query(end=T0 + HOUR) == [early] and r.query(start=T0 + HOUR) == [rec]
    assert r.append("y", timestamp=T0 + 0.0005).timestamp == T0  # half to even
    assert r.append("z", timestamp=T0 + 0.0015).timestamp == T0 + 0.002


MS = st.one_of(
    st.sampled_from(
        [T0 * 1000 + d for d in (-1, 0, 1, HOUR * 1000 - 1, HOUR * 1000, DAY * 1000 - 1)]
        + [1_769_904_000_000, 1_772_323_199_999, 1_772_323_200_000]  # Feb 2026 ends
    ),
    st.integers(T0 * 1000 - 40 * DAY * 1000, T0 * 1000 + 70 * DAY * 1000),
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    span=st.sampled_from(model.SPANS),
    rows=st.lists(st.tuples(MS, st.sampled_from(["x", "y"])), min_size=1, max_size=10),
    low=st.one_of(st.none(), MS),
    high=st.one_of(st.none(), MS),
    labels=st.sampled_from([{}, {"h": "x"}]),
    limit=st.one_of(st.none(), st.integers(0, 4)),
    cut=MS,
)
def test_against_a_brute_force_model(
    span: str,
    rows: list[tuple[int, str]],
    low: int | None,
    high: int | None,
    labels: dict[str, str],
    limit: int | None,
    cut: int,
) -> None:
    """query / partitions / drop_before against a list filtered in Python. Fails only by
    the empty-range bug above (a range holding no partition raises ValueError)."""
    with kvstore.open(f"memory://model-{uuid.uuid4().hex}", cache=None) as store:
        r = store.records("r", partition=span)
        r.extend([(i, ms / 1000, {"h": h}) for i, (ms, h) in enumerate(rows)])
        start = None if low is None else low / 1000
        end = None if high is None else high / 1000
        want = sorted(
            (ms, i)
            for i, (ms, h) in enumerate(rows)
            if (low is None or ms >= low)
            and (high is None or ms < high)
            and all({"h": h}.get(k) == v for k, v in labels.items())
        )
        got = r.query(start, end, labels=labels, limit=limit)
        assert [(round(x.timestamp * 1000), x.data) for x in got] == want[:limit]
        names = sorted({model.partition_of(ms, span) for ms, _ in rows})

        def overlaps(p: str) -> bool:
            begin, stop = _partition_start(p, span), model.partition_end(p, span)
            return (high is None or begin < high) and (low is None or stop > low)

        if low is None or high is None or low < high:
            assert r.partitions(start, end) == [p for p in names if overlaps(p)]
        dropped = [p for p in names if model.partition_end(p, span) <= cut]
        assert r.drop_before(cut / 1000) == len(dropped)
        assert sorted(x.data for x in r.query()) == [
            i for i, (ms, _) in enumerate(rows) if model.partition_of(ms, span) not in dropped
        ]
        assert r.partitions() == [p for p in names if p not in dropped]


def _partition_start(name: str, span: str) -> int:
    fmt = {"hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d", "month": "%Y-%m"}[span]
    return round(datetime.datetime.strptime(name, fmt).replace(tzinfo=UTC).timestamp() * 1000)


# -- 2. listing --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "local", "seaweedfs"])
def test_prefix_names_special_chars_namespaces_and_foreign_objects(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    """Passing: collections whose names are prefixes of each other, special characters,
    a long (segmented) name and a namespace never see each other's records; foreign objects
    in the areas are stepped over by query and by record_collections; store.purge walks
    every collection."""
    with make_target(backend).open(cache=kvstore.LocalCache()) as mem:
        _prefix_names_and_foreign_objects(mem)


def _prefix_names_and_foreign_objects(mem: kvstore.KVStore) -> None:
    names = ["a", "a/b", "ab", "a~", "a b", "é", ".", "..", "a" * 300, "%41"]
    for n in names:
        mem.records(n, partition="hour").append(n, timestamp=T0 + 60)
    ns = mem.namespace("a")
    ns.records("a", partition="day").append("in-ns", timestamp=T0)
    _put(mem, "rec/junk", b"x")
    _put(mem, "rec/a~/log/junk", b"x")
    _put(mem, "rec/a~/log/2026-01-01T00~/junk", b"x")
    _put(mem, "rec/a~/log/2026-13-01T00~/c/" + "0" * 20, b"x")  # not a partition
    _put(mem, "rec/a~/log/2026-1-1T0~/c/" + "0" * 20, b"x")  # not canonical
    for n in names:
        assert [x.data for x in mem.records(n, partition="hour").query()] == [n]
        assert mem.records(n, partition="hour").partitions() == ["2026-01-01T00"]
    assert [x.data for x in ns.records("a", partition="day").query()] == ["in-ns"]
    found = asyncio.run(record_collections(mem.aio._ctx))
    assert found == sorted(names, key=lambda n: mem.aio._ctx.layout.records(n).base)
    assert set(found) == set(names)
    assert mem.purge()["log_objects"] >= 0


def test_a_dropped_partition_written_again_reads_only_the_new_records(
    mem: kvstore.KVStore,
) -> None:
    """Passing: drop_before at a partition's exact end, append into it again: the query
    sees only the new record, drop_before counts only partitions that held records."""
    r = mem.records("r", partition="day")
    r.extend([("old", T0 + 5), ("keep", T0 + DAY + 5)])
    assert r.drop_before(T0 + DAY) == 1
    assert r.drop_before(T0 + DAY) == 0  # already empty: not counted again
    assert r.partitions() == ["2026-01-02"]
    new = r.append("new", timestamp=T0 + 7)
    assert new.partition == "2026-01-01" and new.seq == 1  # after the mark
    assert [x.data for x in r.query()] == ["new", "keep"]
    assert [x.data for x in r.query(T0, T0 + DAY)] == ["new"]
    assert mem.fsck()["ok"]


def test_partitions_of_an_empty_range_are_none(mem: kvstore.KVStore) -> None:
    """BUG, minor (store.py:196-205, AsyncRecords.partitions): unlike query, partitions() has no
    ``high <= low`` check, so an empty range ``[t, t)`` inside a partition returns that
    partition ("partitions that overlap [start, end)": an empty range overlaps none).
    Expected: []."""
    r = mem.records("r", partition="hour")
    r.append("x", timestamp=T0 + 10)
    assert r.partitions(T0 + 10, T0 + 10) == []
    assert r.partitions(T0 + 20, T0 + 10) == []
    assert r.partitions(T0, T0 + 1) == ["2026-01-01T00"]


# -- 3. processes ------------------------------------------------------------------------------


def create_with_span(url: str, options: dict[str, Any], span: str, *, barrier: Any) -> str:
    """A racer: the first append of a new collection, with its own span."""
    with kvstore.open(url, storage_options=options or None, cache=None) as store:
        r = store.records("raced", partition=span)
        barrier.wait(timeout=60)
        try:
            r.append(span, timestamp=T0)
        except kvstore.ConfigurationError:
            return "lost"
        return "won:" + span


@pytest.mark.parametrize("backend", ["local", "seaweedfs"])
def test_span_race_exactly_one_span_wins(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    """Passing: processes creating one collection with different spans at once: one span
    is stored, every process of another span gets ConfigurationError, none mixes spans."""
    target = make_target(backend)
    spans = ["hour", "day", "month", "hour", "day", "month"]
    got = run_in_processes(
        create_with_span,
        [(target.url, target.storage_options, s) for s in spans],
        barrier=True,
        timeout=120,
    )
    winners = {g.split(":")[1] for g in got if g != "lost"}
    assert len(winners) == 1, got
    (span,) = winners
    assert got.count("lost") == spans.count("hour") + spans.count("day") + spans.count(
        "month"
    ) - spans.count(span)
    with target.open(cache=None) as store:
        r = store.records("raced", partition=span)
        assert [x.data for x in r.query()] == [span] * spans.count(span)
        others = [s for s in model.SPANS if s != span]
        for other in others:
            with pytest.raises(kvstore.ConfigurationError):
                store.records("raced", partition=other).query()
        assert store.fsck()["ok"]


def append_or_drop(url: str, options: dict[str, Any], role: str, me: int, *, barrier: Any) -> int:
    """A racer: appenders write 20 records into hours 24..27, the dropper drops every
    hour before 24 and purges, over and over."""
    with kvstore.open(url, storage_options=options or None, cache=None) as store:
        r = store.records("busy", partition="hour")
        barrier.wait(timeout=60)
        if role == "drop":
            for _ in range(5):
                r.drop_before(T0 + 24 * HOUR)
                r.purge()
                store.purge()
            return 0
        for i in range(20):
            r.append({"by": me, "i": i}, timestamp=T0 + (24 + i % 4) * HOUR + me)
        return 20


def test_appends_racing_drop_before_and_purge_lose_nothing(
    make_target: Callable[[str], Target],
) -> None:
    target = make_target("local")
    with target.open(cache=None) as store:
        store.records("busy", partition="hour").extend([(-1, T0 + h * HOUR) for h in range(24)])
    run_in_processes(
        append_or_drop,
        [
            (target.url, target.storage_options, "append", 0),
            (target.url, target.storage_options, "append", 1),
            (target.url, target.storage_options, "append", 2),
            (target.url, target.storage_options, "drop", 9),
        ],
        barrier=True,
        timeout=120,
    )
    with target.open(cache=None) as store:
        r = store.records("busy", partition="hour")
        got = sorted((x.data["by"], x.data["i"]) for x in r.query())
        assert got == sorted((m, i) for m in range(3) for i in range(20))
        assert r.partitions() == [f"2026-01-02T0{h}" for h in range(4)]
        assert store.fsck()["ok"]


# -- 4. bad input and damage -------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.append(1, timestamp=10**400),  # OverflowError from math.isfinite
        lambda r: r.query(start=10**400),
        lambda r: r.drop_before(10**400),
        lambda r: r.extend(None),  # TypeError: not iterable
        lambda r: r.extend(5),
    ],
    ids=["append-huge-int", "query-huge-int", "drop-huge-int", "extend-None", "extend-int"],
)
def test_bad_arguments_raise_kvstore_errors(mem: kvstore.KVStore, call: Any) -> None:
    """BUG (model.py:54 to_ms; store.py:103 extend): an int too large for a float makes
    ``math.isfinite`` raise OverflowError, and a non-iterable ``items`` raises TypeError -
    not kvstore errors. Expected: ConfigurationError, nothing written."""
    r = mem.records("r")
    with pytest.raises(kvstore.KVStoreError):
        call(r)
    assert mem.fsck()["objects"] == 0


def test_a_damaged_span_value_is_corrupt_data(mem: kvstore.KVStore) -> None:
    """BUG (store.py:77-82, _stored_span): a span value that decodes but is no span (a
    damaged or foreign object) is reported as ConfigurationError "partitioned by
    <garbage>; open them with partition='<garbage>'" - advice that cannot be followed
    (check_span refuses it). Expected: CorruptDataError naming the object."""
    r = mem.records("r", partition="hour")
    r.append(1, timestamp=T0)
    asyncio.run(r._core._values.set("span", b"\xff\xfeweekly"))
    fresh = mem.records("r", partition="hour")
    with pytest.raises(kvstore.CorruptDataError):
        fresh.query()


@pytest.mark.parametrize(
    "raw",
    [
        b"\xc1",
        b"",
        msgpack.packb([1, 2]),
        msgpack.packb([1.5, {}, 0]),
        msgpack.packb([1, {}, 0, 4]),
        msgpack.packb([1, {}, 0]) + b"\x00",
        msgpack.packb("abc"),
        b"\x93\x01\x80\x81\x91\x01\x01",  # a map keyed by a list
        b"\x91" * 100_000 + b"\xc0",  # nested too deep
    ],
)
def test_a_damaged_record_is_corrupt_data(mem: kvstore.KVStore, raw: bytes) -> None:
    r = mem.records("r", partition="hour")
    r.append("fine", timestamp=T0)
    asyncio.run(r._core._logs.extend("2026-01-01T00", [raw]))
    with pytest.raises(kvstore.CorruptDataError):
        r.query()


def test_a_record_with_non_text_labels_is_corrupt_data(mem: kvstore.KVStore) -> None:
    """BUG, minor (model.py:113-120, decode): a stored record whose labels are not str to
    str (``{1: 2}``, ``{"a": [1]}``) or whose ms is a bool is returned as a Record,
    breaking the Record type's promise (labels: str -> str). Expected: CorruptDataError."""
    r = mem.records("r", partition="hour")
    asyncio.run(r._core._values.set("span", "hour"))
    asyncio.run(r._core._logs.extend("2026-01-01T00", [msgpack.packb([T0 * 1000, {1: 2}, 0])]))
    with pytest.raises(kvstore.CorruptDataError):
        r.query()


# -- 5. caches ---------------------------------------------------------------------------------


def test_a_shared_cache_and_a_cacheless_reader_never_read_stale(
    make_target: Callable[[str], Target],
) -> None:
    """Passing: a writer and readers on one LocalCache, and a reader with no cache, see
    each write on their next read: new records in a partition already read, a new
    partition, a drop."""
    target = make_target("local")
    cache = kvstore.LocalCache()
    with (
        target.open(cache=cache) as writer,
        target.open(cache=cache) as reader,
        target.open(cache=None) as bare,
    ):
        w = writer.records("c", partition="hour")
        rr, rb = reader.records("c", partition="hour"), bare.records("c", partition="hour")
        assert rr.query() == [] and rb.query() == []
        w.append(1, timestamp=T0)
        assert len(rr.query()) == 1 and len(rb.query()) == 1
        w.append(2, timestamp=T0 + 1)
        assert len(rr.query()) == 2 and len(rb.query()) == 2
        w.append(3, timestamp=T0 + HOUR)
        assert len(rr.query()) == 3 and len(rb.query()) == 3
        w.drop_before(T0 + HOUR)
        assert [x.data for x in rr.query()] == [3] and [x.data for x in rb.query()] == [3]
        with pytest.raises(kvstore.ConfigurationError):
            reader.records("c", partition="day").append(0, timestamp=T0)
