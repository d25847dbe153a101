"""S5: reading a 100k-record log (200-byte records), cold and warm.

The log is built by appends of 100 records each (with the latency switched off: only the
reads are measured) and settled (``settle(key)``, as the writer's ``close()`` would: the
segments its background settles write land before the compaction, not racing it), then
the store's clock is moved 11 minutes ahead - chunks younger than
``kvstore.logs.limits.MIN_AGE_MS`` (10 min) are never merged - and ``compact(key)`` merges
the chunks and the settled segments into segments of ``SEGMENT_RECORDS``. On moto the
server's clock decides chunk ages (it is not moved): its chunks stay young and covered,
and only the settled segments are merged. The last piece stays as it is (compaction never
merges it).

* cold ``range(0, -1)`` - a new store with an empty cache: object GETs against
  ``ceil(records / SEGMENT_RECORDS) + 2``; time against one object per record fetched
  concurrently with ``fs.cat`` (fsspec, same latency model, paths known: no LIST).
* cold ``range(-50, -1)``: all requests.
* warm ``range(0, -1)`` with Redis: object requests (0).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from typing import Any

import kvstore
from kvstore import logs
from kvstore.blob import open_blob_store
from kvstore.cache.redis import RedisCache
from kvstore.stats import Stats

from . import data
from .harness import Context, Planned, Row, Skip, counting, log, median
from .latency import LatencyMemoryFS, Space, latency_store

ID = "S5"
TITLE = "100k-record log: cold and warm range"
BATCH = 100
RECORD = 200


class FakeClock:
    """Milliseconds since the epoch, moved only by the benchmark (as tests/conftest.py)."""

    def __init__(self) -> None:
        self.now = (time.time_ns() // 10**9) * 1000

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def gets_target(records: int) -> int:
    return math.ceil(records / logs.limits.SEGMENT_RECORDS) + 2


PLANNED = [
    Planned(
        "S5.a",
        "cold range(0,-1) of 100k records: object GETs",
        gets_target(100_000),
        "<=",
        "GETs",
        "ceil(records / SEGMENT_RECORDS) + 2",
    ),
    Planned(
        "S5.b",
        "cold range(0,-1) of 100k records vs one object per record (fs.cat)",
        50,
        ">=",
        "x faster",
        "fsspec fs.cat of one object per record, concurrent, same latency model",
    ),
    Planned(
        "S5.c",
        "cold range(-50,-1): object requests",
        3,
        "<=",
        "requests",
        "LIST + tail header + 1 GET",
    ),
    Planned(
        "S5.d",
        "warm range(0,-1) (Redis cache): object requests",
        0,
        "<=",
        "requests",
        "no object-store request",
    ),
    Planned(
        "S5.s3.a",
        "moto S3: cold range(0,-1) of 20k records: object GETs",
        gets_target(20_000),
        "<=",
        "GETs",
        "ceil(records / SEGMENT_RECORDS) + 2",
    ),
    Planned(
        "S5.s3.b",
        "moto S3: cold range(-50,-1): object requests",
        3,
        "<=",
        "requests",
        "LIST + tail header + 1 GET",
    ),
]


async def build(store: kvstore.AsyncKVStore, key: str, records: list[bytes], clock: Any) -> None:
    for i in range(0, len(records), BATCH):
        await store.append(key, *records[i : i + BATCH])
    await store.settle(key)  # what the writer's close would do: its background settles land
    clock.advance(logs.limits.MIN_AGE_MS + 60_000)
    await store.compact(key)


def run(ctx: Context) -> list[Row]:
    n = ctx.size(20_000, 100_000)

    def named(planned: Planned) -> str:
        name = planned.name.replace("100k", f"{n // 1000}k")
        return name if n == 100_000 else name + " (quick)"

    records = data.records(n, RECORD)
    space = Space()
    root = f"s5-{uuid.uuid4().hex[:8]}"
    clock = FakeClock()
    key = "session:long"
    reps = ctx.size(3, 5)
    base_reps = ctx.size(2, 3)
    server = ctx.redis()

    async def model() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with latency_store(root, 0.0, space=space, clock=clock) as writer:
            started = time.perf_counter()
            await build(writer, key, records, clock)
            out["build_s"] = time.perf_counter() - started
        sizes = space.sizes(root + "/")
        out["objects"] = len(sizes)
        out["largest_object"] = max(sizes.values())

        def fresh(cache: Any = None) -> kvstore.AsyncKVStore:
            return latency_store(
                root, ctx.latency, cache or kvstore.LocalCache(ttl=600), space=space, clock=clock
            )

        # Cold full read, repeated with a new store (empty cache) each time, interleaved
        # with the baseline: one object per record, all paths known (no LIST), fetched
        # with fsspec's fs.cat (its coroutine: the same loop as kvstore's, no thread hop).
        fs = LatencyMemoryFS(ctx.latency, asynchronous=True)
        paths = [f"/rec/{key}/{i:08d}" for i in range(n)]
        for path, record in zip(paths, records, strict=True):
            fs.load(path, record)
        times, base_times, req = [], [], {}
        for rep in range(reps):
            async with fresh() as store:
                with counting(store) as req:
                    started = time.perf_counter()
                    got = await store.range(key, 0, -1)
                    times.append(time.perf_counter() - started)
            assert got == records
            if rep < base_reps:
                started = time.perf_counter()
                fetched = await fs._cat(paths)
                base_times.append(time.perf_counter() - started)
                assert [fetched[p] for p in paths] == records
                del fetched
        out["base_s"] = median(base_times)
        out["cold_s"], out["cold_req"] = median(times), req
        # Cold tail read.
        async with fresh() as store:
            with counting(store) as tail_req:
                started = time.perf_counter()
                got = await store.range(key, -50, -1)
                out["tail_ms"] = (time.perf_counter() - started) * 1e3
        assert got == records[-50:]
        out["tail_req"] = tail_req
        # Warm full read through Redis: one cold read fills it, the next reads must not
        # reach the object store. (And the same with the in-process cache.)
        for name, cache in (("redis", RedisCache(server.url)), ("local", None)):
            async with fresh(cache) as store:
                await store.range(key, 0, -1)
                with counting(store) as warm_req:
                    started = time.perf_counter()
                    got = await store.range(key, 0, -1)
                    out[f"warm_{name}_ms"] = (time.perf_counter() - started) * 1e3
                assert got == records
                out[f"warm_{name}_req"] = warm_req
        return out

    m = asyncio.run(model())

    base = m["base_s"]
    log(
        f"S5: build {m['build_s']:.1f} s, {m['objects']} objects; cold {m['cold_s'] * 1e3:.0f} ms, "
        f"tail {m['tail_ms']:.0f} ms, warm redis {m['warm_redis_ms']:.0f} ms / local "
        f"{m['warm_local_ms']:.0f} ms; baseline fs.cat {base:.2f} s"
    )
    cold_req = m["cold_req"]
    rows = [
        PLANNED[0].row(
            cold_req.get("get", 0),
            name=named(PLANNED[0]),
            requests=cold_req,
            details={"objects_after_compaction": m["objects"], "cold_ms": m["cold_s"] * 1e3},
        ),
        PLANNED[1].row(
            base / m["cold_s"],
            name=named(PLANNED[1]),
            requests={"kvstore": cold_req, "baseline_get": n},
            details={"kvstore_ms": m["cold_s"] * 1e3, "baseline_ms": base * 1e3},
        ),
        PLANNED[2].row(
            m["tail_req"]["total"], requests=m["tail_req"], details={"cold_ms": m["tail_ms"]}
        ),
        PLANNED[3].row(
            m["warm_redis_req"]["total"],
            requests={"redis": m["warm_redis_req"], "local": m["warm_local_req"]},
            details={
                "warm_redis_ms": m["warm_redis_ms"],
                "warm_local_ms": m["warm_local_ms"],
                "largest_object_bytes": m["largest_object"],
            },
        ),
    ]
    rows[0].target = gets_target(n)  # quick mode: the target follows the size
    return rows + moto(ctx)


def moto(ctx: Context) -> list[Row]:
    try:
        server = ctx.s3()
    except Skip as exc:
        return [PLANNED[4].skipped(str(exc)), PLANNED[5].skipped(str(exc))]
    n = 20_000
    records = data.records(n, RECORD)
    url = server.url_for("kvbench", f"s5-{uuid.uuid4().hex[:8]}")
    clock = FakeClock()
    key = "session:long"

    def store(cache: Any = None) -> kvstore.AsyncKVStore:
        stats = Stats()
        blob = open_blob_store(url, server.storage_options, stats=stats)
        return kvstore.AsyncKVStore(blob, cache or kvstore.NoCache(), stats=stats, clock=clock)

    async def go() -> dict[str, Any]:
        async with store() as writer:
            await build(writer, key, records, clock)
        async with store(kvstore.LocalCache(ttl=600)) as reader:
            await reader.get("warm-up")  # connect and sign once
            with counting(reader) as full:
                assert await reader.range(key, 0, -1) == records
        async with store(kvstore.LocalCache(ttl=600)) as reader:
            await reader.get("warm-up")
            with counting(reader) as tail:
                assert await reader.range(key, -50, -1) == records[-50:]
        return {"full": full, "tail": tail}

    m = asyncio.run(go())
    return [
        PLANNED[4].row(m["full"].get("get", 0), requests=m["full"]),
        PLANNED[5].row(m["tail"]["total"], requests=m["tail"]),
    ]
