"""Agent sessions (issue 15): scoped state, events, cascading deletes - on every backend,
with and without a cache (the in-process one and a shared Redis), with the concurrency
claims proven by several processes on the stores that enforce conditional writes."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import ALL, FAST, RACES, Target

import kvstore
from kvstore.sessions import model as session_model
from kvstore.testing import request_delta, run_in_processes

CACHE_KINDS = [None, "local", "redis"]


@pytest.mark.parametrize("cache", CACHE_KINDS, ids=lambda c: f"cache={c}")
@pytest.mark.parametrize("backend", [*ALL, "seaweedfs"])
def test_a_session_keeps_its_events_and_state_in_three_scopes(
    backend: str,
    cache: str | None,
    make_target: Callable[[str], Target],
    open_cached: Callable[..., kvstore.KVStore],
) -> None:
    store = open_cached(make_target(backend), cache)
    sessions = store.sessions
    created = sessions.create(
        "app",
        "alice",
        "s1",
        state={"topic": "x", "app:model": "m1", "user:name": "Alice", "temp:scratch": 1},
        metadata={"source": "test"},
        title="first",
    )
    assert created.id == "s1" and created.last_seq == -1 and created.events == []
    assert created.state == {"topic": "x", "app:model": "m1", "user:name": "Alice"}
    assert created.title == "first" and created.metadata == {"source": "test"}
    with pytest.raises(kvstore.SessionExistsError):
        sessions.create("app", "alice", "s1")

    e0 = sessions.append_event("app", "alice", "s1", {"author": "user", "text": "hi"})
    e1 = sessions.append_event(
        "app",
        "alice",
        "s1",
        {"author": "agent", "text": "hello"},
        state_delta={"topic": "y", "user:lang": "en", "app:model": "m2", "temp:t": 9},
        expect_last=0,
    )
    assert (e0.seq, e1.seq) == (0, 1) and e1.timestamp >= e0.timestamp
    assert e1.state_delta == {"topic": "y", "user:lang": "en", "app:model": "m2"}

    got = sessions.get("app", "alice", "s1")
    assert got is not None
    assert [e.data["text"] for e in got.events] == ["hi", "hello"]
    assert got.state == {"topic": "y", "app:model": "m2", "user:name": "Alice", "user:lang": "en"}
    assert got.last_seq == 1 and got.updated >= got.created
    # Another session of the same user shares user: and app: keys, not session keys.
    other = sessions.create("app", "alice", "s2")
    assert other.state == {"app:model": "m2", "user:name": "Alice", "user:lang": "en"}
    # Another user shares only app: keys.
    bob = sessions.create("app", "bob", "s1", state={"k": 1})
    assert bob.state == {"k": 1, "app:model": "m2"}

    # Reading part of the events.
    assert [e.seq for e in sessions.get("app", "alice", "s1", recent=1).events] == [1]
    assert [e.seq for e in sessions.get("app", "alice", "s1", after=0).events] == [1]
    assert sessions.get("app", "alice", "s1", after=e0.timestamp - 1).events[0].seq == 0
    assert sessions.get("app", "alice", "s1", recent=0).events == []

    # A stale writer is rejected and writes nothing.
    with pytest.raises(kvstore.StaleSessionError) as stale:
        sessions.append_event("app", "alice", "s1", {"text": "late"}, expect_last=0)
    assert stale.value.actual == 1
    assert sessions.get("app", "alice", "s1").last_seq == 1  # type: ignore[union-attr]

    after = sessions.update_state(
        "app", "alice", "s1", {"topic": "z", "user:lang": "fr"}, status="done", metadata={"n": 1}
    )
    assert after.state["topic"] == "z" and after.state["user:lang"] == "fr"
    assert (after.title, after.status) == ("first", "done")
    assert after.metadata == {"source": "test", "n": 1}
    cleared = sessions.update_state("app", "alice", "s1", title=None)
    assert cleared.title is None and cleared.status == "done" and cleared.state == after.state

    page = sessions.list("app", "alice")
    assert [s.id for s in page.sessions] == ["s1", "s2"] and page.cursor is None
    assert [(s.user, s.id) for s in sessions.list("app").sessions] == [
        ("alice", "s1"),
        ("alice", "s2"),
        ("bob", "s1"),
    ]

    assert sessions.delete("app", "alice", "s1") is True
    assert sessions.get("app", "alice", "s1") is None
    assert sessions.delete("app", "alice", "s1") is False
    with pytest.raises(kvstore.NotFoundError):
        sessions.append_event("app", "alice", "s1", {"text": "into nothing"})
    # Created again: a new session, none of the old events.
    again = sessions.create("app", "alice", "s1")
    assert again.last_seq == -1 and sessions.get("app", "alice", "s1").events == []  # type: ignore[union-attr]


def _objects(store: kvstore.KVStore, prefix: str) -> list[str]:
    async def listing() -> list[str]:
        out: list[str] = []
        async for page in store.aio._ctx.blob.list_pages(prefix):
            out.extend(page)
        return out

    return store._portal.run(listing())


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_deletes_cascade_to_events_state_and_artifacts(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    with make_target(backend).open() as store:
        sessions = store.sessions
        for user in ("alice", "bob"):
            for sid in ("a", "b"):
                sessions.create("app", user, sid, state={"user:u": user, "app:a": 1})
                for i in range(3):
                    sessions.append_event("app", user, sid, {"i": i})
                store.artifacts.save(sessions.artifact_name("app", user, sid, "f.txt"), b"x")
            store.artifacts.save(sessions.artifact_name("app", user, None, "profile"), b"p")
        sessions.create("other-app", "alice", "a")

        assert sessions.delete("app", "alice", "a")
        assert _objects(store, "ses/app~/ev/alice~/a~/") == []
        assert store.artifacts.list("sessions/app/alice/a/") == []
        assert store.artifacts.list("sessions/app/alice/b/") != []

        assert sessions.delete_user("app", "alice") == 1
        assert sessions.list("app", "alice").sessions == []
        assert _objects(store, "ses/app~/ev/alice~/") == []
        assert _objects(store, "ses/app~/user/alice~") == []
        assert store.artifacts.list("sessions/app/alice/") == []
        assert [s.id for s in sessions.list("app", "bob").sessions] == ["a", "b"]
        assert sessions.get("app", "bob", "a").state == {"user:u": "bob", "app:a": 1}  # type: ignore[union-attr]

        assert sessions.delete_app("app") == 2
        assert _objects(store, "ses/app~/") == []
        assert store.artifacts.list("sessions/app/") == []
        assert [s.id for s in sessions.list("other-app").sessions] == ["a"]


@pytest.mark.parametrize("backend", FAST)
def test_list_pages_through_many_sessions(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    with make_target(backend).open() as store:
        ids = [f"s{i:03d}" for i in range(250)]
        for sid in ids:
            store.sessions.create("app", "u", sid)
        store.sessions.create("app", "v", "other")
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = store.sessions.list("app", "u", limit=100, cursor=cursor)
            seen += [s.id for s in page.sessions]
            pages += 1
            if page.cursor is None:
                break
            cursor = page.cursor
        assert seen == ids and pages == 3
        full = store.sessions.list(
            "app", "u", limit=50, cursor=store.sessions.list("app", "u", limit=200).cursor
        )
        assert len(full.sessions) == 50 and full.cursor is None  # the last page says so
        with pytest.raises(kvstore.ConfigurationError, match="cursor"):
            store.sessions.list("app", "u", cursor="garbage")
        with pytest.raises(kvstore.ConfigurationError, match="limit"):
            store.sessions.list("app", "u", limit=0)


@pytest.mark.parametrize("backend", ["s3"])
def test_what_session_calls_cost(backend: str, make_target: Callable[[str], Target]) -> None:
    target = make_target(backend)
    with target.open() as writer:
        writer.sessions.create("app", "u", "s")
        for i in range(200):
            writer.sessions.append_event("app", "u", "s", {"i": i})
        _settled(writer)  # (background settles would count in the block below)
        with request_delta(writer) as warm:
            writer.sessions.append_event("app", "u", "s", {"i": 200})
        # The event (its tail known) and the head's swap (its version known).
        assert warm == {"requests.put_if_absent": 1, "requests.put_if_match": 1}, warm
    with target.open() as cold:
        with request_delta(cold) as loading:
            got = cold.sessions.get("app", "u", "s")
        assert got is not None and got.last_seq == 200 and len(got.events) == 201
        assert [e.data["i"] for e in got.events] == list(range(201))
        # head + app state + user state, concurrently: the head's copy holds the events
        assert loading == {"requests.get": 3}, loading
        with request_delta(cold) as older:
            got = cold.sessions.get("app", "u", "s", after=5)
        assert got is not None and got.events[0].seq == 6
        assert "requests.list" not in older, older  # from the head's copy again


@pytest.mark.parametrize("backend", ["s3"])
def test_events_older_than_the_heads_copy_come_from_the_log(
    backend: str, make_target: Callable[[str], Target], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_model, "RECENT_BYTES", 200)  # a copy of a few events
    target = make_target(backend)
    with target.open() as writer:
        writer.sessions.create("app", "u", "s")
        for i in range(200):
            writer.sessions.append_event("app", "u", "s", {"i": i, "pad": "x" * 20})
        _settled(writer)
    with target.open(cache=kvstore.LocalCache(ttl=600)) as cold:
        with request_delta(cold) as recent:
            got = cold.sessions.get("app", "u", "s", recent=3)
        assert got is not None and [e.seq for e in got.events] == [197, 198, 199]
        assert recent == {"requests.get": 3}, recent  # the last 3 are in the head's copy
        with request_delta(cold) as whole:
            got = cold.sessions.get("app", "u", "s")
        assert got is not None and [e.data["i"] for e in got.events] == list(range(200))
        # the events before the copy: the log's LIST and its segment
        assert whole == {"requests.list": 1, "requests.get": 1}, whole


def _settled(store: kvstore.KVStore, timeout: float = 30.0) -> None:
    """Wait until the store's background settles are done."""
    resources = store.aio._ctx.resources
    deadline = time.monotonic() + timeout
    while any(not t.done() for t in list(resources.finishing)):
        assert time.monotonic() < deadline, "settles still running"
        time.sleep(0.05)


def test_bad_arguments_are_refused_and_change_nothing() -> None:
    with kvstore.open("memory://sessions-bad", cache=None) as store:
        s = store.sessions
        for bad in ("", None, 7, "x" * 300):
            with pytest.raises(kvstore.ConfigurationError):
                s.create(bad, "u")  # type: ignore[arg-type]
            with pytest.raises(kvstore.ConfigurationError):
                s.create("app", bad)  # type: ignore[arg-type]
        s.create("app", "u", "s")
        with pytest.raises(kvstore.InvalidValueError):
            s.append_event("app", "u", "s", "not a dict")  # type: ignore[arg-type]
        with pytest.raises(kvstore.InvalidValueError):
            s.append_event("app", "u", "s", {"x": object()})
        with pytest.raises(kvstore.InvalidValueError):
            s.append_event("app", "u", "s", {"x": 1}, state_delta={1: 2})  # type: ignore[dict-item]
        with pytest.raises(kvstore.ConfigurationError):
            s.append_event("app", "u", "s", {"x": 1}, expect_last=-2)
        with pytest.raises(kvstore.ConfigurationError):
            s.get("app", "u", "s", recent=-1)
        with pytest.raises(kvstore.ConfigurationError):
            s.get("app", "u", "s", after="yesterday")
        with pytest.raises(kvstore.ConfigurationError):
            s.create("app", "u", "t", title=5)  # type: ignore[arg-type]
        with pytest.raises(kvstore.NotFoundError):
            s.append_event("app", "u", "nope", {"x": 1})
        with pytest.raises(kvstore.NotFoundError):
            s.update_state("app", "u", "nope", {"x": 1})
        got = s.get("app", "u", "s")
        assert got is not None and got.last_seq == -1
        assert s.get("app", "u", "s", after=datetime.datetime.now()).events == []  # type: ignore[union-attr]


def test_a_damaged_head_is_reported_with_its_path() -> None:
    with kvstore.open("memory://sessions-damaged", cache=None) as store:
        store.sessions.create("app", "u", "s")
        path = "ses/app~/head/u~/s~"
        blob = store.aio._ctx.blob
        data = store._portal.run(blob.get(path)).data
        store._portal.run(blob.put(path, data[:-3] + b"xyz"))
        with pytest.raises(kvstore.CorruptDataError, match="head"):
            store.sessions.get("app", "u", "s")


def _appender(url: str, options: dict[str, Any], w: int, n: int, barrier: Any) -> None:
    store = kvstore.open(url, cache=None, storage_options=options or None)
    barrier.wait()
    for i in range(n):
        store.sessions.append_event(
            "app",
            "u",
            "s",
            {"w": w, "i": i},
            state_delta={f"w{w}": i, f"user:w{w}": i, f"app:w{w}": i, "last": [w, i]},
        )
    store.close()


@pytest.mark.parametrize("backend", RACES)
def test_concurrent_appenders_lose_no_event_and_no_state_update(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    target = make_target(backend)
    with target.open() as store:
        store.sessions.create("app", "u", "s")
    writers, n = 8, 12
    calls = [(target.url, target.storage_options, w, n) for w in range(writers)]
    started = time.monotonic()
    run_in_processes(_appender, calls, barrier=True, timeout=600)
    elapsed = time.monotonic() - started
    with target.open() as store:
        got = store.sessions.get("app", "u", "s")
        assert got is not None
        assert [e.seq for e in got.events] == list(range(writers * n))
        for w in range(writers):
            mine = [e.data["i"] for e in got.events if e.data["w"] == w]
            assert mine == list(range(n))  # each writer's events, in its order
            for key in (f"w{w}", f"user:w{w}", f"app:w{w}"):
                assert got.state[key] == n - 1, (key, got.state)
        # The session key set by everyone holds the delta of the last event.
        last = got.events[-1]
        assert got.state["last"] == [last.data["w"], last.data["i"]]
    assert elapsed < 600


def _stale_writer(url: str, options: dict[str, Any], w: int, barrier: Any) -> bool:
    store = kvstore.open(url, cache=None, storage_options=options or None)
    seen = store.sessions.get("app", "u", "s")
    assert seen is not None
    barrier.wait()
    try:
        store.sessions.append_event(
            "app", "u", "s", {"w": w}, state_delta={"winner": w}, expect_last=seen.last_seq
        )
        return True
    except kvstore.StaleSessionError:
        return False
    finally:
        store.close()


@pytest.mark.parametrize("backend", RACES)
def test_of_racing_stale_writers_exactly_one_wins(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    target = make_target(backend)
    with target.open() as store:
        store.sessions.create("app", "u", "s")
        store.sessions.append_event("app", "u", "s", {"w": -1})
    for _ in range(2):
        calls = [(target.url, target.storage_options, w) for w in range(8)]
        won = run_in_processes(_stale_writer, calls, barrier=True, timeout=300)
        assert sum(won) == 1
    with target.open() as store:
        got = store.sessions.get("app", "u", "s")
        assert got is not None and len(got.events) == 3
        assert got.state["winner"] == got.events[-1].data["w"]


def _append_until_gone(url: str, options: dict[str, Any], barrier: Any) -> int:
    store = kvstore.open(url, cache=None, storage_options=options or None)
    barrier.wait()
    appended = 0
    try:
        while appended < 10_000:
            store.sessions.append_event("app", "u", "s", {"n": appended})
            appended += 1
    except kvstore.NotFoundError:
        pass
    store.close()
    return appended


def _delete_soon(url: str, options: dict[str, Any], barrier: Any) -> bool:
    store = kvstore.open(url, cache=None, storage_options=options or None)
    barrier.wait()
    time.sleep(0.5)
    deleted = store.sessions.delete("app", "u", "s")
    store.close()
    return deleted


@pytest.mark.parametrize("backend", RACES)
def test_an_append_racing_a_delete_never_resurrects_the_session(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    target = make_target(backend)
    with target.open() as store:
        store.sessions.create("app", "u", "s")
    roles = ("append", "append", "delete")
    calls = [(target.url, target.storage_options, role) for role in roles]
    results = run_in_processes(_race_role, calls, barrier=True, timeout=300)
    assert results[2] is True
    with target.open() as store:
        assert store.sessions.get("app", "u", "s") is None
        assert store.sessions.list("app", "u").sessions == []
        # The appenders removed the events they wrote after the delete: what is left (a
        # settle that raced the delete can leave a segment) belongs to no session.
        left = _objects(store, "ses/app~/ev/u~/")
        assert all("/log/events~/s/" in p for p in left), left
        store.sessions.create("app", "u", "s")
        assert store.sessions.get("app", "u", "s").events == []  # type: ignore[union-attr]


def _race_role(url: str, options: dict[str, Any], role: str, barrier: Any) -> Any:
    if role == "delete":
        return _delete_soon(url, options, barrier)
    return _append_until_gone(url, options, barrier)


def test_fsck_checks_sessions_and_reports_orphaned_events(
    make_target: Callable[[str], Target],
) -> None:
    with make_target("local").open() as store:
        s = store.sessions
        s.create("app", "u", "a", state={"app:x": 1, "user:y": 2})
        s.create("app", "u", "b")
        for i in range(3):
            s.append_event("app", "u", "a", {"i": i})
            s.append_event("app", "u", "b", {"i": i})

        assert store.fsck()["ok"]
        blob = store.aio._ctx.blob
        run = store._portal.run
        # An incarnation no head names: b's head removed behind the model's back.
        run(blob.delete("ses/app~/head/u~/b~"))
        # A damaged head.
        data = run(blob.get("ses/app~/head/u~/a~")).data
        run(blob.put("ses/app~/head/u~/a~", data[:-1] + bytes([data[-1] ^ 1])))
        report = store.fsck()
        kinds = sorted((d["kind"], d["path"].split("/log/")[0]) for d in report["damage"])
        assert ("corrupt", "ses/app~/head/u~/a~") in kinds, kinds
        assert not report["ok"]
        # With a's head unreadable, no incarnation is called an orphan (it may be a's).
        assert all(kind != "orphan" for kind, _ in kinds)
        run(blob.delete("ses/app~/head/u~/a~"))
        report = store.fsck()
        assert sum(d["kind"] == "orphan" for d in report["damage"]) == 2
        assert report["ok"]  # orphans are reported, not damage to repair


def test_json_like_values_round_trip_exactly() -> None:
    with kvstore.open("memory://sessions-values", cache=None) as store:
        s = store.sessions
        value = {"n": {1: "one"}, "b": b"\x00\xff", "f": 1.5, "l": [None, True, {"x": []}]}
        s.create("app", "u", "s", state={"k": value}, metadata={"m": value})
        s.append_event("app", "u", "s", {"data": value}, state_delta={"d": value})
        got = s.get("app", "u", "s")
        assert got is not None
        assert got.state == {"k": value, "d": value} and got.metadata == {"m": value}
        assert got.events[0].data == {"data": value}
        # Tuples come back as lists (JSON-like); datetimes and objects are refused.
        s.append_event("app", "u", "s", {"t": (1, 2)})
        assert s.get("app", "u", "s", recent=1).events[0].data == {"t": [1, 2]}  # type: ignore[union-attr]
        with pytest.raises(kvstore.InvalidValueError, match="JSON-like"):
            s.append_event("app", "u", "s", {"when": datetime.datetime.now()})


def test_scope_state_reads_the_app_and_user_scopes_without_a_session() -> None:
    with kvstore.open("memory://sessions-scope-state", cache=None) as store:
        s = store.sessions
        assert s.scope_state("app") == {} and s.scope_state("app", "u") == {}
        s.create("app", "u", "s")
        s.append_event(
            "app", "u", "s", {"x": 1}, state_delta={"app:mode": "on", "user:name": "Ann", "k": 1}
        )
        assert s.scope_state("app") == {"mode": "on"}
        assert s.scope_state("app", "u") == {"name": "Ann"}
        assert s.scope_state("app", "v") == {}
        with pytest.raises(kvstore.ConfigurationError):
            s.scope_state("", "u")


@pytest.mark.parametrize("backend", FAST)
def test_an_event_its_appender_never_folded_shows_once_a_writer_folds_it(
    backend: str, make_target: Callable[[str], Target], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An appender dies between its event (durable in the log) and its head update: no
    reader shows the event until a writer folds it - a conditional append it made stale
    (which folds it, so reading again finds it, and the caller is never stuck), or any
    later append - and no read shows it and a later one not."""
    from kvstore.sessions.store import AsyncSessions

    with make_target(backend).open(cache=None) as store:
        s = store.sessions
        s.create("app", "u", "s")
        s.append_event("app", "u", "s", {"n": 0}, state_delta={"k": 0})
        fold = AsyncSessions._fold

        async def dies(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("the appender died here")

        monkeypatch.setattr(AsyncSessions, "_fold", dies)
        with pytest.raises(ConnectionError):
            s.append_event("app", "u", "s", {"n": 1}, state_delta={"k": 1})
        monkeypatch.setattr(AsyncSessions, "_fold", fold)
        whole, after = s.get("app", "u", "s"), s.get("app", "u", "s", after=0)
        assert whole is not None and after is not None
        assert whole.last_seq == after.last_seq == 0 and whole.state == after.state == {"k": 0}
        assert [e.data for e in whole.events] == [{"n": 0}] and after.events == []
        with pytest.raises(kvstore.StaleSessionError) as stale:
            s.append_event("app", "u", "s", {"n": 2}, expect_last=0)
        assert stale.value.actual == 1
        got = s.get("app", "u", "s")
        assert got is not None and got.last_seq == 1 and got.state == {"k": 1}
        assert [e.data["n"] for e in got.events] == [0, 1]
        s.append_event("app", "u", "s", {"n": 2}, expect_last=1)
        s.append_event("app", "u", "s", {"n": 3})
        got = s.get("app", "u", "s")
        assert got is not None and [e.data["n"] for e in got.events] == [0, 1, 2, 3]
