"""What a process keeps per log: its appenders (tail, group-commit queue, chunk dates)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from . import limits


@dataclass(slots=True)
class Pending:
    """One append waiting for its chunk: its records, its caller's future (resolved with
    the first record's sequence number and the log's length after it), its condition."""

    records: list[bytes]
    done: asyncio.Future[tuple[int, int]]
    expect_next: int | None = None


class Writer:
    """This process's appender for one log on one event loop: tail and group-commit queue."""

    def __init__(self) -> None:
        self.tail: int | None = None
        self.first = 0
        self.checked_ms = 0
        self.queue: list[Pending] = []
        self.busy = False
        self.unsettled = 0  # chunks written since this writer's last settle
        self.settling: asyncio.Task[Any] | None = None  # its settle, pending or running
        self.read_settled_ms = -(1 << 62)  # when a read last asked for a settle
        self.written: list[int] = []  # dates of chunks written since compaction, ascending
        self.compacting: asyncio.Task[Any] | None = None  # this log's automatic compaction
        self.recent: dict[str, bytes] = {}
        """The objects (name in the log's directory -> bytes) this writer wrote, or read
        whole while claiming the tail, not yet covered by a segment it wrote: what its
        settle merges without reading them again (they are immutable). The newest
        ``RECENT_KEPT``."""

    RECENT_KEPT = 128  # 4 x limits.SETTLE_CHUNKS: a settle's worth, with room

    def remember(self, name: str, data: bytes) -> None:
        recent = self.recent
        recent[name] = data
        while len(recent) > self.RECENT_KEPT:
            del recent[next(iter(recent))]  # the oldest


class LogWriters:
    """The appenders of one store (all its namespace views): one per log directory and
    event loop, at most ``limits.MAX_WRITERS`` (idle ones are forgotten, oldest first)."""

    def __init__(self) -> None:
        self._by_log: dict[tuple[int, str], Writer] = {}

    def get(self, directory: str) -> Writer:
        loop_key = (id(asyncio.get_running_loop()), directory)
        writers = self._by_log
        writer = writers.get(loop_key)
        if writer is None:
            if len(writers) >= limits.MAX_WRITERS:
                idle = [k for k, w in writers.items() if not w.busy and not w.queue]
                for k in idle[: len(idle) // 2 + 1]:
                    del writers[k]
            writer = writers[loop_key] = Writer()
        return writer

    def learn(self, directory: str, tail: int, first: int, listed_ms: int) -> None:
        """A listing made at ``listed_ms`` (this process's clock) found the log's tail at
        ``tail``: this process's appender may use it like its own refresh, so an append
        right after a read (a conditional one above all) costs no second LIST."""
        try:
            writer = self.get(directory)
        except RuntimeError:  # no running loop
            return
        if writer.busy or (writer.tail is not None and writer.tail >= tail):
            return
        writer.tail = tail
        writer.first = max(writer.first, first)  # a trim since the listing moved it on
        writer.checked_ms = listed_ms

    def stop_settling(self, prefix: str) -> list[asyncio.Task[Any]]:
        """Cancel this process's settles of the logs below ``prefix`` (they are being
        removed: a settle that listed them first would write a segment after them); the
        tasks, to wait for."""
        stopped = []
        for (_, directory), writer in self._by_log.items():
            task = writer.settling
            if directory.startswith(prefix) and task is not None and not task.done():
                task.cancel()
                stopped.append(task)
        return stopped

    def forget(self, directory: str, first: int) -> None:
        """The log now starts at ``first``: this process's appenders count lengths from
        there and re-read the tail before their next chunk. Appenders in other processes
        notice within TAIL_REFRESH_MS."""
        for (_, writer_dir), writer in self._by_log.items():
            if writer_dir == directory:
                writer.tail = None
                writer.first = first

    def __len__(self) -> int:
        return len(self._by_log)
