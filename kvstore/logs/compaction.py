"""Compaction: merge old chunks (and small segments) into segments.

Safe with concurrent readers and writers (tests/test_logs.py, and the multi-process
harness tests/stress_logs.py): a segment is durable before anything it replaces is
deleted, deletions go in log order, a reader that meets a vanished object plans again, and
only chunks older than ``limits.MIN_AGE_MS`` by the object store's clock are merged or
deleted, so no writer can meet a removed slot, whatever the clients' clocks say.

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
from .model import Piece, as_planned, decode_records, encode_records
from .reader import LogReader
from .state import Writer


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

    async def _merge(
        self, key: str, directory: str, run: list[Piece], known: dict[str, codec.Envelope]
    ) -> int:
        unknown = [p for p in run if p.name not in known]
        fetched = iter(await self.reader.fetch(key, directory, unknown))
        envs = [known[p.name] if p.name in known else next(fetched) for p in run]
        if not as_planned(run, envs):
            return 0  # another compactor got there first, or the listing was torn
        records: list[bytes] = []
        for piece, env in zip(run, envs, strict=True):
            assert env is not None and piece.end is not None
            records.extend(decode_records(env, piece.skip, piece.end - piece.start))
        start, end = run[0].start, run[-1].end
        assert end is not None
        name = segment_name(start, end)
        data = encode_records(records, {"n": len(records)}, bind=directory + name)
        await self.ctx.blob.put(directory + name, data)
        for piece in run:  # ascending: every prefix of this loop leaves a valid log
            await self.ctx.blob.delete(directory + piece.name)
        self.ctx.stats.add("log.compactions")
        return len(run)
