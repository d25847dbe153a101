"""Removing records: marks (trim, delete) and the deletion of objects no reader needs.

* **Marks hide at once.** ``trim`` and ``delete`` create a mark ``m/{at}`` (conditional
  create); records below the highest mark are invisible from then on.
* **Nothing young is ever deleted.** A chunk is deleted only once older than
  ``limits.MIN_AGE_MS`` *by the object store's clock* (a dated listing: S3 ``LastModified``
  against the answer's ``Date``): a writer with a stale tail - at most
  ``limits.TAIL_REFRESH_MS`` old by its own clock - can then only meet chunks that still
  exist, never re-create a removed one. No client's clock takes part, so a writer or a
  compactor whose clock is hours off cannot make a young chunk look old
  (docs/architecture.md, "Time").
* **Deletions go in log order**, so a crash between two leaves a consistent log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

from .. import codec
from ..blob.base import AmbiguousWriteError
from ..context import StoreContext
from ..errors import ConfigurationError, CorruptDataError
from ..layout import mark_name
from . import limits
from .model import Listing, Piece, superseded
from .reader import LogReader
from .state import LogWriters


class LogCleanup:
    """trim, delete, and the removal of superseded objects, for one store view."""

    def __init__(self, ctx: StoreContext, reader: LogReader) -> None:
        self.ctx = ctx
        self.reader = reader
        self._popped: dict[str, int] = {}  # records popped per log since its last cleanup

    async def _set_mark(self, directory: str, mark: int) -> None:
        path = directory + mark_name(mark)
        data = codec.encode(b"", meta={"t": self.ctx.clock()}, bind=path)
        with contextlib.suppress(AmbiguousWriteError):  # an existing mark is the same mark
            await self.ctx.blob.put_if_absent(path, data)

    async def trim(self, key: str, start: int) -> int:
        """Drop the records before index ``start`` (negative: keep the last ``-start``);
        returns the new length. Like LTRIM key start -1."""
        if isinstance(start, bool) or not isinstance(start, int):
            raise ConfigurationError(f"start must be an int, not {start!r}")
        directory = self.reader.dir(key)

        async def cut() -> int:
            plan = await self.reader.plan(key, directory, fresh=True)
            length = plan.length
            keep_from = max(0, length + start) if start < 0 else min(start, length)
            mark = plan.first + keep_from
            if keep_from > 0:
                await self._set_mark(directory, mark)
                self.ctx.state(LogWriters).forget(directory, mark)
                await self.remove_superseded(directory, plan.names, mark, plan.tail)
            return plan.tail - mark

        return await self.ctx.commit([self.reader.plan_key(directory)], cut)

    async def drop_before(self, key: str, end: int) -> int:
        """Drop the records below the absolute sequence number ``end`` (a log's end as a
        caller saw it): records appended since stay, so a retention rule that found the
        log idle never removes a record written after it looked. Returns the records
        dropped (0 if none were below ``end``)."""
        directory = self.reader.dir(key)

        async def cut() -> int:
            plan = await self.reader.plan(key, directory, fresh=True)
            mark = min(end, plan.tail)
            if mark <= plan.first:
                return 0
            await self._set_mark(directory, mark)
            self.ctx.state(LogWriters).forget(directory, mark)
            await self.remove_superseded(directory, plan.names, mark, plan.tail)
            return mark - plan.first

        return await self.ctx.commit([self.reader.plan_key(directory)], cut)

    async def pop(self, key: str, count: int) -> list[bytes]:
        """Remove and return up to ``count`` records from the head (Redis LPOP).

        Each record is claimed by the conditional create of the mark just past it, so two
        poppers never return the same record, in any number of processes. The records of
        one call are claimed one by one: a concurrent popper's records may interleave.
        Costs a LIST and the reads of the records, then one conditional PUT per record;
        every ``POP_CLEANUP_RECORDS`` records a process pops, two LISTs more and the
        deletion of what is old enough (marks, popped chunks: ``MIN_AGE_MS``)."""
        directory = self.reader.dir(key)
        blob = self.ctx.blob

        async def claim(at: int) -> bool:
            path = directory + mark_name(at)
            data = codec.encode(b"", meta={"t": self.ctx.clock()}, bind=path)
            try:
                return await blob.put_if_absent(path, data) is not None
            except AmbiguousWriteError:  # ours (a lost answer, retried) or another's
                found = await blob.get(path)
                return found is not None and found.data == data

        async def take() -> list[bytes]:
            out: list[bytes] = []
            mark = 0
            while len(out) < count:
                first, records = await self.reader.read(key, 0, count - len(out) - 1, True)
                if not records:
                    break
                for i, record in enumerate(records):
                    if not await claim(first + i + 1):
                        self.ctx.stats.add("log.pop_conflicts")
                        break
                    out.append(record)
                    mark = first + i + 1
            if mark:
                self.ctx.state(LogWriters).forget(directory, mark)
                popped = self._popped.get(directory, 0) + len(out)
                self._popped[directory] = popped % limits.POP_CLEANUP_RECORDS
                if popped >= limits.POP_CLEANUP_RECORDS:  # marks and popped chunks pile up:
                    names = await self.reader.list_names(directory)  # drop the old ones
                    await self.remove_superseded(directory, names, mark)
            return out

        return await self.ctx.commit([self.reader.plan_key(directory)], take)

    async def delete(self, key: str) -> bool:
        """Remove the log; True if it held records. A mark at the tail keeps sequence
        numbers growing, so a writer that appends meanwhile starts a new log, never a gap."""
        directory = self.reader.dir(key)

        async def remove() -> bool:
            known: int | None
            try:
                plan = await self.reader.plan(key, directory, fresh=True)
                names, tail, held = plan.names, plan.tail, plan.length > 0
                known = tail
            except CorruptDataError:
                # The tail chunk is unreadable, so its end is unknown: put the mark past
                # anything it could hold. Deleting is how a damaged log is repaired.
                names = tuple(await self.reader.list_names(directory))
                listing = Listing.parse(names)
                starts = [
                    *(c.first for c in listing.chunks),
                    *(s.end for s in listing.segments),
                    listing.mark,
                ]
                tail, held, known = max(starts) + limits.CHUNK_MAX_RECORDS, True, None
            if not names:
                return False
            if held or not any(n.startswith("m/") for n in names):
                await self._set_mark(directory, tail)
            self.ctx.state(LogWriters).forget(directory, tail)
            await self.remove_superseded(directory, names, tail, known)
            return held

        return await self.ctx.commit([self.reader.plan_key(directory)], remove)

    async def purge(self, prefix: object) -> int:
        """Delete what no reader of any log whose key starts with ``prefix`` needs and is
        old enough: the chunks and segments of deleted or trimmed records, chunks covered
        by segments, lower marks (the same rules as :meth:`remove_superseded`). One dated
        listing of the area (a LIST per 1000 objects), then a DELETE per object removed.
        A deleted log keeps its last mark (an empty object): it keeps sequence numbers
        growing for a writer that appends again. Returns the objects deleted."""
        layout = self.ctx.layout
        area = layout.log_prefix(prefix)
        ages: dict[str, int] | None = None
        if self.ctx.blob.dated_listing:
            ages = (await self.ctx.blob.list_dated(area)).ages()
            paths = sorted(ages)
        else:
            paths = [p async for page in self.ctx.blob.list_pages(area) for p in page]
        by_log: dict[str, dict[str, int]] = {}  # directory -> name -> age (0: unknown)
        for path in paths:
            split = layout.split_log_path(path)
            if split is not None:
                directory = path[: len(path) - len(split[1])]
                by_log.setdefault(directory, {})[split[1]] = 0 if ages is None else ages[path]
        removed = 0
        for directory, named in by_log.items():
            names = sorted(named)
            listing = Listing.parse(names)
            mark, tail = listing.mark, None
            starts = listing.starts()
            if listing.chunks and starts[-1] == listing.chunks[-1].first < mark:
                # The last chunk starts below the mark: its header says whether it ends
                # there (a deleted log) - one ranged read.
                path = directory + listing.chunks[-1].name
                head = await self.ctx.blob.get_head(path, codec.HEADER_SIZE)
                if head is not None:
                    try:
                        tail = starts[-1] + codec.peek_count(head.data, path=self.ctx.where(path))
                    except CorruptDataError:
                        tail = None  # left for fsck
            if not any(superseded(names, mark, tail)):
                continue

            async def remove(
                directory: str = directory,
                names: list[str] = names,
                mark: int = mark,
                tail: int | None = tail,
                log_ages: dict[str, int] | None = None if ages is None else named,
            ) -> int:
                return await self.remove_superseded(directory, names, mark, tail, log_ages)

            removed += await self.ctx.commit([self.reader.plan_key(directory)], remove)
        return removed

    async def remove_superseded(
        self,
        directory: str,
        names: Sequence[str],
        mark: int,
        tail: int | None = None,
        ages: Mapping[str, int] | None = None,
    ) -> int:
        """Delete what no reader needs (:func:`~kvstore.logs.model.superseded`); chunks only
        once old (``ages``: from a dated listing the caller made, else one is made here).
        Returns the number of objects deleted."""
        segments, candidates, marks = superseded(names, mark, tail)
        if marks and ages is None:
            ages = await self.ages(directory)
        old = await self.old_chunks(directory, candidates, ages=ages) if candidates else []
        # A lower mark is deleted only once old by the store's clock, like a chunk: a
        # popper (:meth:`pop`) whose plan predates it must find its claim taken. Without
        # dates, marks (empty objects) stay.
        old_marks = (
            [] if ages is None else [m for m in marks if ages.get(m, 0) >= limits.MIN_AGE_MS]
        )
        doomed = segments + sorted(old) + old_marks
        for name in doomed:  # ascending: a crash leaves a consistent log
            await self.ctx.blob.delete(directory + name)
        return len(doomed)

    async def ages(self, directory: str) -> dict[str, int] | None:
        """Each object of the log -> its age in ms by the object store's clock (one dated
        listing), or None on a backend that cannot date its objects."""
        if not self.ctx.blob.dated_listing:
            return None
        listing = await self.ctx.blob.list_dated(directory)
        return {p[len(directory) :]: age for p, age in listing.ages().items()}

    async def old_chunks(
        self,
        directory: str,
        names: Sequence[str],
        key: str = "",
        ages: Mapping[str, int] | None = None,
    ) -> list[str]:
        """The chunks among ``names`` (in log order) at least ``limits.MIN_AGE_MS`` old by
        the object store's clock: from ``ages``, or one dated listing. A chunk missing
        from the listing (removed meanwhile) is not old.

        A backend that cannot date its objects (``dated_listing`` False) falls back to
        the date each writer put inside its chunk, against this process's clock - and so
        to the assumption that clients' clocks agree within ``MIN_AGE_MS -
        TAIL_REFRESH_MS``."""
        if ages is None:
            ages = await self.ages(directory)
        if ages is None:
            return await self._old_by_client_clocks(directory, names, key)
        return [n for n in names if ages.get(n, 0) >= limits.MIN_AGE_MS]

    async def _old_by_client_clocks(
        self, directory: str, names: Sequence[str], key: str
    ) -> list[str]:
        """Read a batch (``AGE_BATCH``, at most ``concurrency``) at a time, stopping after
        the first batch that holds a young chunk: chunk dates grow along the log (a chunk
        is dated just before its create, and its slot is only known once the chunk before
        exists), so the rest are young too."""
        step = max(1, min(limits.AGE_BATCH, self.ctx.concurrency))
        old: list[str] = []
        for i in range(0, len(names), step):
            part = names[i : i + step]
            pieces = [Piece(n, 0, None) for n in part]
            envs = await self.reader.fetch_readable(key, directory, pieces)
            now = self.ctx.clock()
            young = False
            for name, env in zip(part, envs, strict=True):
                if env is None:
                    continue
                if now - int(env.meta.get("t", now)) >= limits.MIN_AGE_MS:
                    old.append(name)
                else:
                    young = True
            if young:
                break
        return old
