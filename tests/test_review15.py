"""Review 15: failing tests for bugs found in the sessions, settle and conditional-append
work (each test names what it proves)."""

from __future__ import annotations

from collections.abc import Callable

from conftest import Target


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
