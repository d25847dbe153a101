"""S2: a warm ``mget`` of 1000 keys (all cache hits in Redis) against redis-py ``MGET``.

Same setup as S1 (both faces, default redis-py clients, the same server), 1000 distinct
1 KiB JSON values. The figure is the ratio of the medians (time per ``mget`` call).

The floor, measured in the same run (``S2.floor``, ``S2.async.floor``): what the
invariants alone cost on a hit - the same client's MGET of the very Redis keys kvstore
reads (the generation and each entry: the restart-proof generation check), then for each
entry the generation prefix compared, a CRC-32 over it (every byte verified) and its
payload copied out of it into the bytes a caller gets (Python cannot slice bytes without
a copy). A bare loop, no kvstore code: kvstore's own overhead is the ratio to it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio

import kvstore
from kvstore import codec
from kvstore.cache.redis import RedisCache
from kvstore.cache.redis.scripts import _GEN_LEN, GENERATION_KEY, _data_key

from . import data
from .harness import Context, Planned, Row, ainterleave, counting, interleave, log, median
from .latency import latency_store
from .s1_get import commands_per_call

ID = "S2"
TITLE = "warm mget of 1000 keys vs redis-py MGET"
KEYS = 1000
VALUE_SIZE = 1024
BASELINE = "redis-py MGET of the same 1000 keys/values (default client), same server"
FLOOR = "the invariants alone: MGET of kvstore's Redis keys, generation + CRC-32 + copy each"
PLANNED = [
    Planned(
        "S2", "warm mget x1000, blocking KVStore vs redis.Redis MGET", 1.5, "<=", "x", BASELINE
    ),
    Planned(
        "S2.floor",
        "warm mget x1000: the invariants' floor (bare loop) vs redis.Redis MGET",
        None,
        "<=",
        "x",
        BASELINE,
    ),
    Planned(
        "S2.over_floor", "warm mget x1000, blocking KVStore vs its floor", 1.3, "<=", "x", FLOOR
    ),
    Planned(
        "S2.async", "warm mget x1000, AsyncKVStore vs redis.asyncio MGET", 1.5, "<=", "x", BASELINE
    ),
    Planned(
        "S2.async.floor",
        "warm mget x1000: the invariants' floor (bare loop) vs redis.asyncio MGET",
        None,
        "<=",
        "x",
        BASELINE,
    ),
    Planned(
        "S2.async.over_floor", "warm mget x1000, AsyncKVStore vs its floor", 1.3, "<=", "x", FLOOR
    ),
]


def wire_keys(model: Any, keys: list[str]) -> list[str]:
    """The Redis keys a warm ``mget`` of ``keys`` reads: the generation and each entry."""
    return [GENERATION_KEY, *[_data_key(k) for k in model.plan(keys)[2]]]


def verified(reply: Sequence[bytes | None]) -> list[bytes]:
    """What a hit must do with each entry, and nothing else: compare its generation,
    check its CRC-32, copy its payload out (the cache form: codec.pack_cached)."""
    generation, *entries = reply
    assert generation is not None
    out = []
    crc32 = zlib.crc32
    for entry in entries:
        assert entry is not None and entry.startswith(generation)
        view = memoryview(entry)[_GEN_LEN:]
        if crc32(view) != codec._CRC_RESIDUE:
            raise AssertionError("damaged entry")
        out.append(bytes(view[12:-4]))
    return out


def values() -> dict[str, bytes]:
    return {f"user:{i:05d}": data.sized_json(VALUE_SIZE, seed=i) for i in range(KEYS)}


def sync_face(ctx: Context, server: Any, items: dict[str, bytes]) -> list[Row]:
    keys = list(items)
    plain_keys = ["plain:" + k for k in keys]
    calls = ctx.size(10, 20)
    reps = ctx.size(7, 11)
    core = latency_store(
        f"s2-{uuid.uuid4().hex[:8]}", ctx.latency, RedisCache(server.url), concurrency=32
    )
    plain = redis.Redis(host=server.host, port=server.port)
    with kvstore.KVStore(core) as store:
        store.mset(items)
        plain.mset(dict(zip(plain_keys, items.values(), strict=True)))
        assert store.mget(keys) == list(items.values())  # fills the cache
        for _ in range(5):
            store.mget(keys)
            plain.mget(plain_keys)

        def kv() -> float:
            started = time.perf_counter()
            for _ in range(calls):
                store.mget(keys)
            return (time.perf_counter() - started) / calls

        def base() -> float:
            started = time.perf_counter()
            for _ in range(calls):
                plain.mget(plain_keys)
            return (time.perf_counter() - started) / calls

        wire = wire_keys(store._core._values, keys)
        assert verified(plain.mget(wire)) == list(items.values())

        def floor() -> float:
            started = time.perf_counter()
            for _ in range(calls):
                verified(plain.mget(wire))
            return (time.perf_counter() - started) / calls

        with counting(store) as req:
            times = interleave(reps, {"kvstore": kv, "redis-py": base, "floor": floor})
        per_kv = commands_per_call(server, lambda: store.mget(keys), n=10)
    plain.close()
    return _rows(PLANNED[0:3], times, reps, "S2 sync", {"redis_commands_per_mget": per_kv}, req)


def _rows(
    planned: list[Planned],
    times: dict[str, list[float]],
    reps: int,
    label: str,
    extra: dict[str, Any],
    req: dict[str, int],
) -> list[Row]:
    kv_t, base_t, floor_t = (median(times[n]) for n in ("kvstore", "redis-py", "floor"))
    log(
        f"{label}: kvstore {kv_t * 1e3:.2f} ms, redis-py {base_t * 1e3:.2f} ms, "
        f"floor {floor_t * 1e3:.2f} ms"
    )
    details = {
        "kvstore_ms": kv_t * 1e3,
        "baseline_ms": base_t * 1e3,
        "floor_ms": floor_t * 1e3,
        "reps": reps,
    }
    return [
        planned[0].row(
            kv_t / base_t, requests={"object_store": req["total"], **extra}, details=details
        ),
        planned[1].row(floor_t / base_t, details=details),
        planned[2].row(kv_t / floor_t, details=details),
    ]


async def async_face(ctx: Context, server: Any, items: dict[str, bytes]) -> list[Row]:
    keys = list(items)
    plain_keys = ["plain:" + k for k in keys]
    calls = ctx.size(10, 20)
    reps = ctx.size(7, 11)
    plain = redis.asyncio.Redis(host=server.host, port=server.port)
    async with latency_store(
        f"s2a-{uuid.uuid4().hex[:8]}", ctx.latency, RedisCache(server.url)
    ) as store:
        await store.mset(items)
        await plain.mset(dict(zip(plain_keys, items.values(), strict=True)))
        assert await store.mget(keys) == list(items.values())
        for _ in range(5):
            await store.mget(keys)
            await plain.mget(plain_keys)

        async def kv() -> float:
            started = time.perf_counter()
            for _ in range(calls):
                await store.mget(keys)
            return (time.perf_counter() - started) / calls

        async def base() -> float:
            started = time.perf_counter()
            for _ in range(calls):
                await plain.mget(plain_keys)
            return (time.perf_counter() - started) / calls

        wire = wire_keys(store._values, keys)
        assert verified(await plain.mget(wire)) == list(items.values())

        async def floor() -> float:
            started = time.perf_counter()
            for _ in range(calls):
                verified(await plain.mget(wire))
            return (time.perf_counter() - started) / calls

        with counting(store) as req:
            times = await ainterleave(reps, {"kvstore": kv, "redis-py": base, "floor": floor})
    await plain.aclose()
    return _rows(PLANNED[3:6], times, reps, "S2 async", {}, req)


def run(ctx: Context) -> list[Row]:
    server = ctx.redis()
    items = values()
    return [*sync_face(ctx, server, items), *asyncio.run(async_face(ctx, server, items))]
