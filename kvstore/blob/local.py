"""Local disk (``file://`` or a bare path): POSIX atomicity, fsync durability.

* ``put`` writes a temp file in ``{root}/.kvstore/tmp``, fsyncs it and renames it over the
  target (readers never see a partial object: docs/architecture.md, invariant 4), then
  fsyncs the directory.
* ``put_if_absent`` writes and fsyncs a temp file, then ``os.link``\\ s it to the target:
  ``link`` fails if the name exists, atomically, across processes (docs/architecture.md,
  invariant 3).
* ``put_if_match`` / ``delete_if_match`` / ``put`` / ``delete`` take an exclusive
  ``flock`` on one of 64 lock files (chosen by the path's hash), so a compare-and-swap
  cannot interleave with another process's write of the same object. The tag is the
  object's inode, mtime, size and a checksum of its first 32 bytes (where every kvstore
  object keeps a random nonce), read from the same open file as the data.

New directories are fsynced into their parents; temp files orphaned by a killed writer are
removed (when older than an hour) by the next store that writes. Listing walks the
directory tree in one pass (from a position: skipping the directories that sort entirely
before it), then pages the sorted result; a dated listing adds each file's mtime (one
``stat`` per file), with the machine's clock as the store's "now". ``delete_many`` unlinks
each file under its lock in one worker thread per 1000 paths and fsyncs each directory once.

Works on one machine (several processes). Not for network filesystems without working
``flock``/``link``, nor for case-insensitive filesystems (two keys that differ only by case
would share a file).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

from ..errors import InvalidKeyError
from ..stats import Stats
from .base import Blob, BlobStore, DatedPage, RetryPolicy

PAGE = 1000
_LOCK_STRIPES = 64
_STALE_TEMP_SECONDS = 3600
_PRIVATE = ".kvstore"


_TAG_HEAD = 32
"""The tag includes a checksum of the first bytes: kvstore objects carry a random nonce
there, so a tag stays unique even where inode numbers are reused and timestamps are coarse."""


_PATH_MAX = 4096  # Linux's PATH_MAX; macOS allows 1024, where the OS error still says so


def _tag(st: os.stat_result, head: bytes) -> str:
    return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}:{zlib.crc32(head[:_TAG_HEAD]):08x}"


class LocalBlobStore(BlobStore):
    """Objects as files below a local directory. See the module docstring."""

    dated_listing = True
    delete_batch = PAGE  # one worker thread per batch, each directory fsynced once

    def __init__(
        self, root: str, *, fsync: bool = True, retry: RetryPolicy | None = None, stats: Stats
    ) -> None:
        # resolve(): one directory reached through a symlink is one store (one cache prefix)
        self.root = Path(root).expanduser().resolve()
        super().__init__(f"file://{self.root}", retry=retry, stats=stats)
        self.fsync = fsync
        self._root_bytes = len(os.fsencode(self.root)) + 1
        self._tmp = self.root / _PRIVATE / "tmp"
        self._locks = self.root / _PRIVATE / "locks"
        self._swept = False

    @property
    def identity(self) -> str:
        # The same path on two hosts is two stores; one Redis may serve both.
        return f"{socket.gethostname()}:{self.url}"

    def check_path(self, path: str) -> None:
        """InvalidKeyError for a path longer than the filesystem allows (PATH_MAX, 4096
        bytes on Linux, counted from the root): a long namespace plus a long key can get
        there even though each is within the 1024-byte key limit."""
        size = self._root_bytes + len(path.encode())
        if size > _PATH_MAX:
            raise InvalidKeyError(
                f"key too long for {self.url}: its file path would be {size} bytes and the "
                f"filesystem allows {_PATH_MAX}; use a shorter key, namespace or directory"
            )

    # -- helpers (run in worker threads) ---------------------------------------------------

    def _file(self, path: str) -> Path:
        return self.root / path

    def _makedirs(self, directory: Path) -> None:
        """Create missing directories and fsync each new one's parent: a file is durable only
        once every directory entry on its path is."""
        if directory.is_dir():
            return
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for new in reversed(missing):
            with contextlib.suppress(FileExistsError):  # a concurrent writer made it
                new.mkdir()
            self._sync_dir(new.parent)

    def _sweep_temp(self) -> None:
        """Remove temp files orphaned by killed writers (older than an hour), once per store."""
        self._swept = True
        cutoff = time.time() - _STALE_TEMP_SECONDS
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self._tmp):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)

    def _write_temp(self, data: bytes) -> tuple[Path, str]:
        self._makedirs(self._tmp)
        if not self._swept:
            self._sweep_temp()
        tmp = self._tmp / uuid.uuid4().hex
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with memoryview(data) as view:
                written = 0
                while written < len(view):
                    written += os.write(fd, view[written:])
            if self.fsync:
                os.fsync(fd)
            return tmp, _tag(os.fstat(fd), data)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        finally:
            os.close(fd)

    def _sync_dir(self, directory: Path) -> None:
        if not self.fsync:
            return
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locked(self, path: str) -> Iterator[None]:
        self._makedirs(self._locks)
        stripe = zlib.crc32(path.encode()) % _LOCK_STRIPES
        fd = os.open(self._locks / f"{stripe:02d}", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _current_tag(self, target: Path) -> str | None:
        try:
            with open(target, "rb") as f:
                return _tag(os.fstat(f.fileno()), f.read(_TAG_HEAD))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def _replace(self, tmp: Path, target: Path) -> None:
        self._makedirs(target.parent)
        os.replace(tmp, target)
        self._sync_dir(target.parent)

    # -- primitives ------------------------------------------------------------------------

    def _get_sync(self, path: str, head: int | None) -> Blob | None:
        try:
            with open(self._file(path), "rb") as f:
                st = os.fstat(f.fileno())
                data = f.read() if head is None else f.read(max(head, _TAG_HEAD))
                return Blob(data if head is None else data[:head], _tag(st, data))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        return await asyncio.to_thread(self._get_sync, path, head)

    def _get_range_sync(self, path: str, start: int, size: int) -> Blob | None:
        try:
            with open(self._file(path), "rb") as f:
                st = os.fstat(f.fileno())
                head = f.read(_TAG_HEAD)  # the tag's, as ``_get`` computes it
                f.seek(start)
                return Blob(f.read(size), _tag(st, head))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    async def _get_range(self, path: str, start: int, size: int) -> Blob | None:
        return await asyncio.to_thread(self._get_range_sync, path, start, size)

    def _put_sync(self, path: str, data: bytes) -> str:
        tmp, tag = self._write_temp(data)
        try:
            with self._locked(path):
                self._replace(tmp, self._file(path))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return tag

    async def _put(self, path: str, data: bytes) -> str:
        return await asyncio.to_thread(self._put_sync, path, data)

    def _put_if_absent_sync(self, path: str, data: bytes) -> str | None:
        target = self._file(path)
        tmp, tag = self._write_temp(data)
        try:
            self._makedirs(target.parent)
            try:
                os.link(tmp, target)
            except FileExistsError:
                return None
            self._sync_dir(target.parent)
            return tag
        finally:
            os.unlink(tmp)

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        return await asyncio.to_thread(self._put_if_absent_sync, path, data)

    def _put_if_match_sync(self, path: str, data: bytes, tag: str) -> str | None:
        target = self._file(path)
        tmp, new_tag = self._write_temp(data)
        try:
            with self._locked(path):
                if self._current_tag(target) != tag:
                    return None
                self._replace(tmp, target)
                return new_tag
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        return await asyncio.to_thread(self._put_if_match_sync, path, data, tag)

    def _delete_sync(self, path: str, tag: str | None) -> bool:
        target = self._file(path)
        with self._locked(path):
            if tag is not None and self._current_tag(target) != tag:
                return False
            try:
                os.unlink(target)
            except (FileNotFoundError, NotADirectoryError):
                return tag is None
            self._sync_dir(target.parent)
            return True

    async def _delete(self, path: str) -> None:
        await asyncio.to_thread(self._delete_sync, path, None)

    async def _delete_if_match(self, path: str, tag: str) -> bool:
        return await asyncio.to_thread(self._delete_sync, path, tag)

    def _delete_many_sync(self, paths: Sequence[str]) -> None:
        """``_delete_sync`` for each path (under its lock), each directory fsynced once."""
        emptied: set[Path] = set()
        for path in paths:
            target = self._file(path)
            with self._locked(path):
                try:
                    os.unlink(target)
                except (FileNotFoundError, NotADirectoryError):
                    continue
            emptied.add(target.parent)
        for directory in emptied:
            self._sync_dir(directory)

    async def _delete_many(self, paths: Sequence[str]) -> None:
        await asyncio.to_thread(self._delete_many_sync, paths)

    def _find(
        self, prefix: str, stat: str | None, start_after: str | None = None
    ) -> list[tuple[str, int]]:
        """Every file path below root starting with ``prefix`` (and sorting after
        ``start_after``, if given: directories whose every path sorts before it are not
        read), sorted like S3 lists, each with its ``stat``: "mtime" in ms (the machine's
        clock dates the files), "size" in bytes, or None (0)."""
        head, _, _ = prefix.rpartition("/")
        base = self.root / head if head else self.root
        found: list[tuple[str, int]] = []
        stack = [base]
        while stack:
            directory = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                rel = os.path.relpath(entry.path, self.root).replace(os.sep, "/")
                if rel.startswith(_PRIVATE):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if _before(rel + "/", start_after):
                        continue
                    if prefix.startswith(rel + "/") or (rel + "/").startswith(prefix):
                        stack.append(Path(entry.path))
                elif rel.startswith(prefix) and (start_after is None or rel > start_after):
                    if stat is None:
                        found.append((rel, 0))
                        continue
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # deleted since the directory was read
                    found.append(
                        (rel, info.st_size if stat == "size" else info.st_mtime_ns // 10**6)
                    )
        found.sort()
        return found

    async def _list(self, prefix: str) -> AsyncIterator[list[str]]:
        found = await self._call(
            "list", prefix, lambda: asyncio.to_thread(self._find, prefix, None)
        )
        for i in range(0, len(found), PAGE):
            yield [path for path, _ in found[i : i + PAGE]]

    async def _list_after(
        self, prefix: str, start_after: str | None, page_size: int | None
    ) -> AsyncIterator[list[str]]:
        found = await self._call(
            "list", prefix, lambda: asyncio.to_thread(self._find, prefix, None, start_after)
        )
        size = page_size or PAGE
        for i in range(0, len(found), size):
            yield [path for path, _ in found[i : i + size]]

    async def _list_dated(self, prefix: str) -> AsyncIterator[DatedPage]:
        found = await self._call(
            "list", prefix, lambda: asyncio.to_thread(self._find, prefix, "mtime")
        )
        now = time.time_ns() // 10**6  # the clock that dates the files, after the walk
        for i in range(0, len(found), PAGE):
            page: list[tuple[str, int | None]] = list(found[i : i + PAGE])
            yield page, now

    async def _list_sized(self, prefix: str) -> AsyncIterator[list[tuple[str, int]]]:
        found = await self._call(
            "list", prefix, lambda: asyncio.to_thread(self._find, prefix, "size")
        )
        for i in range(0, len(found), PAGE):
            yield found[i : i + PAGE]


def _before(directory: str, start_after: str | None) -> bool:
    """True if every path below ``directory`` (ending in ``/``) sorts before or at
    ``start_after``: the directory differs from it before its own end, and is smaller."""
    return start_after is not None and directory < start_after[: len(directory)]
