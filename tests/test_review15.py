"""Review 15: failing tests for bugs found in the sessions, settle and conditional-append
work (each test names what it proves)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from conftest import Target

import kvstore
from kvstore.blob import BlobStore, WrapperBlobStore, open_blob_store
from kvstore.stats import Stats


def test_an_append_after_another_process_recreated_the_session_honours_expect_last(
    make_target: Callable[[str], Target],
) -> None:
    """This process remembers the head it last wrote (KnownVersions); another process
    deleted the session and created it again. An append with the right ``expect_last``
    (just read with ``get``) must land in the new session, not fail as stale because the
    remembered head names the dead incarnation."""
    target = make_target("local")
    with target.open() as a, target.open() as b:
        a.sessions.create("app", "u", "s")
        for i in range(3):
            a.sessions.append_event("app", "u", "s", {"i": i})
        assert b.sessions.delete("app", "u", "s")
        b.sessions.create("app", "u", "s")
        b.sessions.append_event("app", "u", "s", {"new": 0})
        seen = a.sessions.get("app", "u", "s")
        assert seen is not None and seen.last_seq == 0
        event = a.sessions.append_event("app", "u", "s", {"new": 1}, expect_last=seen.last_seq)
        assert event.seq == 1
        got = b.sessions.get("app", "u", "s")
        assert got is not None and [e.data for e in got.events] == [{"new": 0}, {"new": 1}]


def test_delete_user_spares_the_events_of_a_session_created_again_meanwhile(
    make_target: Callable[[str], Target], monkeypatch: pytest.MonkeyPatch
) -> None:
    """delete_user deletes the heads, then lists the events area and deletes the events of
    the sessions whose heads it deleted - by (user, id), not by incarnation. A session
    created again under the same id in between (another process) loses its events: its
    head says one event was folded while its log restarts at 0, so the next event gets
    sequence number 0 again and its state delta is never folded."""
    from kvstore.sessions import removal

    target = make_target("local")
    with target.open() as store:
        store.sessions.create("app", "u", "s")
        store.sessions.append_event("app", "u", "s", {"old": 0})
        real_quiesce = removal.quiesce

        async def recreate_meanwhile(ctx: Any, prefix: str) -> None:
            await real_quiesce(ctx, prefix)
            await store.aio.sessions.create("app", "u", "s")
            await store.aio.sessions.append_event("app", "u", "s", {"new": 0}, {"a": 1})

        monkeypatch.setattr(removal, "quiesce", recreate_meanwhile)
        assert store.sessions.delete_user("app", "u") == 1
        monkeypatch.setattr(removal, "quiesce", real_quiesce)

        second = store.sessions.append_event("app", "u", "s", {"new": 1}, {"b": 2})
        assert second.seq == 1
        got = store.sessions.get("app", "u", "s")
        assert got is not None
        assert [e.data for e in got.events] == [{"new": 0}, {"new": 1}]
        assert got.state == {"a": 1, "b": 2}


def test_deleting_a_session_named_user_keeps_the_users_own_artifacts() -> None:
    """A user's artifacts across sessions are saved under ``.../{user}/:user/...`` and a
    session's under ``.../{user}/{quote(id)}/...``; the id ``:user`` is a valid session id
    and is quoted to ``:user``, so deleting that session deletes the user's artifacts."""
    with kvstore.open("memory://review15-user-scope", cache=None) as store:
        s = store.sessions
        s.create("app", "u", ":user")
        shared = s.artifact_name("app", "u", None, "profile.txt")
        own = s.artifact_name("app", "u", ":user", "notes.txt")
        assert shared != own
        store.artifacts.save(shared, b"the user's")
        store.artifacts.save(own, b"the session's")
        assert s.delete("app", "u", ":user")
        found = store.artifacts.load(shared)
        assert found is not None and found.data == b"the user's"


@pytest.mark.parametrize(
    "damage", [{"inc": "not-an-incarnation"}, {"inc": 12}, {"applied": -3}], ids=str
)
def test_a_head_with_impossible_fields_is_corrupt_data_naming_it(damage: dict[str, Any]) -> None:
    """A head whose envelope is sound but whose fields no kvstore writes (an incarnation
    that is not 16 hex digits, a negative ``applied``) must raise CorruptDataError naming
    the head, like any other damaged head - not a raw ValueError/TypeError from the
    layout or the fold."""
    import msgpack

    from kvstore import codec

    with kvstore.open(f"memory://review15-bad-head-{uuid.uuid4().hex}", cache=None) as store:
        store.sessions.create("app", "u", "s")
        store.sessions.append_event("app", "u", "s", {"i": 0})
        path = "ses/app~/head/u~/s~"
        blob = store.aio._ctx.blob
        env = codec.decode(store._portal.run(blob.get(path)).data, bound=path)
        raw = msgpack.unpackb(env.payload)
        raw.update(damage)
        store._portal.run(blob.put(path, codec.encode(msgpack.packb(raw), bind=path)))
        for call in (
            lambda: store.sessions.get("app", "u", "s"),
            lambda: store.sessions.append_event("app", "u", "s", {"i": 1}),
        ):
            with pytest.raises(kvstore.CorruptDataError, match="head") as caught:
                call()
            assert path in str(caught.value)


class _HeldListing(WrapperBlobStore):
    """Holds the first listing it is armed for after reading it, until released."""

    def __init__(self, inner: BlobStore) -> None:
        super().__init__(inner)
        self.hold: asyncio.Event | None = None
        self.listed = asyncio.Event()

    async def _list(self, prefix: str) -> AsyncIterator[list[str]]:
        pages = [page async for page in self.inner._list(prefix)]
        hold, self.hold = self.hold, None
        if hold is not None:
            self.listed.set()
            await hold.wait()
        for page in pages:
            yield page


def test_a_read_listed_before_a_trim_does_not_undo_the_trim_in_the_writers_lengths() -> None:
    """A read's listing teaches this process's writer the tail (LogWriters.learn) - and
    the log's first record. A listing made before a trim of this process, learnt after
    the trim made the writer forget, put the trimmed records back into the lengths
    appends report (RPUSH counted records LTRIM had dropped)."""

    async def main() -> None:
        blob = _HeldListing(
            open_blob_store(f"memory://review15-learn-{uuid.uuid4().hex}", stats=Stats())
        )
        async with kvstore.open_async(blob, cache=None) as store:
            assert await store.append("k", *range(10)) == 10
            release = blob.hold = asyncio.Event()
            reading = asyncio.ensure_future(store.range("k"))
            await blob.listed.wait()  # the read has listed the log: 10 records from 0
            assert await store.trim("k", 5) == 5
            release.set()
            assert len(await reading) in (5, 10)  # either is a valid read
            assert await store.length("k") == 5
            assert await store.append("k", "x") == 6

    asyncio.run(main())


class _HeldScopeWrite(WrapperBlobStore):
    """Holds the first write of an app-state object until released."""

    def __init__(self, inner: BlobStore) -> None:
        super().__init__(inner)
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def _held(self, path: str) -> None:
        if path.endswith("~/app") and not self.reached.is_set():
            self.reached.set()
            await self.release.wait()

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        await self._held(path)
        return await self.inner._put_if_absent(path, data)

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        await self._held(path)
        return await self.inner._put_if_match(path, data, tag)


def test_app_state_follows_the_event_order_like_session_state(
    make_target: Callable[[str], Target],
) -> None:
    """Two processes append to one session: event 0 sets app:x=1 and x=1, event 1 sets
    app:x=2 and x=2. The session key ends at 2 (folded in event order), and so does the
    app key although the first appender's scope swap lands after the second's (each key
    of a scope remembers which event of which session set it)."""
    target = make_target("local")

    async def main() -> None:
        slow = _HeldScopeWrite(target.blob_store())
        async with (
            kvstore.open_async(slow, cache=None) as a,
            kvstore.open_async(target.blob_store(), cache=None) as b,
        ):
            await a.sessions.create("app", "u", "s")
            first = asyncio.ensure_future(
                a.sessions.append_event("app", "u", "s", {"n": 0}, {"x": 1, "app:x": 1})
            )
            await slow.reached.wait()  # event 0 is in the log and folded; its app: swap waits
            second = await b.sessions.append_event("app", "u", "s", {"n": 1}, {"x": 2, "app:x": 2})
            slow.release.set()
            assert (await first).seq == 0 and second.seq == 1
            got = await b.sessions.get("app", "u", "s")
            assert got is not None and got.state["x"] == 2
            assert got.state["app:x"] == 2

    asyncio.run(main())


@pytest.mark.parametrize(
    "foreign",
    ["ses/app~/ev/u~/s~/abcdefgh-ijklmno/log/x", "list/k~/abcdefgh-ijklmno/log/x"],
    ids=["session-events", "list-log"],
)
def test_fsck_reports_a_foreign_object_where_an_incarnation_would_be(foreign: str) -> None:
    """A directory of 16 characters that are not an incarnation's (a foreign object below
    the events of a session, or of a list) is reported as foreign - fsck must not stop on
    the layout's ValueError."""
    with kvstore.open(f"memory://review15-fsck-{uuid.uuid4().hex}", cache=None) as store:
        store.sessions.create("app", "u", "s")
        store.sessions.append_event("app", "u", "s", {"i": 0})
        store._portal.run(store.aio._ctx.blob.put(foreign, b"not ours"))
        report = store.fsck()
        assert ("foreign", foreign) in [(d["kind"], d["path"]) for d in report["damage"]]
