"""S1: a warm ``get`` (cache hit in Redis) against redis-py ``GET`` of the same value.

Both faces: the blocking ``KVStore`` against a plain ``redis.Redis()`` client, and
``AsyncKVStore`` against ``redis.asyncio.Redis()``; default client settings, the same
redis-server (started by the harness), the same 1 KiB JSON value. Timed in interleaved
repetitions of sequential calls; the figure is the ratio of the medians (time per call).
The object store behind kvstore is the latency model; a hit must never reach it.
"""

from __future__ import annotations

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

ID = "S1"
TITLE = "warm get vs redis-py GET"
VALUE_SIZE = 1024
BASELINE = "redis-py GET (default client), same server, same 1 KiB value"
PLANNED = [
    Planned("S1", "warm get, blocking KVStore vs redis.Redis GET", 1.3, "<=", "x", BASELINE),
    Planned("S1.async", "warm get, AsyncKVStore vs redis.asyncio GET", 1.3, "<=", "x", BASELINE),
    Planned(
        "S1.async.floor",
        "warm get: the invariants' floor (bare loop) vs redis.asyncio GET",
        None,
        "<=",
        "x",
        BASELINE,
    ),
    Planned(
        "S1.async.over_floor",
        "warm get, AsyncKVStore vs its floor",
        1.3,
        "<=",
        "x",
        "the invariants alone: MGET [generation, entry], generation + CRC-32 + copy (S2's)",
    ),
]


def commands_per_call(server: Any, call: Any, n: int = 200) -> float:
    """Redis commands the server executed per ``call()`` (INFO commandstats delta)."""
    admin = server.client()
    try:

        def total() -> int:
            stats = admin.info("commandstats")
            return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info",))

        before = total()
        for _ in range(n):
            call()
        return (total() - before) / n
    finally:
        admin.close()


def sync_face(ctx: Context, server: Any) -> Row:
    value = data.sized_json(VALUE_SIZE)
    calls = ctx.size(2000, 3000)
    reps = ctx.size(7, 11)
    core = latency_store(f"s1-{uuid.uuid4().hex[:8]}", ctx.latency, RedisCache(server.url))
    plain = redis.Redis(host=server.host, port=server.port)
    with kvstore.KVStore(core) as store:
        store.set("session:1", value)
        plain.set("plain:session:1", value)
        assert store.get("session:1") == value  # fills the cache
        for _ in range(500):  # warm up both (connections, code paths)
            store.get("session:1")
            plain.get("plain:session:1")
        assert store.stats().get("cache.hits", 0) >= 500

        def kv() -> float:
            get = store.get
            started = time.perf_counter()
            for _ in range(calls):
                get("session:1")
            return (time.perf_counter() - started) / calls

        def base() -> float:
            get = plain.get
            started = time.perf_counter()
            for _ in range(calls):
                get("plain:session:1")
            return (time.perf_counter() - started) / calls

        with counting(store) as req:
            times = interleave(reps, {"kvstore": kv, "redis-py": base})
        per_kv = commands_per_call(server, lambda: store.get("session:1"))
        per_plain = commands_per_call(server, lambda: plain.get("plain:session:1"))
    plain.close()
    kv_t, base_t = median(times["kvstore"]), median(times["redis-py"])
    log(f"S1 sync: kvstore {kv_t * 1e6:.1f} us, redis-py {base_t * 1e6:.1f} us")
    return PLANNED[0].row(
        kv_t / base_t,
        requests={
            "object_store": req["total"],
            "redis_commands_per_get": per_kv,
            "baseline_redis_commands_per_get": per_plain,
        },
        details={
            "kvstore_us": kv_t * 1e6,
            "baseline_us": base_t * 1e6,
            "calls_per_rep": calls,
            "reps": reps,
        },
    )


async def async_face(ctx: Context, server: Any) -> list[Row]:
    value = data.sized_json(VALUE_SIZE)
    calls = ctx.size(2000, 3000)
    reps = ctx.size(7, 11)
    plain = redis.asyncio.Redis(host=server.host, port=server.port)
    async with latency_store(
        f"s1a-{uuid.uuid4().hex[:8]}", ctx.latency, RedisCache(server.url)
    ) as store:
        await store.set("session:1", value)
        await plain.set("plain:session:1", value)
        assert await store.get("session:1") == value
        for _ in range(500):
            await store.get("session:1")
            await plain.get("plain:session:1")

        async def kv() -> float:
            get = store.get
            started = time.perf_counter()
            for _ in range(calls):
                await get("session:1")
            return (time.perf_counter() - started) / calls

        async def base() -> float:
            get = plain.get
            started = time.perf_counter()
            for _ in range(calls):
                await get("plain:session:1")
            return (time.perf_counter() - started) / calls

        from .s2_mget import verified, wire_keys

        wire = wire_keys(store._values, ["session:1"])
        assert verified(await plain.mget(wire)) == [value]

        async def floor() -> float:
            mget = plain.mget
            started = time.perf_counter()
            for _ in range(calls):
                verified(await mget(wire))
            return (time.perf_counter() - started) / calls

        with counting(store) as req:
            times = await ainterleave(reps, {"kvstore": kv, "redis-py": base, "floor": floor})
    await plain.aclose()
    kv_t, base_t, floor_t = (median(times[n]) for n in ("kvstore", "redis-py", "floor"))
    log(
        f"S1 async: kvstore {kv_t * 1e6:.1f} us, redis.asyncio {base_t * 1e6:.1f} us, "
        f"floor {floor_t * 1e6:.1f} us"
    )
    details = {
        "kvstore_us": kv_t * 1e6,
        "baseline_us": base_t * 1e6,
        "floor_us": floor_t * 1e6,
        "calls_per_rep": calls,
        "reps": reps,
    }
    return [
        PLANNED[1].row(kv_t / base_t, requests={"object_store": req["total"]}, details=details),
        PLANNED[2].row(floor_t / base_t, details=details),
        PLANNED[3].row(kv_t / floor_t, details=details),
    ]


def run(ctx: Context) -> list[Row]:
    import asyncio

    server = ctx.redis()
    return [sync_face(ctx, server), *asyncio.run(async_face(ctx, server))]
