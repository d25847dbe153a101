"""S10: reading a log of 5,000 young chunks (nothing compacted), against the same records
compacted.

In the first ``kvstore.logs.limits.MIN_AGE_MS`` (10 min) of a busy session - or whenever
compaction is off - every append that does not share a chunk with another (group commit)
makes its own chunk, and nothing merges them. This builds such a log: 5,000 appends of one
200-byte record, one after the other (latency switched off: only the reads are measured),
and checks by listing that it holds 5,000 chunks and no segment. A second log receives the
same records the same way, then its clock is moved past MIN_AGE_MS and ``compact(key)``
merges it into one segment plus the tail chunk (compaction never merges the tail chunk):
the **baseline** every row compares against is the same read of the same records from that
compacted log.

Every read is cold: a new store with an empty in-process cache, on the latency model
(``latency_store``, 20 ms per request by default). The four reads (young/compacted x
tail/full) alternate within each repetition; medians. Measured per read: wall time,
object-store requests (LIST pages and GETs, from the store's own counters) and the client's
CPU time (``time.process_time()``: the whole process, which here is the event loop doing the
read; the latency model's waits cost no CPU).

What the design implies, and so the targets (P = LIST pages of the young log: the latency
model pages listings by 1000 names, like S3 and GCS, and on this backend a full last page
costs one more, empty, request - so P = n // 1000 + 1 = 6 for 5,000 chunks; real S3 stops
at the last page's truncation flag, 5). A time ratio's target is the design's time of the
young read over the compacted one's, each = its sequential round trips x the model's
latency + its CPU budget (the young reads' budgets are S10.c and S10.f; a compacted read's
is 10 ms: one segment of 5,000 records decoded - zstd and one ``msgpack.unpackb``):

* **S10.a** cold ``range(-20, -1)``, young / compacted, wall time. A cold plan lists the
  whole directory (object stores list in name order: the tail is on the last page, and the
  pages are sequential), then reads the tail chunk's first 16 KiB - here the whole
  one-record chunk, reused by the read - then one wave of GETs for the other 19 chunks the
  20 records live in. Round trips: P + 2 = 8 young against 3 compacted (LIST, the tail
  read, the segment). Target (8 x 20 + 50) / (3 x 20 + 10) = 3.0.
* **S10.b** cold ``range(-20, -1)`` of the young log: object requests. P LIST pages + 20
  GETs (one record per chunk: 20 records are 20 chunks; the tail chunk's is the plan's
  ranged read) = 26. The compacted log's count (3) is shown next to it.
* **S10.c** the same read's client CPU. The plan parses and covers 5,000 names
  (``cover()``, O(n log n): a few microseconds a name) and caches the plan; 20 tiny chunks
  are decoded. Target 50 ms - well under the 100 ms a 20-record read could be allowed,
  and far from the seconds the quadratic ``cover()`` of before ``aa057ce`` took.
* **S10.d** cold ``range(0, -1)``, young / compacted, wall time. Young: P LIST pages, the
  tail read, then 4,999 GETs kept at most ``concurrency`` in flight (the store's default,
  1024 here: 5 waves) = P + 1 + 5 = 12 round trips against 3. Target
  (12 x 20 + 250) / (3 x 20 + 10) = 7.0.
* **S10.e** cold ``range(0, -1)`` of the young log: object requests. P + 5,000 GETs (every
  chunk once, the tail chunk by the plan's read) = 5,006; compacted 3.
* **S10.f** the same read's client CPU. Target 50 us per chunk (250 ms for 5,000): what a
  cold read costs per object all in on this machine in S3 (a cold ``mget`` of 1000 keys:
  ~50 ms past its one 20 ms latency - verification, decompression, the cache fill and the
  latency model's own per-request machinery).

Quick mode: 1,000 chunks; the targets that depend on the size follow it.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import kvstore
from kvstore import logs

from . import data
from .harness import Context, Planned, Row, ainterleave, counting, log, median
from .latency import Space, blob_of, latency_store
from .s5_log_range import FakeClock

ID = "S10"
TITLE = "5,000 young chunks: cold tail and full read vs the same log compacted"
RECORD = 200
TAIL = 20  # range(-20, -1): the last 20 records
PAGE = 1000  # names per LIST page (kvstore.blob.memory.PAGE, S3, GCS)
TAIL_CPU_MS = 50.0  # CPU budgets (see above)
FULL_CPU_US_PER_CHUNK = 50.0
COMPACTED_CPU_MS = 10.0


def list_pages(n: int) -> int:
    """LIST requests for n names on the memory backend: a full last page costs one more."""
    return n // PAGE + 1


def round_trips(n: int, concurrency: int) -> dict[str, int]:
    """Sequential object-store steps of each cold read, as the design plans them."""
    pages = list_pages(n)
    return {
        "young_tail": pages + 2,  # LIST pages, tail read, one wave of 19 GETs
        "young_full": pages + 1 + math.ceil((n - 1) / concurrency),
        "compacted": 3,  # LIST, tail read, the segment
    }


def ratio_targets(n: int, concurrency: int, latency_ms: float) -> tuple[float, float]:
    """(tail, full): the design's young time over its compacted time, each = round trips x
    latency + CPU budget."""
    trips = round_trips(n, concurrency)
    compacted = trips["compacted"] * latency_ms + COMPACTED_CPU_MS
    tail = trips["young_tail"] * latency_ms + TAIL_CPU_MS
    full = trips["young_full"] * latency_ms + FULL_CPU_US_PER_CHUNK * n / 1000
    return round(tail / compacted, 2), round(full / compacted, 2)


FULL_SIZE_TARGETS = ratio_targets(5000, 1024, 20.0)  # as planned: the defaults here


PLANNED = [
    Planned(
        "S10.a",
        "cold range(-20,-1) of 5,000 young chunks / same records compacted: time",
        FULL_SIZE_TARGETS[0],
        "<=",
        "x",
        "the same read of the same log after compact(): 1 segment + the tail chunk",
    ),
    Planned(
        "S10.b",
        "cold range(-20,-1) of 5,000 young chunks: object requests",
        list_pages(5000) + TAIL,
        "<=",
        "requests",
        "LIST pages (n // 1000 + 1) + 20 GETs (one chunk per record)",
    ),
    Planned(
        "S10.c",
        "cold range(-20,-1) of 5,000 young chunks: client CPU",
        TAIL_CPU_MS,
        "<=",
        "ms",
        "an absolute budget (the compacted read's CPU in details)",
    ),
    Planned(
        "S10.d",
        "cold range(0,-1) of 5,000 young chunks / same records compacted: time",
        FULL_SIZE_TARGETS[1],
        "<=",
        "x",
        "the same read of the same log after compact(): 1 segment + the tail chunk",
    ),
    Planned(
        "S10.e",
        "cold range(0,-1) of 5,000 young chunks: object requests",
        list_pages(5000) + 5000,
        "<=",
        "requests",
        "LIST pages (n // 1000 + 1) + one GET per chunk",
    ),
    Planned(
        "S10.f",
        "cold range(0,-1) of 5,000 young chunks: client CPU",
        FULL_CPU_US_PER_CHUNK * 5000 / 1000,
        "<=",
        "ms",
        "50 us per chunk (the compacted read's CPU in details)",
    ),
]


async def objects(store: kvstore.AsyncKVStore) -> dict[str, int]:
    """The store's log objects by kind (c, s, m), from a listing of the whole store."""
    blob, layout = blob_of(store), store._ctx.layout
    kinds: dict[str, int] = {"c": 0, "s": 0, "m": 0}
    async for page in blob.list_pages(""):
        for path in page:
            split = layout.split_log_path(path)
            if split is not None:
                kind = split[1].partition("/")[0]
                kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def run(ctx: Context) -> list[Row]:
    # The log this scenario is about: young chunks nothing has covered - what a log is
    # without settling (logs.limits.SETTLE; S13.a measures the settled one).
    settle, logs.limits.SETTLE = logs.limits.SETTLE, False
    try:
        return _run(ctx)
    finally:
        logs.limits.SETTLE = settle


def _run(ctx: Context) -> list[Row]:
    n = ctx.size(1000, 5000)
    reps = ctx.size(3, 5)
    records = data.records(n, RECORD)
    key = "session:busy"
    tail_range = (-TAIL, -1)

    async def model() -> dict[str, Any]:
        out: dict[str, Any] = {}
        logs_: dict[str, tuple[Space, str, FakeClock]] = {}
        for name in ("young", "compacted"):
            space, root, clock = Space(), f"s10-{name}-{uuid.uuid4().hex[:8]}", FakeClock()
            async with latency_store(root, 0.0, space=space, clock=clock) as writer:
                started = time.perf_counter()
                for record in records:  # one append at a time: one chunk each
                    await writer.append(key, record)
                out[f"build_{name}_s"] = time.perf_counter() - started
                built = await objects(writer)
                assert built == {"c": n, "s": 0, "m": 0}, built
                if name == "compacted":
                    clock.advance(logs.limits.MIN_AGE_MS + 60_000)
                    await writer.compact(key)
                    out["compacted_objects"] = after = await objects(writer)
                    segments = math.ceil((n - 1) / logs.limits.SEGMENT_RECORDS)
                    assert after == {"c": 1, "s": segments, "m": 0}, after
            logs_[name] = (space, root, clock)

        def fresh(name: str) -> kvstore.AsyncKVStore:
            space, root, clock = logs_[name]
            return latency_store(
                root, ctx.latency, kvstore.LocalCache(ttl=600), space=space, clock=clock
            )

        probe = fresh("young")
        out["concurrency"] = probe._ctx.concurrency
        await probe.close()

        seen: dict[str, list[dict[str, Any]]] = {}

        def reader(name: str, lo: int, hi: int) -> Callable[[], Awaitable[float]]:
            expected = records[lo:] if lo < 0 else records

            async def read() -> float:
                async with fresh(name) as store:
                    with counting(store) as req:
                        cpu = time.process_time()
                        started = time.perf_counter()
                        got = await store.range(key, lo, hi)
                        wall = time.perf_counter() - started
                        cpu = time.process_time() - cpu
                assert got == expected, (name, lo, len(got))
                seen.setdefault(f"{name}_{'tail' if lo < 0 else 'full'}", []).append(
                    {"wall": wall, "cpu": cpu, "req": req}
                )
                return wall

            return read

        contenders = {
            f"{name}_{part}": reader(name, *span)
            for name in ("young", "compacted")
            for part, span in (("tail", tail_range), ("full", (0, -1)))
        }
        for read in contenders.values():  # warm-up: imports, first allocations
            await read()
        seen.clear()
        await ainterleave(reps, contenders)
        for label, runs in seen.items():
            out[label] = {
                "wall_ms": median([r["wall"] for r in runs]) * 1e3,
                "cpu_ms": median([r["cpu"] for r in runs]) * 1e3,
                "req": runs[-1]["req"],
                "req_same": all(r["req"] == runs[0]["req"] for r in runs),
            }
        return out

    m = asyncio.run(model())
    labels = ("young_tail", "compacted_tail", "young_full", "compacted_full")
    yt, ct, yf, cf = (m[label] for label in labels)
    log(
        f"S10: build {m['build_young_s']:.1f} s + {m['build_compacted_s']:.1f} s, "
        f"compacted to {m['compacted_objects']}; tail {yt['wall_ms']:.0f} ms vs "
        f"{ct['wall_ms']:.0f} ms (CPU {yt['cpu_ms']:.0f} vs {ct['cpu_ms']:.0f} ms); full "
        f"{yf['wall_ms']:.0f} ms vs {cf['wall_ms']:.0f} ms (CPU {yf['cpu_ms']:.0f} vs "
        f"{cf['cpu_ms']:.0f} ms)"
    )
    trips = round_trips(n, m["concurrency"])
    floor = ctx.latency * 1e3

    def named(planned: Planned) -> str:
        name = planned.name.replace("5,000", f"{n:,}")
        return name if n == 5000 else name + " (quick)"

    def both(young: dict[str, Any], compacted: dict[str, Any]) -> dict[str, Any]:
        return {"young": young["req"], "compacted": compacted["req"]}

    def timing(young: dict[str, Any], compacted: dict[str, Any], trips: int) -> dict[str, Any]:
        return {
            "young_ms": young["wall_ms"],
            "compacted_ms": compacted["wall_ms"],
            "young_cpu_ms": young["cpu_ms"],
            "compacted_cpu_ms": compacted["cpu_ms"],
            "young_round_trips": trips,
            "compacted_round_trips": 3,
            "young_floor_ms": trips * floor,
            "requests_same_every_rep": young["req_same"] and compacted["req_same"],
        }

    rows = [
        PLANNED[0].row(
            yt["wall_ms"] / ct["wall_ms"],
            name=named(PLANNED[0]),
            requests=both(yt, ct),
            details=timing(yt, ct, trips["young_tail"]),
        ),
        PLANNED[1].row(yt["req"]["total"], name=named(PLANNED[1]), requests=both(yt, ct)),
        PLANNED[2].row(
            yt["cpu_ms"],
            name=named(PLANNED[2]),
            details={"compacted_cpu_ms": ct["cpu_ms"], "young_ms": yt["wall_ms"]},
        ),
        PLANNED[3].row(
            yf["wall_ms"] / cf["wall_ms"],
            name=named(PLANNED[3]),
            requests=both(yf, cf),
            details={**timing(yf, cf, trips["young_full"]), "concurrency": m["concurrency"]},
        ),
        PLANNED[4].row(yf["req"]["total"], name=named(PLANNED[4]), requests=both(yf, cf)),
        PLANNED[5].row(
            yf["cpu_ms"],
            name=named(PLANNED[5]),
            details={
                "compacted_cpu_ms": cf["cpu_ms"],
                "young_cpu_us_per_chunk": yf["cpu_ms"] * 1e3 / n,
                "young_ms": yf["wall_ms"],
            },
        ),
    ]
    # The targets follow the size (quick mode), the latency and the store's concurrency.
    rows[0].target, rows[3].target = ratio_targets(n, m["concurrency"], floor)
    rows[1].target = list_pages(n) + TAIL
    rows[4].target = list_pages(n) + n
    rows[5].target = FULL_CPU_US_PER_CHUNK * n / 1000
    return rows
