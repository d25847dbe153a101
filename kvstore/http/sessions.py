"""Agent sessions over HTTP (``store.sessions``; JSON both ways - a ``bytes`` value that
the library stored reads back as ``{"$base64": "..."}``):

==========================================================  =================================
``POST /v1/sessions/{app}/{user}``                          create (``session_id`` optional)
``GET /v1/sessions/{app}/{user}/{id}?recent=&after_seq=``   the session, state and events
``GET /v1/sessions/{app}?user=&limit=&cursor=``             a page of sessions (no events)
``POST /v1/sessions/{app}/{user}/{id}/events``              append an event with its state
                                                            delta; ``expect_last``: 409 if
                                                            the session moved on
``PATCH /v1/sessions/{app}/{user}/{id}``                    state delta, title, status,
                                                            metadata without an event
``DELETE /v1/sessions/{app}/{user}/{id}``                   the session, its events and
                                                            artifacts (cascade)
``DELETE /v1/sessions/{app}/{user}``                        every session of the user
==========================================================  =================================

Costs and guarantees are :mod:`kvstore.sessions`': an append is durable when answered, the
stale-session rule is atomic, deletes cascade.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from ..sessions import Event, Session
from .body import finite
from .errors import HttpError, responses
from .routing import refuse_other_methods
from .scope import Scoped

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])

App = Annotated[str, Path(description="the app")]
User = Annotated[str, Path(description="the user")]
SessionId = Annotated[str, Path(description="the session's id")]
JSON_DOC = (
    "a JSON object; its numbers finite, its integers within [-2**63, 2**64 - 1] (sessions"
    " are stored as msgpack): 400 otherwise"
)


class NewSession(BaseModel):
    session_id: Annotated[str | None, Field(min_length=1)] = None
    state: dict[str, Any] = Field(default_factory=dict, description=JSON_DOC)
    metadata: dict[str, Any] = Field(default_factory=dict, description=JSON_DOC)
    title: str | None = None
    status: str | None = None


class NewEvent(BaseModel):
    event: dict[str, Any] = Field(description=JSON_DOC)
    state_delta: dict[str, Any] = Field(default_factory=dict, description=JSON_DOC)
    expect_last: int | None = Field(
        default=None, ge=-1, description="the last event's seq the caller saw (-1: none)"
    )


class Change(BaseModel):
    state_delta: dict[str, Any] = Field(default_factory=dict, description=JSON_DOC)
    title: str | None = None
    status: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict, description=JSON_DOC)
    clear: list[Literal["title", "status"]] = Field(
        default_factory=list, description="fields to remove"
    )


class Deleted(BaseModel):
    deleted: int


def jsonable(value: Any) -> Any:
    """A JSON-like value as JSON: bytes as ``{"$base64": ...}``."""
    if isinstance(value, (bytes, bytearray)):
        return {"$base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def _session(found: Session) -> dict[str, Any]:
    out = {f.name: getattr(found, f.name) for f in dataclasses.fields(found)}
    out["events"] = [_event(e) for e in found.events]
    return jsonable(out)  # type: ignore[no-any-return]


def _event(event: Event) -> dict[str, Any]:
    return jsonable(dataclasses.asdict(event))  # type: ignore[no-any-return]


@router.post(
    "/{app}/{user}", summary="Create a session", status_code=201, responses=responses(403, 409)
)
async def create(app: App, user: User, new: NewSession, scoped: Scoped) -> dict[str, Any]:
    scoped.require_write()
    finite(new.model_dump(), "the session")
    found = await scoped.store.sessions.create(
        app, user, new.session_id, new.state, new.metadata, new.title, new.status
    )
    return _session(found)


@router.get(
    "/{app}/{user}/{session_id}", summary="A session with its events", responses=responses(404)
)
async def get(
    app: App,
    user: User,
    session_id: SessionId,
    scoped: Scoped,
    recent: Annotated[int | None, Query(ge=0, description="only the last N events")] = None,
    after_seq: Annotated[int | None, Query(ge=-1, description="only events after it")] = None,
    after_time: Annotated[float | None, Query(description="only events after (Unix s)")] = None,
) -> dict[str, Any]:
    if after_seq is not None and after_time is not None:
        raise HttpError(400, "ConfigurationError", "give after_seq or after_time, not both")
    after: int | float | None = after_seq if after_seq is not None else after_time
    found = await scoped.store.sessions.get(app, user, session_id, recent=recent, after=after)
    if found is None:
        raise HttpError(404, "NotFoundError", f"no session {session_id!r} of {user!r} in {app!r}")
    return _session(found)


@router.get("/{app}", summary="A page of an app's sessions (of one user)", responses=responses())
async def list_sessions(
    app: App,
    scoped: Scoped,
    user: Annotated[str | None, Query(min_length=1, description="only this user's")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="a page's `cursor`")] = None,
) -> dict[str, Any]:
    page = await scoped.store.sessions.list(app, user, limit, cursor)
    return {"sessions": [_session(s) for s in page.sessions], "cursor": page.cursor}


@router.post(
    "/{app}/{user}/{session_id}/events",
    summary="Append an event (durable when answered); 409 if expect_last is stale",
    status_code=201,
    responses=responses(403, 404, 409),
)
async def append_event(
    app: App, user: User, session_id: SessionId, new: NewEvent, scoped: Scoped
) -> dict[str, Any]:
    scoped.require_write()
    finite(new.model_dump(), "the event")
    appended = await scoped.store.sessions.append_event(
        app, user, session_id, new.event, new.state_delta, new.expect_last
    )
    return _event(appended)


@router.patch(
    "/{app}/{user}/{session_id}",
    summary="Change state, title, status or metadata without an event",
    responses=responses(403, 404, 409),
)
async def update(
    app: App, user: User, session_id: SessionId, change: Change, scoped: Scoped
) -> dict[str, Any]:
    scoped.require_write()
    finite(change.model_dump(), "the change")
    options: dict[str, Any] = {"metadata": change.metadata or None}
    for name in ("title", "status"):
        value = getattr(change, name)
        if name in change.clear:
            if value is not None:
                raise HttpError(400, "ConfigurationError", f"{name}: set it or clear it")
            options[name] = None
        elif value is not None:
            options[name] = value
    found = await scoped.store.sessions.update_state(
        app, user, session_id, change.state_delta, **options
    )
    return _session(found)


@router.delete(
    "/{app}/{user}/{session_id}",
    summary="Delete a session, its events and its artifacts",
    status_code=204,
    response_class=Response,
    responses=responses(403, 404),
)
async def delete(app: App, user: User, session_id: SessionId, scoped: Scoped) -> Response:
    scoped.require_write()
    if not await scoped.store.sessions.delete(app, user, session_id):
        raise HttpError(404, "NotFoundError", f"no session {session_id!r} of {user!r} in {app!r}")
    return Response(status_code=204)


@router.delete("/{app}/{user}", summary="Delete every session of a user", responses=responses(403))
async def delete_user(app: App, user: User, scoped: Scoped) -> Deleted:
    scoped.require_write()
    return Deleted(deleted=await scoped.store.sessions.delete_user(app, user))


refuse_other_methods(router)
