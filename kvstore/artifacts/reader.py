"""Streaming reads of one artifact version: the async reader and its blocking file face.

Memory stays bounded by two parts (the current one and the next, fetched ahead while
reading forward); a raw version is read the same way in blocks of its object (ranged
reads). Every part or block is verified (CRC, size); the sha256 is checked when the bytes
read so far cover the whole artifact contiguously from its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import io
from collections.abc import Awaitable, Callable
from typing import Any

from .. import aio
from ..errors import CorruptDataError
from .manifest import ArtifactInfo


class Gone(Exception):
    """The version was deleted while it was being read."""


# -- streaming reads --------------------------------------------------------------------------


class Described:
    """The description of an artifact version, as attributes (``name``, ``version``, ``size``,
    ``mime_type``, ``metadata``, ``sha256``, ``created_at``) of its ``info``."""

    info: ArtifactInfo

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def version(self) -> int:
        return self.info.version

    @property
    def size(self) -> int:
        return self.info.size

    @property
    def mime_type(self) -> str:
        return self.info.mime_type

    @property
    def metadata(self) -> dict[str, Any]:
        return self.info.metadata

    @property
    def sha256(self) -> str:
        return self.info.sha256

    @property
    def created_at(self) -> datetime.datetime:
        return self.info.created_at


class AsyncArtifactReader(Described):
    """A seekable reader over one artifact version; parts are fetched on demand.

    Holds the current part and the next one (fetched ahead while reading forward). The
    sha256 is checked when the bytes read so far cover the whole artifact contiguously from
    its start.
    """

    def __init__(
        self,
        info: ArtifactInfo,
        sizes: list[int],
        path: str,
        fetch_part: Callable[[int], Awaitable[bytes]],
        inline: bytes | None = None,
    ) -> None:
        """``sizes``: the pieces ``fetch_part(index)`` fetches, in order; ``inline``: the
        data, when it is all at hand already (one piece); ``path``: what error messages
        name (the version's manifest)."""
        self.info = info
        self._path = path
        self._fetch_part = fetch_part
        self.closed = False
        self._pos = 0
        self._starts = [0]
        for n in sizes[:-1]:
            self._starts.append(self._starts[-1] + n)
        self._sizes = sizes
        self._current: tuple[int, bytes] | None = None
        if inline is not None:
            self._current = (0, inline)
        self._ahead: tuple[int, asyncio.Task[bytes]] | None = None
        self._hasher = hashlib.sha256()
        self._hashed = 0
        self._verified = False

    def __repr__(self) -> str:
        return f"<AsyncArtifactReader {self.name!r} v{self.version} {self.size} bytes>"

    async def __aenter__(self) -> AsyncArtifactReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def tell(self) -> int:
        return self._pos

    async def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` (``whence`` as for files); returns the new position."""
        self._check_open()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        self._pos = target
        return target

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all the rest if negative); b"" at the end."""
        self._check_open()
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        out: list[bytes] = []
        while self._pos < end:
            index = self._index(self._pos)
            data = await self._load(index)
            offset = self._pos - self._starts[index]
            piece = data[offset : offset + (end - self._pos)]
            self._account(self._pos, piece)
            out.append(piece)
            self._pos += len(piece)
        return b"".join(out)

    async def close(self) -> None:
        self.release()

    def release(self) -> None:
        """Close without awaiting (safe from any thread, and at interpreter exit)."""
        if self._ahead is not None:
            task = self._ahead[1]
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                task.get_loop().call_soon_threadsafe(task.cancel)
            self._ahead = None
        self._current = None
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on a closed artifact reader")

    def _index(self, position: int) -> int:
        lo, hi = 0, len(self._starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._starts[mid] <= position:
                lo = mid
            else:
                hi = mid - 1
        return lo

    async def _load(self, index: int) -> bytes:
        if self._current is not None and self._current[0] == index:
            return self._current[1]
        if self._ahead is not None and self._ahead[0] == index:
            task = self._ahead[1]
            self._ahead = None
        else:
            if self._ahead is not None:
                self._ahead[1].cancel()
                self._ahead = None
            task = asyncio.ensure_future(self._fetch(index))
        self._current = None  # drop the old part before the new one arrives
        data = await task
        self._current = (index, data)
        if index + 1 < len(self._sizes):
            ahead = aio.detach(self._fetch(index + 1))
            self._ahead = (index + 1, ahead)
        return data

    async def _fetch(self, index: int) -> bytes:
        try:
            return await self._fetch_part(index)
        except Gone:
            raise CorruptDataError(
                "artifact was deleted while it was being read",
                key=self.name,
                path=self._path,
            ) from None

    def _account(self, position: int, piece: bytes) -> None:
        if position <= self._hashed < position + len(piece):
            self._hasher.update(piece[self._hashed - position :])
            self._hashed = position + len(piece)
            if self._hashed == self.size and not self._verified:
                self._verified = True
                if self._hasher.hexdigest() != self.sha256:
                    raise CorruptDataError(
                        "artifact sha256 mismatch",
                        key=self.name,
                        path=self._path,
                    )


class ArtifactFile(Described, io.RawIOBase):
    """The blocking face of :class:`AsyncArtifactReader`: a readable, seekable binary file."""

    def __init__(self, reader: AsyncArtifactReader, run: Callable[[Any], Any]) -> None:
        super().__init__()
        self._reader = reader
        self._run = run
        self.info = reader.info

    def __repr__(self) -> str:
        return f"<ArtifactFile {self.name!r} v{self.version} {self.size} bytes>"

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data: bytes = self._run(self._reader.read(len(view)))
        view[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        data: bytes = self._run(self._reader.read(-1))
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        position: int = self._run(self._reader.seek(offset, whence))
        return position

    def tell(self) -> int:
        return self._reader.tell()

    def close(self) -> None:
        # Never waits for the loop: close also runs from __del__ and at interpreter exit.
        self._reader.release()
        super().close()
