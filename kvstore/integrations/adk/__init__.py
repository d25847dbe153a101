"""Google ADK's storage services on kvstore (``pip install 'kvstore[adk]'``).

::

    import kvstore
    from google.adk.runners import Runner
    from kvstore.integrations.adk import KVStoreArtifactService, KVStoreSessionService

    store = kvstore.open("s3://bucket/agents")
    runner = Runner(
        app_name="support",
        agent=agent,
        session_service=KVStoreSessionService(store),
        artifact_service=KVStoreArtifactService(store),
    )

* :class:`KVStoreSessionService` (:mod:`.sessions`): ADK sessions, events and app/user/
  session state as kvstore sessions (``store.sessions``), with ADK's stale-session rule
  made atomic (a conditional append).
* :class:`KVStoreArtifactService` (:mod:`.artifacts`): ADK artifacts as kvstore versioned
  artifacts (``store.artifacts``), named so that deleting a session, a user or an app
  deletes theirs.

Both take a blocking ``kvstore.KVStore`` (or ``url=`` and ``kvstore.open`` arguments) and
run each call on kvstore's own event loop, so they work from any loop or thread ADK awaits
them on (``Runner.run`` runs its own loop in a thread).
"""

from __future__ import annotations

from .artifacts import KVStoreArtifactService
from .sessions import KVStoreSessionService

__all__ = ["KVStoreArtifactService", "KVStoreSessionService"]
