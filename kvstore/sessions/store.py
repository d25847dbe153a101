"""AsyncSessions: agent sessions on the engine - a head per session, a log of events,
state in three scopes (docs/architecture.md, "Sessions"; layout in :mod:`kvstore.layout`).

Guarantees (every backend with conditional writes):

* **An event is durable before anything else happens**: it is one record of the session's
  log (a conditional create of a chunk); its sequence number is its position.
* **No lost update**: the session's state is folded into its head by compare-and-swap, in
  event order; app and user state are updated by compare-and-swap on their own objects.
  Any number of writers in any number of processes lose no event and no delta.
* **Stale writers are rejected atomically**: ``append_event(..., expect_last=n)`` is a
  conditional append at sequence number ``n + 1``; of N writers racing with the same ``n``
  exactly one wins, the others get :class:`~kvstore.errors.StaleSessionError` and wrote
  nothing.
* **Deletes cascade and never resurrect**: deleting a session removes its head, its events
  and its artifacts; an append racing the delete finds the head gone (its fold fails),
  removes its own event and reports :class:`~kvstore.errors.NotFoundError`. A session
  created again under the same id gets a new incarnation, which no old writer can reach.

Costs (requests to the object store; cached reads cost none when the cache has them):
``create`` 1 conditional PUT (+ a swap per scope its state touches); ``append_event`` 1
PUT for the event when this process knows the log's tail (else a LIST first), a read of the
head (cached) and its swap (1 conditional PUT when this process wrote the head last, else
a GET more), + a swap per scope its delta touches; ``get`` the head and the two scopes
(cached, concurrently), and for events older than the head's copy a LIST and a GET per
1024 (see "settling" in :mod:`kvstore.logs.compaction`); ``list`` a LIST per page and the
heads and scopes (cached, concurrently).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from .. import codec
from ..context import StoreContext
from ..errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    SessionExistsError,
    StaleSessionError,
)
from ..layout import INCARNATION_CHARS, SESSION_EVENTS_KEY
from ..logs import Logs
from ..values import DELETE, Change, Values
from .model import (
    KEEP,
    CascadeProgress,
    Event,
    Head,
    Keep,
    Session,
    SessionPage,
    apply_scope,
    as_time,
    check_id,
    check_state,
    decode_scope,
    decode_state,
    encode_event,
    encode_scope,
    no_progress,
    split_delta,
    stored_delta,
    view,
)
from .reading import read_events
from .removal import Removal, artifact_name, artifact_prefix, session_part

EVENTS = SESSION_EVENTS_KEY
LOGS_KEPT = 1024  # incarnations whose Logs object a store keeps (cheap to make again)
FOLD_ROUNDS = 16


Paths = list[str]  # (``list`` is a method's name inside AsyncSessions)


class _Gone(Exception):
    """The head is missing, or is another incarnation's."""


class _Missing(Exception):
    """Folding needs events ``[start, end)`` that the folder has not read."""

    def __init__(self, start: int, end: int) -> None:
        super().__init__(start, end)
        self.start = start
        self.end = end


class AsyncSessions:
    """Sessions of users in apps, their events and scoped state (``store.sessions``)."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx
        self._values = Values(ctx)
        self._removal = Removal(ctx)
        self._logs: dict[str, Logs] = {}

    def __repr__(self) -> str:
        return f"<AsyncSessions of {self.ctx.blob.url}/{self.ctx.layout.base}>"

    # -- naming ------------------------------------------------------------------------------

    artifact_name = staticmethod(artifact_name)

    def _events(self, app: str, user: str, session_id: str, incarnation: str) -> Logs:
        layout = self.ctx.layout.session_events(app, user, session_id, incarnation)
        found = self._logs.get(layout.base)
        if found is None:
            if len(self._logs) >= LOGS_KEPT:
                self._logs.clear()
            found = self._logs[layout.base] = Logs(StoreContext(self.ctx.resources, layout))
        return found

    def _head_path(self, app: str, user: str, session_id: str) -> str:
        path = self.ctx.layout.session_head(app, user, session_id)
        self.ctx.check(path)
        return path

    # -- reading -----------------------------------------------------------------------------

    async def _read(self, paths: Sequence[str]) -> list[bytes | None]:
        """Payloads of objects at ``paths`` through the cache (None where missing)."""
        values = await self._values.load(self._values.plan_at(list(paths), paths))
        return [None if v is None else v[0] for v in values]

    async def _scopes(
        self, app: str, users: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        layout = self.ctx.layout
        paths = [layout.app_state(app), *(layout.user_state(app, u) for u in users)]
        found = await self._read(paths)
        states = [
            {} if data is None else decode_state(data, self.ctx.where(path))
            for path, data in zip(paths, found, strict=True)
        ]
        return states[0], dict(zip(users, states[1:], strict=True))

    async def scope_state(self, app: str, user: str | None = None) -> dict[str, Any]:
        """The app's state (``user=None``) or the user's in the app - the ``app:`` or
        ``user:`` keys every session of theirs shows, without the prefix; ``{}`` if none
        was ever set. One GET through the cache."""
        app = check_id(app, "app")
        if user is None:
            state, _ = await self._scopes(app, [])
            return state
        user = check_id(user, "user")
        path = self.ctx.layout.user_state(app, user)
        (data,) = await self._read([path])
        return {} if data is None else decode_state(data, self.ctx.where(path))

    def _head_of(self, data: bytes | None, path: str) -> Head | None:
        return None if data is None else Head.from_bytes(data, self.ctx.where(path))

    async def get(
        self,
        app: str,
        user: str,
        session_id: str,
        recent: int | None = None,
        after: int | float | Any = None,
    ) -> Session | None:
        """The session with its state and events, or None if there is none.

        ``recent``: only the last N events; ``after``: only the events after a sequence
        number (an int) or a time (a float of Unix seconds, or a datetime); both: the
        last N of those. The head and the app and user state are read through the cache,
        concurrently - and that is all when the head's copy of the latest events
        (:data:`~kvstore.sessions.model.RECENT_BYTES`) holds the events asked for: three
        GETs cold, none warm. Older events cost a LIST and a GET per 1024 (settled logs)
        cold, none when cached. It shows the events folded into the head (model: "The
        head"): every event whose ``append_event`` returned."""
        app, user = check_id(app, "app"), check_id(user, "user")
        session_id = check_id(session_id, "session id")
        if recent is not None and (
            isinstance(recent, bool) or not isinstance(recent, int) or recent < 0
        ):
            raise ConfigurationError(f"recent must be an int >= 0, not {recent!r}")
        after_seq = after if isinstance(after, int) and not isinstance(after, bool) else None
        after_time = None if after is None or after_seq is not None else as_time(after)
        path = self._head_path(app, user, session_id)
        (data,), (app_state, users) = await asyncio.gather(
            self._read([path]), self._scopes(app, [user])
        )
        head = self._head_of(data, path)
        if head is None:
            return None
        # The events a session shows are [0, applied) (model: "The head"); the ones asked
        # for start at `start` - from the head's copy if it reaches back so far.
        end = head.applied
        start = 0 if after_time is not None else max(0, end - recent) if recent is not None else 0
        if after_seq is not None:
            start = max(start, min(after_seq + 1, end))
        events = [] if start >= end else head.kept(start, self.ctx.where(path))
        if events is None:
            logs = self._events(app, user, session_id, head.incarnation)
            found = await read_events(logs, self.ctx.where(logs.reader.dir(EVENTS)), start, end)
            events = [event for event, _ in found.values()]
        if after_time is not None:
            events = [e for e in events if e.timestamp > after_time]
        if recent is not None:
            events = events[-recent:] if recent else []
        return self._session(head, app_state, users[user], events, end - 1)

    def _session(
        self,
        head: Head,
        app_state: Mapping[str, Any],
        user_state: Mapping[str, Any],
        events: list[Event],
        last_seq: int,
    ) -> Session:
        updated = max([head.updated, *(e.timestamp for e in events[-1:])])
        return Session(
            app=head.app,
            user=head.user,
            id=head.id,
            state=view(head.state, app_state, user_state),
            events=events,
            created=head.created,
            updated=updated,
            title=head.title,
            status=head.status,
            metadata=head.metadata,
            last_seq=last_seq,
        )

    async def list(
        self, app: str, user: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> SessionPage:
        """A page of sessions (without events) of ``user`` in ``app`` - or of every user
        of the app - in id order (by user, then id), and the cursor of the next page.

        One LIST per page (it starts after the cursor: page 50 costs what page 1 does),
        then the page's heads and the app's and the users' state through the cache, all
        concurrently: two round trips cold. ``last_seq`` and ``updated``
        are as of the heads: an event being appended right now may not show yet."""
        app = check_id(app, "app")
        if user is not None:
            user = check_id(user, "user")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ConfigurationError(f"limit must be an int from 1 to 1000, not {limit!r}")
        layout = self.ctx.layout
        prefix = layout.session_heads(app, user)
        start_after = None
        if cursor is not None:
            start_after = layout.session_heads(app) + (cursor if isinstance(cursor, str) else "")
            if (
                not start_after.startswith(prefix)
                or layout.parse_session_head(app, start_after) is None
            ):
                raise ConfigurationError(
                    f"cursor {cursor!r} is not a cursor that list() returned for these arguments"
                )
        paths: Paths = []
        async for page in self.ctx.blob.list_pages(
            prefix, start_after=start_after, page_size=limit + 1
        ):  # one more than the page: whether there is a next one, in the same request
            paths.extend(p for p in page if layout.parse_session_head(app, p) is not None)
            if len(paths) > limit:
                break
        more = len(paths) > limit
        paths = paths[:limit]
        # The users are in the listed names: their state is read with the heads, at once.
        owners = sorted({owner[0] for p in paths if (owner := layout.parse_session_head(app, p))})
        heads, (app_state, users) = await asyncio.gather(
            self._read(paths), self._scopes(app, owners)
        )
        found = zip(heads, paths, strict=True)
        parsed = [Head.from_bytes(h, self.ctx.where(p)) for h, p in found if h is not None]
        sessions = [self._session(h, app_state, users[h.user], [], h.applied - 1) for h in parsed]
        following = None
        if more:
            following = paths[-1][len(layout.session_heads(app)) :]
        return SessionPage(sessions, following)

    # -- writing -----------------------------------------------------------------------------

    async def create(
        self,
        app: str,
        user: str,
        session_id: str | None = None,
        state: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        title: str | None = None,
        status: str | None = None,
    ) -> Session:
        """A new session (``session_id``: yours, or a random one). Its ``state`` may hold
        ``app:`` and ``user:`` keys (written to those scopes) and ``temp:`` keys (dropped).
        :class:`~kvstore.errors.SessionExistsError` if the id is taken. One conditional
        create, plus a swap per scope the state touches."""
        app, user = check_id(app, "app"), check_id(user, "user")
        session_id = uuid.uuid4().hex if session_id is None else check_id(session_id, "session id")
        given = check_state(state, "state")
        meta = check_state(metadata, "metadata")
        for name, value in (("title", title), ("status", status)):
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"{name} must be a str or None, not {value!r}")
        own, app_delta, user_delta = split_delta(given)
        now = self.ctx.clock() / 1000
        head = Head(
            session_id, app, user, secrets.token_hex(INCARNATION_CHARS // 2), now, now,
            title, status, meta, own,
        )  # fmt: skip
        path = self._head_path(app, user, session_id)
        self._events(app, user, session_id, head.incarnation).reader.dir(EVENTS)  # its length
        data = head.to_bytes()

        def claim(current: codec.Live | None) -> tuple[None, Change]:
            if current is not None:
                raise SessionExistsError(
                    f"session {session_id!r} of user {user!r} in app {app!r} exists already"
                )
            return None, (data, 0, codec.STRING)

        await self._values.update_at(f"session {session_id!r}", path, claim)
        app_state, user_state = await self._apply_scopes(
            app, user, app_delta, user_delta, (head.incarnation, -1)
        )
        return self._session(head, app_state, user_state, [], -1)

    async def _apply_scopes(
        self,
        app: str,
        user: str,
        app_delta: dict[str, Any],
        user_delta: dict[str, Any],
        origin: tuple[str, int] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Apply the app and user parts of a delta (a swap each, concurrently; a read
        through the cache for a scope the delta leaves alone); their new states.
        ``origin``: (incarnation, seq) of the event carrying them (see
        :func:`~kvstore.sessions.model.apply_scope`)."""
        layout = self.ctx.layout

        async def apply(path: str, delta: dict[str, Any]) -> dict[str, Any]:
            where = self.ctx.where(path)
            if not delta:
                (data,) = await self._read([path])
                return {} if data is None else decode_state(data, where)

            def change(current: codec.Live | None) -> tuple[dict[str, Any], Change]:
                state, origins = ({}, {}) if current is None else decode_scope(current[0], where)
                apply_scope(state, origins, delta, origin)
                return state, (encode_scope(state, origins), 0, codec.STRING)

            return await self._values.update_at(path, path, change)

        app_state, user_state = await asyncio.gather(
            apply(layout.app_state(app), app_delta), apply(layout.user_state(app, user), user_delta)
        )
        return app_state, user_state

    async def append_event(
        self,
        app: str,
        user: str,
        session_id: str,
        event: Mapping[str, Any],
        state_delta: Mapping[str, Any] | None = None,
        expect_last: int | None = None,
    ) -> Event:
        """Append ``event`` (a JSON-like dict) to the session and apply ``state_delta`` (its
        ``temp:`` keys are dropped, also from the event kept); returns the event with the
        sequence number and time kvstore gave it.

        ``expect_last``: the sequence number of the last event the caller saw (-1: none) -
        the append happens only if the session is still there, else
        :class:`~kvstore.errors.StaleSessionError` and nothing is written.
        :class:`~kvstore.errors.NotFoundError` if there is no such session (or it was
        deleted meanwhile). See the module docstring for what is atomic and what it costs.
        """
        app, user = check_id(app, "app"), check_id(user, "user")
        session_id = check_id(session_id, "session id")
        data = check_state(event, "event")
        kept = stored_delta(check_state(state_delta, "state_delta"))
        if expect_last is not None and (
            isinstance(expect_last, bool) or not isinstance(expect_last, int) or expect_last < -1
        ):
            raise ConfigurationError(f"expect_last must be an int >= -1, not {expect_last!r}")
        path = self._head_path(app, user, session_id)
        fresh = False
        while True:
            name = f"session {session_id!r}"
            if fresh:
                found = await self._values.read_at(name, path)
            else:  # the head this process last wrote (the fold's swap checks it), or cached
                found = self._values.remembered_at(name, path)
                if found is None:
                    (found,) = await self._read([path])
            head = self._head_of(found, path)
            if head is None:
                raise NotFoundError(f"no session {session_id!r} of user {user!r} in app {app!r}")
            logs = self._events(app, user, session_id, head.incarnation)
            timestamp = self.ctx.clock() / 1000
            record = encode_event(timestamp, data, kept)
            expect_next = None if expect_last is None else expect_last + 1
            try:
                (seq,) = await logs.extend(EVENTS, [record], expect_next)
            except ConflictError as exc:
                if not fresh:
                    # The head came from this process's memory or the cache: it may name an
                    # incarnation another process has deleted (and the session been created
                    # again), whose log says nothing about the caller's expect_last. Nothing
                    # was written: decide on the current head.
                    current = self._head_of(await self._values.read_at(name, path), path)
                    if current is None or current.incarnation != head.incarnation:
                        fresh = True
                        continue
                    head = current
                actual = exc.actual - 1 if isinstance(exc.actual, int) else None
                if isinstance(exc.actual, int) and exc.actual > head.applied:
                    # Events nobody folded (an appender died before its head update): the
                    # caller, reading again, must see them - fold them now.
                    with contextlib.suppress(_Gone):
                        await self._fold(path, head.incarnation, logs, {}, exc.actual)
                # The cached head is older than the one read here: the caller reads again.
                await self.ctx.invalidate([path])
                raise StaleSessionError(
                    f"session {session_id!r} of user {user!r} in app {app!r} has moved on: "
                    f"its last event is {actual}, not {expect_last}; read it again",
                    expected=expect_last,
                    actual=actual,
                ) from None
            appended = Event(seq, timestamp, data, kept)
            _, app_delta, user_delta = split_delta(kept)
            try:
                await self._fold(path, head.incarnation, logs, {seq: (appended, record)})
            except _Gone:
                await self._removal.drop_incarnation(app, user, session_id, head.incarnation)
                if fresh:
                    raise NotFoundError(
                        f"session {session_id!r} of user {user!r} in app {app!r} was deleted "
                        "while the event was appended; the event was removed"
                    ) from None
                fresh = True  # the cached head may have been another incarnation's
                continue
            if app_delta or user_delta:
                await self._apply_scopes(app, user, app_delta, user_delta, (head.incarnation, seq))
            return appended

    async def _fold(
        self,
        path: str,
        incarnation: str,
        logs: Logs,
        known: dict[int, tuple[Event, bytes]],
        upto: int | None = None,
    ) -> Head:
        """Fold the events before ``upto`` (by default up to the highest of ``known``:
        events and the records the log holds) into the head, reading the ones not
        ``known`` that nobody folded yet; the head after it. _Gone if the head is not this
        incarnation's any more."""
        where = self.ctx.where(path)
        events = {seq: event for seq, (event, _) in known.items()}
        records = {seq: record for seq, (_, record) in known.items()}
        upto = max(events) + 1 if upto is None else upto

        def change(current: codec.Live | None) -> tuple[Head, Change]:
            if current is None:
                raise _Gone()
            head = Head.from_bytes(current[0], where)
            if head.incarnation != incarnation:
                raise _Gone()
            if head.applied >= upto:
                return head, None
            if any(s not in events for s in range(head.applied, upto)):
                raise _Missing(head.applied, upto)
            head.fold((events[s] for s in range(head.applied, upto)), records)
            return head, (head.to_bytes(), 0, codec.STRING)

        for _ in range(FOLD_ROUNDS):
            try:
                return await self._values.update_at(path, path, change)
            except _Missing as gap:
                log_where = self.ctx.where(logs.reader.dir(EVENTS))
                found = await read_events(logs, log_where, gap.start, gap.end)
                for seq, (event, record) in found.items():
                    events[seq], records[seq] = event, record
        raise ConflictError(f"could not fold the events of {where}: too many concurrent writers")

    async def update_state(
        self,
        app: str,
        user: str,
        session_id: str,
        state_delta: Mapping[str, Any] | None = None,
        *,
        title: str | Keep | None = KEEP,
        status: str | Keep | None = KEEP,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """Apply a state delta without an event (``app:``/``user:``/session keys as in
        ``append_event``), and set the title or status (None clears one) or update the
        metadata (merged); the session after it, without events. One swap per scope."""
        app, user = check_id(app, "app"), check_id(user, "user")
        session_id = check_id(session_id, "session id")
        delta = stored_delta(check_state(state_delta, "state_delta"))
        own, app_delta, user_delta = split_delta(delta)
        meta = check_state(metadata, "metadata")
        for name, value in (("title", title), ("status", status)):
            if not isinstance(value, (str, Keep)) and value is not None:
                raise ConfigurationError(f"{name} must be a str or None, not {value!r}")
        path = self._head_path(app, user, session_id)
        where = self.ctx.where(path)

        def change(current: codec.Live | None) -> tuple[Head, Change]:
            if current is None:
                raise NotFoundError(f"no session {session_id!r} of user {user!r} in app {app!r}")
            head = Head.from_bytes(current[0], where)
            head.state.update(own)
            head.metadata.update(meta)
            if not isinstance(title, Keep):
                head.title = title
            if not isinstance(status, Keep):
                head.status = status
            head.updated = max(head.updated, self.ctx.clock() / 1000)
            return head, (head.to_bytes(), 0, codec.STRING)

        head = await self._values.update_at(path, path, change)
        app_state, user_state = await self._apply_scopes(app, user, app_delta, user_delta)
        return self._session(head, app_state, user_state, [], head.applied - 1)

    # -- deleting ----------------------------------------------------------------------------

    async def delete(self, app: str, user: str, session_id: str) -> bool:
        """Delete the session: its head (so no append can land in it any more), its
        events and its artifacts (:meth:`artifact_name`); True if it existed. A few
        requests: the head's GET and conditional delete, one LIST and one bulk delete of
        its events, one LIST of its artifacts and their deletes."""
        app, user = check_id(app, "app"), check_id(user, "user")
        session_id = check_id(session_id, "session id")
        path = self._head_path(app, user, session_id)
        where = self.ctx.where(path)

        def remove(current: codec.Live | None) -> tuple[Head | None, Change]:
            if current is None:
                return None, None
            return Head.from_bytes(current[0], where), DELETE

        head = await self._values.update_at(path, path, remove)
        scope = f"{artifact_prefix(app, user)}{session_part(session_id)}/"
        await self._removal.delete_artifacts(scope)
        if head is None:
            return False
        await self._removal.drop_incarnation(app, user, session_id, head.incarnation)
        return True

    async def delete_user(
        self, app: str, user: str, progress: CascadeProgress | None = None
    ) -> int:
        """Delete every session of ``user`` in ``app`` (as :meth:`delete` does), the user's
        state and the user's artifacts; returns the sessions deleted. Costs a LIST per
        1000 heads and per 1000 event objects, one LIST more (of the heads again: a session
        created again meanwhile under a deleted id keeps its new events), a bulk delete per
        1000 objects, and the artifacts' deletes - not a request per session. ``progress``: see
        :data:`kvstore.sessions.CascadeProgress`."""
        app, user = check_id(app, "app"), check_id(user, "user")
        layout = self.ctx.layout
        return await self._removal.cascade(
            app,
            layout.session_heads(app, user),
            [layout.user_state(app, user)],
            layout.session_events_area(app, user),
            artifact_prefix(app, user),
            progress or no_progress,
        )

    async def delete_app(self, app: str, progress: CascadeProgress | None = None) -> int:
        """Delete every session of every user of ``app``, all its state and artifacts;
        returns the sessions deleted (costs and ``progress`` as :meth:`delete_user`)."""
        app = check_id(app, "app")
        layout = self.ctx.layout
        states = [layout.app_state(app)]
        async for page in self.ctx.blob.list_pages(layout.user_states(app)):
            states.extend(page)
        return await self._removal.cascade(
            app,
            layout.session_heads(app),
            states,
            layout.session_events_area(app),
            artifact_prefix(app),
            progress or no_progress,
        )
