"""The long-term store's batches: checked in the caller's thread (:func:`prepare`, no
I/O), then run as one coroutine on kvstore's loop (:func:`run`). Semantics and costs are
in :mod:`.store`'s docstring."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from langgraph.store.base import (
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from ... import aio
from ...api import AsyncKVStore
from ...errors import CorruptDataError
from . import store_items as items

WINDOW_CAP = 256  # items a filtered search reads per round at most (the rounds double)


@dataclass(frozen=True)
class Get:
    index: int
    name: str
    namespace: tuple[str, ...]
    key: str
    refresh: bool


@dataclass(frozen=True)
class Put:
    namespace: tuple[str, ...]
    key: str
    value: str | None  # the value's JSON text; None: delete
    ttl: float | None  # minutes
    px: int | None


@dataclass(frozen=True)
class Search:
    index: int
    prefix: tuple[str, ...]
    filter: dict[str, Any] | None
    limit: int
    offset: int
    refresh: bool


@dataclass(frozen=True)
class Listing:
    index: int
    conditions: tuple[MatchCondition, ...]
    max_depth: int | None
    limit: int
    offset: int


@dataclass
class Plan:
    """A checked batch: what to read, what to write (one put per key: the last)."""

    size: int = 0
    gets: list[Get] = field(default_factory=list)
    searches: list[Search] = field(default_factory=list)
    listings: list[Listing] = field(default_factory=list)
    puts: dict[str, Put] = field(default_factory=dict)


def prepare(ops: Iterable[Any], kv: AsyncKVStore) -> Plan:
    """Check every op of a batch and plan it; raises (InvalidNamespaceError, TypeError,
    ValueError, kvstore.InvalidKeyError) before any request, so a bad op writes nothing."""
    plan = Plan()
    for i, op in enumerate(ops):
        plan.size += 1
        if isinstance(op, GetOp):
            ns, key = items.check_labels(op.namespace), items.check_key(op.key)
            plan.gets.append(Get(i, items.item_key(ns, key), ns, key, bool(op.refresh_ttl)))
        elif isinstance(op, PutOp):
            ns, key = items.check_put_namespace(op.namespace), items.check_key(op.key)
            if op.value is None:
                put = Put(ns, key, None, None, None)
            else:
                text = items.value_text(op.value)
                put = Put(ns, key, text, op.ttl, items.ttl_ms(op.ttl))
            name = items.item_key(ns, key)
            plan.puts.pop(name, None)  # the last put of a key wins (and comes last)
            plan.puts[name] = put
        elif isinstance(op, SearchOp):
            plan.searches.append(
                Search(
                    i,
                    items.check_labels(op.namespace_prefix, "namespace prefix"),
                    items.check_filter(op.filter),
                    items.check_count(op.limit, "limit"),
                    items.check_count(op.offset, "offset"),
                    bool(op.refresh_ttl),
                )
            )
        elif isinstance(op, ListNamespacesOp):
            depth = op.max_depth
            plan.listings.append(
                Listing(
                    i,
                    items.check_conditions(op.match_conditions),
                    None if depth is None else items.check_count(depth, "max_depth"),
                    items.check_count(op.limit, "limit"),
                    items.check_count(op.offset, "offset"),
                )
            )
        else:
            raise ValueError(f"Unknown operation type: {type(op).__name__}")
    kv.check_keys([g.name for g in plan.gets] + list(plan.puts))
    return plan


def _item(namespace: tuple[str, ...], key: str, record: items.Record) -> Item:
    return Item(
        value=record.value,
        key=key,
        namespace=namespace,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _refresh_of(record: items.Record) -> int | None:
    return None if record.ttl is None else items.ttl_ms(record.ttl)


async def run(kv: AsyncKVStore, plan: Plan) -> list[Result]:
    """Reads first, concurrently (gets in one ``mget`` with the items about to be
    replaced, whose ``created_at`` is kept; searches; listings) - all of them see the
    store as it was before the batch's writes. Then the writes, concurrently: one PUT
    per item put, one bulk delete for the items deleted, and the TTL refreshes the reads
    asked for."""
    results: list[Result] = [None] * plan.size
    writing = [name for name, put in plan.puts.items() if put.value is not None]
    names = list(dict.fromkeys([g.name for g in plan.gets] + writing))

    async def read() -> dict[str, Any]:
        return dict(zip(names, await kv.mget(names), strict=True)) if names else {}

    tasks: list[Any] = [read()]
    tasks += [search(kv, s) for s in plan.searches]
    tasks += [namespaces(kv, listing) for listing in plan.listings]
    done = await aio.bounded(tasks, len(tasks))
    stored: dict[str, Any] = done[0]
    refresh: dict[str, int] = {}
    for get in plan.gets:
        data = stored[get.name]
        if data is None:
            continue
        record = items.decode(get.name, get.namespace, get.key, data)
        results[get.index] = _item(get.namespace, get.key, record)
        ms = _refresh_of(record)
        if get.refresh and ms is not None:
            refresh[get.name] = ms
    for s, (found, refreshes) in zip(plan.searches, done[1 : 1 + len(plan.searches)], strict=True):
        results[s.index] = found
        if s.refresh:
            refresh.update(refreshes)
    for listing, listed in zip(plan.listings, done[1 + len(plan.searches) :], strict=True):
        results[listing.index] = listed
    await aio.bounded(_writes(kv, plan, stored, refresh), kv.concurrency)
    return results


def _writes(
    kv: AsyncKVStore, plan: Plan, stored: dict[str, Any], refresh: dict[str, int]
) -> list[Any]:
    now = datetime.now(timezone.utc)
    writes: list[Any] = []
    for name, put in plan.puts.items():
        if put.value is None:
            continue
        created = now
        old = stored.get(name)
        if old is not None:
            with contextlib.suppress(CorruptDataError):  # replaced: the new record heals it
                created = items.decode(name, put.namespace, put.key, old).created_at
        text = items.record_text(put.namespace, put.key, put.value, created, now, put.ttl)
        writes.append(kv.set(name, text.encode("utf-8"), px=put.px))
    deleted = [name for name, put in plan.puts.items() if put.value is None]
    if deleted:
        writes.append(kv.discard(*deleted))
    # a refresh only where the item keeps its TTL (xx): never adds one to a newer version
    writes += [kv.pexpire(n, ms, xx=True) for n, ms in refresh.items() if n not in plan.puts]
    return writes


async def _listed(kv: AsyncKVStore, prefix: tuple[str, ...]) -> list[tuple[Any, str]]:
    """((namespace, key), kvstore key) of every item under ``prefix``, sorted."""
    found: list[tuple[Any, str]] = []
    async for page in kv.key_pages(items.prefix_of(prefix), logs=False):
        for name in page:
            parsed = items.parse(name)
            if parsed is not None:
                found.append((parsed, name))
    found.sort()
    return found


async def search(kv: AsyncKVStore, op: Search) -> tuple[list[SearchItem], dict[str, int]]:
    """The items under the prefix in (namespace, key) order that pass the filter, from
    ``offset``, at most ``limit``; and the TTL refreshes they would take."""
    if op.limit == 0:
        return [], {}
    found = await _listed(kv, op.prefix)
    want = op.offset + op.limit
    matched: list[tuple[str, tuple[str, ...], str, items.Record]] = []
    position = window = 0
    while len(matched) < want and position < len(found):
        need = want - len(matched)
        # unfiltered, every live item matches: read just what is needed; filtered, read
        # more per round (doubling), since a part of what is read matches
        window = need if op.filter is None else max(need, min(2 * window, WINDOW_CAP))
        chunk = found[position : position + window]
        position += len(chunk)
        data = await kv.mget([name for _, name in chunk])
        for ((ns, key), name), raw in zip(chunk, data, strict=True):
            if raw is None:  # deleted or expired since the listing
                continue
            record = items.decode(name, ns, key, raw)
            if items.matches(record.value, op.filter):
                matched.append((name, ns, key, record))
    page = matched[op.offset : want]
    refresh = {name: ms for name, _, _, r in page if (ms := _refresh_of(r)) is not None}
    return [
        SearchItem(ns, key, r.value, r.created_at, r.updated_at) for _, ns, key, r in page
    ], refresh


async def namespaces(kv: AsyncKVStore, op: Listing) -> list[tuple[str, ...]]:
    """The namespaces holding an item that meet every condition, cut to ``max_depth``
    (deduplicated), sorted, from ``offset``, at most ``limit``."""
    if op.limit == 0:
        return []
    seen = {ns for (ns, _), _ in await _listed(kv, items.literal_prefix(op.conditions))}
    kept = [ns for ns in seen if all(items.namespace_matches(ns, c) for c in op.conditions)]
    if op.max_depth is not None:
        kept = list({ns[: op.max_depth] for ns in kept})
    return sorted(kept)[op.offset : op.offset + op.limit]
