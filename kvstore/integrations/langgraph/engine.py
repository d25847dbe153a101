"""The saver's async core: every operation as a coroutine on kvstore's own event loop.

:class:`~kvstore.integrations.langgraph.KVStoreSaver` runs these on the loop (blocking face)
or awaits them there (async face). Costs are stated per method in the package docstring.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    CheckpointTuple,
    DeltaChannelHistory,
    PendingWrite,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from ... import aio
from ...api import AsyncKVStore
from . import keys, records
from .records import Stored, Write

MEMO_SIZE = 65536  # blob keys (and run notes) a saver remembers having written
LIST_BATCH = 64  # checkpoints list() reads per round
HISTORY_WINDOW = 64  # ancestors get_delta_channel_history reads per round


class Memo:
    """A bounded set of keys this process knows are stored (oldest forgotten first)."""

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)

    def forget(self, key: str) -> None:
        self._keys.pop(key, None)


@dataclass
class Listing:
    """What a list() call found: checkpoints in order, and where it has got to."""

    found: list[tuple[str, str, str]]  # (thread, ns, checkpoint id), in listing order
    writes: dict[tuple[str, str, str], list[str]]
    filter: dict[str, Any] | None
    limit: int | None
    position: int = 0
    done: bool = False
    matched: int = field(default=0)


class Ancestry:
    """The checkpoint objects of one namespace, read on demand along a parent chain: a
    checkpoint asked for is read with the next ones in listing order (older ones: its
    likely ancestors), 2 at first, doubling up to ``HISTORY_WINDOW`` per round of
    concurrent GETs - a walk of n ancestors costs about log2(n) + n/64 rounds."""

    def __init__(self, engine: Engine, thread_id: str, ns: str, order: list[str]) -> None:
        self.engine, self.thread_id, self.ns, self.order = engine, thread_id, ns, order
        self.position = {cid: i for i, cid in enumerate(order)}
        self.fetched: dict[str, Stored] = {}
        self.size = 2

    async def get(self, cid: str) -> Stored | None:
        """The stored checkpoint ``cid`` (None if it is not in the listing or is gone)."""
        if cid not in self.fetched and cid in self.position:
            start = self.position[cid]
            window = [c for c in self.order[start : start + self.size] if c not in self.fetched]
            self.size = min(2 * self.size, HISTORY_WINDOW)
            names = [keys.checkpoint(self.thread_id, self.ns, c) for c in window]
            for c, name, data in zip(window, names, await self.engine.mget(names), strict=True):
                if data is not None:
                    self.fetched[c] = self.engine.unpack(name, data)
        return self.fetched.get(cid)


class Engine:
    """The saver's operations over one (namespaced) AsyncKVStore and one serde."""

    def __init__(self, store: AsyncKVStore, serde: SerializerProtocol) -> None:
        self.kv = store
        self.serde = serde
        self.stored = Memo()  # blob keys and run notes known to be stored

    # -- listing ------------------------------------------------------------------------

    async def pages(self, prefix: str) -> AsyncIterator[list[str]]:
        """Value keys under ``prefix``, page by page (one LIST per 1000), in key order.
        Values only: the saver writes no logs, so the log area is not listed."""
        async for page in self.kv.key_pages(prefix, logs=False):
            yield page

    async def listed(self, prefix: str) -> list[keys.Listed]:
        found: list[keys.Listed] = []
        async for page in self.pages(prefix):
            for key in page:
                parsed = keys.parse(key)
                if parsed is not None:
                    found.append(parsed)
        return found

    async def latest(self, thread_id: str, ns: str) -> tuple[str, list[str]] | None:
        """The newest checkpoint id of (thread, ns) and its writes' keys: the first
        checkpoint key listed (ids are stored inverted), so one LIST whatever the thread's
        length; a write sorts just before its checkpoint."""
        prefix = keys.checkpoints(thread_id, ns)
        writes: list[keys.Listed] = []
        pages = cast("AsyncGenerator[list[str], None]", self.kv.key_pages(prefix, logs=False))
        try:
            async for page in pages:
                for key in page:
                    parsed = keys.parse(key)
                    if parsed is None or parsed.ns != ns or parsed.thread_id != thread_id:
                        continue
                    if parsed.kind == "w":
                        writes.append(parsed)
                    elif parsed.kind == "c":
                        cid = parsed.checkpoint_id
                        return cid, [self.write_key(w) for w in writes if w.checkpoint_id == cid]
        finally:
            await pages.aclose()
        return None

    @staticmethod
    def write_key(listed: keys.Listed) -> str:
        return f"{keys.checkpoint(listed.thread_id, listed.ns, listed.checkpoint_id)}/{listed.rest}"

    # -- reading ------------------------------------------------------------------------

    async def mget(self, names: Sequence[str]) -> list[bytes | None]:
        if not names:
            return []
        # the saver refuses decode_responses stores: every value comes back as bytes
        return [cast(bytes, v) for v in await self.kv.mget(list(names))]

    def unpack(self, key: str, data: bytes) -> Stored:
        return records.unpack_checkpoint(data, key)

    async def get_tuple(self, config: Any) -> CheckpointTuple | None:
        where = records.where(config)
        thread_id, ns, cid = where
        if cid is not None:
            if not keys.is_checkpoint_id(cid):
                return None  # no checkpoint can be stored under it
            key = keys.checkpoint(thread_id, ns, cid)
            data, listed = await asyncio.gather(self.kv.get(key), self.listed(key + "/"))
            if data is None:
                return None
            write_keys = [self.write_key(w) for w in listed if w.kind == "w"]
            stored = self.unpack(key, cast(bytes, data))
        else:
            found = await self.latest(thread_id, ns)
            if found is None:
                return None
            cid, write_keys = found
            key = keys.checkpoint(thread_id, ns, cid)
            got = await self.mget([key])
            if got[0] is None:
                return None  # deleted meanwhile
            stored = self.unpack(key, got[0])
        (loaded,) = await self.load([(thread_id, ns, cid, stored, write_keys)])
        return loaded

    async def load(
        self, items: Sequence[tuple[str, str, str, Stored, list[str]]]
    ) -> list[CheckpointTuple]:
        """CheckpointTuples of stored checkpoints: their blobs and writes in one
        concurrent batch of GETs (immutable objects: cached after the first read)."""
        names: list[str] = []
        for thread_id, ns, _cid, stored, write_keys in items:
            names.extend(keys.blob(thread_id, ns, ch, vk) for ch, vk in stored.has.items())
            names.extend(write_keys)
        names = list(dict.fromkeys(names))  # a value shared by several checkpoints: once
        got = dict(zip(names, await self.mget(names), strict=True))
        loads = self.serde.loads_typed
        tuples = []
        for thread_id, ns, cid, stored, write_keys in items:
            checkpoint = loads(stored.checkpoint)
            values: dict[str, Any] = {}
            for ch, vk in stored.has.items():
                blob = got.get(keys.blob(thread_id, ns, ch, vk))
                if blob is not None:  # None: removed by a prune or delete racing this read
                    values[ch] = loads(records.unpack_blob(blob))
            checkpoint["channel_values"] = values
            writes = []
            for key in write_keys:
                data = got.get(key)
                if data is not None:
                    writes.append(records.unpack_write(data, int(key.rsplit("/", 1)[1])))
            writes.sort(key=records.write_order)
            parent = stored.parent_id
            tuples.append(
                CheckpointTuple(
                    config=records.config_of(thread_id, ns, cid),
                    checkpoint=checkpoint,
                    metadata=loads(stored.metadata),
                    parent_config=records.config_of(thread_id, ns, parent) if parent else None,
                    pending_writes=[(w.task_id, w.channel, loads(w.value)) for w in writes],
                )
            )
        return tuples

    # -- list ---------------------------------------------------------------------------

    async def list_start(self, config: Any, filter: Any, before: Any, limit: Any) -> Listing:
        """List the candidates (LISTs only); :meth:`list_next` loads them batch by batch."""
        if filter is not None and not isinstance(filter, Mapping):
            raise TypeError(f"filter must be a dict of metadata values, not {filter!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError(f"limit must be an int or None, not {limit!r}")
        before_id = None if before is None else records.where(before, need_thread=False)[2]
        only_id = None
        ns: str | None = None
        if config is None:
            prefix = keys.THREADS
        else:
            thread_id, _, only_id = records.where(config)
            ns_given = config["configurable"].get("checkpoint_ns")
            ns = None if ns_given is None else records.where(config).ns
            prefix = keys.checkpoints(thread_id, ns)
        found: list[tuple[str, str, str]] = []
        writes: dict[tuple[str, str, str], list[str]] = {}
        for item in await self.listed(prefix):
            if ns is not None and item.ns != ns:
                continue
            ident = (item.thread_id, item.ns, item.checkpoint_id)
            if item.kind == "w":
                writes.setdefault(ident, []).append(self.write_key(item))
            elif item.kind == "c":
                if only_id is not None and item.checkpoint_id != only_id:
                    continue
                if before_id is not None and item.checkpoint_id >= before_id:
                    continue
                found.append(ident)
        listing = Listing(found, writes, dict(filter) if filter else None, limit)
        listing.done = limit is not None and limit <= 0
        return listing

    async def list_next(self, listing: Listing) -> list[CheckpointTuple]:
        """The next batch of matching checkpoints (possibly none; ``listing.done`` says
        when there are no more): one GET per checkpoint, then one batch for blobs and
        writes."""
        if listing.done:
            return []
        size = LIST_BATCH
        if listing.filter is None and listing.limit is not None:
            size = max(1, min(size, listing.limit - listing.matched))
        batch = listing.found[listing.position : listing.position + size]
        listing.position += len(batch)
        names = [keys.checkpoint(*ident) for ident in batch]
        chosen = []
        for ident, key, data in zip(batch, names, await self.mget(names), strict=True):
            if data is None:
                continue  # deleted since it was listed
            stored = self.unpack(key, data)
            if listing.filter:
                metadata = self.serde.loads_typed(stored.metadata)
                if not all(metadata.get(k) == v for k, v in listing.filter.items()):
                    continue
            if listing.limit is not None and listing.matched >= listing.limit:
                break
            listing.matched += 1
            chosen.append((*ident, stored, listing.writes.get(ident, [])))
        if listing.position >= len(listing.found) or (
            listing.limit is not None and listing.matched >= listing.limit
        ):
            listing.done = True
        return await self.load(chosen)

    # -- writing ------------------------------------------------------------------------

    def check_keys(self, names: Sequence[str]) -> None:
        """Raise kvstore's InvalidKeyError now, before any write, for a key the store
        cannot hold (over 1024 bytes, or an object name too long for the backend)."""
        self.kv.check_keys(names)

    async def put(
        self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any
    ) -> RunnableConfig:
        """Blobs of new channel versions (set-if-absent, concurrently), then the
        checkpoint object: it is the commit point - once listed, its blobs are there."""
        thread_id, ns, parent_id = records.where(config)
        if not isinstance(checkpoint, Mapping):
            raise TypeError(f"checkpoint must be a Checkpoint dict, not {checkpoint!r}")
        cid = records.check_checkpoint_id(checkpoint.get("id"))
        if not isinstance(new_versions, Mapping):
            raise TypeError(f"new_versions must be a dict, not {new_versions!r}")
        if not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a dict, not {metadata!r}")
        body = dict(checkpoint)
        values = body.pop("channel_values", None) or {}
        versions = body.get("channel_versions") or {}
        if not isinstance(values, Mapping) or not isinstance(versions, Mapping):
            raise TypeError("channel_values and channel_versions must be dicts")
        for name in (*versions, *new_versions):
            if not isinstance(name, str):
                raise TypeError(f"a channel name is a str, not {name!r}")
        dumps = self.serde.dumps_typed
        # Everything is serialized before anything is written: bad input writes nothing.
        has = {ch: keys.version_field(v) for ch, v in versions.items() if ch in values}
        blobs: dict[str, bytes] = {}
        for ch, version in new_versions.items():
            if ch not in values:
                continue  # no value at this version (e.g. a DeltaChannel between snapshots)
            key = keys.blob(thread_id, ns, ch, keys.version_field(version))
            if key not in self.stored:
                blobs[key] = records.pack_blob(dumps(values[ch]))
        md = get_checkpoint_metadata(config, metadata)  # type: ignore[arg-type]
        run_id = md.get("run_id")
        run_id = str(run_id) if run_id is not None else None
        stored = Stored(dumps(body), dumps(md), parent_id, has, run_id)
        record = records.pack_checkpoint(stored)
        notes = {}
        if run_id is not None:
            for note in (keys.run_note(thread_id, run_id), keys.run_index(run_id, thread_id)):
                if note not in self.stored:
                    notes[note] = b""
        checkpoint_key = keys.checkpoint(thread_id, ns, cid)
        self.check_keys([*blobs, *notes, checkpoint_key])
        first = [self.kv.set(k, v, nx=True) for k, v in blobs.items()]
        if notes:
            first.append(self.kv.mset(notes))
        await aio.bounded(first, self.kv.concurrency)
        for name in (*blobs, *notes):
            self.stored.add(name)
        await self.kv.set(checkpoint_key, record)
        return records.config_of(thread_id, ns, cid)

    async def put_writes(self, config: Any, writes: Any, task_id: Any, task_path: Any = "") -> None:
        """One object per write, concurrently: a regular write only if absent (a task's
        write at an index is kept once), a special one (error, interrupt...) replaced."""
        thread_id, ns, cid = records.where(config)
        if cid is None:
            raise ValueError("put_writes needs config['configurable']['checkpoint_id']")
        records.check_checkpoint_id(cid)
        if not isinstance(task_id, str):
            raise TypeError(f"task_id must be a str, not {type(task_id).__name__}")
        if not isinstance(task_path, str):
            raise TypeError(f"task_path must be a str, not {type(task_path).__name__}")
        if isinstance(writes, (str, bytes)) or not isinstance(writes, Sequence):
            raise TypeError("writes must be a list of (channel, value) pairs")
        dumps = self.serde.dumps_typed
        regular: dict[str, bytes] = {}
        special: dict[str, bytes] = {}
        for i, pair in enumerate(writes):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"writes[{i}] must be a (channel, value) pair, not {pair!r}")
            channel, value = pair
            if not isinstance(channel, str):
                raise TypeError(f"writes[{i}]: a channel is a str, not {channel!r}")
            idx = WRITES_IDX_MAP.get(channel, i)
            data = records.pack_write(Write(task_id, channel, dumps(value), task_path, idx))
            (special if idx < 0 else regular)[keys.write(thread_id, ns, cid, task_id, idx)] = data
        self.check_keys([*regular, *special])
        sets = [self.kv.set(k, v, nx=True) for k, v in regular.items()]
        if special:
            sets.append(self.kv.mset(special))
        await aio.bounded(sets, self.kv.concurrency)

    # -- deleting -----------------------------------------------------------------------

    async def delete_thread(self, thread_id: Any) -> None:
        """One listing of the thread (a LIST per 1000 objects) and one bulk delete per
        1000: checkpoints first, so no reader finds a checkpoint without its blobs."""
        thread_id = records.thread_id_of(thread_id)
        listed = await self.listed(keys.thread(thread_id))
        await self.remove(thread_id, listed)

    async def remove(self, thread_id: str, listed: Sequence[keys.Listed]) -> None:
        order = {"c": 0, "w": 1, "b": 2, "r": 3}
        names: list[str] = []
        for item in sorted(listed, key=lambda i: order[i.kind]):
            names.append(self.key_of(item))
            if item.kind == "r":
                names.append(keys.run_index(item.rest, thread_id))
        for name in names:
            self.stored.forget(name)
        if names:
            await self.kv.discard(*names)

    @staticmethod
    def key_of(item: keys.Listed) -> str:
        if item.kind == "c":
            return keys.checkpoint(item.thread_id, item.ns, item.checkpoint_id)
        if item.kind == "w":
            return Engine.write_key(item)
        if item.kind == "b":
            return f"{keys.blobs(item.thread_id, item.ns)}{item.rest}"
        return keys.run_note(item.thread_id, item.rest)

    # -- DeltaChannel history -----------------------------------------------------------

    async def delta_history(
        self, config: Any, channels: Sequence[str]
    ) -> dict[str, DeltaChannelHistory]:
        """Walk the parent chain of the target checkpoint once for all ``channels``: one
        listing of the namespace, its checkpoints read a window at a time (2, 4, 8 ...
        up to 64 per round of concurrent GETs), then the chain's writes and the seeds in
        one batch."""
        channels = list(channels)
        if not channels:
            return {}
        thread_id, ns, target = records.where(config)
        order: list[str] = []
        writes: dict[str, list[str]] = {}
        for item in await self.listed(keys.checkpoints(thread_id, ns)):
            if item.ns != ns:
                continue
            if item.kind == "c":
                order.append(item.checkpoint_id)
            elif item.kind == "w":
                writes.setdefault(item.checkpoint_id, []).append(self.write_key(item))
        ancestry = Ancestry(self, thread_id, ns, order)
        if target is None:
            target = order[0] if order else None
        head = await ancestry.get(target) if target is not None else None
        chain: list[tuple[str, set[str]]] = []  # ancestor, the channels still walking there
        seeds: dict[str, str] = {}  # channel -> blob key
        remaining = set(channels)
        cursor = head.parent_id if head is not None else None
        seen: set[str] = set()
        while cursor is not None and remaining and cursor not in seen:
            seen.add(cursor)
            ancestor = await ancestry.get(cursor)
            if ancestor is None:
                break
            chain.append((cursor, set(remaining)))
            for ch in list(remaining):
                if ch in ancestor.has:
                    seeds[ch] = keys.blob(thread_id, ns, ch, ancestor.has[ch])
                    remaining.discard(ch)
            cursor = ancestor.parent_id
        names = [k for cid, _ in chain for k in writes.get(cid, [])] + list(seeds.values())
        got = dict(zip(names, await self.mget(names), strict=True))
        loads = self.serde.loads_typed
        collected: dict[str, list[PendingWrite]] = {ch: [] for ch in channels}
        for cid, walking in reversed(chain):  # oldest ancestor first
            stored_writes = [
                records.unpack_write(data, int(key.rsplit("/", 1)[1]))
                for key in writes.get(cid, [])
                if (data := got.get(key)) is not None
            ]
            for w in sorted(stored_writes, key=records.write_order):
                if w.channel in walking:
                    collected[w.channel].append((w.task_id, w.channel, loads(w.value)))
        result: dict[str, DeltaChannelHistory] = {}
        for ch in channels:
            entry: DeltaChannelHistory = {"writes": collected[ch]}
            blob = got.get(seeds[ch]) if ch in seeds else None
            if blob is not None:
                entry["seed"] = loads(records.unpack_blob(blob))
            result[ch] = entry
        return result
