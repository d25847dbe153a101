"""What the ``kvstore session`` commands do: ls, show, rm, export (``store.sessions``).

Text output is one line per session or event, tab-separated; a cell holding a tab, a
newline or another control character is printed JSON-quoted. ``--json`` and ``export`` print
JSON: times as ISO-8601 UTC strings, and bytes (events and state may hold them) as
``{"$bytes": "<base64>"}`` (a bytes key of a map as ``"$bytes:<base64>"``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import os
import shlex
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import KVStore
from .cli_progress import Progress, progress_stream
from .commands_cli import PROG, Output, Reply, _open
from .sessions import Event, Session

PAGE = 100
"""Sessions per page: ``ls`` without ``--limit``, and ``export`` (each page one LIST)."""
ALL_PAGE = 1000
"""Sessions per page of ``ls --all`` without ``--limit``."""
FETCHERS = 8
"""Sessions ``export`` reads at once (their events: a LIST and a GET each, cold)."""


# -- turning sessions into text and JSON -------------------------------------------------------


def _iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    """``value`` with its bytes as ``{"$bytes": base64}`` (map keys: ``"$bytes:base64"``)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {_key(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _key(key: Any) -> Any:
    if isinstance(key, (bytes, bytearray, memoryview)):
        return "$bytes:" + base64.b64encode(key).decode("ascii")
    return key


def _json(value: Any) -> str:
    return json.dumps(_jsonable(value), ensure_ascii=False)


def _cell(text: str | None) -> str:
    """A text cell: as it is, or JSON-quoted if it holds a control character."""
    if text is None:
        return ""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def _event_record(event: Event) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "timestamp": _iso(event.timestamp),
        "data": event.data,
        "state_delta": event.state_delta,
    }


def _summary(session: Session) -> dict[str, Any]:
    """``ls --json``: a session without its events."""
    return {
        "app": session.app,
        "user": session.user,
        "id": session.id,
        "event_count": session.event_count,
        "last_seq": session.last_seq,
        "created": _iso(session.created),
        "updated": _iso(session.updated),
        "title": session.title,
        "status": session.status,
        "metadata": session.metadata,
        "state": session.state,
    }


def _record(session: Session) -> dict[str, Any]:
    """``export`` and ``show --json``: a session with the events it was read with."""
    return {
        "app": session.app,
        "user": session.user,
        "id": session.id,
        "title": session.title,
        "status": session.status,
        "metadata": session.metadata,
        "state": session.state,
        "created": _iso(session.created),
        "updated": _iso(session.updated),
        "events": [_event_record(e) for e in session.events],
    }


def _row(session: Session) -> str:
    cells = [
        _cell(session.user),
        _cell(session.id),
        str(session.event_count),
        _iso(session.created),
        _iso(session.updated),
        _cell(session.title),
        _cell(session.status),
    ]
    return "\t".join(cells)


# -- parsing numbers here (one error line, exit 2; not a usage message) -------------------------


def _integer(value: str | None, name: str, low: int, high: int | None = None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value, 10)
    except ValueError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        bounds = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bounds}, not {value!r}")
    return number


def _pages(
    store: KVStore, app: str, user: str | None, limit: int, cursor: str | None = None
) -> Iterator[list[Session]]:
    """Every page of ``store.sessions.list`` from ``cursor`` on (one LIST each)."""
    while True:
        page = store.sessions.list(app, user, limit=limit, cursor=cursor)
        if page.sessions:
            yield page.sessions
        if page.cursor is None:
            return
        cursor = page.cursor


# -- ls, show, rm ------------------------------------------------------------------------------


def _session_ls(store: KVStore, args: argparse.Namespace) -> Reply:
    """One page of sessions (or, with --all, every page), one per line."""
    limit = _integer(args.limit, "--limit", 1, 1000) or (ALL_PAGE if args.all else PAGE)
    show = (lambda s: _json(_summary(s))) if args.json else _row
    if args.all:
        pages = _pages(store, args.app, args.user, limit, args.cursor)
        return Reply(show(s) for page in pages for s in page)
    page = store.sessions.list(args.app, args.user, limit=limit, cursor=args.cursor)
    note = None if page.cursor is None else f"next page: --cursor {shlex.quote(page.cursor)}"
    return Reply([show(s) for s in page.sessions], note=note)


def _no_session(args: argparse.Namespace) -> str:
    return f"no session {args.id!r} of user {args.user!r} in app {args.app!r}"


def _session_show(store: KVStore, args: argparse.Namespace) -> Reply:
    """The session's fields, state and events; exit 1 if there is none."""
    recent = _integer(args.recent, "--recent", 0)
    after = _integer(args.after, "--after", -1)
    session = store.sessions.get(args.app, args.user, args.id, recent=recent, after=after)
    if session is None:
        return Reply(status=1, note=_no_session(args))
    if args.json:
        return Reply([json.dumps(_jsonable(_record(session)), ensure_ascii=False, indent=2)])
    lines = [f"app: {_cell(session.app)}", f"user: {_cell(session.user)}"]
    lines.append(f"id: {_cell(session.id)}")
    for name, value in (("title", session.title), ("status", session.status)):
        if value is not None:  # only if set
            lines.append(f"{name}: {_cell(value)}")
    shown = len(session.events)
    lines += [
        f"created: {_iso(session.created)}",
        f"updated: {_iso(session.updated)}",
        f"metadata: {_json(session.metadata)}",
        f"state: {_json(session.state)}",
        f"events: {session.event_count}"
        + ("" if shown == session.event_count else f" ({shown} shown)"),
    ]
    for event in session.events:
        cells = [str(event.seq), _iso(event.timestamp), _json(event.data)]
        lines.append("\t".join([*cells, _json(event.state_delta)]))
    return Reply(lines)


def _session_rm(args: argparse.Namespace, out: Output) -> int:
    """One session, a user's (delete_user) or, with --all-users, the app's (delete_app);
    prints how many sessions were deleted."""
    if args.all_users and args.user is not None:
        raise ValueError("--all-users deletes every session of the app: give no USER with it")
    if args.user is None and not args.all_users:
        raise ValueError(
            f"session rm {args.app} would delete the whole app: give USER [ID], or add "
            "--all-users to delete every session of every user of the app"
        )
    with _open(args) as store:
        if args.id is not None:
            deleted = int(store.sessions.delete(args.app, args.user, args.id))
        else:
            with Progress(progress_stream(args.progress), "rm") as bar:

                def report(what: str, done: int, total: int) -> None:
                    bar.update(done, total, what)

                if args.user is None:
                    deleted = store.sessions.delete_app(args.app, progress=report)
                else:
                    deleted = store.sessions.delete_user(args.app, args.user, progress=report)
    out.write(f"{deleted}\n".encode())
    if args.id is not None and not deleted:
        print(f"{PROG}: {_no_session(args)}", file=sys.stderr)
        return 1
    return 0


# -- export --------------------------------------------------------------------------------------


def _with_events(store: KVStore, pages: Iterable[list[Session]]) -> Iterator[Session]:
    """Each listed session again with its events, in order (a few read at once); one
    deleted since it was listed is left out."""
    with ThreadPoolExecutor(FETCHERS, thread_name_prefix="kvstore-export") as pool:
        for page in pages:
            read = pool.map(lambda s: store.sessions.get(s.app, s.user, s.id), page)
            yield from (s for s in read if s is not None)


@contextlib.contextmanager
def _sink(output: str | None, out: Output) -> Iterator[Output]:
    """stdout, or a file written beside ``output`` and renamed onto it when all went well."""
    if output is None:
        yield out
        return
    target = Path(output)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with partial.open("wb") as file:
            yield file
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _session_export(args: argparse.Namespace, out: Output) -> int:
    """JSON lines, one per session (with its events): one session, a user's or the app's."""
    with _open(args) as store:
        sessions: Iterable[Session]
        total = None
        if args.id is not None:
            found = store.sessions.get(args.app, args.user, args.id)
            if found is None:
                print(f"{PROG}: {_no_session(args)}", file=sys.stderr)
                return 1
            sessions, total = [found], 1
        else:
            sessions = _with_events(store, _pages(store, args.app, args.user, PAGE))
        choice = args.progress
        if choice is None and args.output is None and out.isatty():
            choice = False  # JSON lines on the terminal: a progress line would break them up
        count = 0
        with _sink(args.output, out) as sink, Progress(progress_stream(choice), "export") as bar:
            for session in sessions:
                sink.write(_json(_record(session)).encode() + b"\n")
                count += 1
                bar.update(count, total)
    if args.output is not None:
        print(f"{PROG}: wrote {count} sessions to {args.output}", file=sys.stderr)
    return 0


__all__ = ["_session_export", "_session_ls", "_session_rm", "_session_show"]
