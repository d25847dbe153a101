"""What a save is given: bytes, str, a binary file object or a path, handed out in parts."""

from __future__ import annotations

import asyncio
import mimetypes
import os
from collections.abc import AsyncIterator
from typing import Any, NoReturn

from ..errors import ConfigurationError, InvalidValueError
from . import limits
from .manifest import BINARY_MIME, TEXT_MIME


class Source:
    """The data of a save, handed out in blocks of at most ``limits.PART_SIZE`` bytes."""

    def __init__(self, data: object, name: str) -> None:
        self._buffer: bytes | None = None
        self._file: Any = None
        self._path: str | None = None
        self._stream: AsyncIterator[bytes] | None = None
        if isinstance(data, str):
            try:
                self._buffer = data.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidValueError(f"str data is not valid Unicode: {exc.reason}") from None
            self.default_mime = TEXT_MIME
        elif isinstance(data, (bytes, bytearray, memoryview)):
            self._buffer = bytes(data)
            self.default_mime = mimetypes.guess_type(name)[0] or BINARY_MIME
        elif isinstance(data, os.PathLike):
            self._path = os.fspath(data)
            if not isinstance(self._path, str):
                self._path = os.fsdecode(self._path)
            guess = mimetypes.guess_type(self._path)[0] or mimetypes.guess_type(name)[0]
            self.default_mime = guess or BINARY_MIME
        elif callable(getattr(data, "read", None)):
            self._file = data
            self.default_mime = mimetypes.guess_type(name)[0] or BINARY_MIME
        elif callable(getattr(data, "__aiter__", None)):
            self._stream = aiter(data)  # type: ignore[arg-type]
            self.default_mime = mimetypes.guess_type(name)[0] or BINARY_MIME
        else:
            raise InvalidValueError(
                "artifact data must be bytes, str, a binary file object, a pathlib.Path or "
                f"an async iterable of bytes, not {type(data).__name__}"
            )

    @property
    def whole(self) -> bytes | None:
        """All the data, if it is already in memory."""
        return self._buffer

    async def read_whole(self, limit: int) -> bytes:
        """All the data, in memory (a raw save's one object): ConfigurationError, before
        anything is written, when it is more than ``limit`` bytes - a path by its size
        first, a file object after reading at most ``limit + 1`` bytes of it."""
        if self._buffer is not None:
            data = self._buffer
        elif self._path is not None:
            data = await asyncio.to_thread(_read_path, self._path, limit)
        elif self._stream is not None:
            data = b""
            async for block in self._rechunk(self._stream, limit + 1):
                data = block
                break
        else:
            data = await asyncio.to_thread(read_full, self._file, limit + 1)
        if len(data) > limit:
            _too_large(limit, "the data is larger")
        return data

    async def blocks(self) -> AsyncIterator[bytes]:
        """The data in blocks of exactly limits.PART_SIZE bytes (the last may be shorter)."""
        part = limits.PART_SIZE
        if self._buffer is not None:
            view = memoryview(self._buffer)
            for start in range(0, len(view), part):
                yield bytes(view[start : start + part])
            return
        if self._stream is not None:
            async for block in self._rechunk(self._stream, part):
                yield block
            return
        opened = False
        if self._path is not None:
            try:
                self._file = await asyncio.to_thread(open, self._path, "rb")
            except OSError as exc:
                raise ConfigurationError(f"cannot read {self._path!r}: {exc}") from None
            opened = True
        try:
            while True:
                block = await asyncio.to_thread(read_full, self._file, part)
                if not block:
                    return
                yield block
                if len(block) < part:
                    return
        finally:
            if opened:
                await asyncio.to_thread(self._file.close)

    @staticmethod
    async def _rechunk(stream: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
        """An async stream's bytes in blocks of exactly ``size`` (the last may be shorter),
        holding at most one block and one chunk of the stream."""
        pending = bytearray()
        async for chunk in stream:
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise InvalidValueError(
                    f"artifact data must be bytes, and a chunk is {type(chunk).__name__}"
                )
            pending += chunk
            while len(pending) >= size:
                yield bytes(pending[:size])
                del pending[:size]
        if pending:
            yield bytes(pending)


def _read_path(path: str, limit: int) -> bytes:
    """The file's bytes, at most ``limit + 1`` (its size is checked before any is read)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                _too_large(limit, f"{path!r} holds {size} bytes")
            return read_full(f, limit + 1)  # (it may have grown since)
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path!r}: {exc}") from None


def _too_large(limit: int, what: str) -> NoReturn:
    raise ConfigurationError(
        f"a raw artifact is one object, held in memory whole: at most {limit} bytes "
        f"(kvstore.artifacts.limits.RAW_MAX_BYTES), and {what}; save it without raw=True "
        "(stored in parts, streamed)"
    )


def read_full(file: Any, size: int) -> bytes:
    """Read ``size`` bytes (fewer only at EOF) from a file that may return short reads."""
    chunks: list[bytes] = []
    got = 0
    while got < size:
        chunk = file.read(size - got)
        if chunk is None:  # a non-blocking raw file with nothing ready
            continue
        if isinstance(chunk, str):
            raise InvalidValueError("the file object returns str: open it in binary mode ('rb')")
        if not chunk:
            break
        chunks.append(bytes(chunk))
        got += len(chunk)
    return b"".join(chunks)


# -- the core -------------------------------------------------------------------------------


async def chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``head``'s blocks (released as they are handed out), then ``rest``'s."""
    while head:
        yield head.pop(0)
    async for block in rest:
        yield block
