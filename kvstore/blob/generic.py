"""Any other fsspec filesystem (Azure, HDFS, SFTP, ...): plain reads and writes only.

fsspec offers no portable atomic conditional create (its ``pipe_file(mode="create")`` checks,
then writes), so this backend refuses ``put_if_absent`` and compare-and-swap with
:class:`UnsupportedOperationError` rather than pretend: ``set``/``get``/``delete``/``keys``
work; ``nx``, ``xx``, ``expire`` and the other read-modify-write operations do not.
Whether ``put`` is atomic for readers depends on the filesystem.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..errors import ConfigurationError
from ..stats import Stats
from .base import Blob, BlobStore, RetryPolicy

PAGE = 1000


class FsspecBlobStore(BlobStore):
    """Objects below ``protocol://root`` on a filesystem fsspec knows."""

    atomic_create = False
    atomic_conditional_put = False
    atomic_conditional_delete = False
    delete_batch = PAGE  # a loop in one worker thread per batch

    def __init__(
        self,
        protocol: str,
        root: str,
        storage_options: dict[str, Any],
        *,
        retry: RetryPolicy | None = None,
        stats: Stats,
    ) -> None:
        import fsspec

        self.root = root.rstrip("/")
        super().__init__(f"{protocol}://{self.root}", retry=retry, stats=stats)
        try:
            self.fs = fsspec.filesystem(protocol, **storage_options)
        except Exception as exc:  # each filesystem fails its own way (zip:// opens a file)
            raise ConfigurationError(
                f"cannot open {protocol}:// storage at {self.root!r} with fsspec: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _full(self, path: str) -> str:
        return f"{self.root}/{path}"

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        try:
            data = await asyncio.to_thread(self.fs.cat_file, self._full(path), 0, head)
        except FileNotFoundError:
            return None
        return Blob(bytes(data), "")

    async def _get_range(self, path: str, start: int, size: int) -> Blob | None:
        try:
            full = self._full(path)
            data = await asyncio.to_thread(self.fs.cat_file, full, start, start + size)
        except FileNotFoundError:
            return None
        return Blob(bytes(data), "")

    async def _put(self, path: str, data: bytes) -> str:
        full = self._full(path)
        await asyncio.to_thread(self.fs.makedirs, full.rpartition("/")[0], exist_ok=True)
        await asyncio.to_thread(self.fs.pipe_file, full, data)
        return ""

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        raise AssertionError("guarded by atomic_create")  # pragma: no cover

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        raise AssertionError("guarded by atomic_conditional_put")  # pragma: no cover

    async def _delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self.fs.rm_file, self._full(path))

    def _delete_many_sync(self, paths: Sequence[str]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self._full(path))

    async def _delete_many(self, paths: Sequence[str]) -> None:
        await asyncio.to_thread(self._delete_many_sync, paths)

    async def _delete_if_match(self, path: str, tag: str) -> bool:
        raise AssertionError("guarded by atomic_conditional_delete")  # pragma: no cover

    def _find(self, prefix: str) -> list[str]:
        return [name for name, _ in self._find_sized(prefix, detail=False)]

    def _find_sized(self, prefix: str, detail: bool = True) -> list[tuple[str, int]]:
        """The paths below root starting with ``prefix``, sorted, each with its size from
        the filesystem's own listing (``find(detail=True)``; 0 without ``detail``)."""
        head = self._full(prefix).rpartition("/")[0]
        cut = len(self.fs._strip_protocol(self.root)) + 1
        try:
            found = self.fs.find(head, detail=detail)
        except FileNotFoundError:
            return []
        if detail:
            sized = [(str(p)[cut:], int(info.get("size") or 0)) for p, info in found.items()]
        else:
            sized = [(str(p)[cut:], 0) for p in found]
        return sorted((n, size) for n, size in sized if n.startswith(prefix))

    async def _list(self, prefix: str) -> AsyncIterator[list[str]]:
        names = await self._call("list", prefix, lambda: asyncio.to_thread(self._find, prefix))
        for i in range(0, len(names), PAGE):
            yield names[i : i + PAGE]

    async def _list_sized(self, prefix: str) -> AsyncIterator[list[tuple[str, int]]]:
        found = await self._call(
            "list", prefix, lambda: asyncio.to_thread(self._find_sized, prefix)
        )
        for i in range(0, len(found), PAGE):
            yield found[i : i + PAGE]

    async def _list_after(
        self, prefix: str, start_after: str | None, page_size: int | None
    ) -> AsyncIterator[list[str]]:
        names = await self._call("list", prefix, lambda: asyncio.to_thread(self._find, prefix))
        if start_after is not None:
            names = names[bisect.bisect_right(names, start_after) :]
        size = page_size or PAGE
        for i in range(0, len(names), size):
            yield names[i : i + size]
