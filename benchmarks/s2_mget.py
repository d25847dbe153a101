"""S2: a warm ``mget`` of 1000 keys (all cache hits in Redis) against redis-py ``MGET``.

Same setup as S1 (both faces, default redis-py clients, the same server), 1000 distinct
1 KiB JSON values. The figure is the ratio of the medians (time per ``mget`` call).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import redis
import redis.asyncio

import kvstore
from kvstore.cache.redis import RedisCache

from . import data
from .harness import Context, Planned, Row, ainterleave, counting, interleave, log, median
from .latency import latency_store
from .s1_get import commands_per_call

ID = "S2"
TITLE = "warm mget of 1000 keys vs redis-py MGET"
KEYS = 1000
VALUE_SIZE = 1024
BASELINE = "redis-py MGET of the same 1000 keys/values (default client), same server"
PLANNED = [
    Planned(
        "S2", "warm mget x1000, blocking KVStore vs redis.Redis MGET", 1.5, "<=", "x", BASELINE
    ),
    Planned(
        "S2.async", "warm mget x1000, AsyncKVStore vs redis.asyncio MGET", 1.5, "<=", "x", BASELINE
    ),
]


def values() -> dict[str, bytes]:
    return {f"user:{i:05d}": data.sized_json(VALUE_SIZE, seed=i) for i in range(KEYS)}


def sync_face(ctx: Context, server: Any, items: dict[str, bytes]) -> Row:
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

        with counting(store) as req:
            times = interleave(reps, {"kvstore": kv, "redis-py": base})
        per_kv = commands_per_call(server, lambda: store.mget(keys), n=10)
    plain.close()
    kv_t, base_t = median(times["kvstore"]), median(times["redis-py"])
    log(f"S2 sync: kvstore {kv_t * 1e3:.2f} ms, redis-py {base_t * 1e3:.2f} ms")
    return PLANNED[0].row(
        kv_t / base_t,
        requests={"object_store": req["total"], "redis_commands_per_mget": per_kv},
        details={"kvstore_ms": kv_t * 1e3, "baseline_ms": base_t * 1e3, "reps": reps},
    )


async def async_face(ctx: Context, server: Any, items: dict[str, bytes]) -> Row:
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

        with counting(store) as req:
            times = await ainterleave(reps, {"kvstore": kv, "redis-py": base})
    await plain.aclose()
    kv_t, base_t = median(times["kvstore"]), median(times["redis-py"])
    log(f"S2 async: kvstore {kv_t * 1e3:.2f} ms, redis.asyncio {base_t * 1e3:.2f} ms")
    return PLANNED[1].row(
        kv_t / base_t,
        requests={"object_store": req["total"]},
        details={"kvstore_ms": kv_t * 1e3, "baseline_ms": base_t * 1e3, "reps": reps},
    )


def run(ctx: Context) -> list[Row]:
    server = ctx.redis()
    items = values()
    return [sync_face(ctx, server, items), asyncio.run(async_face(ctx, server, items))]
