"""The head's copy of the latest events (kvstore.sessions.model, "The head"): a session
shows exactly [0, head.applied), from the head's copy or the log, and events and last_seq
agree even when another process's cached log plan is stale; a conditional appender is
never stuck (an unfolded event is folded, a stale cached head dropped); a damaged copy is
CorruptDataError; racing folds neither lose nor duplicate a record; what it costs."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

import kvstore
from kvstore import codec
from kvstore.sessions import model as session_model
from kvstore.sessions.model import Head
from kvstore.sessions.store import EVENTS, AsyncSessions
from kvstore.testing import request_delta, run_in_processes

HEAD = "ses/app~/head/u~/s~"


def _store(root: Path, **kwargs: Any) -> kvstore.KVStore:
    kwargs.setdefault("cache", None)
    return kvstore.open(str(root), **kwargs)


def _head(store: kvstore.KVStore) -> Head:
    blob = store.aio._ctx.blob
    found = store._portal.run(blob.get(HEAD))
    env = codec.decode(found.data, key="head", path=HEAD, bound=HEAD)
    return Head.from_bytes(env.payload, HEAD)


def _put_head(store: kvstore.KVStore, raw: dict[str, Any]) -> None:
    blob = store.aio._ctx.blob
    payload = bytes(msgpack.packb(raw))
    data = codec.encode(payload, meta=codec.kind_meta(codec.STRING), bind=HEAD)
    store._portal.run(blob.put(HEAD, data))


def _raw_head(store: kvstore.KVStore) -> dict[str, Any]:
    blob = store.aio._ctx.blob
    found = store._portal.run(blob.get(HEAD))
    env = codec.decode(found.data, key="head", path=HEAD, bound=HEAD)
    return dict(msgpack.unpackb(env.payload, strict_map_key=False))


def _log_records(store: kvstore.KVStore, head: Head) -> list[bytes]:
    sessions = store.aio.sessions
    logs = sessions._events("app", "u", "s", head.incarnation)
    first, records = store._portal.run(logs.read_from(EVENTS, 0))
    assert first == 0
    return records


def _die_after_event(monkeypatch: pytest.MonkeyPatch, store: kvstore.KVStore, data: Any) -> None:
    """An appender that wrote its event and died before its head update."""
    fold = AsyncSessions._fold

    async def dies(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("the appender died here")

    monkeypatch.setattr(AsyncSessions, "_fold", dies)
    try:
        with pytest.raises(ConnectionError):
            store.sessions.append_event("app", "u", "s", data, state_delta={"k": data["n"]})
    finally:
        monkeypatch.setattr(AsyncSessions, "_fold", fold)


# -- (1) what a session shows ---------------------------------------------------------------


def test_events_and_last_seq_agree_when_another_processs_log_plan_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes (two stores, each with its own in-process cache). B has read the whole
    session once (its log plan is cached, tail 3). A appends 2 more events. B's head entry
    is refreshed (here by B's own update_state; equally by LRU eviction of 256 KiB heads or
    a TTL expiring at another moment than the plan's). B then asks for the last 2 events -
    from the head's copy: seqs 3 and 4 - and then for the whole session: the older events
    come from the log through the *cached* plan, which stops at 3, so events 3 and 4 vanish
    while last_seq still says 4 and the state holds their deltas."""
    monkeypatch.setattr(session_model, "RECENT_BYTES", 150)  # a copy of ~2 events
    a = _store(tmp_path, cache=kvstore.LocalCache(ttl=600))
    b = _store(tmp_path, cache=kvstore.LocalCache(ttl=600))
    try:
        a.sessions.create("app", "u", "s")
        for i in range(3):
            a.sessions.append_event("app", "u", "s", {"n": i, "pad": "x" * 50}, {"k": i})
        first = b.sessions.get("app", "u", "s")
        assert first is not None and [e.seq for e in first.events] == [0, 1, 2]
        for i in range(3, 5):
            a.sessions.append_event("app", "u", "s", {"n": i, "pad": "x" * 50}, {"k": i})
        b.sessions.update_state("app", "u", "s", {"note": "b"})
        recent = b.sessions.get("app", "u", "s", recent=2)
        assert recent is not None and [e.seq for e in recent.events] == [3, 4]
        whole = b.sessions.get("app", "u", "s")
        assert whole is not None and whole.last_seq == 4 and whole.state["k"] == 4
        # every event [0, last_seq] - and those the previous read showed
        assert [e.seq for e in whole.events] == [0, 1, 2, 3, 4]
    finally:
        a.close()
        b.close()


def test_after_a_stale_error_reading_again_shows_the_new_last_seq(tmp_path: Path) -> None:
    """StaleSessionError says "read it again". B's in-process cache holds the head as of
    last_seq 0; A (another process) appended and folded two more events normally. B's
    conditional append is refused (the log's tail is 3), the head B then reads itself says
    last_seq 2 - but nothing refreshes B's cached head, and get() keeps answering
    last_seq 0: every retry is refused again until the cache entry's TTL (1 s by default;
    here 600 s). Before the change get()'s last_seq came from the log plan, which the
    refused append invalidated."""
    a = _store(tmp_path, cache=kvstore.LocalCache(ttl=600))
    b = _store(tmp_path, cache=kvstore.LocalCache(ttl=600))
    try:
        a.sessions.create("app", "u", "s")
        a.sessions.append_event("app", "u", "s", {"n": 0})
        seen = b.sessions.get("app", "u", "s")
        assert seen is not None and seen.last_seq == 0
        a.sessions.append_event("app", "u", "s", {"n": 1})
        a.sessions.append_event("app", "u", "s", {"n": 2})
        with pytest.raises(kvstore.StaleSessionError) as stale:
            b.sessions.append_event("app", "u", "s", {"n": "b"}, expect_last=seen.last_seq)
        assert stale.value.actual == 2
        again = b.sessions.get("app", "u", "s")
        assert again is not None and again.last_seq == 2, again.last_seq
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("cache", [None, "local", "own-ttl"])
def test_a_dead_appenders_event_never_livelocks_a_conditional_appender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: str | None
) -> None:
    """The livelock fix, with the caller's head from the cache (and the non-fresh path
    reading the current head), on two rounds in a row."""
    made = kvstore.LocalCache(ttl=600) if cache == "own-ttl" else cache
    with _store(tmp_path, cache=made) as store:
        s = store.sessions
        s.create("app", "u", "s")
        s.append_event("app", "u", "s", {"n": 0}, state_delta={"k": 0})
        for n in (1, 2):  # two rounds: each time a dead appender left an event unfolded
            seen = s.get("app", "u", "s")  # (cached head)
            assert seen is not None and seen.last_seq == n - 1
            _die_after_event(monkeypatch, store, {"n": n})
            again = s.get("app", "u", "s")
            assert again is not None and again.last_seq == n - 1  # not shown yet
            assert [e.data["n"] for e in again.events] == list(range(n))
            with pytest.raises(kvstore.StaleSessionError) as stale:
                s.append_event("app", "u", "s", {"n": "mine"}, expect_last=seen.last_seq)
            assert stale.value.actual == n
            after = s.get("app", "u", "s")
            assert after is not None and after.last_seq == n and after.state == {"k": n}
            assert [e.data["n"] for e in after.events] == list(range(n + 1))
        s.append_event("app", "u", "s", {"n": 3}, state_delta={"k": 3}, expect_last=2)
        got = s.get("app", "u", "s")
        assert got is not None and [e.data["n"] for e in got.events] == [0, 1, 2, 3]
        head = _head(store)
        assert head.recent == _log_records(store, head)[head.recent_first :]


def test_a_dead_appender_seen_from_another_process_with_a_cached_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller (B) has the head cached; A's appender dies after its event. B's
    conditional append folds it (B's cache is invalidated by the fold), B reads again and
    goes on."""
    a = _store(tmp_path, cache=kvstore.LocalCache(ttl=600))
    b = _store(tmp_path, cache=kvstore.LocalCache(ttl=600))
    try:
        a.sessions.create("app", "u", "s")
        a.sessions.append_event("app", "u", "s", {"n": 0}, state_delta={"k": 0})
        seen = b.sessions.get("app", "u", "s")
        assert seen is not None and seen.last_seq == 0
        _die_after_event(monkeypatch, a, {"n": 1})
        with pytest.raises(kvstore.StaleSessionError):
            b.sessions.append_event("app", "u", "s", {"n": "b"}, expect_last=0)
        again = b.sessions.get("app", "u", "s")
        assert again is not None and again.last_seq == 1 and again.state == {"k": 1}
        b.sessions.append_event("app", "u", "s", {"n": 2}, expect_last=1)
        got = b.sessions.get("app", "u", "s")
        assert got is not None and [e.data["n"] for e in got.events] == [0, 1, 2]
    finally:
        a.close()
        b.close()


def _reference(events: list[Any], recent: int | None, after: Any) -> list[int]:
    seqs = [(e.seq, e.timestamp) for e in events]
    if isinstance(after, int):
        seqs = [x for x in seqs if x[0] > after]
    elif after is not None:
        t = after if isinstance(after, float) else after.timestamp()
        seqs = [x for x in seqs if x[1] > t]
    out = [x[0] for x in seqs]
    if recent is not None:
        out = out[-recent:] if recent else []
    return out


@pytest.mark.parametrize("legacy", [False, True], ids=["copy", "legacy-head"])
def test_recent_and_after_combinations_match_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, legacy: bool
) -> None:
    """Every combination of recent and after (seq beyond applied, negative, 0, times
    before/inside/after) gives the events the log says, and last_seq is the session's."""
    monkeypatch.setattr(session_model, "RECENT_BYTES", 200)  # copy: the last few events
    with _store(tmp_path, cache=None if legacy else "local") as store:
        s = store.sessions
        s.create("app", "u", "s")
        for i in range(12):
            time.sleep(0.002)
            s.append_event("app", "u", "s", {"i": i, "pad": "y" * 30})
        if legacy:  # a head written before heads kept a copy
            raw = _raw_head(store)
            raw.pop("rf"), raw.pop("rc")
            _put_head(store, raw)
        head = _head(store)
        assert (head.recent_first is None) == legacy
        assert legacy or 0 < head.recent_first < 12  # type: ignore[operator]
        full = s.get("app", "u", "s")
        assert full is not None and [e.seq for e in full.events] == list(range(12))
        times = [e.timestamp for e in full.events]
        afters: list[Any] = [None, -5, -1, 0, 5, 9, 10, 11, 12, 100]
        afters += [times[0] - 1, times[3], times[10], times[11], times[11] + 5]
        afters += [datetime.datetime.fromtimestamp(times[7], datetime.timezone.utc)]
        for recent in (None, 0, 1, 2, 5, 11, 12, 50):
            for after in afters:
                got = s.get("app", "u", "s", recent=recent, after=after)
                assert got is not None and got.last_seq == 11
                want = _reference(full.events, recent, after)
                assert [e.seq for e in got.events] == want, (recent, after)
                for e in got.events:
                    assert e == full.events[e.seq]


def test_an_event_larger_than_the_copy_alone(tmp_path: Path) -> None:
    big = "z" * (session_model.RECENT_BYTES + 10)
    with _store(tmp_path, cache="local") as store:
        s = store.sessions
        s.create("app", "u", "s")
        s.append_event("app", "u", "s", {"n": 0})
        s.append_event("app", "u", "s", {"n": 1, "big": big})
        head = _head(store)
        assert head.recent == [] and head.recent_first == 2
        got = s.get("app", "u", "s", recent=1)
        assert got is not None and [e.data["n"] for e in got.events] == [1]
        assert got.events[0].data["big"] == big
        s.append_event("app", "u", "s", {"n": 2})
        head = _head(store)
        assert head.recent_first == 2 and len(head.recent) == 1
        got = s.get("app", "u", "s", recent=2)
        assert got is not None and [e.data["n"] for e in got.events] == [1, 2]
        got = s.get("app", "u", "s")
        assert got is not None and [e.data["n"] for e in got.events] == [0, 1, 2]


def test_update_state_and_a_new_incarnation_keep_the_copy_true(tmp_path: Path) -> None:
    with _store(tmp_path, cache="local") as store:
        s = store.sessions
        s.create("app", "u", "s")
        for i in range(3):
            s.append_event("app", "u", "s", {"n": i}, state_delta={"k": i})
        s.update_state("app", "u", "s", {"k": "set", "user:x": 1}, title="t")
        head = _head(store)
        assert head.recent_first == 0 and head.recent == _log_records(store, head)
        got = s.get("app", "u", "s", recent=2)
        assert got is not None and [e.data["n"] for e in got.events] == [1, 2]
        assert got.state == {"k": "set", "user:x": 1} and got.title == "t"
        assert s.delete("app", "u", "s")
        s.create("app", "u", "s")
        got = s.get("app", "u", "s")
        assert got is not None and got.events == [] and got.last_seq == -1
        s.append_event("app", "u", "s", {"n": "new"})
        got = s.get("app", "u", "s")
        assert got is not None and [e.data["n"] for e in got.events] == ["new"]
        assert got.last_seq == 0


def test_a_legacy_heads_first_fold_after_a_dead_appender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A head without a copy, one unfolded event: the next append folds it and starts the
    copy at the legacy head's applied - the copy covers the gap event and its own."""
    with _store(tmp_path, cache=None) as store:
        s = store.sessions
        s.create("app", "u", "s")
        s.append_event("app", "u", "s", {"n": 0}, state_delta={"k": 0})
        raw = _raw_head(store)
        raw.pop("rf"), raw.pop("rc")
        _put_head(store, raw)
        _die_after_event(monkeypatch, store, {"n": 1})
        s.append_event("app", "u", "s", {"n": 2}, state_delta={"k": 2})
        head = _head(store)
        assert head.recent_first == 1 and head.applied == 3
        assert head.recent == _log_records(store, head)[1:]
        got = s.get("app", "u", "s")
        assert got is not None and [e.data["n"] for e in got.events] == [0, 1, 2]


# -- (2) the head's decode validation -------------------------------------------------------


@pytest.mark.parametrize(
    "rf, rc",
    [
        ("1", None),
        (1.0, None),
        (True, None),
        (None, 5),
        (0, ["text"]),
        (0, [1]),
        (0, None),  # rc: one record too few
        (5, None),  # first + len != applied
    ],
)
def test_a_damaged_copy_is_corrupt_data(tmp_path: Path, rf: Any, rc: Any) -> None:
    with _store(tmp_path) as store:
        s = store.sessions
        s.create("app", "u", "s")
        s.append_event("app", "u", "s", {"n": 0})
        s.append_event("app", "u", "s", {"n": 1})
        raw = _raw_head(store)
        raw["rf"] = rf
        if rc is not None:
            raw["rc"] = rc
        elif rf == 0:
            raw["rc"] = raw["rc"][:1]
        if rf is None:
            raw["rf"] = 0
        _put_head(store, raw)
        with pytest.raises(kvstore.CorruptDataError, match="session head"):
            s.get("app", "u", "s")
        with pytest.raises(kvstore.CorruptDataError):
            s.append_event("app", "u", "s", {"n": 2})


def test_a_copy_record_that_is_not_an_event_is_corrupt_data(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        s = store.sessions
        s.create("app", "u", "s")
        s.append_event("app", "u", "s", {"n": 0})
        raw = _raw_head(store)
        raw["rc"] = [b"\xc1 not msgpack"]
        _put_head(store, raw)
        with pytest.raises(kvstore.CorruptDataError, match="event 0"):
            s.get("app", "u", "s")


def test_a_negative_copy_start_is_corrupt_data(tmp_path: Path) -> None:
    """rf = -1 with one record more passes the `first + len == applied` check; kept()
    then indexes recent[s - first] and shows the record of seq 1 as seq 0."""
    with _store(tmp_path) as store:
        s = store.sessions
        s.create("app", "u", "s")
        s.append_event("app", "u", "s", {"n": 0})
        s.append_event("app", "u", "s", {"n": 1})
        raw = _raw_head(store)
        raw["rf"] = -1
        raw["rc"] = [raw["rc"][0], raw["rc"][1], raw["rc"][1]]
        _put_head(store, raw)
        with pytest.raises(kvstore.CorruptDataError, match="session head"):
            s.get("app", "u", "s")


# -- (3) several processes fold into one head -----------------------------------------------


def _appender(root: str, w: int, n: int, barrier: Any) -> None:
    store = kvstore.open(root, cache=None)
    barrier.wait()
    for i in range(n):
        store.sessions.append_event("app", "u", "s", {"w": w, "i": i}, state_delta={"last": w})
    store.close()


def test_racing_folds_neither_lose_nor_duplicate_a_record_of_the_copy(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    with _store(Path(root)) as store:
        store.sessions.create("app", "u", "s")
    writers, n = 4, 10
    run_in_processes(_appender, [(root, w, n) for w in range(writers)], barrier=True, timeout=300)
    with _store(Path(root)) as store:
        head = _head(store)
        assert head.applied == writers * n and head.recent_first == 0
        assert head.recent == _log_records(store, head)  # byte for byte, in log order
        got = store.sessions.get("app", "u", "s")
        assert got is not None and [e.seq for e in got.events] == list(range(writers * n))
        assert got.state["last"] == got.events[-1].data["w"]


def test_the_copy_is_the_logged_record_even_if_the_caller_mutates_its_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log holds the record encoded at append time; the head's copy re-encodes the
    caller's dict (a shallow copy) at fold time. An async caller whose event dict holds a
    list another task changes meanwhile gets a copy that disagrees with the log: the last
    N (from the copy) and the whole session (from the log) show different data for the
    same seq."""
    fold = AsyncSessions._fold

    async def meanwhile(self: Any, *args: Any, **kwargs: Any) -> Any:
        parts.append("added by another task while the append was in flight")
        return await fold(self, *args, **kwargs)

    parts = ["hello"]
    with _store(tmp_path, cache=None) as store:
        store.sessions.create("app", "u", "s")
        monkeypatch.setattr(AsyncSessions, "_fold", meanwhile)
        store.sessions.append_event("app", "u", "s", {"parts": parts})
        monkeypatch.setattr(AsyncSessions, "_fold", fold)
        head = _head(store)
        assert head.recent == _log_records(store, head)


# -- (4) costs ------------------------------------------------------------------------------


def test_append_warm_cost_and_cold_get_with_a_full_copy(tmp_path: Path) -> None:
    pad = "p" * 700
    with _store(tmp_path, cache="local") as store:
        s = store.sessions
        s.create("app", "u", "s")
        for i in range(400):  # ~290 KiB of records: the copy is full and trimming
            s.append_event("app", "u", "s", {"i": i, "pad": pad})
        with request_delta(store) as warm:
            s.append_event("app", "u", "s", {"i": 400, "pad": pad})
        assert warm.get("requests.put_if_absent") == 1, warm
        assert warm.get("requests.put_if_match") == 1, warm
        assert not warm.get("requests.get") and not warm.get("requests.list"), warm
        head = _head(store)
        size = sum(map(len, head.recent))
        assert size <= session_model.RECENT_BYTES
        assert size + len(head.recent[0]) > session_model.RECENT_BYTES - 800
    with _store(tmp_path, cache=None) as cold:
        with request_delta(cold) as loading:
            got = cold.sessions.get("app", "u", "s", recent=100)
        assert got is not None and [e.data["i"] for e in got.events] == list(range(301, 401))
        assert loading == {"requests.get": 3}, loading


def test_list_reads_each_users_scope_from_the_listed_names(tmp_path: Path) -> None:
    users = ["a/b", "~x", "ü s", "..", "u"]
    with _store(tmp_path, cache="local") as store:
        s = store.sessions
        for u in users:
            s.create("app", u, "s1", state={"user:name": u, "app:a": 1})
            s.append_event("app", u, "s1", {"n": 0})
        page = s.list("app")
        assert sorted(x.user for x in page.sessions) == sorted(users)
        for x in page.sessions:
            assert x.state == {"user:name": x.user, "app:a": 1} and x.last_seq == 0
            assert x.events == []
        for u in users:
            (one,) = s.list("app", u).sessions
            assert one.user == u and one.state["user:name"] == u
