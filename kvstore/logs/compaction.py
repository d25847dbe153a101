"""Compaction: merge old chunks (and small segments) into segments.

Safe with concurrent readers and writers (tests/test_logs.py, and the multi-process
harness tests/stress_logs.py): a segment is durable before anything it replaces is
deleted, deletions go in log order, a reader that meets a vanished object plans again, and
only chunks older than ``limits.MIN_AGE_MS`` by the object store's clock are merged or
deleted, so no writer can meet a removed slot, whatever the clients' clocks say.

**Settling** (:meth:`Compactor.settle`): young chunks are covered by segments *without*
being deleted, so a cold read costs one LIST and a GET per ``limits.SETTLE_RECORDS``
records instead of a GET per chunk, at any age. The covered chunks stay until they are old
(``limits.MIN_AGE_MS`` by the store's clock) - exactly the rule compaction keeps - and the
next settle or compaction deletes them. A settled segment is rewritten (a new, longer one;
the shorter one deleted at once: segments are no writer's slot) until it holds
``SETTLE_RECORDS`` records, so one settle writes at most that many. Writers settle when idle
(see :mod:`kvstore.logs.writer`); a read that needed many chunks settles too.

Automatic: a writer that has left ``limits.AUTO_COMPACT_CHUNKS`` chunks older than
MIN_AGE_MS compacts that log in a background task of its store (never in an append's path;
one at a time per log and process; ``close()`` cancels it - an interrupted compaction
leaves the log consistent and the next one finishes its work).
"""

from __future__ import annotations

import asyncio

from .. import codec
from ..context import StoreContext
from ..layout import segment_name
from . import limits
from .cleanup import LogCleanup
from .model import Piece, Replan, as_planned, decode_records, encode_records, superseded
from .reader import LogReader
from .state import LogWriters, Writer


class Compactor:
    """Compaction of the logs of one store view."""

    def __init__(self, ctx: StoreContext, reader: LogReader, cleanup: LogCleanup) -> None:
        self.ctx = ctx
        self.reader = reader
        self.cleanup = cleanup

    async def compact(self, key: str) -> int:
        """Merge old chunks (and small segments) into segments; returns objects removed."""
        directory = self.reader.dir(key)

        async def run() -> int:
            return await self._compact(key, directory)

        return await self.ctx.commit([self.reader.plan_key(directory)], run)

    def start_in_background(self, key: str, directory: str, writer: Writer) -> None:
        writer.compacting = self.ctx.spawn(self._auto_compact(key, directory))

    async def _auto_compact(self, key: str, directory: str) -> None:
        """compact(), not shielded (so close() can stop it), errors counted, not raised:
        the next trigger tries again."""
        try:
            await self._compact(key, directory)
            self.ctx.stats.add("log.auto_compactions")
        except asyncio.CancelledError:
            raise
        except Exception:
            self.ctx.stats.add("log.auto_compaction_errors")
        finally:
            await self.ctx.invalidate([self.reader.plan_key(directory)])

    async def _compact(self, key: str, directory: str) -> int:
        plan = await self.reader.plan(key, directory, fresh=True)
        pieces = [p for p in plan.pieces if p.end is not None]
        if plan.pieces and plan.pieces[-1].end is not None:
            pieces = list(pieces[:-1])  # never merge the tail chunk: it may be young
        chunk_names = [p.name for p in pieces if not p.segment and not p.lost]
        ages = await self.cleanup.ages(directory)
        old_names = set(await self.cleanup.old_chunks(directory, chunk_names, key, ages))
        mergeable = [  # old chunks, and small segments (merged again into bigger ones)
            p
            for p in pieces
            if p.name in old_names
            or (p.segment and (p.end or p.start) - p.start < limits.SEGMENT_RECORDS)
        ]
        fetched = await self.reader.fetch_readable(key, directory, mergeable)
        old = {p.name: env for p, env in zip(mergeable, fetched, strict=True) if env is not None}
        runs: list[list[Piece]] = [[]]
        records = size = 0
        for piece in pieces:
            env = old.get(piece.name)
            if env is None:  # a young chunk or a full segment ends a run
                runs.append([])
                records = size = 0
                continue
            count = (piece.end or piece.start) - piece.start
            if runs[-1] and (
                records + count > limits.SEGMENT_RECORDS
                or size + len(env.payload) > limits.SEGMENT_BYTES
            ):
                runs.append([])
                records = size = 0
            runs[-1].append(piece)
            records += count
            size += len(env.payload)
        removed = 0
        for run in runs:
            if len(run) >= 2:
                removed += await self._merge(key, directory, run, old)
        # What is left to remove, and how old it is: one more dated listing.
        ages = await self.cleanup.ages(directory)
        names = sorted(ages) if ages is not None else await self.reader.list_names(directory)
        return removed + await self.cleanup.remove_superseded(
            directory, names, plan.mark, ages=ages
        )

    # -- settling --------------------------------------------------------------------------

    def settle_in_background(self, key: str, directory: str, writer: Writer) -> asyncio.Task[None]:
        """Settle the log once ``writer`` has been idle ``limits.SETTLE_DELAY_S`` (at once if
        it left ``SETTLE_CHUNKS`` chunks), and again while it keeps appending. A store that
        closes wakes it, and waits for it (briefly): a writer's last chunks are settled
        before its process goes."""
        return self.ctx.spawn(self._settle_later(key, directory, writer), finish=True)

    def settle_soon(self, key: str, directory: str) -> None:
        """Settle the log in the background, unless this process is settling it already
        (a read found it scattered over many chunks)."""
        writer = self.ctx.state(LogWriters).get(directory)
        now = self.ctx.clock()
        if now - writer.read_settled_ms < limits.SETTLE_READ_EVERY_MS:
            return
        if writer.settling is None or writer.settling.done():
            writer.read_settled_ms = now
            writer.unsettled = max(writer.unsettled, limits.SETTLE_CHUNKS)
            writer.settling = self.settle_in_background(key, directory, writer)

    async def _settle_later(self, key: str, directory: str, writer: Writer) -> None:
        try:
            while writer.unsettled:
                if writer.unsettled < limits.SETTLE_CHUNKS:
                    await self.ctx.idle(limits.SETTLE_DELAY_S)
                writer.unsettled = 0
                try:
                    await self.settle(key, directory)
                finally:
                    await self.ctx.invalidate([self.reader.plan_key(directory)])
                self.ctx.stats.add("log.settles")
        except asyncio.CancelledError:
            raise
        except Exception:
            self.ctx.stats.add("log.settle_errors")  # the next append tries again

    async def settle(self, key: str, directory: str) -> int:
        """Cover the log's young chunks with segments (not deleting them), and delete what
        is superseded and old enough. Returns the segments written.

        Costs one (dated) LIST, a ranged read of the tail chunk, a GET per piece neither
        this process's writer remembers (what it wrote or stepped over, and its last
        segment: ``Writer.recent``) nor the cache holds, a PUT per segment written and a
        DELETE per object removed. Safe with
        concurrent writers, readers, compactions and other settles: a segment is made of
        verified pieces of one listing (chunks are immutable), is durable before anything
        it replaces is deleted, and young chunks are never deleted."""
        ages = await self.cleanup.ages(directory)
        names = sorted(ages) if ages is not None else await self.reader.list_names(directory)
        try:
            plan = await self.reader.plan_of(key, directory, names)
        except Replan:
            return 0  # a compaction is under way: the next settle will find it done
        if plan is None:
            return 0
        runs: list[list[Piece]] = [[]]
        records = 0
        for piece in plan.pieces:
            if piece.lost or piece.end is None:
                runs.append([])
                records = 0
                continue
            count = piece.end - piece.start
            if runs[-1] and records + count > limits.SETTLE_RECORDS:
                runs.append([])
                records = 0
            runs[-1].append(piece)
            records += count
        runs = [r for r in runs if len(r) >= 2 and any(not p.segment for p in r)]
        written: list[str] = []
        if runs:
            wanted = [p for run in runs for p in run]
            known = self._remembered(key, directory, wanted)
            unknown = [p for p in wanted if p.name not in known]
            fetched = await self.reader.fetch_readable(key, directory, unknown)
            known.update(
                {p.name: e for p, e in zip(unknown, fetched, strict=True) if e is not None}
            )
            recent = self.ctx.state(LogWriters).get(directory).recent
            for run in runs:
                for part in _by_size(run, known, limits.SETTLE_BYTES):
                    if len(part) >= 2 and any(not p.segment for p in part):
                        name = await self._write_segment(key, directory, part, known)
                        if name is not None:
                            written.append(name)
                            for piece in part:  # covered: the segment stands for them
                                recent.pop(piece.name, None)
        # What is superseded goes too - segments at once, chunks and lower marks once old
        # (so the next append after a trim or a delete removes what is old below it).
        doomed, old_chunks, old_marks = superseded([*names, *written], plan.mark, None)
        if ages is not None:  # chunks and marks only once old by the store's clock
            doomed += [n for n in old_chunks if ages.get(n, 0) >= limits.MIN_AGE_MS]
            doomed += [n for n in old_marks if ages.get(n, 0) >= limits.MIN_AGE_MS]
        for name in sorted(set(doomed) - set(written)):  # ascending: consistent
            await self.ctx.blob.delete(directory + name)
        return len(written)

    def _remembered(
        self, key: str, directory: str, pieces: list[Piece]
    ) -> dict[str, codec.Envelope]:
        """The pieces this process's writer remembers, decoded (and so verified) again."""
        recent = self.ctx.state(LogWriters).get(directory).recent
        known: dict[str, codec.Envelope] = {}
        for piece in pieces:
            data = recent.get(piece.name)
            if data is not None:
                path = directory + piece.name
                try:
                    known[piece.name] = codec.decode(
                        data, key=key, path=self.ctx.where(path), bound=path
                    )
                except Exception:
                    recent.pop(piece.name, None)  # read from the store instead
        return known

    async def _merge(
        self, key: str, directory: str, run: list[Piece], known: dict[str, codec.Envelope]
    ) -> int:
        """Replace ``run`` by one segment: written, then the run's objects deleted."""
        if await self._write_segment(key, directory, run, known) is None:
            return 0
        for piece in run:  # ascending: every prefix of this loop leaves a valid log
            await self.ctx.blob.delete(directory + piece.name)
        self.ctx.stats.add("log.compactions")
        return len(run)

    async def _write_segment(
        self, key: str, directory: str, run: list[Piece], known: dict[str, codec.Envelope]
    ) -> str | None:
        """Write the segment holding ``run``'s records (cached: it is immutable); its
        name, or None if a piece is gone or not as planned (another compactor got there
        first, or the listing was torn)."""
        unknown = [p for p in run if p.name not in known]
        fetched = iter(await self.reader.fetch(key, directory, unknown))
        envs = [known[p.name] if p.name in known else next(fetched) for p in run]
        if not as_planned(run, envs):
            return None
        records: list[bytes] = []
        for piece, env in zip(run, envs, strict=True):
            assert env is not None and piece.end is not None
            records.extend(decode_records(env, piece.skip, piece.end - piece.start))
        start, end = run[0].start, run[-1].end
        assert end is not None
        name = segment_name(start, end)
        path = directory + name
        data = encode_records(records, {"n": len(records)}, bind=path)
        await self.ctx.blob.put(path, data)
        self.ctx.state(LogWriters).get(directory).remember(name, data)  # rewritten longer next
        await self.ctx.put_immutable([path], [data], limits.IMMUTABLE_TTL)
        return name


def _by_size(run: list[Piece], known: dict[str, codec.Envelope], limit: int) -> list[list[Piece]]:
    """``run`` cut where its pieces' record bytes would pass ``limit`` (a piece not read
    ends a part: it cannot be merged)."""
    parts: list[list[Piece]] = [[]]
    size = 0
    for piece in run:
        env = known.get(piece.name)
        if env is None:
            parts.append([])
            size = 0
            continue
        if parts[-1] and size + len(env.payload) > limit:
            parts.append([])
            size = 0
        parts[-1].append(piece)
        size += len(env.payload)
    return parts
