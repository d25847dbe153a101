"""Append logs (session histories): immutable chunks, many writers, no locks.

Layout below ``{base}log/{enc(key)}/`` (the README's table):

========================== =================================================================
``c/{first:020d}``          chunk: records ``[first, first + n)``; created once, by conditional
                            create, at the log's tail; never rewritten
``s/{first:020d}-{end:020d}`` segment: records ``[first, end)`` merged from chunks by compaction
``m/{mark:020d}``           mark: records below ``mark`` are gone (``trim``, ``delete``)
========================== =================================================================

Records are msgpack-framed inside the usual envelope (zstd, checksum). Sequence numbers are
absolute and only grow; index 0 of ``range`` is the first record at or above the highest
mark.

* **Appends** claim the tail with a conditional create of ``c/{tail}``. The loser learns the
  winner's record count from its chunk and retries one chunk further: any number of writers
  in any number of processes, no locks, no Redis. Readers never see record N+1 without N
  (a chunk is only created at the tail, after the chunk before it exists).
* **Retry safety.** Every chunk carries a random batch id: a writer whose create had an
  unknown outcome recognises its own chunk and does not write the records twice.
* **Group commit.** Appends to one log from one process, made while a chunk write is in
  flight, go into the next chunk together. A lone writer's append costs one PUT; its tail is
  kept in memory (no LIST), and re-read from the store once it is older than
  ``TAIL_REFRESH_MS``.
* **Nothing young is ever deleted.** Compaction, trim and delete remove a chunk only when it
  is older than ``MIN_AGE_MS`` (10 min, much more than the tail refresh): a writer with a
  stale tail can then only meet chunks that still exist, never re-create a removed one.
  Marks make removed records invisible at once; old objects are deleted behind them.
  A chunk is dated just before each attempt to create it, so its age counts from its
  create however long its writer fought for the tail.
* **Reads** plan from one LIST (cached) which objects cover the range, fetch those
  concurrently and decode only the records asked for. Chunks and segments are immutable, so
  caches keep them without invalidation. An object that vanished under a reader (compacted),
  or that holds another number of records than the plan says (a listing that was not a
  snapshot), makes it re-plan.
* **Compaction** merges old chunks into segments, by ``compact()`` or automatically: a
  writer that has left AUTO_COMPACT_CHUNKS chunks older than MIN_AGE_MS starts one in a
  background task (never in an append's path; ``close()`` cancels it).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from . import codec
from .blob.base import AmbiguousWriteError
from .cache import Fill
from .errors import ConfigurationError, CorruptDataError, KVStoreError
from .values import to_bytes

if TYPE_CHECKING:
    from .api import AsyncKVStore

SEQ_DIGITS = 20
MIN_AGE_MS = 600_000
TAIL_REFRESH_MS = 60_000
CHUNK_MAX_RECORDS = 10_000
CHUNK_MAX_BYTES = 8 << 20
SEGMENT_RECORDS = 10_000
SEGMENT_BYTES = 16 << 20
AGE_BATCH = 32  # chunks read at once when looking for old ones (compaction, cleanup)
SEGMENT_ZSTD_LEVEL = 9  # segments are written once, by compaction: smaller at little cost
AUTO_COMPACT = True
AUTO_COMPACT_CHUNKS = 64  # a writer compacts in the background after leaving this many old chunks
_STOP_WAIT_S = 10.0  # how long close() waits for cancelled compactions to unwind
MAX_WRITERS = 4096  # logs whose tail a process keeps in memory; idle ones are forgotten
IMMUTABLE_TTL = 3600.0
TAIL_READ_BYTES = 16 << 10
"""A cold plan reads this much of the tail chunk: the whole chunk when it is smaller (see
``Logs.plan``)."""
_MAX_CLAIMS = 1000
_REPLANS = 5


class _Replan(Exception):
    """The listing changed under a reader (an object was compacted away): plan again."""


@dataclass(frozen=True)
class Piece:
    """One object of a log and the records ``[start, end)`` read from it; ``end`` None =
    unknown (last chunk). ``skip``: records at the object's beginning that are not part of
    the piece (a segment that starts below the previous piece's end, see cover)."""

    name: str  # relative to the log's directory: c/..., s/...
    start: int
    end: int | None
    skip: int = 0

    @property
    def count(self) -> int:
        """The records the object holds, if the plan is right (end known)."""
        return self.skip + (self.end if self.end is not None else self.start) - self.start

    @property
    def segment(self) -> bool:
        return self.name.startswith("s/")


@dataclass(frozen=True)
class Plan:
    """Which objects hold the log's live records ``[first, tail)``, in order."""

    mark: int
    pieces: tuple[Piece, ...]
    tail: int
    names: tuple[str, ...]  # every object of the log, for cleanup

    @property
    def first(self) -> int:
        return max(self.mark, self.pieces[0].start) if self.pieces else self.tail

    @property
    def length(self) -> int:
        return max(0, self.tail - self.first)

    def to_bytes(self) -> bytes:
        pieces = [[p.name, p.start, p.end, p.skip] for p in self.pieces]
        return bytes(msgpack.packb([self.mark, pieces, self.tail, list(self.names)]))

    @classmethod
    def from_bytes(cls, data: bytes) -> Plan:
        mark, pieces, tail, names = msgpack.unpackb(data)
        return cls(mark, tuple(Piece(*p) for p in pieces), tail, tuple(names))


def _seq(n: int) -> str:
    return f"{n:0{SEQ_DIGITS}d}"


def _parse(names: Sequence[str]) -> tuple[dict[int, str], list[tuple[int, int, str]], int]:
    """Chunks by start, segments as (start, end, name), and the highest mark."""
    chunks: dict[int, str] = {}
    segments: list[tuple[int, int, str]] = []
    mark = 0
    for name in names:
        kind, _, rest = name.partition("/")
        try:
            if kind == "c":
                chunks[int(rest)] = name
            elif kind == "s":
                a, _, b = rest.partition("-")
                segments.append((int(a), int(b), name))
            elif kind == "m":
                mark = max(mark, int(rest))
        except ValueError:
            continue  # not ours: ignore
    return chunks, segments, mark


def cover(names: Sequence[str]) -> tuple[int, list[Piece]]:
    """(mark, the pieces covering the log from its first live record to its tail).

    Segments win over chunks where both cover a position; a chunk's end is the next
    object's start (chunks are contiguous; a compacted run is replaced by a segment that
    starts where the run did). The walk starts at the highest mark; any gap above it means
    the listing raced a compaction and raises _Replan. Each piece starts where the previous
    one ended: segments cut by compactions with different views (one planned before a trim,
    one after) can overlap without one holding the other, and are then read from the
    walk's position on (``skip``), never from their own start.
    """
    chunks, segments, mark = _parse(names)
    starts = sorted(set(chunks) | {a for a, _, _ in segments})
    pieces: list[Piece] = []
    pos = mark
    while True:
        covering = [s for s in segments if s[0] <= pos < s[1]]
        if covering:
            a, b, name = max(covering, key=lambda s: s[1])
            skip = pos - a if pieces else 0  # the first piece may start below the mark
            pieces.append(Piece(name, a + skip, b, skip))
            pos = b
            continue
        below = [s for s in chunks if s <= pos]
        if below and (not pieces or max(below) == pos):
            # Past the first piece a chunk must start exactly where the previous piece
            # ended; one starting below is a leftover inside a segment (not yet deleted)
            # whose computed end would be wrong - reading it would repeat records.
            start = max(below)
            later = [s for s in starts if s > start]
            end = later[0] if later else None
            if (end is None and pos < start + CHUNK_MAX_RECORDS) or (end is not None and pos < end):
                pieces.append(Piece(chunks[start], start, end))
                if end is None:
                    break
                pos = end
                continue
        if any(s > pos for s in starts):
            # Records above this point exist but nothing holds `pos`: the listing raced a
            # compaction (it saw chunks deleted but not the segment replacing them). A
            # removed prefix always leaves a mark, so this is never a legitimate state.
            raise _Replan(f"gap at {pos}")
        break
    return mark, pieces


def _encode_records(records: Sequence[bytes], meta: dict[str, Any]) -> bytes:
    """A segment's envelope: compaction runs off the request path, so it compresses harder."""
    packed = bytes(msgpack.packb(list(records)))
    return codec.encode(packed, meta=meta, count=len(records), level=SEGMENT_ZSTD_LEVEL)


def _decode_records(env: codec.Envelope, skip: int, take: int) -> list[bytes]:
    """Records ``[skip, skip + take)`` of an object: one C-level unpack of the whole array
    (faster than skipping record by record in Python even for a short tail)."""
    try:
        records = msgpack.unpackb(env.payload, raw=True)
    except Exception as exc:  # a checksummed object that does not parse: not ours
        raise CorruptDataError(f"undecodable log records: {exc}") from exc
    if not isinstance(records, list):
        raise CorruptDataError("undecodable log records: not an array")
    out = records[skip : skip + take]
    if not all(type(record) is bytes for record in out):
        raise CorruptDataError("undecodable log records: a record is not bytes")
    return out


def _normalise(start: int, end: int, length: int) -> tuple[int, int] | None:
    """Redis LRANGE indices -> [lo, hi) offsets, or None for an empty range."""
    if start < 0:
        start = max(0, length + start)
    if end < 0:
        end = length + end
    end = min(end, length - 1)
    if start > end or start >= length:
        return None
    return start, end + 1


class _Writer:
    """This process's appender for one log on one event loop: tail and group-commit queue."""

    def __init__(self) -> None:
        self.tail: int | None = None
        self.first = 0
        self.checked_ms = 0
        self.queue: list[tuple[list[bytes], asyncio.Future[int]]] = []
        self.busy = False
        self.written: list[int] = []  # dates of chunks written since compaction, ascending
        self.compacting: asyncio.Task[Any] | None = None  # this log's automatic compaction


class Logs:
    """The log operations of one store view (a namespace or the root)."""

    def __init__(self, store: AsyncKVStore) -> None:
        self._s = store
        self._r = store._r

    # -- names -----------------------------------------------------------------------------

    def dir(self, key: str) -> str:
        """The log's directory (relative to the store root), ending in '/'."""
        from .keys import encode_name

        directory = f"{self._s._base}log/{encode_name(key)}/"
        self._r.blob.check_path(directory + "s/" + _seq(0) + "-" + _seq(0))
        return directory

    def _plan_key(self, directory: str) -> str:
        return directory + "plan"  # a cache key only; no object has this name

    # -- planning --------------------------------------------------------------------------

    async def _list(self, directory: str) -> list[str]:
        names: list[str] = []
        async for page in self._r.blob.list_pages(directory):
            names.extend(p[len(directory) :] for p in page)
        return names

    async def plan(
        self,
        key: str,
        directory: str,
        fresh: bool = False,
        found: dict[str, codec.Envelope] | None = None,
    ) -> Plan:
        """The log's plan: from the cache, else one LIST (+ one read of the tail chunk).

        The tail chunk's record count is in its verified 32-byte header; the read asks for
        its first ``TAIL_READ_BYTES``, which is usually the whole chunk (one append's
        records). Then the chunk is decoded, cached (it is immutable) and handed to the
        caller in ``found``, so a range that ends at the tail needs no second round trip.
        A big tail chunk costs the header's worth of reading, never its records."""
        cache_key = self._r.cache_prefix + self._plan_key(directory)
        lookup = None
        if not fresh:
            lookup = await self._s._cache_safely(self._r.cache.lookup([cache_key]), None)
            if lookup is not None and lookup.values[0]:
                try:
                    return Plan.from_bytes(lookup.values[0])
                except Exception:
                    self._r.stats.add("cache.corrupt")
        for _ in range(_REPLANS):
            names = await self._list(directory)
            try:
                mark, pieces = cover(names)
            except _Replan:
                self._r.stats.add("log.replans")
                continue
            tail = mark
            if pieces:
                last = pieces[-1]
                if last.end is None:
                    # One ranged read: the count from the header, the records too if small.
                    path = directory + last.name
                    head = await self._r.blob.get_head(path, TAIL_READ_BYTES)
                    if head is None:
                        self._r.stats.add("log.replans")
                        continue
                    count = codec.peek_count(head.data, key=key, path=self._s._where(path))
                    pieces[-1] = Piece(last.name, last.start, last.start + count)
                    if len(head.data) < TAIL_READ_BYTES:  # the whole chunk
                        await self._keep_tail(key, path, head.data, last.name, found)
                tail = max(mark, pieces[-1].end or mark)
            plan = Plan(mark, tuple(pieces), tail, tuple(names))
            if lookup is not None:
                fill = Fill(cache_key, plan.to_bytes(), self._r.cache_ttl)
                await self._s._cache_safely(self._r.cache.fill([fill], lookup.ticket), None)
            return plan
        raise KVStoreError(f"log {key!r} kept changing while it was being listed; try again")

    async def _keep_tail(
        self, key: str, path: str, data: bytes, name: str, found: dict[str, codec.Envelope] | None
    ) -> None:
        """A tail chunk read whole while planning: cache it, and give it to the caller. A
        damaged body is left for the read that needs its records to report."""
        try:
            env = codec.decode(data, key=key, path=self._s._where(path))
        except CorruptDataError:
            return
        if found is not None:
            found[name] = env
        fill = Fill(self._r.cache_prefix + path, data, IMMUTABLE_TTL)
        await self._s._cache_safely(self._r.cache.put_immutable([fill]), None)

    async def _fetch(
        self, key: str, directory: str, pieces: Sequence[Piece]
    ) -> list[codec.Envelope | None]:
        """Decoded pieces, through the cache (they are immutable); None where gone."""
        paths = [directory + p.name for p in pieces]
        cache_keys = [self._r.cache_prefix + p for p in paths]
        lookup = await self._s._cache_safely(self._r.cache.lookup(cache_keys), None)
        raw: list[bytes | None] = lookup.values if lookup else [None] * len(paths)
        missing = [i for i, v in enumerate(raw) if v is None]
        if len(paths) - len(missing):
            self._r.stats.add("cache.hits", len(paths) - len(missing))
        if missing:
            blobs = await self._r.blob.get_many([paths[i] for i in missing], self._r.concurrency)
            fills = []
            for i, found in zip(missing, blobs, strict=True):
                if found is not None:
                    raw[i] = found.data
                    fills.append(Fill(cache_keys[i], found.data, IMMUTABLE_TTL))
            if fills:
                await self._s._cache_safely(self._r.cache.put_immutable(fills), None)
        return [
            None if data is None else codec.decode(data, key=key, path=self._s._where(path))
            for data, path in zip(raw, paths, strict=True)
        ]

    # -- reading ---------------------------------------------------------------------------

    async def range(self, key: str, start: int, end: int) -> list[bytes]:
        for name, value in (("start", start), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigurationError(f"{name} must be an int, not {value!r}")
        directory = self.dir(key)
        fresh = False
        known: dict[str, codec.Envelope] = {}  # immutable objects: kept across re-plans
        for _ in range(_REPLANS):
            plan = await self.plan(key, directory, fresh, known)
            window = _normalise(start, end, plan.length)
            if window is None:
                return []
            lo, hi = plan.first + window[0], plan.first + window[1]
            pieces = [p for p in plan.pieces if p.start < hi and (p.end or hi) > lo]
            wanted = [p for p in pieces if p.name not in known]
            for piece, env in zip(wanted, await self._fetch(key, directory, wanted), strict=True):
                if env is not None:
                    known[piece.name] = env
            envs = [known.get(p.name) for p in pieces]
            if not _as_planned(pieces, envs):
                fresh = True  # compacted away under us, or a torn listing: plan again
                self._r.stats.add("log.replans")
                if all(env is not None for env in envs):
                    self._r.stats.add("log.torn_listings")
                continue
            out: list[bytes] = []
            for piece, env in zip(pieces, envs, strict=True):
                assert env is not None
                skip = max(0, lo - piece.start)
                take = min(hi, piece.end or hi) - piece.start - skip
                out.extend(_decode_records(env, piece.skip + skip, take))
            return out
        raise KVStoreError(f"log {key!r} kept changing while it was being read; try again")

    async def length(self, key: str) -> int:
        return (await self.plan(key, self.dir(key))).length

    # -- appending -------------------------------------------------------------------------

    def _writer(self, directory: str) -> _Writer:
        loop_key = (id(asyncio.get_running_loop()), directory)
        writers = self._r.writers
        writer = writers.get(loop_key)
        if writer is None:
            if len(writers) >= MAX_WRITERS:  # forget idle logs, oldest first
                idle = [k for k, w in writers.items() if not w.busy and not w.queue]
                for k in idle[: len(idle) // 2 + 1]:
                    del writers[k]
            writer = writers[loop_key] = _Writer()
        return writer

    async def append(self, key: str, values: Sequence[Any]) -> int:
        if not values:
            raise ConfigurationError("append needs at least one value")
        if len(values) > CHUNK_MAX_RECORDS:
            raise ConfigurationError(
                f"append takes at most {CHUNK_MAX_RECORDS} values per call (one chunk); "
                "split larger batches"
            )
        records = [to_bytes(v) for v in values]
        directory = self.dir(key)
        writer = self._writer(directory)
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        writer.queue.append((records, done))
        if not writer.busy:
            writer.busy = True
            task = asyncio.ensure_future(self._drain(key, directory, writer))
            task.add_done_callback(_consume)
        # Shielded: a caller that stops waiting does not cancel the batch it joined.
        return await asyncio.shield(done)

    async def _drain(self, key: str, directory: str, writer: _Writer) -> None:
        try:
            while writer.queue:
                batch = _take_batch(writer.queue)
                records = [r for recs, _ in batch for r in recs]
                try:
                    first = await self._s._commit(
                        [self._plan_key(directory)],
                        functools.partial(self._write_chunk, key, directory, writer, records),
                    )
                except BaseException as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                position = first
                for recs, done in batch:
                    position += len(recs)
                    if not done.done():
                        done.set_result(position - writer.first)
        finally:
            writer.busy = False
        # Compact once this writer has left enough chunks that are old enough to merge (it
        # knows when it wrote them: no request is spent finding out) - in a background task,
        # never in an append's path; one at a time per log and process; close() stops it.
        if AUTO_COMPACT and (writer.compacting is None or writer.compacting.done()):
            old = bisect.bisect_right(writer.written, self._r.clock() - MIN_AGE_MS)
            if old >= AUTO_COMPACT_CHUNKS:
                del writer.written[:old]
                self._compact_in_background(key, directory, writer)

    async def _write_chunk(
        self, key: str, directory: str, writer: _Writer, records: list[bytes]
    ) -> int:
        """Create one chunk at the tail; returns its first sequence number.

        Each attempt is dated (``t``) just before its create, and re-reads the tail first if
        what this writer knows of it is older than TAIL_REFRESH_MS: a claim loop can last
        long when many writers race, and a chunk dated when the append *began* would look
        old the moment it lands - compaction could delete it while another writer still
        holds its slot as a fresh tail, and that writer's create would then succeed inside
        a segment (an acknowledged record lost)."""
        batch_id = os.urandom(8).hex()
        packed = bytes(msgpack.packb(list(records)))
        for claims in range(_MAX_CLAIMS):
            if writer.tail is None or self._r.clock() - writer.checked_ms > TAIL_REFRESH_MS:
                # (also: forgotten by a trim/delete in this process meanwhile)
                await self._refresh(key, directory, writer)
            assert writer.tail is not None
            tail = writer.tail
            now = self._r.clock()
            meta = {"n": len(records), "b": batch_id, "t": now}
            data = codec.encode(packed, meta=meta, count=len(records))
            path = f"{directory}c/{_seq(tail)}"
            try:
                created = await self._r.blob.put_if_absent(path, data) is not None
            except AmbiguousWriteError:
                created = False
            if not created:
                found = await self._r.blob.get(path)
                if found is None:
                    continue  # an ambiguous create that did not land: try the same slot
                env = codec.decode(found.data, key=key, path=self._s._where(path))
                if env.meta.get("b") != batch_id:
                    # Another writer's chunk: step over it (and re-list now and then, to
                    # jump ahead when many writers are busy).
                    writer.tail = tail + int(env.meta.get("n", 0))
                    self._r.stats.add("log.claim_conflicts")
                    if claims % 16 == 15:
                        await self._refresh(key, directory, writer)
                    continue
                # Our own chunk: a create whose success we did not hear about.
            writer.tail = tail + len(records)
            writer.checked_ms = now
            if AUTO_COMPACT:
                writer.written.append(now)
            fill = Fill(self._r.cache_prefix + path, data, IMMUTABLE_TTL)
            await self._s._cache_safely(self._r.cache.put_immutable([fill]), None)
            return tail
        raise KVStoreError(f"append to {key!r}: could not claim the tail; too many writers?")

    async def _refresh(self, key: str, directory: str, writer: _Writer) -> None:
        listed = self._r.clock()  # the tail is known as of the listing, not of its answer
        plan = await self.plan(key, directory, fresh=True)
        writer.tail = max(plan.tail, writer.tail or 0)
        writer.first = plan.first
        writer.checked_ms = listed

    # -- removing --------------------------------------------------------------------------

    async def _set_mark(self, key: str, directory: str, mark: int) -> None:
        data = codec.encode(b"", meta={"t": self._r.clock()})
        path = f"{directory}m/{_seq(mark)}"
        with contextlib.suppress(AmbiguousWriteError):  # an existing mark is the same mark
            await self._r.blob.put_if_absent(path, data)

    async def trim(self, key: str, start: int) -> int:
        """Drop the records before index ``start`` (negative: keep the last ``-start``);
        returns the new length. Like LTRIM key start -1."""
        if isinstance(start, bool) or not isinstance(start, int):
            raise ConfigurationError(f"start must be an int, not {start!r}")
        directory = self.dir(key)

        async def cut() -> int:
            plan = await self.plan(key, directory, fresh=True)
            length = plan.length
            keep_from = max(0, length + start) if start < 0 else min(start, length)
            mark = plan.first + keep_from
            if keep_from > 0:
                await self._set_mark(key, directory, mark)
                self._forget(directory, mark)
                await self._remove_superseded(directory, plan.names, mark, plan.tail)
            return plan.tail - mark

        return await self._s._commit([self._plan_key(directory)], cut)

    async def delete(self, key: str) -> bool:
        """Remove the log; True if it held records. A mark at the tail keeps sequence
        numbers growing, so a writer that appends meanwhile starts a new log, never a gap."""
        directory = self.dir(key)

        async def remove() -> bool:
            known: int | None
            try:
                plan = await self.plan(key, directory, fresh=True)
                names, tail, held = plan.names, plan.tail, plan.length > 0
                known = tail
            except CorruptDataError:
                # The tail chunk is unreadable, so its end is unknown: put the mark past
                # anything it could hold. Deleting is how a damaged log is repaired.
                names = tuple(await self._list(directory))
                chunks, segments, mark = _parse(names)
                starts = [*chunks, *(b for _, b, _ in segments), mark]
                tail, held, known = max(starts) + CHUNK_MAX_RECORDS, True, None
            if not names:
                return False
            if held or not any(n.startswith("m/") for n in names):
                await self._set_mark(key, directory, tail)
            self._forget(directory, tail)
            await self._remove_superseded(directory, names, tail, known)
            return held

        return await self._s._commit([self._plan_key(directory)], remove)

    def _forget(self, directory: str, first: int) -> None:
        """The log now starts at ``first``: this process's appenders count lengths from
        there and re-read the tail before their next chunk. Appenders in other processes
        notice within TAIL_REFRESH_MS."""
        for (_, writer_dir), writer in self._r.writers.items():
            if writer_dir == directory:
                writer.tail = None
                writer.first = first

    async def _remove_superseded(
        self, directory: str, names: Sequence[str], mark: int, tail: int | None = None
    ) -> int:
        """Delete what no reader needs: objects wholly below ``mark``, chunks that a
        segment covers (left by an interrupted compaction), segments inside bigger ones,
        and lower marks. Chunks only once old (see the module docstring)."""
        chunks, segments, top_mark = _parse(names)
        mark = max(mark, top_mark)
        starts = sorted({*chunks, *(a for a, _, _ in segments)})

        def chunk_end(start: int) -> int | None:
            later = [s for s in starts if s > start]
            return later[0] if later else tail

        def covered(a: int, b: int | None, name: str) -> bool:
            if b is not None and b <= mark:
                return True
            return any(
                sa <= a and b is not None and b <= sb and sname != name
                for sa, sb, sname in segments
            )

        doomed = [n for a, b, n in segments if covered(a, b, n)]
        candidates = [n for s, n in sorted(chunks.items()) if covered(s, chunk_end(s), n)]
        doomed += sorted(await self._old_chunks(directory, candidates))
        doomed += [f"m/{_seq(m)}" for m in _marks(names) if m < mark]
        for name in doomed:  # ascending: a crash leaves a consistent log
            await self._r.blob.delete(directory + name)
        return len(doomed)

    async def _old_chunks(
        self, directory: str, names: Sequence[str], key: str = ""
    ) -> dict[str, codec.Envelope]:
        """The chunks among ``names`` (in log order) older than MIN_AGE_MS - their date is
        inside - decoded, so a caller that merges them does not read them again.

        Read a batch (``AGE_BATCH``, at most ``concurrency``) at a time, stopping after the
        first batch that holds a young chunk: chunk dates grow along the log (a chunk is
        dated just before its create, and its slot is only known once the chunk before
        exists), so the rest are young too. Compaction and cleanup then read the old chunks
        plus at most one batch, not every chunk of the last 10 minutes each time.
        """
        step = max(1, min(AGE_BATCH, self._r.concurrency))
        old: dict[str, codec.Envelope] = {}
        for i in range(0, len(names), step):
            part = names[i : i + step]
            pieces = [Piece(n, 0, None) for n in part]
            try:
                envs = await self._fetch(key, directory, pieces)
            except CorruptDataError:  # a damaged chunk is left where it is; the rest go on
                envs = []
                for piece in pieces:
                    try:
                        envs += await self._fetch(key, directory, [piece])
                    except CorruptDataError:
                        envs.append(None)
            now = self._r.clock()
            young = False
            for name, env in zip(part, envs, strict=True):
                if env is None:
                    continue
                if now - int(env.meta.get("t", now)) >= MIN_AGE_MS:
                    old[name] = env
                else:
                    young = True
            if young:
                break
        return old

    # -- listing ---------------------------------------------------------------------------

    async def live_keys(self, prefix: object) -> list[str]:
        """Keys of the logs that hold records, from one listing of the log area (plus, for
        a log trimmed into its last chunk, a read of that chunk)."""
        from .keys import decode_name, encode_prefix

        area = f"{self._s._base}log/"
        by_log: dict[str, list[str]] = {}
        async for page in self._r.blob.list_pages(area + encode_prefix(prefix)):
            for path in page:
                encoded, sep, rest = path[len(area) :].partition("~/")
                if sep:
                    by_log.setdefault(encoded + "~", []).append(rest)
        live = []
        for encoded, names in by_log.items():
            try:
                key = decode_name(encoded)
                mark, pieces = cover(names)
            except (ValueError, _Replan):
                continue
            if not pieces:
                continue
            last = pieces[-1]
            if last.end is not None and last.end <= mark:
                continue
            trimmed_into_last = last.end is None and last.start < mark
            if trimmed_into_last and await self.length(key) == 0:
                continue
            live.append(key)
        return sorted(live)

    # -- compaction ------------------------------------------------------------------------

    async def compact(self, key: str) -> int:
        """Merge old chunks (and small segments) into segments; returns objects removed.

        Safe with concurrent readers and writers (tests/test_logs.py, and the multi-process
        harness tests/stress_logs.py): the segment is durable before anything it replaces
        is deleted, a reader that meets a vanished object plans again, and only chunks older
        than MIN_AGE_MS are merged or deleted, so no writer can meet a removed slot.
        """
        directory = self.dir(key)
        run = functools.partial(self._compact, key, directory)
        return await self._s._commit([self._plan_key(directory)], run)

    def _compact_in_background(self, key: str, directory: str, writer: _Writer) -> None:
        task = asyncio.ensure_future(self._auto_compact(key, directory))
        writer.compacting = task
        self._r.background.add(task)
        task.add_done_callback(self._r.background.discard)
        task.add_done_callback(_consume)

    async def _auto_compact(self, key: str, directory: str) -> None:
        """compact(), not shielded (so close() can stop it), errors counted, not raised:
        the next trigger tries again."""
        try:
            await self._compact(key, directory)
            self._r.stats.add("log.auto_compactions")
        except asyncio.CancelledError:
            raise
        except Exception:
            self._r.stats.add("log.auto_compaction_errors")
        finally:
            await self._s._invalidate([self._plan_key(directory)])

    async def stop_background(self) -> None:
        """Cancel the automatic compactions of this store's resources (close() calls this)
        and wait briefly for them to unwind. An interrupted compaction leaves the log
        consistent: a segment is durable before what it replaces is deleted, deletions go
        in log order, and leftovers are removed by the next compaction."""
        here: list[asyncio.Task[Any]] = []
        loop = asyncio.get_running_loop()
        for task in list(self._r.background):
            if task.done():
                continue
            if task.get_loop() is loop:
                task.cancel()
                here.append(task)
            elif not task.get_loop().is_closed():  # a store used from several loops
                with contextlib.suppress(RuntimeError):
                    task.get_loop().call_soon_threadsafe(task.cancel)
        if here:
            await asyncio.wait(here, timeout=_STOP_WAIT_S)

    async def _compact(self, key: str, directory: str) -> int:
        plan = await self.plan(key, directory, fresh=True)
        pieces = [p for p in plan.pieces if p.end is not None]
        if plan.pieces and plan.pieces[-1].end is not None:
            pieces = list(pieces[:-1])  # never merge the tail chunk: it may be young
        chunk_names = [p.name for p in pieces if not p.segment]
        old = await self._old_chunks(directory, chunk_names, key)
        small = [p for p in pieces if p.segment and (p.end or p.start) - p.start < SEGMENT_RECORDS]
        for piece, env in zip(small, await self._fetch(key, directory, small), strict=True):
            if env is not None:
                old[piece.name] = env  # small segments may be merged again
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
                records + count > SEGMENT_RECORDS or size + len(env.payload) > SEGMENT_BYTES
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
        names = await self._list(directory)
        return removed + await self._remove_superseded(directory, names, plan.mark)

    async def _merge(
        self, key: str, directory: str, run: list[Piece], known: dict[str, codec.Envelope]
    ) -> int:
        unknown = [p for p in run if p.name not in known]
        fetched = iter(await self._fetch(key, directory, unknown))
        envs = [known[p.name] if p.name in known else next(fetched) for p in run]
        if not _as_planned(run, envs):
            return 0  # another compactor got there first, or the listing was torn
        records: list[bytes] = []
        for piece, env in zip(run, envs, strict=True):
            assert env is not None and piece.end is not None
            records.extend(_decode_records(env, piece.skip, piece.end - piece.start))
        start, end = run[0].start, run[-1].end
        assert end is not None
        name = f"s/{_seq(start)}-{_seq(end)}"
        await self._r.blob.put(directory + name, _encode_records(records, {"n": len(records)}))
        for piece in run:  # ascending: every prefix of this loop leaves a valid log
            await self._r.blob.delete(directory + piece.name)
        self._r.stats.add("log.compactions")
        return len(run)


def _as_planned(pieces: Sequence[Piece], envs: Sequence[codec.Envelope | None]) -> bool:
    """Every piece is there and holds the records the plan says (its header's count).

    A listing is not always a snapshot (a local directory read in several batches while
    chunks are deleted): a chunk missing from it makes the chunk before look longer than it
    is. Reading it as planned would skip records; merging it would name a segment wrongly.
    """
    return all(
        env is not None and (piece.end is None or env.count == piece.count)
        for piece, env in zip(pieces, envs, strict=True)
    )


def _marks(names: Sequence[str]) -> list[int]:
    out = []
    for name in names:
        if name.startswith("m/"):
            try:
                out.append(int(name[2:]))
            except ValueError:
                continue
    return out


def _take_batch(
    queue: list[tuple[list[bytes], asyncio.Future[int]]],
) -> list[tuple[list[bytes], asyncio.Future[int]]]:
    """Pop the appends that fit in one chunk (at least one, however large)."""
    taken = 0
    size = 0
    count = 0
    for records, _ in queue:
        records_size = sum(len(r) for r in records)
        too_many = count + len(records) > CHUNK_MAX_RECORDS
        if taken and (too_many or size + records_size > CHUNK_MAX_BYTES):
            break
        taken += 1
        count += len(records)
        size += records_size
    batch = queue[:taken]
    del queue[:taken]
    return batch


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
