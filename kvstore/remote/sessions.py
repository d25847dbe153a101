"""Sessions over the HTTP service: every method is the library's call, made by the
service (:mod:`.wire`); results are the library's ``Session``, ``Event`` and
``SessionPage``.

``progress`` of ``delete_user``/``delete_app`` cannot be called from the service as the
cascade goes: the service records the reports and this client makes the same calls, in the
same order, when the answer arrives.
"""

from __future__ import annotations

from typing import Any

from ..sessions import AsyncSessions, CascadeProgress
from .calls import remote
from .transport import Service


class RemoteSessions(AsyncSessions):
    """``store.sessions`` of :class:`~kvstore.remote.store.AsyncRemoteStore`."""

    _prefix = "sessions."
    _leading: tuple[Any, ...] = ()

    def __init__(self, service: Service, namespace: tuple[str, ...]) -> None:
        # Not AsyncSessions.__init__: no store context here, only the service.
        self._service = service
        self.namespace_path = namespace

    def __repr__(self) -> str:
        return f"<RemoteSessions of {self._service.base} {'/'.join(self.namespace_path)}>"

    def _shape(self, op: str, result: Any) -> Any:
        return result

    create = remote(AsyncSessions.create)
    get = remote(AsyncSessions.get)
    scope_state = remote(AsyncSessions.scope_state)
    list = remote(AsyncSessions.list)
    append_event = remote(AsyncSessions.append_event)
    update_state = remote(AsyncSessions.update_state)
    delete = remote(AsyncSessions.delete)

    async def delete_user(
        self, app: str, user: str, progress: CascadeProgress | None = None
    ) -> int:
        return await self._cascade("sessions.delete_user", (app, user), progress)

    delete_user.__doc__ = AsyncSessions.delete_user.__doc__

    async def delete_app(self, app: str, progress: CascadeProgress | None = None) -> int:
        return await self._cascade("sessions.delete_app", (app,), progress)

    delete_app.__doc__ = AsyncSessions.delete_app.__doc__

    async def _cascade(
        self, op: str, args: tuple[str, ...], progress: CascadeProgress | None
    ) -> int:
        """A cascade; ``progress`` gets the service's reports once it is done."""
        deleted, reports = await self._service.call(
            op, self.namespace_path, args, {"progress": progress is not None}
        )
        if progress is not None:
            for what, done, total in reports:
                progress(what, done, total)
        return int(deleted)
