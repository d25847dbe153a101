"""Artifacts over the HTTP service: the listing and info calls cross as calls
(:mod:`.wire`); data streams through ``/v1/artifacts/{name}`` both ways, so memory stays
bounded by a few parts on both sides whatever the size.

* ``save``: one streamed ``PUT`` whatever the data (bytes, str, a file, a path, an async
  iterable): a frame of the save's other arguments (mime type, metadata, raw) in the
  wire's msgpack, then the data - the service's store checks and saves them as the
  library does.
* ``open``: the version's info (one call), then a ranged ``GET`` of :data:`PIECE` bytes
  per piece read, pinned to that version, the next fetched ahead while reading forward; a
  read of the whole checks the sha256 the info gave (``CorruptDataError`` if it differs).
  ``load`` is ``open`` read whole.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from typing import Any

from ..artifacts import Artifact, ArtifactInfo, AsyncArtifactReader, AsyncArtifacts
from ..artifacts.reader import Gone
from ..artifacts.sources import Source
from ..errors import CorruptDataError, NotFoundError
from . import wire
from .calls import remote
from .transport import Service, path_of

PIECE = 8 << 20
"""Bytes per ranged GET of a streamed read."""
ATTEMPTS = 3
"""Times ``load`` starts again when the version it reads is deleted meanwhile."""


class RemoteArtifacts(AsyncArtifacts):
    """``store.artifacts`` of :class:`~kvstore.remote.store.AsyncRemoteStore`."""

    _prefix = "artifacts."
    _leading: tuple[Any, ...] = ()

    def __init__(self, service: Service, namespace: tuple[str, ...]) -> None:
        # Not AsyncArtifacts.__init__: no store context here, only the service.
        self._service = service
        self.namespace_path = namespace

    def __repr__(self) -> str:
        return f"<RemoteArtifacts of {self._service.base} {'/'.join(self.namespace_path)}>"

    def _shape(self, op: str, result: Any) -> Any:
        return result

    versions = remote(AsyncArtifacts.versions)
    versions_info = remote(AsyncArtifacts.versions_info)
    list = remote(AsyncArtifacts.list)
    info = remote(AsyncArtifacts.info)
    url = remote(AsyncArtifacts.url)
    delete = remote(AsyncArtifacts.delete)

    async def save(
        self,
        name: str,
        data: Any,
        mime_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        raw: bool = False,
    ) -> int:
        source = Source(data, name)  # the library's: what data may be, its default type
        arguments = {
            "mime_type": source.default_mime if mime_type is None else mime_type,
            "metadata": metadata,
            "raw": raw,
        }
        head = wire.frame(arguments)

        async def body() -> AsyncIterator[bytes]:
            yield head
            async for block in source.blocks():
                yield block

        answer = await self._service.send(
            "PUT",
            "/v1/artifacts/" + path_of(name),
            "artifacts.save",
            self.namespace_path,
            content=body(),
            headers={"Content-Type": wire.UPLOAD_TYPE},
        )
        version: int = answer.json()["version"]
        return version

    save.__doc__ = AsyncArtifacts.save.__doc__

    async def open(self, name: str, version: int | None = None) -> AsyncArtifactReader | None:
        found = await self.info(name, version)
        return None if found is None else self._reader(name, found, [])

    open.__doc__ = AsyncArtifacts.open.__doc__

    def _reader(
        self, name: str, found: ArtifactInfo, gone: builtins.list[bool]
    ) -> AsyncArtifactReader:
        """A reader of the version ``found`` describes; ``gone`` gets True if the service
        no longer has it (the reader raises CorruptDataError saying so)."""
        path = "/v1/artifacts/" + path_of(name)
        where = f"{self._service.base}{path}?version={found.version}"
        sizes = [min(PIECE, found.size - start) for start in range(0, found.size, PIECE)] or [0]

        async def fetch_part(index: int) -> bytes:
            start = index * PIECE
            end = start + sizes[index]
            try:
                answer = await self._service.send(
                    "GET",
                    path,
                    "artifacts.load",
                    self.namespace_path,
                    params={"version": found.version},
                    headers={"Range": f"bytes={start}-{end - 1}"},
                )
            except NotFoundError:
                gone.append(True)
                raise Gone() from None
            if answer.status_code != 206 or len(answer.content) != end - start:
                raise CorruptDataError(
                    f"asked for bytes {start}-{end - 1}, the service sent "
                    f"{len(answer.content)} ({answer.status_code})",
                    key=name,
                    path=where,
                )
            return answer.content

        return AsyncArtifactReader(found, sizes, where, fetch_part)

    async def load(self, name: str, version: int | None = None) -> Artifact | None:
        for _ in range(ATTEMPTS):
            found = await self.info(name, version)
            if found is None:
                return None
            gone: builtins.list[bool] = []
            reader = self._reader(name, found, gone)
            try:
                data = await reader.read()
            except CorruptDataError:
                if not gone:
                    raise
                continue  # the version went meanwhile: the latest may be another one now
            finally:
                await reader.close()
            return Artifact(**vars(reader.info), data=data)
        return None

    load.__doc__ = AsyncArtifacts.load.__doc__
