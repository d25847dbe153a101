"""Agent sessions: a user's sessions in an app, their events and state in three scopes.

Layout (:mod:`kvstore.layout`; docs/architecture.md, "Sessions"): per app, an app-state
object, a user-state object per user, a head per session (metadata, session state, the
events folded into it) and, per session incarnation, a log of events. One module per job:

* :mod:`.model` - pure: Session, Event, the stored head, scopes, event records;
* :mod:`.store` - AsyncSessions: create, get, list, append_event, update_state, delete
  (and the cascades of a user or an app).

Sessions compose the engine's models (values for heads and state, logs for events,
artifacts for cascades) through their classes; they sit above them and below the faces.
"""

from __future__ import annotations

from .model import CascadeProgress, Event, Session, SessionPage
from .store import AsyncSessions

__all__ = ["AsyncSessions", "CascadeProgress", "Event", "Session", "SessionPage"]
