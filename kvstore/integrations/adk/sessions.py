"""ADK's ``BaseSessionService`` on kvstore's sessions (``store.sessions``).

* **Names.** An ADK session is the kvstore session ``(app_name, user_id, session.id)``;
  ``create_session`` without an id gets a random one (uuid4 hex).
* **State.** ADK's scopes are kvstore's: ``app:`` keys live in the app's state, ``user:``
  keys in the user's (shared by the user's sessions in the app), ``temp:`` keys are never
  stored (a ``Session`` object keeps them in memory for the invocation, as ADK's base
  ``append_event`` does), other keys in the session's head. A value must be JSON-like
  (rich values are converted as ADK's database service converts them: datetimes to ISO
  text, models to dicts); anything else is refused before anything is written.
* **Events.** An ADK ``Event`` is one kvstore event: ``event.model_dump(mode="json",
  exclude_none=True)`` without ``actions.state_delta``, which is the kvstore event's own
  ``state_delta`` (folded into the scopes by the store, in event order); it comes back as
  ``Event.model_validate`` of the same. Ids, invocation ids, authors, contents (inline
  bytes as base64), actions and ADK's timestamps round-trip. ``partial`` events are not
  stored (as ADK's services).
* **The stale-session rule**, atomic. Every ``Session`` this service returns carries the
  sequence number of the session's last stored event (in ADK's own private attribute for
  it, ``Session._storage_update_marker``: ``"kvstore:<seq>"``). ``append_event`` is a
  conditional append after exactly that event: of two ``Session`` objects of the same
  session, the first append wins and the second gets ADK's ``StaleSessionError`` (a
  ``ValueError``, with ``DatabaseSessionService``'s message) and writes nothing, whatever
  the processes. A ``Session`` this service did not return (no marker) is checked as
  ``DatabaseSessionService`` checks one: its last event must be the stored last one.
* **Times.** ``last_update_time`` is the store's time of the last write (create, or the
  last event's append); ``list_sessions`` orders by it (oldest first, as ADK's services).
  ``GetSessionConfig.after_timestamp`` compares with the events' own (ADK) timestamps.

Costs (requests to the object store; see ``kvstore.sessions``): ``get_session`` reads the
head, the app state and the user state concurrently (cached) - 3 GETs cold, one round
trip, when the events asked for are in the head's copy of the latest ones (256 KiB of
them); older ones cost a LIST and a GET per 1,024 more; ``list_sessions`` one LIST per
1,000 sessions, then the heads and the app's and the users' state at once (cached);
``append_event`` one conditional PUT for the event and the head's swap (+ a swap per scope
its delta touches); ``delete_session`` deletes the events and the session's artifacts too.
"""

from __future__ import annotations

from typing import Any

from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.sessions.base_session_service import (
    BaseSessionService,
    GetSessionConfig,
    ListSessionsResponse,
)
from google.adk.sessions.session import Session
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python
from typing_extensions import override

from ... import errors
from ...sessions import Event as StoredEvent
from ...sessions import Session as StoredSession
from ...sync import KVStore
from ._store import StoreBacked

STALE_MESSAGE = (
    "The session has been modified in storage since it was loaded. "
    "Please reload the session before appending more events."
)
"""DatabaseSessionService's wording of a stale append (google.adk 2.13)."""
MARKER = "kvstore:"
LIST_PAGE = 1000


class KVStoreSessionService(StoreBacked, BaseSessionService):
    """ADK's session service over a kvstore: built from ``store`` (a blocking
    ``kvstore.KVStore``) or from ``url=`` and the usual ``kvstore.open`` arguments (then
    :meth:`close` closes it); ``namespace``: a prefix confining it."""

    def __init__(
        self,
        store: KVStore | None = None,
        *,
        url: str | None = None,
        namespace: str | None = None,
        **open_kwargs: Any,
    ) -> None:
        super().__init__(store, url=url, namespace=namespace, **open_kwargs)

    def __repr__(self) -> str:
        return f"<KVStoreSessionService on {self.store!r}>"

    # -- creating and reading ----------------------------------------------------------------

    @override
    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        given = _json_state(state or {}, "state")
        create = self._aio.sessions.create(app_name, user_id, session_id, state=given)
        try:
            stored = await self._run(create)
        except errors.SessionExistsError:
            raise AlreadyExistsError(f"Session with id {session_id} already exists.") from None
        return _session(stored)

    @override
    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        recent = config.num_recent_events if config is not None else None
        after = config.after_timestamp if config is not None else None
        get = self._aio.sessions.get(app_name, user_id, session_id, recent=recent)
        stored = await self._run(get)
        if stored is None:
            return None
        session = _session(stored)
        if after is not None:
            session.events = [e for e in session.events if e.timestamp >= after]
        return session

    @override
    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        sessions = self._aio.sessions

        async def every() -> list[StoredSession]:
            found: list[StoredSession] = []
            cursor = None
            while True:
                page = await sessions.list(app_name, user_id, limit=LIST_PAGE, cursor=cursor)
                found.extend(page.sessions)
                cursor = page.cursor
                if cursor is None:
                    return found

        listed = [_session(s) for s in await self._run(every())]
        listed.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=listed)

    @override
    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        return await self._run(self._aio.sessions.scope_state(app_name, user_id))

    # -- writing -----------------------------------------------------------------------------

    @override
    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        await self._run(self._aio.sessions.delete(app_name, user_id, session_id))

    @override
    async def append_event(self, session: Session, event: Event) -> Event:
        if event.partial:
            return event
        delta = _json_state(dict(event.actions.state_delta or {}), "event.actions.state_delta")
        data = _event_data(event)
        expect_last = await self._last_seq(session)
        append = self._aio.sessions.append_event(
            session.app_name, session.user_id, session.id, data, delta, expect_last=expect_last
        )
        try:
            stored = await self._run(append)
        except errors.StaleSessionError:
            raise StaleSessionError(STALE_MESSAGE) from None
        except errors.NotFoundError:
            raise SessionNotFoundError(f"Session {session.id} not found.") from None
        # The Session object as ADK's base does it: temp: keys applied to its state, then
        # trimmed from the event; the rest of the delta applied; the event appended.
        event = await super().append_event(session, event)
        session.last_update_time = stored.timestamp
        session._storage_update_marker = _marker(stored.seq)
        return event

    async def _last_seq(self, session: Session) -> int:
        """The sequence number of the last event the caller's ``session`` knows: from its
        marker; without one (not read through this service), the stored last event's if it
        is the session's last event (as DatabaseSessionService decides), else stale."""
        seq = _seq_of(session._storage_update_marker)
        if seq is not None:
            return seq
        get = self._aio.sessions.get(session.app_name, session.user_id, session.id, recent=1)
        stored = await self._run(get)
        if stored is None:
            raise SessionNotFoundError(f"Session {session.id} not found.")
        last = stored.events[-1].data.get("id") if stored.events else None
        mine = session.events[-1].id if session.events else None
        if last != mine:
            raise StaleSessionError(STALE_MESSAGE)
        return stored.last_seq


# -- conversions -------------------------------------------------------------------------------


def _marker(seq: int) -> str:
    return f"{MARKER}{seq}"


def _seq_of(marker: object) -> int | None:
    if isinstance(marker, str) and marker.startswith(MARKER):
        try:
            seq = int(marker[len(MARKER) :])
        except ValueError:
            return None
        return seq if seq >= -1 else None
    return None


def _json_state(state: dict[str, Any], what: str) -> dict[str, Any]:
    """State or a delta as JSON-like values, converted as ADK's database service does;
    a ValueError naming ``what`` for a value that has no JSON form."""
    if not isinstance(state, dict):
        raise ValueError(f"{what} must be a dict, not {type(state).__name__}")
    try:
        converted = to_jsonable_python(state)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise ValueError(f"{what} must hold JSON-serializable values: {exc}") from None
    bad = next((k for k in converted if not isinstance(k, str)), None)
    if bad is not None:
        raise ValueError(f"{what} keys must be str, not {bad!r}")
    return dict(converted)


def _event_data(event: Event) -> dict[str, Any]:
    """The stored form of an ADK event: its JSON dump without the state delta (the kvstore
    event's own ``state_delta``)."""
    try:
        data = event.model_dump(mode="json", exclude_none=True)
    except PydanticSerializationError as exc:
        raise ValueError(f"the event cannot be stored: {exc}") from None
    actions = data.get("actions")
    if isinstance(actions, dict):
        actions.pop("state_delta", None)
    return data


def _event(stored: StoredEvent) -> Event:
    data = dict(stored.data)
    actions = data.get("actions")
    actions = dict(actions) if isinstance(actions, dict) else {}
    if stored.state_delta:
        actions["state_delta"] = dict(stored.state_delta)
    data["actions"] = actions
    try:
        return Event.model_validate(data)
    except ValidationError as exc:
        raise errors.CorruptDataError(
            f"event {stored.seq} is not an ADK event: {exc.errors()[:1]}"
        ) from None


def _session(stored: StoredSession) -> Session:
    session = Session(
        id=stored.id,
        app_name=stored.app,
        user_id=stored.user,
        state=dict(stored.state),
        events=[_event(e) for e in stored.events],
        last_update_time=stored.updated,
    )
    session._storage_update_marker = _marker(stored.last_seq)
    return session


__all__ = ["STALE_MESSAGE", "KVStoreSessionService"]
