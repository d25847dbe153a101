"""What a session is, pure (no I/O): the stored head, events as records, state scopes.

* **Scopes** (ADK's): a state key ``app:x`` belongs to the app (shared by all its users'
  sessions), ``user:x`` to the user in that app (shared by the user's sessions), ``temp:x``
  to nothing (never stored: the delta that carries it is stored without it), any other key
  to the session. A session's state *view* is its own keys plus the app's and the user's,
  prefixed again.
* **The head** (one object per session) holds the metadata, the session-scope state,
  ``applied`` - the events ``[0, applied)`` are folded into that state: a session shows
  exactly those - and a copy of the latest of them (``recent``, up to
  :data:`RECENT_BYTES` of records from ``recent_first`` on), so that reading a session
  whose events fit, or its last N that do, reads no log. An event past ``applied`` (its
  appender is between its event and its head update, or died there) shows once a writer
  folds it: the next append, or a conditional append it made stale - so no delta is ever
  lost, and a reader never sees an event that a later read does not.
* **Events** are records of the session's log: ``[timestamp, data, state_delta]`` in
  msgpack; the sequence number is the record's position, assigned by the log.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ..errors import ConfigurationError, CorruptDataError, InvalidValueError
from ..layout import is_incarnation

APP_PREFIX = "app:"
USER_PREFIX = "user:"
TEMP_PREFIX = "temp:"
MAX_ID_BYTES = 256
"""Apps, users and session ids: non-empty text of at most this many UTF-8 bytes."""
HEAD_FORMAT = 1
RECENT_BYTES = 256 << 10
"""The head keeps the records of the session's latest events up to this many bytes in all:
a cold ``get`` of a session whose events fit - or of its last N, if they fit - is the head
and the two scopes, three GETs at once, with no LIST and no read of the log (e.g. 200 ADK
events of ~700 bytes: a model's reply of a paragraph each). The price: each append
rewrites the head, so it writes up to this much (measured: 1.3 ms of CPU to encode 385
events of 680 bytes, 54 KB after compression), and ``list`` reads each head whole."""


class Keep:
    """``update_state``'s default for title and status: leave it as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = Keep()

CascadeProgress = Callable[[str, int, int], None]
"""``progress(what, done, total)`` of ``delete_user``/``delete_app``: ``what`` is "sessions"
(heads), "events" (event objects) or "artifacts", in that order; each is reported with
``done=0`` when its total is known and with ``done=total`` once they are gone (each is one
bulk step). On the blocking face it runs on kvstore's loop thread: keep it quick and do not
call the store from it."""


def no_progress(what: str, done: int, total: int) -> None:
    """A :data:`CascadeProgress` that reports nothing."""


@dataclass(frozen=True)
class Event:
    """One event of a session: what the caller appended (``data``, ``state_delta``) and
    what kvstore assigned (``seq``: 0, 1, 2 ... in the session, never reused; ``timestamp``:
    Unix seconds when it was appended)."""

    seq: int
    timestamp: float
    data: dict[str, Any]
    state_delta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Session:
    """A session of ``user`` in ``app``. ``state`` is the merged view (``app:`` and
    ``user:`` keys from their scopes); ``events`` holds what ``get`` was asked for (none
    from ``create`` and ``list``); ``last_seq`` is the sequence number of the last event
    (-1 before the first): what ``append_event(..., expect_last=)`` checks."""

    app: str
    user: str
    id: str
    state: dict[str, Any]
    events: list[Event]
    created: float
    updated: float
    title: str | None
    status: str | None
    metadata: dict[str, Any]
    last_seq: int

    @property
    def event_count(self) -> int:
        return self.last_seq + 1


@dataclass(frozen=True)
class SessionPage:
    """One page of ``sessions.list``: the sessions, and the cursor of the next page (None
    when this was the last)."""

    sessions: list[Session]
    cursor: str | None


@dataclass
class Head:
    """A session's stored head (see the module docstring)."""

    id: str
    app: str
    user: str
    incarnation: str
    created: float
    updated: float
    title: str | None = None
    status: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    applied: int = 0
    recent_first: int | None = 0
    """The sequence number of ``recent[0]``; None: the head keeps no copy (a head written
    before heads kept one, until its next fold)."""
    recent: list[bytes] = field(default_factory=list)
    """The records of events ``[recent_first, applied)``, as the log holds them."""

    def to_bytes(self) -> bytes:
        copy = {} if self.recent_first is None else {"rf": self.recent_first, "rc": self.recent}
        return pack(
            {
                **copy,
                "v": HEAD_FORMAT,
                "id": self.id,
                "app": self.app,
                "user": self.user,
                "inc": self.incarnation,
                "created": self.created,
                "updated": self.updated,
                "title": self.title,
                "status": self.status,
                "meta": self.metadata,
                "state": self.state,
                "applied": self.applied,
            },
            "session head",
        )

    @classmethod
    def from_bytes(cls, data: bytes, path: str) -> Head:
        try:
            raw = msgpack.unpackb(data, strict_map_key=False)
            if raw.get("v") != HEAD_FORMAT:
                raise ValueError(f"head format {raw.get('v')!r}")
            head = cls(
                raw["id"],
                raw["app"],
                raw["user"],
                raw["inc"],
                float(raw["created"]),
                float(raw["updated"]),
                raw["title"],
                raw["status"],
                dict(raw["meta"]),
                dict(raw["state"]),
                int(raw["applied"]),
            )
            inc = head.incarnation
            if not isinstance(inc, str) or not is_incarnation(inc):
                raise ValueError(f"incarnation {inc!r}")
            if head.applied < 0:
                raise ValueError(f"applied {head.applied}")
            head.recent_first = raw.get("rf")
            head.recent = list(raw.get("rc", ()))
            first = head.recent_first
            if first is not None and (
                type(first) is not int
                or first < 0
                or first + len(head.recent) != head.applied
                or not all(type(r) is bytes for r in head.recent)
            ):
                raise ValueError(f"recent events from {first!r}")
        except Exception as exc:
            raise CorruptDataError(f"not a session head: {exc}", path=path) from None
        return head

    def fold(self, events: Iterable[Event], records: Mapping[int, bytes]) -> None:
        """Apply the session-scope part of each event's delta, in order; ``applied``
        moves past them, and their ``records`` (by sequence number: the bytes the log
        holds) join ``recent`` (the oldest leave it past :data:`RECENT_BYTES`)."""
        if self.recent_first is None:
            self.recent_first, self.recent = self.applied, []
        for event in events:
            if event.seq < self.applied:
                continue
            if event.seq != self.applied:
                raise ValueError(f"event {event.seq} folded before {self.applied}")
            self.state.update(split_delta(event.state_delta)[0])
            self.updated = max(self.updated, event.timestamp)
            self.applied = event.seq + 1
            self.recent.append(records[event.seq])
        size = sum(map(len, self.recent))
        drop = 0
        while size > RECENT_BYTES:
            size -= len(self.recent[drop])
            drop += 1
        if drop:
            del self.recent[:drop]
            self.recent_first = self.applied - len(self.recent)

    def kept(self, start: int, where: str) -> list[Event] | None:
        """Events ``[start, applied)`` from the head's copy; None if it does not reach back
        to ``start``."""
        first = self.recent_first
        if first is None or start < first:
            return None
        return [decode_event(s, self.recent[s - first], where) for s in range(start, self.applied)]


def check_id(value: object, what: str) -> str:
    """An app, user or session id: non-empty text of at most MAX_ID_BYTES bytes."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{what} must be a non-empty str, not {value!r}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ConfigurationError(f"{what} {value!r} is not valid Unicode") from None
    if size > MAX_ID_BYTES:
        raise ConfigurationError(f"{what} is {size} bytes long; the limit is {MAX_ID_BYTES}")
    return value


def check_state(state: object, what: str) -> dict[str, Any]:
    """A state or delta: a mapping of str keys to msgpack-able (JSON-like) values."""
    if state is None:
        return {}
    if not isinstance(state, Mapping):
        raise InvalidValueError(f"{what} must be a dict, not {type(state).__name__}")
    out = dict(state)
    bad = next((k for k in out if not isinstance(k, str)), None)
    if bad is not None:
        raise InvalidValueError(f"{what} keys must be str, not {bad!r}")
    pack(out, what)  # every value storable
    return out


def split_delta(
    delta: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(session, app, user) parts of a delta; app and user keys lose their prefix, temp
    keys are dropped."""
    session: dict[str, Any] = {}
    app: dict[str, Any] = {}
    user: dict[str, Any] = {}
    for key, value in delta.items():
        if key.startswith(APP_PREFIX):
            app[key[len(APP_PREFIX) :]] = value
        elif key.startswith(USER_PREFIX):
            user[key[len(USER_PREFIX) :]] = value
        elif not key.startswith(TEMP_PREFIX):
            session[key] = value
    return session, app, user


def stored_delta(delta: Mapping[str, Any]) -> dict[str, Any]:
    """The delta as an event keeps it: without temp keys."""
    return {k: v for k, v in delta.items() if not k.startswith(TEMP_PREFIX)}


def view(
    session: Mapping[str, Any], app: Mapping[str, Any], user: Mapping[str, Any]
) -> dict[str, Any]:
    """The merged state a session shows."""
    merged = dict(session)
    merged.update({APP_PREFIX + k: v for k, v in app.items()})
    merged.update({USER_PREFIX + k: v for k, v in user.items()})
    return merged


def pack(value: Any, what: str) -> bytes:
    try:
        return bytes(msgpack.packb(value, datetime=False))
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidValueError(
            f"{what} must hold only JSON-like values (dict, list, str, int, float, bool, "
            f"None, bytes): {exc}"
        ) from None


def encode_event(timestamp: float, data: Mapping[str, Any], delta: Mapping[str, Any]) -> bytes:
    return pack([timestamp, dict(data), dict(delta)], "event")


def decode_event(seq: int, record: bytes, path: str) -> Event:
    try:
        timestamp, data, delta = msgpack.unpackb(record, strict_map_key=False)
        return Event(seq, float(timestamp), dict(data), dict(delta))
    except Exception as exc:
        raise CorruptDataError(f"event {seq} is not a session event: {exc}", path=path) from None


Origins = dict[str, list[Any]]
"""Per key of an app or user state: ``[incarnation, seq]`` of the session event that set
it last (absent: set without an event)."""


def decode_scope(payload: bytes, path: str) -> tuple[dict[str, Any], Origins]:
    """An app or user state object: ``{"s": state, "o": origins}``."""
    try:
        stored = msgpack.unpackb(payload, strict_map_key=False)
        state, origins = stored["s"], stored["o"]
        if not isinstance(state, dict) or not isinstance(origins, dict):
            raise ValueError("not a map")
        return state, origins
    except Exception as exc:
        raise CorruptDataError(f"not a state object: {exc}", path=path) from None


def decode_state(payload: bytes, path: str) -> dict[str, Any]:
    return decode_scope(payload, path)[0]


def encode_scope(state: dict[str, Any], origins: Origins) -> bytes:
    return pack({"s": state, "o": origins}, "state")


def apply_scope(
    state: dict[str, Any],
    origins: Origins,
    delta: Mapping[str, Any],
    origin: tuple[str, int] | None,
) -> None:
    """Apply an app or user delta in place. ``origin``: (incarnation, seq) of the event
    that carries it. A key that a *later* event of the same session set already keeps
    its value: two appenders' swaps of a shared scope may land in either order, yet one
    session's events apply in event order (other sessions' writes: the last swap wins)."""
    for key, value in delta.items():
        last = origins.get(key)
        if (
            origin is not None
            and last is not None
            and last[0] == origin[0]
            and isinstance(last[1], int)
            and last[1] > origin[1]
        ):
            continue
        state[key] = value
        if origin is None:
            origins.pop(key, None)
        else:
            origins[key] = [origin[0], origin[1]]


def as_time(after: object) -> float:
    """A time given as Unix seconds (float) or a datetime (naive: UTC)."""
    if isinstance(after, datetime.datetime):
        if after.tzinfo is None:
            after = after.replace(tzinfo=datetime.timezone.utc)
        return after.timestamp()
    if isinstance(after, float):
        return after
    raise ConfigurationError(
        f"after must be a sequence number (int) or a time (float, datetime), not {after!r}"
    )
