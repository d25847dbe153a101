"""Appending: claim the tail with a conditional create; many writers, no locks.

* **Appends** claim the tail with a conditional create of ``c/{tail}``. The loser learns the
  winner's record count from its chunk and retries one chunk further: any number of writers
  in any number of processes, no locks, no Redis. Readers never see record N+1 without N
  (a chunk is only created at the tail, after the chunk before it exists).
* **Retry safety.** Every chunk carries a random batch id: a writer whose create had an
  unknown outcome recognises its own chunk and does not write the records twice.
* **Group commit.** Appends to one log from one process, made while a chunk write is in
  flight, go into the next chunk together. A lone writer's append costs one PUT; its tail is
  kept in memory (no LIST), and re-read from the store once it is older than
  ``limits.TAIL_REFRESH_MS``.
* **Conditional appends** (``expect_next``): the records must get exactly that sequence
  number, i.e. the log's tail must be there. The chunk is created at ``c/{expect_next}``
  only when this process knows (from its last append or a listing at most
  ``limits.TAIL_REFRESH_MS`` old) that the tail is there; the conditional create then
  decides: one request when the tail is known, and of N racing writers exactly one wins.
  Losers get :class:`~kvstore.errors.ConflictError` and nothing is written. A conditional
  append is never grouped with others (its slot is its condition).
* A chunk is dated just before each attempt to create it, so its age counts from its
  create however long its writer fought for the tail (see :mod:`kvstore.logs.cleanup`).
* **Settling.** A writer that has left young chunks has them covered by a segment in the
  background (:meth:`kvstore.logs.compaction.Compactor.settle`) once it has been idle for
  ``limits.SETTLE_DELAY_S``, or at once after ``limits.SETTLE_CHUNKS`` chunks, so a cold
  read of the log costs a LIST and a few GETs at any age.
"""

from __future__ import annotations

import asyncio
import bisect
import os
from collections.abc import Sequence
from typing import Any

import msgpack

from .. import aio, codec
from ..blob.base import AmbiguousWriteError
from ..context import StoreContext
from ..convert import to_bytes
from ..errors import ConfigurationError, ConflictError, KVStoreError
from ..layout import chunk_name
from . import limits
from .compaction import Compactor
from .reader import LogReader
from .state import LogWriters, Pending, Writer


class LogWriter:
    """Appends to the logs of one store view."""

    def __init__(self, ctx: StoreContext, reader: LogReader, compactor: Compactor) -> None:
        self.ctx = ctx
        self.reader = reader
        self.compactor = compactor

    async def append(
        self, key: str, values: Sequence[Any], expect_next: int | None = None
    ) -> tuple[int, int]:
        """Append ``values`` as one atomic group; returns (the sequence number of the first,
        the log's length after them as this writer counts it). With ``expect_next``: only
        if the first gets exactly that sequence number, else ConflictError."""
        if expect_next is not None and (
            isinstance(expect_next, bool) or not isinstance(expect_next, int) or expect_next < 0
        ):
            raise ConfigurationError(f"expect_next must be an int >= 0, not {expect_next!r}")
        if not values:
            raise ConfigurationError("append needs at least one value")
        if len(values) > limits.CHUNK_MAX_RECORDS:
            raise ConfigurationError(
                f"append takes at most {limits.CHUNK_MAX_RECORDS} values per call (one "
                "chunk); split larger batches"
            )
        records = [to_bytes(v) for v in values]
        directory = self.reader.dir(key)
        writer = self.ctx.state(LogWriters).get(directory)
        done: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        writer.queue.append(Pending(records, done, expect_next))
        if not writer.busy:
            writer.busy = True
            aio.detach(self._drain(key, directory, writer))
        # Shielded: a caller that stops waiting does not cancel the batch it joined.
        return await asyncio.shield(done)

    async def _drain(self, key: str, directory: str, writer: Writer) -> None:
        try:
            while writer.queue:
                batch = _take_batch(writer.queue)
                records = [r for p in batch for r in p.records]
                expect = batch[0].expect_next

                async def write(records: list[bytes] = records, expect: int | None = expect) -> int:
                    return await self._write_chunk(key, directory, writer, records, expect)

                try:
                    first = await self.ctx.commit([self.reader.plan_key(directory)], write)
                except BaseException as exc:
                    for p in batch:
                        if not p.done.done():
                            p.done.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                position = first
                for p in batch:
                    if not p.done.done():
                        p.done.set_result((position, position + len(p.records) - writer.first))
                    position += len(p.records)
        finally:
            writer.busy = False
        if (
            limits.SETTLE
            and writer.unsettled
            and (writer.settling is None or writer.settling.done())
        ):
            writer.settling = self.compactor.settle_in_background(key, directory, writer)
        # Compact once this writer has left enough chunks that are old enough to merge (it
        # knows when it wrote them: no request is spent finding out) - in a background task,
        # never in an append's path; one at a time per log and process; close() stops it.
        if limits.AUTO_COMPACT and (writer.compacting is None or writer.compacting.done()):
            old = bisect.bisect_right(writer.written, self.ctx.clock() - limits.MIN_AGE_MS)
            if old >= limits.AUTO_COMPACT_CHUNKS:
                del writer.written[:old]
                self.compactor.start_in_background(key, directory, writer)

    async def _write_chunk(
        self,
        key: str,
        directory: str,
        writer: Writer,
        records: list[bytes],
        expect: int | None = None,
    ) -> int:
        """Create one chunk at the tail; returns its first sequence number.

        Each attempt is dated (``t``) just before its create, and re-reads the tail first if
        what this writer knows of it is older than TAIL_REFRESH_MS: a claim loop can last
        long when many writers race, and a chunk dated when the append *began* would look
        old the moment it lands - compaction could delete it while another writer still
        holds its slot as a fresh tail, and that writer's create would then succeed inside
        a segment (an acknowledged record lost)."""
        ctx = self.ctx
        batch_id = os.urandom(8).hex()
        packed = bytes(msgpack.packb(list(records)))
        for claims in range(limits.MAX_CLAIMS):
            if writer.tail is None or ctx.clock() - writer.checked_ms > limits.TAIL_REFRESH_MS:
                # (also: forgotten by a trim/delete in this process meanwhile)
                await self._refresh(key, directory, writer)
            assert writer.tail is not None
            tail = writer.tail
            if expect is not None and tail != expect:
                if tail < expect and claims == 0:  # what this process knows may be old
                    await self._refresh(key, directory, writer)
                    if writer.tail == expect:
                        continue
                ctx.stats.add("log.append_conflicts")
                raise ConflictError(
                    f"append to {key!r}: the next sequence number is {writer.tail}, not {expect}",
                    expected=expect,
                    actual=writer.tail,
                )
            now = ctx.clock()
            meta = {"n": len(records), "b": batch_id, "t": now}
            path = directory + chunk_name(tail)
            data = codec.encode(packed, meta=meta, count=len(records), bind=path)
            try:
                created = await ctx.blob.put_if_absent(path, data) is not None
            except AmbiguousWriteError:
                created = False
            if not created:
                found = await ctx.blob.get(path)
                if found is None:
                    continue  # an ambiguous create that did not land: try the same slot
                env = codec.decode(found.data, key=key, path=ctx.where(path), bound=path)
                if env.meta.get("b") != batch_id:
                    # Another writer's chunk: step over it (and re-list now and then, to
                    # jump ahead when many writers are busy). It is immutable and was read
                    # whole: cached, so a read of the records it holds (a session folding
                    # them) does not GET it again.
                    writer.tail = tail + int(env.meta.get("n", 0))
                    writer.remember(chunk_name(tail), found.data)
                    await ctx.put_immutable([path], [found.data], limits.IMMUTABLE_TTL)
                    ctx.stats.add("log.claim_conflicts")
                    if expect is not None:
                        continue  # raised above, now that the tail is known
                    if claims % 16 == 15:
                        await self._refresh(key, directory, writer)
                    continue
                # Our own chunk: a create whose success we did not hear about.
            writer.tail = tail + len(records)
            writer.checked_ms = now
            writer.unsettled += 1
            writer.remember(chunk_name(tail), data)
            if limits.AUTO_COMPACT:
                writer.written.append(now)
            await ctx.put_immutable([path], [data], limits.IMMUTABLE_TTL)
            return tail
        raise KVStoreError(f"append to {key!r}: could not claim the tail; too many writers?")

    async def _refresh(self, key: str, directory: str, writer: Writer) -> None:
        listed = self.ctx.clock()  # the tail is known as of the listing, not of its answer
        plan = await self.reader.plan(key, directory, fresh=True)
        writer.tail = max(plan.tail, writer.tail or 0)
        writer.first = max(plan.first, writer.first)  # (a trim since the listing moved it on)
        writer.checked_ms = listed


def _take_batch(queue: list[Pending]) -> list[Pending]:
    """Pop the appends that fit in one chunk (at least one, however large). A conditional
    append goes alone: its condition is its chunk's slot."""
    if queue[0].expect_next is not None:
        return [queue.pop(0)]
    taken = 0
    size = 0
    count = 0
    for pending in queue:
        records = pending.records
        if pending.expect_next is not None:
            break
        records_size = sum(len(r) for r in records)
        too_many = count + len(records) > limits.CHUNK_MAX_RECORDS
        if taken and (too_many or size + records_size > limits.CHUNK_MAX_BYTES):
            break
        taken += 1
        count += len(records)
        size += records_size
    batch = queue[:taken]
    del queue[:taken]
    return batch
