"""Reading a log: the plan (one LIST, cached), the pieces (immutable, cached), the records.

* **Plan.** Which objects hold the live records: from the cache, else one LIST plus one
  ranged read of the tail chunk (its verified header gives the record count; the read asks
  for ``limits.TAIL_READ_BYTES``, usually the whole chunk, which is then cached and handed
  to the read). Appends, trims, deletes and compactions invalidate it.
* **Pieces.** Chunks and segments are immutable: cached without invalidation, fetched
  concurrently (bounded by the store's concurrency).
* **Re-plans.** An object that vanished under a reader (compacted), or that holds another
  number of records than the plan says (a listing that was not a snapshot), makes it plan
  again and fetch only what it has not read yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from .. import codec
from ..context import Loaded, StoreContext, each
from ..errors import ConfigurationError, CorruptDataError, KVStoreError
from . import limits
from .model import (
    Piece,
    Plan,
    Replan,
    as_planned,
    cover,
    decode_records,
    normalise,
    shortfall,
)
from .state import LogWriters


class LogReader:
    """Plans and reads the logs of one store view."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx
        self.on_scattered: Callable[[str, str], None] | None = None
        """Called (key, directory) after a read that needed ``limits.SETTLE_READ_CHUNKS``
        chunks or more: the log wants settling (see :mod:`kvstore.logs.compaction`)."""

    def dir(self, key: str) -> str:
        """The log's directory (relative to the store root), ending in '/'."""
        layout = self.ctx.layout
        self.ctx.check(layout.longest_log_path(key))
        return layout.log_dir(key)

    def plan_key(self, directory: str) -> str:
        return self.ctx.layout.log_plan_key(directory)

    async def list_names(self, directory: str) -> list[str]:
        names: list[str] = []
        async for page in self.ctx.blob.list_pages(directory):
            names.extend(p[len(directory) :] for p in page)
        return names

    # -- the plan --------------------------------------------------------------------------

    async def plan(
        self,
        key: str,
        directory: str,
        fresh: bool = False,
        found: dict[str, codec.Envelope] | None = None,
        listed: Sequence[str] | None = None,
    ) -> Plan:
        """The log's plan: from the cache (unless ``fresh``), else one LIST and one read of
        the tail chunk, which lands in ``found`` when it was read whole. ``listed``: the
        log's object names from a listing the caller has just made (a records query's
        range listing): the plan is made from them instead of a LIST of its own, and not
        cached (that listing came before this lookup's ticket, so a write between the two
        could not stop the fill: a cached plan must come from a listing after its ticket)."""
        if fresh or listed is not None:
            return await self._make_plan(key, directory, found, listed)

        async def make(_: list[int]) -> list[Loaded[Plan | None]]:
            plan = await self._make_plan(key, directory, found)
            return [(plan, codec.seal(plan.to_bytes()), self.ctx.cache_ttl)]

        def unpack(entry: bytes) -> Plan:
            return Plan.from_bytes(codec.unseal(entry))

        (plan,) = await self.ctx.read_through([self.plan_key(directory)], each(unpack), make)
        assert plan is not None
        return plan

    async def _make_plan(
        self,
        key: str,
        directory: str,
        found: dict[str, codec.Envelope] | None,
        given: Sequence[str] | None = None,
    ) -> Plan:
        gaps: list[tuple[int, int]] = []
        for attempt in range(limits.REPLANS):
            if gaps:  # let a compaction that raced the listing finish
                await asyncio.sleep(limits.REPLAN_PAUSE_S * 2**attempt)
            listed = self.ctx.clock()  # the tail is known as of the listing
            # the caller's listing, on the first attempt only (a torn one: list again)
            names = list(given) if given is not None and attempt == 0 else None
            if names is None:
                names = await self.list_names(directory)
            try:
                plan = await self.plan_of(key, directory, names, found)
            except Replan as gap:
                gaps.append((gap.start, gap.end))
                continue
            if plan is None:
                continue
            if given is None or attempt > 0:  # a listing of its own: its time is known
                self.ctx.state(LogWriters).learn(directory, plan.tail, plan.first, listed)
            return plan
        if len(gaps) == limits.REPLANS and len(set(gaps)) == 1:
            start, end = gaps[0]
            raise CorruptDataError(
                f"records [{start}, {end}) of the log are missing: the object that held them "
                "is gone (listed in every one of "
                f"{limits.REPLANS} listings); `kvstore fsck --repair` marks them lost so "
                "the rest of the log can be used",
                key=key,
                path=self.ctx.where(directory),
            )
        raise KVStoreError(f"log {key!r} kept changing while it was being listed; try again")

    async def plan_of(
        self,
        key: str,
        directory: str,
        names: Sequence[str],
        found: dict[str, codec.Envelope] | None = None,
    ) -> Plan | None:
        """The plan of a listing (``names``, relative to the log's directory): the pieces,
        and the tail chunk's count from one ranged read (none if this process wrote it).
        Raises Replan on a gap; None if
        the tail chunk vanished meanwhile (list again)."""
        try:
            mark, pieces = cover(names)
        except Replan:
            self.ctx.stats.add("log.replans")
            raise
        tail = mark
        if pieces:
            last = pieces[-1]
            if last.end is None:
                # The chunk as this process's writer wrote it (immutable: no request), or
                # one ranged read: the count from the header, the records too if small.
                path = directory + last.name
                data = self.ctx.state(LogWriters).get(directory).recent.get(last.name)
                if data is None:
                    head = await self.ctx.blob.get_head(path, limits.TAIL_READ_BYTES)
                    if head is None:
                        self.ctx.stats.add("log.replans")
                        return None
                    data = head.data
                count = codec.peek_count(data, key=key, path=self.ctx.where(path))
                pieces[-1] = Piece(last.name, last.start, last.start + count)
                if len(data) < limits.TAIL_READ_BYTES:  # the whole chunk
                    await self._keep_tail(key, path, data, last.name, found)
            tail = max(mark, pieces[-1].end or mark)
        return Plan(mark, tuple(pieces), tail, tuple(names))

    async def _keep_tail(
        self, key: str, path: str, data: bytes, name: str, found: dict[str, codec.Envelope] | None
    ) -> None:
        """A tail chunk read whole while planning: cache it, and give it to the caller. A
        damaged body is left for the read that needs its records to report."""
        try:
            env = codec.decode(data, key=key, path=self.ctx.where(path), bound=path)
        except CorruptDataError:
            return
        if found is not None:
            found[name] = env
        await self.ctx.put_immutable([path], [data], limits.IMMUTABLE_TTL)

    # -- pieces ----------------------------------------------------------------------------

    async def fetch(
        self, key: str, directory: str, pieces: Sequence[Piece]
    ) -> list[codec.Envelope | None]:
        """Decoded pieces, through the cache (they are immutable); None where gone. A
        damaged cache entry is read again from the object store; a damaged object raises
        CorruptDataError naming it."""
        ctx = self.ctx
        paths = [directory + p.name for p in pieces]

        async def get(misses: list[int]) -> list[Loaded[codec.Envelope | None]]:
            blobs = await ctx.blob.get_many([paths[i] for i in misses], ctx.concurrency)
            loaded: list[Loaded[codec.Envelope | None]] = []
            for i, blob in zip(misses, blobs, strict=True):
                if blob is None:
                    loaded.append((None, None, 0.0))
                else:
                    path = paths[i]
                    env = codec.decode(blob.data, key=key, path=ctx.where(path), bound=path)
                    loaded.append((env, blob.data, limits.IMMUTABLE_TTL))
            return loaded

        def unpack(
            entries: Sequence[bytes | None], offset: int
        ) -> tuple[list[codec.Envelope | None], list[int]]:
            out: list[codec.Envelope | None] = []
            damaged: list[int] = []
            for i, entry in enumerate(entries):
                try:
                    if entry is None:
                        out.append(None)
                    else:
                        out.append(codec.decode(entry[offset:], bound=paths[i]))
                except CorruptDataError:
                    out.append(None)
                    damaged.append(i)
            return out, damaged

        return await ctx.read_through(paths, unpack, get, immutable=True)

    async def fetch_readable(
        self, key: str, directory: str, pieces: Sequence[Piece]
    ) -> list[codec.Envelope | None]:
        """:meth:`fetch`, but a damaged object reads as None (left where it is, for fsck to
        report) while the rest are still read: for compaction and cleanup, which must go
        on around damage."""
        try:
            return await self.fetch(key, directory, pieces)
        except CorruptDataError:
            envs: list[codec.Envelope | None] = []
            for piece in pieces:
                try:
                    envs += await self.fetch(key, directory, [piece])
                except CorruptDataError:
                    envs.append(None)
            return envs

    # -- records ---------------------------------------------------------------------------

    async def range(self, key: str, start: int, end: int) -> list[bytes]:
        return (await self.read(key, start, end))[1]

    async def read(
        self,
        key: str,
        start: int,
        end: int,
        fresh: bool = False,
        listed: Sequence[str] | None = None,
    ) -> tuple[int, list[bytes]]:
        """(the sequence number of the first record returned, records ``start..end``:
        Redis LRANGE indices from the first live record); ``fresh``: plan from a new
        listing, not the cached plan; ``listed``: see :meth:`plan`."""
        for name, value in (("start", start), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigurationError(f"{name} must be an int, not {value!r}")

        def window(plan: Plan) -> tuple[int, int] | None:
            found = normalise(start, end, plan.length)
            return None if found is None else (plan.first + found[0], plan.first + found[1])

        return await self._read(key, window, fresh, listed)

    async def read_from(
        self, key: str, seq: int, count: int | None = None, fresh: bool = False
    ) -> tuple[int, list[bytes]]:
        """(the sequence number of the first record returned, the records from sequence
        number ``seq`` on - from the first live one if ``seq`` was trimmed - at most
        ``count`` of them); ``fresh``: plan from a new listing, not the cached plan."""
        for name, value in (("seq", seq), ("count", 0 if count is None else count)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"{name} must be an int >= 0, not {value!r}")

        def window(plan: Plan) -> tuple[int, int] | None:
            lo = max(seq, plan.first)
            hi = plan.tail if count is None else min(plan.tail, lo + count)
            return (lo, hi) if lo < hi else None

        return await self._read(key, window, fresh)

    async def _read(
        self,
        key: str,
        window: Callable[[Plan], tuple[int, int] | None],
        fresh: bool,
        listed: Sequence[str] | None = None,
    ) -> tuple[int, list[bytes]]:
        """Records ``[lo, hi)`` by sequence number, ``window(plan)`` giving them."""
        directory = self.dir(key)
        known: dict[str, codec.Envelope] = {}  # immutable objects: kept across re-plans
        gaps: list[tuple[int, int] | None] = []  # per torn attempt: records no object held
        for attempt in range(limits.REPLANS):
            if gaps:  # let a compaction that raced the listing finish
                await asyncio.sleep(limits.REPLAN_PAUSE_S * 2**attempt)
            plan = await self.plan(key, directory, fresh, known, listed if not gaps else None)
            wanted_range = window(plan)
            if wanted_range is None:
                return plan.first, []
            lo, hi = wanted_range
            pieces = [p for p in plan.pieces if p.start < hi and (p.end or hi) > lo]
            wanted = [p for p in pieces if p.name not in known and not p.lost]
            for piece, env in zip(wanted, await self.fetch(key, directory, wanted), strict=True):
                if env is not None:
                    known[piece.name] = env
            envs = [known.get(p.name) for p in pieces]
            if not as_planned(pieces, envs):
                fresh = True  # compacted away under us, or a torn listing: plan again
                self.ctx.stats.add("log.replans")
                if all(env is not None or p.lost for p, env in zip(pieces, envs, strict=True)):
                    self.ctx.stats.add("log.torn_listings")
                gaps.append(shortfall(pieces, envs))
                continue
            lost = next((p for p in pieces if p.lost), None)
            if lost is not None:
                raise CorruptDataError(
                    f"records [{lost.start}, {lost.end}) of the log were lost (marked by fsck); "
                    "read around them, or trim the log past them",
                    key=key,
                    path=self.ctx.where(directory + lost.name),
                )
            if (
                self.on_scattered is not None
                and limits.SETTLE
                and (
                    sum(not p.segment for p in pieces) >= limits.SETTLE_READ_CHUNKS
                    or len(plan.names) - len(plan.pieces) >= limits.SETTLE_READ_LEFTOVERS
                )
            ):  # scattered over chunks, or listing many a settle left behind
                self.on_scattered(key, directory)
            out: list[bytes] = []
            for piece, env in zip(pieces, envs, strict=True):
                assert env is not None
                skip = max(0, lo - piece.start)
                take = min(hi, piece.end or hi) - piece.start - skip
                out.extend(decode_records(env, piece.skip + skip, take))
            return lo, out
        if len(set(gaps)) == 1 and gaps[0] is not None:
            # Every fresh listing shows the same chunk holding fewer records than the next
            # object's position says: the object that held the rest is gone.
            first, end = gaps[0]
            raise CorruptDataError(
                f"records [{first}, {end}) of the log are missing: the object that held them "
                "is gone; `kvstore fsck --repair` marks them lost so the rest of the log "
                "can be used",
                key=key,
                path=self.ctx.where(directory),
            )
        raise KVStoreError(f"log {key!r} kept changing while it was being read; try again")

    async def length(self, key: str) -> int:
        return (await self.plan(key, self.dir(key))).length

    async def bounds(self, key: str) -> tuple[int, int]:
        """(the sequence number of the first live record, the next one to be assigned)
        from the cached plan."""
        plan = await self.plan(key, self.dir(key))
        return plan.first, plan.tail

    async def live_keys(self, prefix: object) -> list[str]:
        """Keys of the logs that hold records, from one listing of the log area (plus, for
        a log trimmed into its last chunk, a read of that chunk)."""
        layout = self.ctx.layout
        by_log: dict[str, list[str]] = {}
        async for page in self.ctx.blob.list_pages(layout.log_prefix(prefix)):
            for path in page:
                split = layout.split_log_path(path)
                if split is not None:
                    by_log.setdefault(split[0], []).append(split[1])
        live = []
        for encoded, names in by_log.items():
            try:
                key = layout.key_of(encoded)
            except ValueError:
                continue
            try:
                mark, pieces = cover(names)
            except Replan:  # records are missing: it still is a log (its reads say so)
                live.append(key)
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
