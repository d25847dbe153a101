"""``kvstore session ls|show|rm|export``: output, JSON, paging, exit codes and progress.

In-process like most of tests/test_cli.py: ``main([...])`` with stdout captured as bytes.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import io
import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import CLI, Result, assert_error

import kvstore
from kvstore.cli_progress import Progress, progress_stream

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
def run(capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path) -> CLI:
    return CLI(capsysbinary, tmp_path / "store")


@pytest.fixture
def local(run: CLI) -> Iterator[kvstore.KVStore]:
    """The store the commands run on, opened by the test (no cache: it sees every write)."""
    with kvstore.open(run.url, cache=None) as opened:
        yield opened


@pytest.fixture
def chat(local: kvstore.KVStore) -> kvstore.KVStore:
    """bot: alice has s1 (2 events, bytes in one) and s2; bob has s3. other: alice has x."""
    store = local
    sessions = store.sessions
    sessions.create(
        "bot", "alice", "s1", state={"topic": "billing", "user:name": "Alice"},
        metadata={"channel": "web"}, title="Refund", status="open",
    )  # fmt: skip
    sessions.append_event(
        "bot", "alice", "s1", {"author": "user", "blob": b"\x00\xff"}, {"topic": "refund"}
    )
    sessions.append_event("bot", "alice", "s1", {"author": "bot", "text": "done"})
    sessions.create("bot", "alice", "s2")
    sessions.create("bot", "bob", "s3", state={"app:model": "m1"})
    sessions.create("other", "alice", "x")
    return store


# -- ls ------------------------------------------------------------------------------------------


def test_session_ls_prints_one_line_per_session(run: CLI, chat: kvstore.KVStore) -> None:
    result = run("session", "ls", "bot")
    assert (result.status, result.err) == (0, "")
    rows = [line.split("\t") for line in result.lines]
    assert [row[:3] for row in rows] == [
        ["alice", "s1", "2"],
        ["alice", "s2", "0"],
        ["bob", "s3", "0"],
    ]
    assert rows[0][5:] == ["Refund", "open"]
    assert rows[1][5:] == ["", ""]  # no title, no status
    s1 = chat.sessions.get("bot", "alice", "s1")
    assert s1 is not None
    assert rows[0][3:5] == [iso(s1.created), iso(s1.updated)]
    assert all(ISO.match(cell) for row in rows for cell in row[3:5])
    assert run("session", "ls", "bot", "bob").lines == [result.lines[2]]


def test_session_ls_json_one_object_per_line(run: CLI, chat: kvstore.KVStore) -> None:
    result = run("session", "ls", "bot", "alice", "--json")
    first, second = map(json.loads, result.lines)
    assert first["app"] == "bot" and first["user"] == "alice" and first["id"] == "s1"
    assert (first["event_count"], first["last_seq"]) == (2, 1)
    assert (first["title"], first["status"], first["metadata"]) == (
        "Refund",
        "open",
        {"channel": "web"},
    )
    assert first["state"] == {"topic": "refund", "user:name": "Alice", "app:model": "m1"}
    assert ISO.match(first["created"]) and ISO.match(first["updated"])
    assert (second["id"], second["event_count"], second["title"]) == ("s2", 0, None)


def test_session_ls_of_nobody_is_empty(run: CLI, chat: kvstore.KVStore) -> None:
    assert run("session", "ls", "nobody") == Result(0, b"", "")
    assert run("session", "ls", "bot", "carol", "--json") == Result(0, b"", "")
    assert run("session", "export", "nobody") == Result(0, b"", "")
    assert run("session", "export", "bot", "carol") == Result(0, b"", "")


def test_session_ls_pages_with_a_cursor(run: CLI, local: kvstore.KVStore) -> None:
    for i in range(250):
        local.sessions.create("big", f"u{i % 3}", f"s{i:03d}")
    seen: list[str] = []
    cursor: list[str] = []
    for _ in range(3):
        result = run("session", "ls", "big", "--limit", "100", *cursor)
        assert result.status == 0
        seen += result.lines
        notes = result.err.splitlines()
        if len(seen) < 250:
            assert len(notes) == 1 and notes[0].startswith("kvstore: next page: --cursor ")
            cursor = ["--cursor", notes[0].split("--cursor ", 1)[1].strip("'")]
        else:
            assert result.err == ""
    assert len(seen) == 250
    assert len(set(seen)) == 250
    assert [line.split("\t")[:2] for line in seen] == sorted(line.split("\t")[:2] for line in seen)
    everything = run("session", "ls", "big", "--all", "--limit", "100")
    assert (everything.lines, everything.err) == (seen, "")
    assert run("session", "ls", "big", "--all").lines == seen
    assert len(run("session", "ls", "big").lines) == 100  # one page by default
    assert len(run("session", "ls", "big", "u1", "--all", "--json").lines) == 83


def test_session_ls_on_memory(run: CLI) -> None:
    with kvstore.open("memory://cli-sessions", cache=None) as store:
        store.sessions.create("bot", "alice", "m1", title="in memory")
    result = run.raw("--url", "memory://cli-sessions", "session", "ls", "bot")
    assert result.status == 0
    assert result.lines[0].split("\t")[:3] == ["alice", "m1", "0"]
    assert result.lines[0].endswith("\tin memory\t")


# -- show ----------------------------------------------------------------------------------------


def test_session_show_text(run: CLI, chat: kvstore.KVStore) -> None:
    result = run("session", "show", "bot", "alice", "s1")
    assert (result.status, result.err) == (0, "")
    lines = result.lines
    assert lines[:5] == ["app: bot", "user: alice", "id: s1", "title: Refund", "status: open"]
    assert json.loads(lines[lines.index("events: 2") - 1].removeprefix("state: ")) == {
        "topic": "refund",
        "user:name": "Alice",
        "app:model": "m1",  # the app's scope: every session of the app sees it
    }
    first, second = (line.split("\t") for line in lines[-2:])
    assert first[0] == "0" and ISO.match(first[1])
    assert json.loads(first[2]) == {"author": "user", "blob": {"$bytes": "AP8="}}
    assert json.loads(first[3]) == {"topic": "refund"}
    assert (second[0], json.loads(second[2])) == ("1", {"author": "bot", "text": "done"})
    plain = run("session", "show", "bot", "alice", "s2").lines
    assert not any(line.startswith(("title:", "status:")) for line in plain)
    assert plain[-1] == "events: 0"


def test_session_show_json_recent_and_after(run: CLI, chat: kvstore.KVStore) -> None:
    shown = json.loads(run("session", "show", "bot", "alice", "s1", "--json").out)
    assert [e["seq"] for e in shown["events"]] == [0, 1]
    assert shown["metadata"] == {"channel": "web"}
    recent = json.loads(run("session", "show", "bot", "alice", "s1", "--recent", "1", "--json").out)
    assert [e["seq"] for e in recent["events"]] == [1]
    after = run("session", "show", "bot", "alice", "s1", "--after", "0")
    assert after.lines[-2] == "events: 2 (1 shown)"
    assert after.lines[-1].startswith("1\t")
    bob = json.loads(run("session", "show", "bot", "bob", "s3", "--json").out)
    assert bob["state"] == {"app:model": "m1"}


def test_session_show_missing_exits_1(run: CLI, chat: kvstore.KVStore) -> None:
    result = run("session", "show", "bot", "alice", "nope")
    assert (result.status, result.out) == (1, b"")
    assert result.err == "kvstore: no session 'nope' of user 'alice' in app 'bot'\n"


# -- export --------------------------------------------------------------------------------------


def test_session_export_round_trip(run: CLI, chat: kvstore.KVStore, tmp_path: Path) -> None:
    chat.sessions.append_event("bot", "alice", "s2", {"n": 1}, {"raw": b"\x01", "temp:x": 1})
    result = run("session", "export", "bot")
    assert (result.status, result.err) == (0, "")
    records = [json.loads(line) for line in result.lines]
    assert [(r["user"], r["id"]) for r in records] == [
        ("alice", "s1"),
        ("alice", "s2"),
        ("bob", "s3"),
    ]
    s1 = records[0]
    assert set(s1) == {
        "app", "user", "id", "title", "status", "metadata", "state", "created", "updated", "events",
    }  # fmt: skip
    assert (s1["app"], s1["title"], s1["status"]) == ("bot", "Refund", "open")
    assert s1["state"] == {"topic": "refund", "user:name": "Alice", "app:model": "m1"}
    assert [e["seq"] for e in s1["events"]] == [0, 1]
    assert set(s1["events"][0]) == {"seq", "timestamp", "data", "state_delta"}
    blob = s1["events"][0]["data"]["blob"]
    assert base64.b64decode(blob["$bytes"]) == b"\x00\xff"
    s2 = records[1]
    assert s2["events"][0]["state_delta"] == {"raw": {"$bytes": "AQ=="}}
    assert s2["state"] == {"raw": {"$bytes": "AQ=="}, "user:name": "Alice", "app:model": "m1"}
    assert records[2]["state"] == {"app:model": "m1"}
    assert run("session", "export", "bot", "alice").lines == result.lines[:2]
    assert run("session", "export", "bot", "alice", "s1").lines == result.lines[:1]
    target = tmp_path / "out.jsonl"
    written = run("session", "export", "bot", "--output", str(target))
    assert written == Result(0, b"", f"kvstore: wrote 3 sessions to {target}\n")
    assert target.read_text().splitlines() == result.lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "store"]  # no .part left


def test_session_export_missing_session_exits_1(run: CLI, chat: kvstore.KVStore) -> None:
    result = run("session", "export", "bot", "alice", "nope")
    assert (result.status, result.out) == (1, b"")
    assert "no session 'nope'" in result.err


# -- rm ------------------------------------------------------------------------------------------


def test_session_rm_one_user_and_app(run: CLI, chat: kvstore.KVStore) -> None:
    assert run("session", "rm", "bot", "alice", "s2") == Result(0, b"1\n", "")
    missing = run("session", "rm", "bot", "alice", "s2")
    assert (missing.status, missing.out) == (1, b"0\n")
    assert "no session 's2'" in missing.err
    assert run("session", "ls", "bot").lines[0].startswith("alice\ts1\t")
    assert run("session", "rm", "bot", "alice") == Result(0, b"1\n", "")
    assert run("session", "rm", "bot", "alice") == Result(0, b"0\n", "")
    assert [row.split("\t")[0] for row in run("session", "ls", "bot").lines] == ["bob"]
    assert run("session", "rm", "bot", "--all-users") == Result(0, b"1\n", "")
    assert run("session", "ls", "bot") == Result(0, b"", "")
    assert chat.sessions.get("other", "alice", "x") is not None  # another app survives
    assert run("session", "ls", "other").lines[0].startswith("alice\tx\t")


def test_session_rm_app_needs_all_users(run: CLI, chat: kvstore.KVStore) -> None:
    assert_error(run("session", "rm", "bot"), "--all-users", "whole app")
    assert_error(run("session", "rm", "bot", "alice", "--all-users"), "give no USER")
    assert len(run("session", "ls", "bot").lines) == 3  # nothing deleted


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["ls", "bot", "--limit", "0"], ["--limit", "from 1 to 1000", "'0'"]),
        (["ls", "bot", "--limit", "ten"], ["--limit", "'ten'"]),
        (["ls", "bot", "--limit", "1001"], ["--limit", "'1001'"]),
        (["ls", "bot", "--cursor", "nonsense"], ["cursor", "'nonsense'"]),
        (["show", "bot", "alice", "s1", "--recent", "-1"], ["--recent", "'-1'"]),
        (["show", "bot", "alice", "s1", "--recent", "x"], ["--recent", "'x'"]),
        (["show", "bot", "alice", "s1", "--after", "1.5"], ["--after", "'1.5'"]),
    ],
    ids=["limit-0", "limit-text", "limit-big", "cursor", "recent-neg", "recent-text", "after"],
)
def test_session_bad_input_exits_2(
    run: CLI, chat: kvstore.KVStore, argv: list[str], fragments: list[str]
) -> None:
    assert_error(run("session", *argv), *fragments)


# -- progress ------------------------------------------------------------------------------------


def test_session_progress_only_when_asked(run: CLI, chat: kvstore.KVStore, tmp_path: Path) -> None:
    target = str(tmp_path / "all.jsonl")
    quiet = run("session", "export", "bot", "-o", target)
    assert "\r" not in quiet.err  # stderr is not a terminal here
    shown = run("session", "export", "bot", "-o", target, "--progress")
    assert shown.status == 0
    assert shown.err.startswith("\rexport: 1 sessions")
    assert "\rexport: 3 sessions" in shown.err
    assert "\r" not in run("session", "export", "bot", "--progress", "--no-progress").err
    one = run("session", "export", "bot", "alice", "s1", "--progress")
    assert "\rexport: 1/1 sessions" in one.err
    removed = run("session", "rm", "bot", "alice", "--progress")
    assert removed.out == b"2\n"
    assert "\rrm: 0/2 sessions" in removed.err and "rm: 2/2 sessions" in removed.err
    assert re.search(r"rm: (\d+)/\1 events", removed.err)  # the objects of s1's events
    assert removed.err.endswith("\n")
    assert "\r" not in run("session", "rm", "other", "--all-users").err


def test_session_progress_callback_of_the_library(chat: kvstore.KVStore) -> None:
    chat.sessions.create("bot", "alice", "s9")
    name = chat.sessions.artifact_name("bot", "alice", "s9", "notes.txt")
    chat.artifacts.save(name, b"notes")
    calls: list[tuple[str, int, int]] = []
    assert chat.sessions.delete_user("bot", "alice", progress=lambda *a: calls.append(a)) == 3
    assert [c[0] for c in calls] == ["sessions"] * 2 + ["events"] * 2 + ["artifacts"] * 2
    assert calls[:2] == [("sessions", 0, 3), ("sessions", 3, 3)]
    assert calls[-2:] == [("artifacts", 0, 1), ("artifacts", 1, 1)]
    assert calls[2][1] == 0 and calls[3][1] == calls[3][2] > 0
    assert chat.sessions.delete_app("bot") == 1  # progress is optional


def test_session_progress_line(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    stream = io.StringIO()
    with Progress(stream, "export", interval=1.0, clock=clock) as bar:
        bar.update(1)
        now[0] = 0.5
        bar.update(2)  # within the interval: not drawn
        now[0] = 2.0
        bar.update(40, 100)
    assert stream.getvalue() == "\rexport: 1 sessions\rexport: 40/100 sessions, 20.0/s\n"
    assert progress_stream(None, io.StringIO()) is None  # not a terminal
    assert progress_stream(True, stream) is stream
    tty = io.StringIO()
    monkeypatch.setattr(tty, "isatty", lambda: True)
    assert progress_stream(None, tty) is tty
    assert progress_stream(False, tty) is None
    silent = Progress(None, "rm")
    silent.update(1, 2, "events")
    silent.close()


def test_session_progress_on_a_terminal_by_default(run: CLI, chat: kvstore.KVStore) -> None:
    """A real process whose stderr is a terminal (a pty) shows progress without --progress."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "kvstore", "--url", run.url, "session", "export", "bot"],
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=60,
            check=False,
        )
        os.close(follower)
        follower = -1
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the terminal's other end is closed
            while chunk := os.read(leader, 4096):
                shown += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) == 3
    assert b"\rexport: 3 sessions" in shown
