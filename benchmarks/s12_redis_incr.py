"""S12: the Redis face's INCR on a real S3 server (SeaweedFS on loopback), uncontended
and 8-way contended, against a plain kvstore ``set`` and a real redis-server, in one run.

``kvstore.Redis(url).incr(key)`` is a compare-and-swap of the key's object
(``Values.update``): the process that made the current version remembers it
(``KnownVersions``) and does one conditional PUT (``If-Match``); any other process first
GETs the object. When another process wrote in between, the PUT fails (412), the
process re-reads and retries (``swap_conflicts`` in ``store.stats()``). So:

* S12.a one process, one key: object-store requests per INCR (the target: 1), and wall
  time and client CPU per INCR against a plain kvstore ``set`` (one unconditional PUT)
  on the same server; redis-py's INCR against a redis-server on loopback as a second
  baseline for wall time. Medians of interleaved repetitions;
* S12.b 8 processes x N INCR on one key: total wall time, INCR/s, requests and CAS
  conflicts per INCR (summed over the processes' ``store.stats()``), and the final value,
  which must be exactly 8 x N (a lost increment fails the scenario). Baselines: the same
  8 processes on 8 distinct keys (no contention), and 8 processes on a redis-server.
  The kvstore runs are repeated (one key and distinct keys interleaved; wall times are
  medians, request and conflict counts are summed over every process of every run);
* S12.c one process, one hash field: object-store requests per HINCRBY.

Client CPU is this process's CPU time (redis-py's command encoding and reply callbacks,
kvstore's loop thread, botocore/aiohttp); the servers' CPU is not counted.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import kvstore
from kvstore.testing import run_in_processes

from .harness import Context, Planned, Row, log, median, requests_delta

ID = "S12"
TITLE = "Redis face: INCR, uncontended and 8-way contended, on SeaweedFS"

SET = "kvstore set (one PUT) per op, same server"
REDIS = "redis-py INCR to redis-server on loopback"
DISTINCT = "the same 8 processes, INCR on 8 distinct keys"
PROCESSES = 8
PLANNED = [
    Planned(
        "S12.a",
        "SeaweedFS: uncontended INCR (Redis face), object requests per INCR",
        1,
        "<=",
        "requests/INCR",
        "",
    ),
    Planned(
        "S12.a.wall", "SeaweedFS: uncontended INCR, wall time per op vs set", None, "<=", "x", SET
    ),
    Planned(
        "S12.a.cpu", "SeaweedFS: uncontended INCR, client CPU per op vs set", None, "<=", "x", SET
    ),
    Planned(
        "S12.a.redis",
        "SeaweedFS: uncontended INCR, wall time per op vs redis-server INCR",
        None,
        "<=",
        "x",
        REDIS,
    ),
    Planned(
        "S12.b",
        "SeaweedFS: 8 processes x N INCR on one key, total wall time vs 8 distinct keys",
        None,
        "<=",
        "x",
        DISTINCT,
    ),
    Planned(
        "S12.b.rate",
        "SeaweedFS: 8 processes x N INCR on one key, INCR/s",
        None,
        ">=",
        "INCR/s",
        DISTINCT,
    ),
    Planned(
        "S12.b.requests",
        "SeaweedFS: 8 processes x N INCR on one key, object requests per INCR",
        None,
        "<=",
        "requests/INCR",
        DISTINCT,
    ),
    Planned(
        "S12.b.conflicts",
        "SeaweedFS: 8 processes x N INCR on one key, CAS conflicts per INCR",
        None,
        "<=",
        "conflicts/INCR",
        DISTINCT,
    ),
    Planned(
        "S12.b.redis",
        "SeaweedFS: 8 processes x N INCR on one key, total wall time vs redis-server",
        None,
        "<=",
        "x",
        "8 processes x N redis-py INCR on one key of redis-server",
    ),
    Planned(
        "S12.c",
        "SeaweedFS: uncontended HINCRBY (Redis face), object requests per op",
        None,
        "<=",
        "requests/op",
        "",
    ),
]

BUCKET = "kvbench"


# -- the child processes of S12.b (module level: spawned children import this module) -----


def _kv_incr_worker(
    url: str, options: dict[str, Any], key: str, n: int, barrier: Any
) -> dict[str, Any]:
    """N INCR of ``key`` through a kvstore.Redis of this process's own, after a warm-up
    (connect, sign, the precondition probe) on a key of its own; its stats before/after."""
    r = kvstore.Redis(url, cache=None, storage_options=options)
    try:
        r.incr(f"warm:{os.getpid()}")
        barrier.wait()
        before = r.store.stats()
        started, cpu = time.time(), time.process_time()
        last = 0
        for _ in range(n):
            last = r.incr(key)
        ended, cpu = time.time(), time.process_time() - cpu
        return {
            "start": started,
            "end": ended,
            "cpu": cpu,
            "last": last,
            "before": before,
            "after": r.store.stats(),
        }
    finally:
        r.close()


def _redis_incr_worker(host: str, port: int, key: str, n: int, barrier: Any) -> dict[str, Any]:
    import redis

    r = redis.Redis(host=host, port=port)
    try:
        r.ping()
        barrier.wait()
        started, cpu = time.time(), time.process_time()
        for _ in range(n):
            r.incr(key)
        return {"start": started, "end": time.time(), "cpu": time.process_time() - cpu}
    finally:
        r.close()


def _span(results: list[dict[str, Any]]) -> float:
    """Wall time from the first process's start to the last one's end."""
    return max(r["end"] for r in results) - min(r["start"] for r in results)


def _summed(results: list[dict[str, Any]]) -> tuple[dict[str, int], int]:
    """(object-store requests by kind, CAS conflicts), summed over the processes."""
    requests: dict[str, int] = {}
    conflicts = 0
    for r in results:
        for kind, count in requests_delta(r["before"], r["after"]).items():
            requests[kind] = requests.get(kind, 0) + count
        conflicts += int(r["after"].get("swap_conflicts", 0)) - int(
            r["before"].get("swap_conflicts", 0)
        )
    return requests, conflicts


# -- the scenario ---------------------------------------------------------------------------


def run(ctx: Context) -> list[Row]:
    server = ctx.seaweedfs()
    redis_server = ctx.redis()
    prefix = f"s12-{uuid.uuid4().hex[:8]}"
    url = server.url_for(BUCKET, prefix)
    options = server.storage_options
    rows: list[Row] = []
    store = kvstore.open(url, cache=None, storage_options=options)
    face = kvstore.Redis(store=store)
    plain = redis_server.client()
    try:
        rows += _uncontended(ctx, store, face, plain)
        rows += _contended(ctx, url, options, face, redis_server)
        rows += _hincrby(ctx, store, face)
    finally:
        plain.close()
        store.close()
    return rows


def _uncontended(ctx: Context, store: Any, face: Any, plain: Any) -> list[Row]:
    reps, batch = ctx.size((3, 20), (5, 40))
    n = reps * batch
    counter, target = f"counter-{uuid.uuid4().hex[:6]}", f"plain-{uuid.uuid4().hex[:6]}"
    redis_counter = f"s12:{uuid.uuid4().hex[:8]}"
    face.incr(counter)  # this process now made the current version
    store.set(target, "0")
    face.set("face-set", "0")
    plain.incr(redis_counter)

    def measure(op: Callable[[int], Any]) -> Callable[[], tuple[float, float, dict[str, int]]]:
        def once() -> tuple[float, float, dict[str, int]]:
            before = store.stats()
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(batch):
                op(i)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            return wall, cpu, requests_delta(before, store.stats())

        return once

    work = {
        "incr": measure(lambda i: face.incr(counter)),
        "set": measure(lambda i: store.set(target, str(i))),
        "face_set": measure(lambda i: face.set("face-set", str(i))),
        "redis": measure(lambda i: plain.incr(redis_counter)),
    }
    runs: dict[str, list[tuple[float, float, dict[str, int]]]] = {k: [] for k in work}
    for rep in range(reps):
        for name in list(work) if rep % 2 == 0 else list(work)[::-1]:
            runs[name].append(work[name]())
    assert face.get(counter) == str(n + 1).encode(), "an uncontended INCR was lost"
    assert int(plain.get(redis_counter)) == n + 1

    def total(name: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, _, req in runs[name]:
            for kind, count in req.items():
                out[kind] = out.get(kind, 0) + count
        return out

    wall = {k: median([w for w, _, _ in v]) / batch * 1e3 for k, v in runs.items()}  # ms/op
    cpu = {k: median([c for _, c, _ in v]) / batch * 1e3 for k, v in runs.items()}
    incr_requests, set_requests = total("incr"), total("set")
    log(
        f"S12.a {n} INCR: {incr_requests['total'] / n:g} requests/INCR; wall/op INCR "
        f"{wall['incr']:.2f} ms, set {wall['set']:.2f} ms, face set {wall['face_set']:.2f} ms, "
        f"redis-server INCR {wall['redis']:.3f} ms; CPU/op INCR {cpu['incr']:.2f} ms, "
        f"set {cpu['set']:.2f} ms, face set {cpu['face_set']:.2f} ms, "
        f"redis-server INCR {cpu['redis']:.3f} ms"
    )
    details = {
        "incr": n,
        "reps": reps,
        **{f"wall_ms_per_op_{k}": v for k, v in wall.items()},
        **{f"cpu_ms_per_op_{k}": v for k, v in cpu.items()},
        "set_requests_per_op": set_requests["total"] / n,
    }
    requests = {"incr": incr_requests, "set": set_requests}
    return [
        PLANNED[0].row(incr_requests["total"] / n, requests=incr_requests, details=details),
        PLANNED[1].row(wall["incr"] / wall["set"], requests=requests, details=details),
        PLANNED[2].row(cpu["incr"] / cpu["set"], requests=requests, details=details),
        PLANNED[3].row(wall["incr"] / wall["redis"], requests=requests, details=details),
    ]


def _contended(
    ctx: Context, url: str, options: dict[str, Any], face: Any, redis_server: Any
) -> list[Row]:
    n = ctx.size(20, 50)
    reps = ctx.size(1, 3)
    total = PROCESSES * n
    tag = uuid.uuid4().hex[:6]

    def kv(keys: list[str]) -> list[dict[str, Any]]:
        calls = [(url, options, key, n) for key in keys]
        return run_in_processes(_kv_incr_worker, calls, barrier=True, timeout=600)

    def one_key(rep: int) -> list[dict[str, Any]]:
        key = f"hot-{tag}-{rep}"
        results = kv([key] * PROCESSES)
        final = face.get(key)
        if final != str(total).encode():
            raise AssertionError(
                f"{PROCESSES} processes x {n} INCR on one key left {final!r}, not {total}: "
                "increments were lost (or doubled)"
            )
        requests, conflicts = _summed(results)
        log(
            f"S12.b {PROCESSES}x{n} INCR on one key: {_span(results):.2f} s, "
            f"{requests['total'] / total:.2f} requests/INCR, {conflicts / total:.2f} "
            f"conflicts/INCR, final value {total}"
        )
        return results

    def distinct_keys(rep: int) -> list[dict[str, Any]]:
        keys = [f"own-{tag}-{rep}-{i}" for i in range(PROCESSES)]
        results = kv(keys)
        for key in keys:
            got = face.get(key)
            assert got == str(n).encode(), f"INCR on {key} left {got!r}, not {n}"
        log(f"S12.b {PROCESSES}x{n} INCR on {PROCESSES} distinct keys: {_span(results):.2f} s")
        return results

    started = time.perf_counter()
    hots: list[list[dict[str, Any]]] = []
    colds: list[list[dict[str, Any]]] = []
    for rep in range(reps):  # interleaved: A B, B A, ...
        if rep % 2 == 0:
            hots.append(one_key(rep))
            colds.append(distinct_keys(rep))
        else:
            colds.append(distinct_keys(rep))
            hots.append(one_key(rep))
    redis_key = f"s12:hot:{tag}"
    red = run_in_processes(
        _redis_incr_worker,
        [(redis_server.host, redis_server.port, redis_key, n)] * PROCESSES,
        barrier=True,
        timeout=600,
    )
    red_wall = _span(red)
    client = redis_server.client()
    try:
        assert int(client.get(redis_key)) == total, "redis-server lost increments"
    finally:
        client.close()
    log(f"S12.b processes spawned and run in {time.perf_counter() - started:.1f} s")

    hot_wall = median([_span(r) for r in hots])
    cold_wall = median([_span(r) for r in colds])
    hot = [r for results in hots for r in results]  # every process of every repetition
    cold = [r for results in colds for r in results]
    total_all = total * reps
    hot_requests, hot_conflicts = _summed(hot)
    cold_requests, cold_conflicts = _summed(cold)
    hot_cpu = sum(r["cpu"] for r in hot) / total_all * 1e3
    cold_cpu = sum(r["cpu"] for r in cold) / total_all * 1e3
    hot_per, cold_per = hot_requests["total"] / total_all, cold_requests["total"] / total_all
    hot_cas, cold_cas = hot_conflicts / total_all, cold_conflicts / total_all
    details = {
        "processes": PROCESSES,
        "incr_per_process": n,
        "reps": reps,
        "final_value": total,
        "wall_s_one_key": hot_wall,
        "wall_s_distinct_keys": cold_wall,
        "wall_s_redis_server": red_wall,
        "incr_per_s_one_key": total / hot_wall,
        "incr_per_s_distinct_keys": total / cold_wall,
        "incr_per_s_redis_server": total / red_wall,
        "requests_per_incr_one_key": hot_per,
        "requests_per_incr_distinct_keys": cold_per,
        "conflicts_per_incr_one_key": hot_cas,
        "conflicts_per_incr_distinct_keys": cold_cas,
        "cpu_ms_per_incr_one_key": hot_cpu,
        "cpu_ms_per_incr_distinct_keys": cold_cpu,
    }
    log(
        f"S12.b one key {total / hot_wall:.0f} INCR/s, {hot_per:.2f} requests/INCR, "
        f"{hot_cas:.2f} conflicts/INCR, CPU {hot_cpu:.1f} ms/INCR; distinct keys "
        f"{total / cold_wall:.0f} INCR/s, {cold_per:.2f} requests/INCR, "
        f"CPU {cold_cpu:.1f} ms/INCR; redis-server {total / red_wall:.0f} INCR/s"
    )
    # summed over every process of every repetition (``incr`` INCR in all, per side)
    requests = {"incr": total_all, "one_key": hot_requests, "distinct_keys": cold_requests}
    return [
        PLANNED[4].row(hot_wall / cold_wall, requests=requests, details=details),
        PLANNED[5].row(total / hot_wall, requests=requests, details=details),
        PLANNED[6].row(hot_per, requests=requests, details=details),
        PLANNED[7].row(
            hot_cas,
            requests={"incr": total_all, "one_key": hot_conflicts, "distinct_keys": cold_conflicts},
            details=details,
        ),
        PLANNED[8].row(hot_wall / red_wall, requests=requests, details=details),
    ]


def _hincrby(ctx: Context, store: Any, face: Any) -> list[Row]:
    n = ctx.size(40, 100)
    key = f"hash-{uuid.uuid4().hex[:6]}"
    face.hincrby(key, "field", 1)  # this process now made the current version
    before = store.stats()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        face.hincrby(key, "field", 1)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    requests = requests_delta(before, store.stats())
    assert face.hget(key, "field") == str(n + 1).encode(), "an uncontended HINCRBY was lost"
    log(f"S12.c {n} HINCRBY: {requests['total'] / n:g} requests/op")
    return [
        PLANNED[9].row(
            requests["total"] / n,
            requests=requests,
            details={"ops": n, "wall_ms_per_op": wall / n * 1e3, "cpu_ms_per_op": cpu / n * 1e3},
        )
    ]
