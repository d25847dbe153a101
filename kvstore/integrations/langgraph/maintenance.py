"""The saver's optional capabilities: delete_for_runs, copy_thread, prune - each a few
listings, reads of the checkpoint objects it must decide on, and bulk deletes.

Blobs no kept checkpoint refers to are removed with the checkpoints that did (the
channel values' garbage collection), by a rule that a concurrent ``put`` on the thread
cannot lose: a blob goes only if no kept checkpoint of its namespace refers to it and,
while the namespace keeps checkpoints, a kept one refers to a *newer* version of its
channel (a put in flight writes versions newer than every stored checkpoint's, and
writes its blobs before its checkpoint).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from . import keys, records
from .engine import Ancestry, Engine
from .records import Stored


async def checkpoints_of(
    engine: Engine, listed: Iterable[keys.Listed]
) -> dict[tuple[str, str], dict[str, Stored]]:
    """The checkpoint objects among ``listed``, by (thread, ns) then id: one concurrent
    batch of GETs (cached: checkpoints are immutable)."""
    idents = [(i.thread_id, i.ns, i.checkpoint_id) for i in listed if i.kind == "c"]
    names = [keys.checkpoint(*ident) for ident in idents]
    found: dict[tuple[str, str], dict[str, Stored]] = {}
    for ident, name, data in zip(idents, names, await engine.mget(names), strict=True):
        if data is not None:
            found.setdefault(ident[:2], {})[ident[2]] = engine.unpack(name, data)
    return found


def _older(version: Any, newest: Any) -> bool:
    try:
        return bool(version < newest)
    except TypeError:  # versions of different kinds: keep the blob
        return False


def garbage(
    listed: Iterable[keys.Listed], kept: dict[tuple[str, str], dict[str, Stored]]
) -> list[keys.Listed]:
    """The blobs among ``listed`` that the kept checkpoints no longer need (module rule)."""
    refs: dict[tuple[str, str], set[tuple[str, str]]] = {}
    newest: dict[tuple[str, str, str], Any] = {}
    for where, stored_by_id in kept.items():
        for stored in stored_by_id.values():
            for ch, vk in stored.has.items():
                refs.setdefault(where, set()).add((keys.field(ch), vk))
                version = keys.parse_version(vk)
                slot = (*where, ch)
                if slot not in newest or _older(newest[slot], version):
                    newest[slot] = version
    out = []
    for item in listed:
        if item.kind != "b":
            continue
        where = (item.thread_id, item.ns)
        channel_field, vk = item.rest.split("/", 1)
        if (channel_field, vk) in refs.get(where, set()):
            continue
        if kept.get(where):
            slot = (*where, keys.unfield(channel_field))
            if slot not in newest or not _older(keys.parse_version(vk), newest[slot]):
                continue  # perhaps a put in flight: its checkpoint is not written yet
        out.append(item)
    return out


async def drop(engine: Engine, items: Sequence[keys.Listed], *also: str) -> None:
    """Delete ``items`` and the keys ``also`` (bulk deletes; checkpoints first) and forget
    them."""
    order = {"c": 0, "w": 1, "b": 2, "r": 3}
    names = [engine.key_of(i) for i in sorted(items, key=lambda i: order[i.kind])]
    names.extend(also)
    for name in names:
        engine.stored.forget(name)
    if names:
        await engine.kv.discard(*names)


async def delete_for_runs(engine: Engine, run_ids: Any) -> None:
    """Per run: a LIST of its index (the threads it wrote in); per such thread: a LIST of
    the thread, a GET per checkpoint (cached), one bulk delete - the run's checkpoints,
    their writes, the blobs only they needed, the run's index entries."""
    if isinstance(run_ids, (str, bytes)) or not isinstance(run_ids, Iterable):
        raise TypeError("run_ids must be a list of run ids")
    runs = [records.thread_id_of(r, "a run id") for r in run_ids]
    for run_id in dict.fromkeys(runs):
        threads = []
        async for page in engine.pages(keys.runs(run_id)):
            for key in page:
                thread_id = keys.run_indexed_thread(key, run_id)
                if thread_id is not None:
                    threads.append(thread_id)
        for thread_id in threads:
            listed = await engine.listed(keys.thread(thread_id))
            stored = await checkpoints_of(engine, listed)
            doomed = {
                (t, ns, cid)
                for (t, ns), by_id in stored.items()
                for cid, s in by_id.items()
                if s.run_id == run_id
            }
            kept = {
                where: {cid: s for cid, s in by_id.items() if (*where, cid) not in doomed}
                for where, by_id in stored.items()
            }
            victims = [
                i
                for i in listed
                if i.kind in "cw" and (i.thread_id, i.ns, i.checkpoint_id) in doomed
            ]
            victims += garbage(listed, kept)
            victims += [i for i in listed if i.kind == "r" and i.rest == run_id]
            await drop(engine, victims, keys.run_index(run_id, thread_id))


async def copy_thread(engine: Engine, source: Any, target: Any) -> None:
    """A LIST of the source thread, a GET per object (cached), a PUT per object: blobs,
    writes and run notes first, checkpoints last (so a listed copy is complete). What
    the target already holds stays, unless the copy replaces it (same checkpoint id)."""
    source = records.thread_id_of(source, "source_thread_id")
    target = records.thread_id_of(target, "target_thread_id")
    if source == target:
        return
    src, dst = keys.thread(source), keys.thread(target)
    listed = await engine.listed(src)
    names = [engine.key_of(i) for i in listed]
    data = await engine.mget(names)
    first: dict[str, bytes] = {}
    last: dict[str, bytes] = {}
    for item, name, value in zip(listed, names, data, strict=True):
        if value is None:
            continue
        copy = dst + name[len(src) :]
        (last if item.kind == "c" else first)[copy] = value
        if item.kind == "r":
            first[keys.run_index(item.rest, target)] = b""
    if first:
        await engine.kv.mset(first)
    if last:
        await engine.kv.mset(last)


async def prune(engine: Engine, thread_ids: Any, strategy: Any) -> None:
    """``keep_latest``: per thread a LIST, the namespaces' newest checkpoints read (and,
    for DeltaChannel state, the ancestors back to each channel's last snapshot), one
    bulk delete of the rest. ``delete``: delete_thread per thread."""
    if isinstance(thread_ids, (str, bytes)) or not isinstance(thread_ids, Iterable):
        raise TypeError("thread_ids must be a list of thread ids")
    if strategy not in ("keep_latest", "delete"):
        raise ValueError(f"strategy must be 'keep_latest' or 'delete', not {strategy!r}")
    threads = [records.thread_id_of(t) for t in thread_ids]
    for thread_id in dict.fromkeys(threads):
        if strategy == "delete":
            await engine.delete_thread(thread_id)
            continue
        listed = await engine.listed(keys.thread(thread_id))
        by_ns: dict[str, list[str]] = {}
        for item in listed:
            if item.kind == "c":
                by_ns.setdefault(item.ns, []).append(item.checkpoint_id)  # newest first
        kept: dict[tuple[str, str], dict[str, Stored]] = {}
        for ns, ids in by_ns.items():
            kept[(thread_id, ns)] = await _keep(engine, thread_id, ns, ids)
        victims = [
            i
            for i in listed
            if i.kind in "cw" and i.checkpoint_id not in kept.get((thread_id, i.ns), {})
        ]
        victims += garbage(listed, kept)
        await drop(engine, victims)


async def _keep(engine: Engine, thread_id: str, ns: str, ids: list[str]) -> dict[str, Stored]:
    """The newest checkpoint of a namespace, and the ancestors its DeltaChannels replay
    from: back to one that stores each such channel's value (a snapshot), or the root.
    The delta channels are those in the metadata's ``counters_since_delta_snapshot``."""
    ancestry = Ancestry(engine, thread_id, ns, ids)
    keep: dict[str, Stored] = {}
    newest = await ancestry.get(ids[0])
    if newest is None:
        return keep
    keep[ids[0]] = newest
    metadata = engine.serde.loads_typed(newest.metadata)
    counters = metadata.get("counters_since_delta_snapshot") or {}
    versions = engine.serde.loads_typed(newest.checkpoint).get("channel_versions", {})
    waiting = {ch for ch in counters if ch in versions and ch not in newest.has}
    cursor = newest.parent_id
    while waiting and cursor is not None and cursor not in keep:
        ancestor = await ancestry.get(cursor)
        if ancestor is None:
            break
        keep[cursor] = ancestor
        waiting -= set(ancestor.has)
        cursor = ancestor.parent_id
    return keep
