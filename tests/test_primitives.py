"""The engine primitives the data models build on (issue 15): versioned reads and
compare-and-swap on values, conditional appends with sequence numbers, reads from a
sequence number, and settled logs (cheap cold reads at any age).

Atomicity is proven with several processes on the stores that enforce conditional writes
themselves (RACES: local disk and SeaweedFS, a real S3 server).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import ALL, CACHES, FAST, RACES, FakeClock, Target, open_clocked

import kvstore
import kvstore.logs as logs_module
from kvstore.testing import request_delta, run_in_processes

LIMITS = logs_module.limits


WITH_REDIS = [*CACHES, "redis"]


# -- values: versioned reads, compare-and-swap ------------------------------------------------


@pytest.mark.parametrize("cache", WITH_REDIS, ids=lambda c: f"cache={c}")
@pytest.mark.parametrize("backend", [*ALL, "seaweedfs"])
def test_a_set_with_a_version_succeeds_only_on_that_version(
    backend: str,
    cache: str | None,
    make_target: Callable[[str], Target],
    open_cached: Callable[..., kvstore.KVStore],
) -> None:
    with open_cached(make_target(backend), cache) as store:
        assert store.get_versioned("k") is None
        assert store.set("k", "v0", if_version="no-such-version") is None
        assert store.get("k") is None  # a version of a missing key never matches
        store.set("k", "v1")
        found = store.get_versioned("k")
        assert found is not None and found.value == b"v1"
        assert store.set("k", "v2", if_version=found.version) is True
        assert store.get("k") == b"v2"
        # The old version is gone: a second swap from it fails and changes nothing.
        assert store.set("k", "v3", if_version=found.version) is None
        assert store.get("k") == b"v2"
        again = store.get_versioned("k")
        assert again is not None and again.version != found.version
        # The same bytes written again are still a new version (every write has a nonce).
        store.set("k", "v2")
        third = store.get_versioned("k")
        assert third is not None and third.version != again.version
        assert store.set("k", "v4", if_version=again.version) is None
        assert store.set("k", "v4", if_version=third.version, ex=60) is True
        assert 0 < store.ttl("k") <= 60


def test_versioned_reads_refuse_bad_arguments_and_other_types() -> None:
    with kvstore.open("memory://primitives-args", cache=None) as store:
        store.set("k", "v")
        version = store.get_versioned("k").version  # type: ignore[union-attr]
        with pytest.raises(kvstore.ConfigurationError, match="nx"):
            store.set("k", "w", nx=True, if_version=version)
        for bad in ("", 7, b"x"):
            with pytest.raises(kvstore.ConfigurationError, match="if_version"):
                store.set("k", "w", if_version=bad)  # type: ignore[arg-type]
        assert store.get("k") == b"v"
        with kvstore.Redis("memory://primitives-args", cache=None) as r:
            r.hset("h", "f", "1")
        with pytest.raises(kvstore.WrongTypeError):
            store.get_versioned("h")
        store.set("gone", "x", px=1)
        import time

        time.sleep(0.01)
        assert store.get_versioned("gone") is None  # expired: no version to swap from


def test_an_expired_key_is_never_swapped(make_target: Callable[[str], Target]) -> None:
    clock = FakeClock()
    with open_clocked(make_target("memory"), clock) as store:
        store.set("k", "v", px=1000)
        found = store.get_versioned("k")
        assert found is not None
        clock.advance(2000)
        assert store.set("k", "new", if_version=found.version) is None
        assert store.get("k") is None


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_swap_after_a_versioned_read_is_one_conditional_put(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    with make_target(backend).open() as store:
        store.set("k", "0")
        with request_delta(store) as read:
            found = store.get_versioned("k")
        assert read == {"requests.get": 1}
        with request_delta(store) as swap:
            assert store.set("k", "1", if_version=found.version)  # type: ignore[union-attr]
        assert swap == {"requests.put_if_match": 1}


def _cas_increments(url: str, options: dict[str, Any], n: int, barrier: Any) -> int:
    store = kvstore.open(url, cache=None, storage_options=options or None)
    barrier.wait()
    conflicts = 0
    for _ in range(n):
        while True:
            found = store.get_versioned("counter")
            if found is None:
                if store.set("counter", 1, nx=True):
                    break
            elif store.set("counter", int(found.value) + 1, if_version=found.version):
                break
            conflicts += 1
    store.close()
    return conflicts


@pytest.mark.parametrize("backend", RACES)
def test_compare_and_swap_loses_no_update_across_processes(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    target = make_target(backend)
    calls = [(target.url, target.storage_options, 25) for _ in range(6)]
    conflicts = run_in_processes(_cas_increments, calls, barrier=True, timeout=600)
    with target.open() as store:
        assert store.get("counter") == b"150"
    assert sum(conflicts) > 0  # they did race


# -- logs: conditional appends, sequence numbers ----------------------------------------------


@pytest.mark.parametrize("cache", WITH_REDIS, ids=lambda c: f"cache={c}")
@pytest.mark.parametrize("backend", [*ALL, "seaweedfs"])
def test_conditional_appends_and_reads_by_sequence_number(
    backend: str,
    cache: str | None,
    make_target: Callable[[str], Target],
    open_cached: Callable[..., kvstore.KVStore],
) -> None:
    with open_cached(make_target(backend), cache) as store:
        assert store.next_seq("log") == 0
        assert store.range_from("log") == []
        assert store.extend("log", ["a", "b"], expect_next=0) == range(0, 2)
        assert store.extend("log", ["c"]) == range(2, 3)
        for stale in (0, 2, 4):
            with pytest.raises(kvstore.ConflictError) as caught:
                store.append("log", "x", expect_next=stale)
            assert caught.value.expected == stale and caught.value.actual == 3
        assert store.append("log", "d", expect_next=3) == 4
        assert store.range_from("log", 2) == [(2, b"c"), (3, b"d")]
        assert store.range_from("log", 1, count=2) == [(1, b"b"), (2, b"c")]
        assert store.range_from("log", 9) == []
        # Trimming keeps sequence numbers: a read from a trimmed one starts at the first.
        store.trim("log", 2)
        assert store.range_from("log", 0) == [(2, b"c"), (3, b"d")]
        assert store.next_seq("log") == 4 and store.length("log") == 2
        assert store.extend("log", ["e"], expect_next=4) == range(4, 5)
        assert store.range("log") == [b"c", b"d", b"e"]


def test_sequence_arguments_are_checked() -> None:
    with kvstore.open("memory://primitives-seq", cache=None) as store:
        for bad in (-1, True, "1", 1.0):
            with pytest.raises(kvstore.ConfigurationError, match="expect_next"):
                store.append("log", "x", expect_next=bad)  # type: ignore[arg-type]
            with pytest.raises(kvstore.ConfigurationError, match="seq"):
                store.range_from("log", bad)  # type: ignore[arg-type]
        with pytest.raises(kvstore.ConfigurationError, match="count"):
            store.range_from("log", 0, count=-1)
        with pytest.raises(kvstore.ConfigurationError, match="list"):
            store.extend("log", "abc")  # type: ignore[arg-type]
        assert store.length("log") == 0


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_conditional_append_after_a_read_is_one_request(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    target = make_target(backend)
    with target.open() as writer:
        writer.extend("log", ["a", "b", "c"])
    with target.open() as store:  # another process: knows nothing of the log yet
        with request_delta(store) as reading:
            assert store.range_from("log", 1) == [(1, b"b"), (2, b"c")]
        assert reading["requests.list"] == 1
        with request_delta(store) as appending:
            store.append("log", "d", expect_next=3)
        assert appending == {"requests.put_if_absent": 1}
        with request_delta(store) as again:
            store.append("log", "e", expect_next=4)
        assert again == {"requests.put_if_absent": 1}


def _conditional_appender(url: str, options: dict[str, Any], rounds: int, barrier: Any) -> int:
    store = kvstore.open(url, cache=None, storage_options=options or None)
    barrier.wait()
    wins = 0
    for _ in range(rounds):
        seq = store.next_seq("log")  # no cache: a fresh listing
        try:
            store.append("log", str(seq), expect_next=seq)
            wins += 1
        except kvstore.ConflictError:
            pass
    store.close()
    return wins


@pytest.mark.parametrize("backend", RACES)
def test_of_racing_conditional_appends_exactly_one_wins_each_slot(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    target = make_target(backend)
    calls = [(target.url, target.storage_options, 15) for _ in range(6)]
    wins = run_in_processes(_conditional_appender, calls, barrier=True, timeout=600)
    with target.open() as store:
        records = store.range_from("log")
    # Every win is one record, at exactly the sequence number its writer expected.
    assert len(records) == sum(wins)
    assert all(value == str(seq).encode() for seq, value in records)
    assert [seq for seq, _ in records] == list(range(len(records)))


# -- logs: settled, so cheap to read cold at any age ------------------------------------------


@pytest.mark.parametrize("cache", WITH_REDIS, ids=lambda c: f"cache={c}")
@pytest.mark.parametrize("backend", [*ALL, "seaweedfs"])
def test_a_log_of_200_appends_reads_cold_in_at_most_3_requests(
    backend: str,
    cache: str | None,
    make_target: Callable[[str], Target],
    open_cached: Callable[..., kvstore.KVStore],
) -> None:
    target = make_target(backend)
    with open_cached(target, cache) as writer:
        for i in range(200):
            writer.append("session", f"event {i}")
    # close() finished the writer's settle: the chunks are covered by a segment.
    with target.open() as reader:
        with request_delta(reader) as cold:
            events = reader.range("session")
        assert events == [f"event {i}".encode() for i in range(200)]
        assert sum(cold.values()) <= 3, cold
        with request_delta(reader) as recent:
            assert reader.range("session", -10, -1)[-1] == b"event 199"
        assert sum(recent.values()) <= 3, recent


def _names(store: kvstore.KVStore, key: str) -> list[str]:
    core = store.aio
    directory = core._logs.reader.dir(key)
    return sorted(store._portal.run(core._logs.reader.list_names(directory)))


def test_settling_never_deletes_a_young_chunk_and_compaction_later_does(
    make_target: Callable[[str], Target],
) -> None:
    clock = FakeClock()
    target = make_target("local")
    with open_clocked(target, clock) as store:
        for i in range(40):
            store.append("log", i)
        assert store.settle("log") == 1
        names = _names(store, "log")
        assert sum(n.startswith("c/") for n in names) == 40  # all still there
        assert [n for n in names if n.startswith("s/")] == [
            "s/00000000000000000000-00000000000000000040"
        ]
        for i in range(40, 45):
            store.append("log", i)
        assert store.settle("log") == 1  # the open segment, rewritten longer
        names = _names(store, "log")
        assert [n for n in names if n.startswith("s/")] == [
            "s/00000000000000000000-00000000000000000045"
        ]
        assert store.range("log") == [str(i).encode() for i in range(45)]
        clock.advance(LIMITS.MIN_AGE_MS + 1000)
        store.append("log", 45)
        store.settle("log")  # old now: the covered chunks go
        names = _names(store, "log")
        assert [n for n in names if n.startswith("c/")] == ["c/00000000000000000045"]
        assert store.range("log") == [str(i).encode() for i in range(46)]


def test_a_settled_segment_holds_at_most_settle_records(
    make_target: Callable[[str], Target], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LIMITS, "SETTLE_RECORDS", 16)
    with make_target("memory").open() as store:
        for i in range(40):
            store.append("log", i)
        store.settle("log")
        segments = [n for n in _names(store, "log") if n.startswith("s/")]
        assert segments == [
            "s/00000000000000000000-00000000000000000016",
            "s/00000000000000000016-00000000000000000032",
            "s/00000000000000000032-00000000000000000040",
        ]
        assert store.range("log") == [str(i).encode() for i in range(40)]


def test_a_read_of_a_scattered_log_settles_it(
    make_target: Callable[[str], Target], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = make_target("local")
    monkeypatch.setattr(LIMITS, "SETTLE", False)  # a writer that never settled (it died)
    with target.open() as writer:
        for i in range(30):
            writer.append("log", i)
    monkeypatch.setattr(LIMITS, "SETTLE", True)
    with target.open() as reader:
        assert len(reader.range("log")) == 30
    # The reader settled it as it closed: the next cold read is cheap.
    with target.open() as cold:
        with request_delta(cold) as spent:
            assert len(cold.range("log")) == 30
        assert sum(spent.values()) <= 3, spent
        assert any(n.startswith("s/") for n in _names(cold, "log"))


@pytest.mark.parametrize("backend", FAST)
def test_settling_keeps_trims_and_deletes(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    with make_target(backend).open() as store:
        for i in range(20):
            store.append("log", i)
        store.trim("log", 5)
        store.settle("log")
        assert store.range("log") == [str(i).encode() for i in range(5, 20)]
        assert store.range_from("log", 0)[0] == (5, b"5")
        store.delete("log")
        store.settle("log")
        assert store.range("log") == [] and store.length("log") == 0
        store.append("log", "again")
        store.settle("log")
        assert store.range_from("log") == [(20, b"again")]


def _settling_writer(url: str, options: dict[str, Any], w: int, n: int, barrier: Any) -> None:
    LIMITS.SETTLE_DELAY_S = 0.05  # settle often, while the others append
    LIMITS.SETTLE_CHUNKS = 4
    store = kvstore.open(url, cache=None, storage_options=options or None)
    barrier.wait()
    for i in range(n):
        store.append("log", f"{w}:{i}")
        if i % 10 == 9:
            store.range("log", -5, -1)  # readers too
    store.close()


@pytest.mark.parametrize("backend", RACES)
def test_settling_under_concurrent_writers_in_several_processes(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    target = make_target(backend)
    writers, n = 4, 40
    calls = [(target.url, target.storage_options, w, n) for w in range(writers)]
    run_in_processes(_settling_writer, calls, barrier=True, timeout=600)
    with target.open() as store:
        records = [r.decode() for r in store.range("log")]
        assert sorted(records) == sorted(f"{w}:{i}" for w in range(writers) for i in range(n))
        for w in range(writers):  # each writer's records in its order
            mine = [int(r.split(":")[1]) for r in records if r.startswith(f"{w}:")]
            assert mine == list(range(n))
        assert any(name.startswith("s/") for name in _names(store, "log"))
        store.settle("log")
    with target.open() as cold:
        with request_delta(cold) as spent:
            assert len(cold.range("log")) == writers * n
        assert sum(spent.values()) <= 3, spent


# -- deleting without counting, by prefix; purging what deletes leave ------------------------


@pytest.mark.parametrize("cache", WITH_REDIS, ids=lambda c: f"cache={c}")
@pytest.mark.parametrize("backend", [*ALL, "seaweedfs"])
def test_discard_and_delete_prefix(
    backend: str,
    cache: str | None,
    make_target: Callable[[str], Target],
    open_cached: Callable[..., kvstore.KVStore],
) -> None:
    with open_cached(make_target(backend), cache) as store:
        for i in range(5):
            store.set(f"user:{i}", i)
            store.append(f"user:{i}:log", "x")
        store.set("other", "o")
        store.append("other-log", "y")
        assert store.get("user:0") == b"0"  # cached now, with a cache
        store.discard("user:0", "user:1", "missing")
        assert store.get("user:0") is None and store.get("user:1") is None
        assert store.length("user:0:log") == 1  # logs are not discard's
        assert store.delete_prefix("user:") == 3 + 5
        assert store.keys() == ["other", "other-log"]
        assert store.get("user:2") is None and store.range("user:3:log") == []
        assert store.get("other") == b"o" and store.range("other-log") == [b"y"]
        with pytest.raises(kvstore.InvalidKeyError):
            store.delete_prefix(5)  # type: ignore[arg-type]


def test_discard_is_one_request_per_thousand_keys_on_s3(
    make_target: Callable[[str], Target],
) -> None:
    with make_target("s3").open() as store:
        store.mset({f"k{i}": i for i in range(10)})
        with request_delta(store) as spent:
            store.discard(*[f"k{i}" for i in range(10)])
        assert spent == {"requests.delete_many": 1}
        assert store.mget([f"k{i}" for i in range(10)]) == [None] * 10


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_deleted_logs_objects_are_removed_once_old(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    clock = FakeClock()
    target = make_target(backend)
    with open_clocked(target, clock) as store:
        for i in range(10):
            store.append("gone", i)
            store.append("kept", i)
        store.delete("gone")
        store.trim("kept", 5)
        assert store.purge() == {"expired": 0, "log_objects": 0}  # young: nothing yet
        assert len(_names(store, "gone")) == 11
        clock.advance(LIMITS.MIN_AGE_MS + 2000)
        result = store.purge()
        assert result["log_objects"] >= 10
        assert _names(store, "gone") == ["m/00000000000000000010"]  # the last mark stays
        assert store.range("kept") == [str(i).encode() for i in range(5, 10)]
        # Appending again starts after the mark; the next purge finds nothing more.
        assert store.extend("gone", ["new"]) == range(10, 11)
        assert store.range("gone") == [b"new"]


def test_the_next_append_removes_what_a_delete_left_once_old(
    make_target: Callable[[str], Target],
) -> None:
    clock = FakeClock()
    with open_clocked(make_target("local"), clock) as store:
        for i in range(10):
            store.append("log", i)
        store.delete("log")
        clock.advance(LIMITS.MIN_AGE_MS + 2000)
        store.append("log", "again")
        store.settle("log")  # what the writer does when idle
        assert [n for n in _names(store, "log") if not n.startswith("m/")] == [
            "c/00000000000000000010"
        ]
        assert store.range("log") == [b"again"]


def test_a_log_only_read_after_it_was_written_is_cleaned_by_its_readers(
    make_target: Callable[[str], Target], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks a segment covers go once old - by the next settle. A log written in one burst
    and then only read gets that settle from a reader whose listing holds many of them."""
    monkeypatch.setattr(LIMITS, "SETTLE_READ_LEFTOVERS", 20)
    clock = FakeClock()
    target = make_target("local")
    with open_clocked(target, clock) as writer:
        for i in range(30):
            writer.append("log", i)
    clock.advance(LIMITS.MIN_AGE_MS + 2000)
    with open_clocked(target, clock) as reader:
        assert len(reader.range("log")) == 30  # its listing: 30 covered chunks + a segment
    with open_clocked(target, clock) as cold:
        assert _names(cold, "log") == [
            "c/00000000000000000029",
            "s/00000000000000000000-00000000000000000030",
        ]
        assert len(cold.range("log")) == 30
