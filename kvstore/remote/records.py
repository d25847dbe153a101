"""Records over the HTTP service: every method is the library's call, made by the service
on ``store.records(name, partition)`` (:mod:`.wire`: each call carries the collection's
name and span first); results are the library's ``Record``."""

from __future__ import annotations

from typing import Any

from ..records import AsyncRecords
from ..records.model import check_span
from .calls import remote
from .transport import Service


class RemoteRecords(AsyncRecords):
    """``store.records(name)`` of :class:`~kvstore.remote.store.AsyncRemoteStore`."""

    _prefix = "records."

    def __init__(
        self, service: Service, namespace: tuple[str, ...], name: str, partition: str
    ) -> None:
        # Not AsyncRecords.__init__: no store context here, only the service.
        self._service = service
        self.namespace_path = namespace
        self.name = name
        self.span = check_span(partition)
        self._leading: tuple[Any, ...] = (name, self.span)

    def __repr__(self) -> str:
        where = f"{self._service.base} {'/'.join(self.namespace_path)}"
        return f"<RemoteRecords {self.name!r} by {self.span} of {where}>"

    def _shape(self, op: str, result: Any) -> Any:
        return result

    append = remote(AsyncRecords.append)
    extend = remote(AsyncRecords.extend)
    query = remote(AsyncRecords.query)
    partitions = remote(AsyncRecords.partitions)
    drop_before = remote(AsyncRecords.drop_before)
    purge = remote(AsyncRecords.purge)
