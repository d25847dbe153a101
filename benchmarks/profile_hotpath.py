"""Where the time of a warm ``get`` / ``mget`` goes: a decomposition, not a scenario.

``python -m benchmarks.profile_hotpath [--calls N]`` times each layer of the cache-hit path
on its own, against a redis-server of its own, with the same 1 KiB value as S1/S2:
the redis-py commands kvstore sends, the cache lookup with and without its guard, the
decoding of cache entries, the key planning, the blocking face's caller-thread lookup and
its thread hop (what a miss still pays) - and the whole call.
Medians of interleaved repetitions, in microseconds per call (wall, and CPU of this
process). Findings: BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio

import kvstore
from kvstore import codec
from kvstore.cache.redis import GENERATION_KEY, RedisCache
from kvstore.portal import portal

from . import data
from .harness import ROOT  # noqa: F401 - puts `backends` on sys.path
from .latency import latency_store

REPS = 7


Sample = tuple[float, float]  # (wall, CPU of this process: all its threads) per call, us


def per_call(fn: Callable[[], Any], calls: int) -> Sample:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    return (
        (time.perf_counter() - wall) / calls * 1e6,
        (time.process_time() - cpu) / calls * 1e6,
    )


async def aper_call(fn: Callable[[], Awaitable[Any]], calls: int) -> Sample:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await fn()
    return (
        (time.perf_counter() - wall) / calls * 1e6,
        (time.process_time() - cpu) / calls * 1e6,
    )


def report(title: str, rows: dict[str, list[Sample]]) -> None:
    """Wall time per call, and the CPU time this process spent per call (less sensitive to
    other load on the machine: waiting for redis-server is not in it)."""
    print(f"\n{title}\n  {'wall':>9}     {'cpu':>9}")
    for name, samples in rows.items():
        wall = statistics.median(s[0] for s in samples)
        cpu = statistics.median(s[1] for s in samples)
        print(f"  {wall:9.1f} us  {cpu:9.1f} us  {name}")


async def async_part(server: Any, calls: int, mget_calls: int) -> None:
    value = data.sized_json(1024)
    plain = redis.asyncio.Redis(host=server.host, port=server.port)
    cache = RedisCache(server.url)
    store = latency_store("profile-a", 0.02, cache)
    await store.set("session:1", value)
    await store.get("session:1")
    await plain.set("plain", value)
    ck = store._values.plan(["session:1"])[2][0]
    triple = [GENERATION_KEY, f"{{{ck}}}:d", f"{{{ck}}}:v"]
    envelope = codec.encode(value)
    entry = codec.pack_cached(value, 0)
    contenders: dict[str, Callable[[], Awaitable[Any]]] = {
        "redis.asyncio GET (baseline)": lambda: plain.get("plain"),
        "redis.asyncio MGET [generation, {K}:d, {K}:v]": lambda: plain.mget(triple),
        "redis.asyncio MGET [generation, {K}:d] (a full hit needs no more)": lambda: plain.mget(
            triple[:2]
        ),
        "RedisCache._lookup (unguarded)": lambda: cache._lookup([ck]),
        "RedisCache.lookup (breaker + timeout guard)": lambda: cache.lookup([ck]),
        "AsyncKVStore.get (whole call)": lambda: store.get("session:1"),
    }
    rows: dict[str, list[Sample]] = {name: [] for name in contenders}
    for _ in range(REPS):
        for name, fn in contenders.items():
            rows[name].append(await aper_call(fn, calls))
    rows["codec.decode of the 1 KiB envelope (CPU)"] = [
        per_call(lambda: codec.decode(envelope, key="session:1", path="p"), calls)
        for _ in range(REPS)
    ]
    rows["codec.unpack_cached of the cache entry, what a hit decodes (CPU)"] = [
        per_call(lambda: codec.unpack_cached([entry]), calls) for _ in range(REPS)
    ]
    rows["_plan (key validation + encoding, remembered per store; CPU)"] = [
        per_call(lambda: store._values.plan(["session:1"]), calls) for _ in range(REPS)
    ]
    report("S1 async: warm get, per call", rows)

    # S2: 1000 keys.
    keys = [f"user:{i:05d}" for i in range(1000)]
    items = {k: data.sized_json(1024, seed=i) for i, k in enumerate(keys)}
    await store.mset(items)
    await plain.mset({"plain:" + k: v for k, v in items.items()})
    await store.mget(keys)
    cks = store._values.plan(keys)[2]
    pairs = [GENERATION_KEY] + [x for c in cks for x in (f"{{{c}}}:d", f"{{{c}}}:v")]
    data_only = [GENERATION_KEY] + [f"{{{c}}}:d" for c in cks]
    plain_keys = ["plain:" + k for k in keys]
    envelopes = [codec.encode(v) for v in items.values()]
    entries = [codec.pack_cached(v, 0) for v in items.values()]
    contenders = {
        "redis.asyncio MGET 1000 keys (baseline)": lambda: plain.mget(plain_keys),
        "redis.asyncio MGET 2001 keys (generation + entry and token per key)": (
            lambda: plain.mget(pairs)
        ),
        "redis.asyncio MGET 1001 keys (generation + entry per key)": (
            lambda: plain.mget(data_only)
        ),
        "RedisCache.lookup(1000)": lambda: cache.lookup(cks),
        "AsyncKVStore.mget(1000) (whole call)": lambda: store.mget(keys),
    }
    rows = {name: [] for name in contenders}
    for _ in range(REPS):
        for name, fn in contenders.items():
            rows[name].append(await aper_call(fn, mget_calls))

    def decode_all() -> None:
        for env in envelopes:
            codec.decode(env, key="k", path="p")

    rows["1000 x codec.decode of the envelope, what a miss decodes (CPU)"] = [
        per_call(decode_all, mget_calls) for _ in range(REPS)
    ]
    rows["codec.unpack_cached of 1000 entries, what hits decode (CPU)"] = [
        per_call(lambda: codec.unpack_cached(entries), mget_calls) for _ in range(REPS)
    ]
    rows["_plan of 1000 keys (remembered per store; CPU)"] = [
        per_call(lambda: store._values.plan(keys), mget_calls) for _ in range(REPS)
    ]
    report("S2 async: warm mget of 1000 keys, per call", rows)
    await plain.aclose()
    await store.close()


def sync_part(server: Any, calls: int) -> None:
    value = data.sized_json(1024)
    plain = redis.Redis(host=server.host, port=server.port)
    plain.set("plain", value)
    cache = RedisCache(server.url)
    store = kvstore.KVStore(latency_store("profile-s", 0.02, cache))
    store.set("session:1", value)
    store.get("session:1")
    core = store.aio
    plan = core._values.plan(["session:1"])
    hop = portal()

    async def noop() -> None:
        return None

    contenders: dict[str, Callable[[], Any]] = {
        "redis.Redis GET (baseline)": lambda: plain.get("plain"),
        "RedisCache.lookup_now (caller's thread: one blocking MGET)": lambda: cache.lookup_now(
            plan[2]
        ),
        "KVStore.get (whole call; a hit is answered in the caller's thread)": lambda: store.get(
            "session:1"
        ),
        "Portal.run(noop()) (the thread hop alone: what a miss adds)": lambda: hop.run(noop()),
        "Portal.run(Values.load) (the same hit through the loop)": lambda: hop.run(
            core._values.load(plan)
        ),
    }
    rows: dict[str, list[Sample]] = {name: [] for name in contenders}
    for _ in range(REPS):
        for name, fn in contenders.items():
            rows[name].append(per_call(fn, calls))
    report("S1 sync: warm get, per call", rows)
    store.close()
    plain.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_hotpath")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    from backends import RedisServer

    with RedisServer() as server:
        sync_part(server, args.calls)
        asyncio.run(async_part(server, args.calls, max(5, args.calls // 200)))


if __name__ == "__main__":
    main()
