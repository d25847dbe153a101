"""S3: a cold ``mget`` of 1000 keys (empty cache) on the latency model, and on moto S3.

Baselines on the same latency model (fsspec MemoryFileSystem behind the same per-request
delay), holding the same 1000 values as plain objects:

* a sequential loop of ``fs.cat_file`` - what code that reads keys one by one pays;
* ``fsspec.FSMap(root, fs).getitems(keys)`` - fsspec's own concurrent batch read
  (``fs.cat`` of a list: up to 1280 requests in flight).

kvstore reads through its blocking face with a fresh, empty in-process cache each time
(so the cache fill is included), at its default ``concurrency`` (``kvstore.DEFAULT_CONCURRENCY``:
fsspec's rule, an eighth of the open-file limit, 32..1024) and, as a second figure, with
the old default ``concurrency=32``. Request counts are exact.

On moto S3 (real s3fs HTTP; moto serialises requests, ~10 ms of CPU each, so times there
mostly count requests): kvstore against ``FSMap.getitems`` of s3fs, whose ``cat_file``
sends a HEAD before every GET (counted by wrapping that filesystem's ``_call_s3``).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import fsspec

import kvstore

from . import data
from .harness import Context, Planned, Row, Skip, counting, interleave, log, median
from .latency import LatencyMemoryFS, Space, latency_store

ID = "S3"
DEFAULT = kvstore.DEFAULT_CONCURRENCY
SAME = 1280  # FSMap.getitems -> fs.cat of a list: fsspec's batch_size, all at once
TITLE = "cold mget of 1000 keys (latency model; moto S3)"
KEYS = 1000
VALUE_SIZE = 1024
SEQ = "sequential fs.cat_file loop, same latency model"
GETITEMS = "fsspec FSMap.getitems on the same latency model"
PLANNED = [
    Planned("S3.a", "cold mget x1000 vs sequential cat_file loop", 30, ">=", "x faster", SEQ),
    Planned(
        "S3.b",
        f"cold mget x1000 vs FSMap.getitems (default concurrency={DEFAULT})",
        1.0,
        "<=",
        "x",
        GETITEMS,
    ),
    Planned("S3.c", "cold mget x1000 vs FSMap.getitems (concurrency=32)", 1.0, "<=", "x", GETITEMS),
    Planned(
        "S3.b.same",
        f"cold mget x1000 vs FSMap.getitems, kvstore at getitems' {SAME} in flight",
        1.0,
        "<=",
        "x",
        GETITEMS,
    ),
    Planned(
        "S3.d",
        "cold mget x1000: object requests (exactly 1000 GET, no LIST)",
        1000,
        "==",
        "requests",
        "one GET per key",
    ),
    Planned(
        "S3.s3",
        "moto S3: cold mget x200 vs s3fs FSMap.getitems",
        1.0,
        "<=",
        "x",
        "s3fs FSMap.getitems, same moto server",
    ),
]


def timed_getitems(mapper: Any, keys: list[str], expected: list[bytes]) -> float:
    """Seconds for one ``FSMap.getitems`` of ``keys`` (checked against ``expected``)."""
    started = time.perf_counter()
    got = mapper.getitems(keys)
    elapsed = time.perf_counter() - started
    assert list(got.values()) == expected
    return elapsed


def run(ctx: Context) -> list[Row]:
    items = {f"doc:{i:05d}": data.sized_json(VALUE_SIZE, seed=i) for i in range(KEYS)}
    keys = list(items)
    expected = list(items.values())
    reps = ctx.size(3, 7)

    # kvstore's objects, written once (mset at the same latency).
    space = Space()
    root = f"s3-{uuid.uuid4().hex[:8]}"
    with kvstore.KVStore(latency_store(root, ctx.latency, space=space)) as writer:
        writer.mset(items)

    # The baselines' objects, loaded without requests.
    fs = LatencyMemoryFS(ctx.latency)
    for key, value in items.items():
        fs.load(f"/base/{key}", value)
    mapper = fsspec.FSMap("/base", fs)

    def cold_read(concurrency: int) -> tuple[float, dict[str, int]]:
        store = kvstore.KVStore(
            latency_store(
                root, ctx.latency, kvstore.LocalCache(), space=space, concurrency=concurrency
            )
        )
        with store, counting(store) as req:
            started = time.perf_counter()
            got = store.mget(keys)
            elapsed = time.perf_counter() - started
        assert got == expected
        return elapsed, req

    requests: dict[int, dict[str, int]] = {}

    def kv(concurrency: int) -> float:
        elapsed, requests[concurrency] = cold_read(concurrency)
        return elapsed

    def getitems() -> float:
        return timed_getitems(mapper, keys, expected)

    cold_read(DEFAULT)  # warm up code paths (not the cache: each read has a fresh one)
    getitems()
    before = dict(fs.counts)
    times = interleave(
        reps,
        {
            "kvdef": lambda: kv(DEFAULT),
            "kv32": lambda: kv(32),
            "kvsame": lambda: kv(SAME),
            "getitems": getitems,
        },
    )
    getitems_gets = (fs.counts["get"] - before.get("get", 0)) // reps

    # The sequential loop: 1000 x latency. In quick mode it runs on the first 200 keys
    # and is scaled (the loop is strictly linear: one request after another).
    seq_keys = keys[: ctx.size(200, KEYS)]
    started = time.perf_counter()
    for key in seq_keys:
        fs.cat_file(f"/base/{key}")
    seq = (time.perf_counter() - started) * KEYS / len(seq_keys)
    scaled = " (timed on 200 keys, x5)" if len(seq_keys) < KEYS else ""

    kvdef, kv32, kvsame, base = (median(times[k]) for k in ("kvdef", "kv32", "kvsame", "getitems"))
    log(
        f"S3: kvstore {kvdef * 1e3:.0f} ms (c={DEFAULT}), {kv32 * 1e3:.0f} ms (c=32); "
        f"getitems {base * 1e3:.0f} ms; sequential {seq:.1f} s"
    )
    req = requests[DEFAULT]
    rows = [
        PLANNED[0].row(
            seq / kvdef,
            name=PLANNED[0].name + scaled,
            requests={"kvstore": req, "baseline_get": KEYS},
            details={"kvstore_ms": kvdef * 1e3, "baseline_s": seq},
        ),
        PLANNED[1].row(
            kvdef / base,
            requests={"kvstore": req, "baseline_get": getitems_gets},
            details={"kvstore_ms": kvdef * 1e3, "baseline_ms": base * 1e3, "reps": reps},
        ),
        PLANNED[2].row(
            kv32 / base,
            requests={"kvstore": requests[32], "baseline_get": getitems_gets},
            details={"kvstore_ms": kv32 * 1e3, "baseline_ms": base * 1e3, "reps": reps},
        ),
        PLANNED[4].row(
            req["total"] if req.get("get") == KEYS and not req.get("list") else -req["total"],
            requests=req,
        ),
        PLANNED[3].row(
            kvsame / base,
            requests={"kvstore": requests[SAME], "baseline_get": getitems_gets},
            details={"kvstore_ms": kvsame * 1e3, "baseline_ms": base * 1e3, "reps": reps},
        ),
    ]
    rows.append(moto(ctx))
    return rows


def moto(ctx: Context) -> Row:
    planned = PLANNED[-1]
    try:
        server = ctx.s3()
    except Skip as exc:
        return planned.skipped(str(exc))
    n = 200
    reps = ctx.size(2, 3)
    prefix = f"s3-{uuid.uuid4().hex[:8]}"
    url = server.url_for("kvbench", prefix)
    items = {f"doc:{i:05d}": data.sized_json(VALUE_SIZE, seed=i) for i in range(n)}
    keys, expected = list(items), list(items.values())
    with kvstore.open(url, cache=None, storage_options=server.storage_options) as store:
        store.mset(items)
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **server.storage_options)
    base_root = f"kvbench/{prefix}-base"
    fs.pipe({f"{base_root}/{k}": v for k, v in items.items()})
    mapper = fsspec.FSMap(base_root, fs)
    requests: list[dict[str, int]] = []
    baseline_requests: Counter[str] = Counter()
    call_s3 = fs._call_s3

    async def counted(method: Any, *args: Any, **kwargs: Any) -> Any:
        # s3fs's own request entry point, wrapped on this instance only (kvstore's S3
        # store has its own filesystem): the baseline's requests by S3 operation.
        baseline_requests[method if isinstance(method, str) else str(method)] += 1
        return await call_s3(method, *args, **kwargs)

    fs._call_s3 = counted

    def kv() -> float:
        with kvstore.open(
            url, cache=kvstore.LocalCache(), storage_options=server.storage_options
        ) as store:
            store.get("warm-up")  # connect and sign once, outside the timing
            with counting(store) as req:
                started = time.perf_counter()
                got = store.mget(keys)
                elapsed = time.perf_counter() - started
        assert got == expected
        requests.append(req)
        return elapsed

    def getitems() -> float:
        return timed_getitems(mapper, keys, expected)

    getitems()
    baseline_requests.clear()
    getitems()
    per_getitems = dict(baseline_requests)
    times = interleave(reps, {"kvstore": kv, "getitems": getitems})
    kv_t, base_t = median(times["kvstore"]), median(times["getitems"])
    log(f"S3 moto: kvstore {kv_t * 1e3:.0f} ms, getitems {base_t * 1e3:.0f} ms")
    return planned.row(
        kv_t / base_t,
        requests={"kvstore": requests[-1], "baseline": per_getitems},
        details={"kvstore_ms": kv_t * 1e3, "baseline_ms": base_t * 1e3, "reps": reps},
    )
