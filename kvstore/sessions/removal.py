"""Removing sessions: one incarnation's events, and the cascades of a user or an app.

The order is what keeps the guarantees of :mod:`kvstore.sessions.store`: heads first (an
append racing the delete finds its session gone and removes its own event), then the
events of exactly the sessions whose heads went (a session created meanwhile keeps its
own), then the artifacts saved under their names. A dead incarnation's objects go at once,
young chunks too: no head names it, so no reader reads it and no writer's tail needs it.
"""

from __future__ import annotations

from .. import aio
from ..artifacts import AsyncArtifacts
from ..context import StoreContext
from ..errors import ConfigurationError, CorruptDataError
from ..logs import quiesce
from ..values import KnownVersions, Values
from .model import CascadeProgress, Head, check_id, no_progress


def quote(part: str) -> str:
    """A name as one part of an artifact name (``/`` and ``%`` escaped)."""
    return part.replace("%", "%25").replace("/", "%2F")


USER_SCOPE = ":user"
"""The part of an artifact name that stands for "the user's, across sessions"."""


def session_part(session_id: str) -> str:
    """A session id as one part of an artifact name: :func:`quote`, and a leading ``:``
    escaped, so that no session (``:user`` is a valid id) shares :data:`USER_SCOPE`."""
    part = quote(session_id)
    return "%3A" + part[1:] if part.startswith(":") else part


def artifact_prefix(app: str, user: str | None = None) -> str:
    """What the names of the artifacts of an app (of a user in it) start with."""
    prefix = f"sessions/{quote(check_id(app, 'app'))}/"
    return prefix if user is None else f"{prefix}{quote(check_id(user, 'user'))}/"


def artifact_name(app: str, user: str, session_id: str | None, filename: str) -> str:
    """The artifact name under which ``filename`` of a session (or, with
    ``session_id=None``, of the user across sessions) is saved, so that deleting the
    session (the user, the app) deletes it: ``sessions/{app}/{user}/{session}/...``
    (``:user`` in place of the session), each part %-escaped (and a session id's
    leading ``:``, so no session's artifacts are the user's)."""
    if not isinstance(filename, str) or not filename:
        raise ConfigurationError(f"filename must be a non-empty str, not {filename!r}")
    scope = USER_SCOPE if session_id is None else session_part(check_id(session_id, "session id"))
    return f"{artifact_prefix(app, user)}{scope}/{filename}"


class Removal:
    """The deletes of one store view's sessions."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx
        self.artifacts = AsyncArtifacts(ctx)
        self.values = Values(ctx)

    async def cascade(
        self,
        app: str,
        heads_prefix: str,
        states: list[str],
        events_area: str,
        artifacts: str,
        progress: CascadeProgress,
    ) -> int:
        """Heads first (an append that races this finds its session gone), then the
        events of exactly the sessions listed (one created meanwhile keeps its own: a new
        session, or the same id created again - a new incarnation, found by listing the
        heads once more after the events)."""
        layout = self.ctx.layout
        heads: list[str] = []
        async for page in self.ctx.blob.list_pages(heads_prefix):
            heads.extend(p for p in page if layout.parse_session_head(app, p) is not None)
        doomed = [*heads, *states]
        progress("sessions", 0, len(heads))

        async def remove_heads() -> None:
            self.ctx.state(KnownVersions).forget(doomed)
            await self.ctx.blob.delete_many(doomed)

        await self.ctx.commit(doomed, remove_heads)
        progress("sessions", len(heads), len(heads))
        sessions = {layout.parse_session_head(app, p) for p in heads}
        await quiesce(self.ctx, events_area)
        events: list[str] = []
        async for page in self.ctx.blob.list_pages(events_area):
            for path in page:
                if layout.parse_session_events(app, path) in sessions:
                    events.append(path)
        events = await self._not_alive(app, heads_prefix, sessions, events)
        progress("events", 0, len(events))
        await self.ctx.blob.delete_many(events)
        progress("events", len(events), len(events))
        await self.delete_artifacts(artifacts, progress)
        return len(heads)

    async def _not_alive(
        self,
        app: str,
        heads_prefix: str,
        sessions: set[tuple[str, str] | None],
        events: list[str],
    ) -> list[str]:
        """``events`` without those of the sessions created again (same user and id)
        since their heads were deleted: an incarnation's events exist only once its head
        does, so a head listed after the events names every live incarnation among them.
        One LIST (usually empty), and a GET per session created again."""
        layout = self.ctx.layout
        again: list[str] = []
        async for page in self.ctx.blob.list_pages(heads_prefix):
            again.extend(p for p in page if layout.parse_session_head(app, p) in sessions)
        if not again:
            return events

        async def incarnation(path: str) -> tuple[tuple[str, str] | None, str | None]:
            owner = layout.parse_session_head(app, path)
            try:
                data = await self.values.read_at(path, path)
                if data is None:  # deleted again: its events are dead
                    return owner, ""
                return owner, Head.from_bytes(data, self.ctx.where(path)).incarnation
            except CorruptDataError:
                return owner, None  # unknown: every incarnation of the session is kept

        alive = dict(await aio.bounded([incarnation(p) for p in again], self.ctx.concurrency))

        def dead(path: str) -> bool:
            found = layout.parse_session_object(path)
            if found is None or len(found) != 5:
                return True  # not an incarnation's object (parse_session_events said ours)
            owner = (found[2], found[3])
            return owner not in alive or alive[owner] not in (None, found[4])

        return [p for p in events if dead(p)]

    async def drop_incarnation(
        self, app: str, user: str, session_id: str, incarnation: str
    ) -> None:
        """Remove every object of a dead incarnation's events at once: no reader reads it
        (no head names it), and a writer that appends to it finds its head gone and
        comes back here."""
        base = self.ctx.layout.session_events(app, user, session_id, incarnation).base
        await quiesce(self.ctx, base)
        paths: list[str] = []
        async for page in self.ctx.blob.list_pages(base):
            paths.extend(page)
        await self.ctx.blob.delete_many(paths)

    async def delete_artifacts(self, prefix: str, progress: CascadeProgress = no_progress) -> None:
        names = await self.artifacts.list(prefix)
        progress("artifacts", 0, len(names))
        await aio.bounded([self.artifacts.delete(n) for n in names], self.ctx.concurrency)
        progress("artifacts", len(names), len(names))
