"""S22: encryption at rest's cost per request (issue 20): client CPU of the same calls on the
same store with and without a key ring, in one run.

Stores on local disk (``file``: the object store is a directory, so the client's CPU is
most of a request - the worst case for a relative cost), no cache for the object-store
rows; a Redis cache (the harness's redis-server) for the cache-hit row, where the sealed
entry is opened on every hit. 1 KiB values (a JSON-ish text; compressible, so both
compress), interleaved repetitions, medians of CPU time per call (``time.process_time``:
this process only, both threads of the blocking face).

* **S22.set** CPU per ``set`` with a ring / without.
* **S22.get** CPU per cold ``get`` (no cache: read and opened each time) with / without.
* **S22.hit** CPU per Redis cache hit with / without.
* **S22.artifact** wall of saving then loading a 64 MiB artifact (8 MiB parts; 16 MiB in
  quick mode) with / without.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import kvstore
from kvstore.crypto import KeyRing, generate_key

from .harness import Context, Planned, Row, log, median

ID = "S22"
TITLE = "encryption at rest: client CPU per request, sealed / plain"
PLAIN = "the same calls on the same kind of store without a key ring (same run)"
PLANNED = [
    Planned("S22.set", "CPU per set, sealed / plain (local disk)", None, "<=", "x", PLAIN),
    Planned("S22.get", "CPU per cold get, sealed / plain (local disk)", None, "<=", "x", PLAIN),
    Planned("S22.hit", "CPU per Redis cache hit, sealed / plain", None, "<=", "x", PLAIN),
    Planned("S22.artifact", "64 MiB save + load wall, sealed / plain", None, "<=", "x", PLAIN),
]
VALUE = ('{"role": "assistant", "text": "' + "the quick brown fox " * 48 + '"}')[:1024]


def _cpu_per_call(call: Callable[[int], Any], n: int) -> float:
    started = time.process_time()
    for i in range(n):
        call(i)
    return (time.process_time() - started) / n


def run(ctx: Context) -> list[Row]:
    ring = KeyRing({"k1": generate_key()})
    n = ctx.size(300, 2000)
    reps = ctx.size(3, 5)
    root = tempfile.mkdtemp(prefix="kvbench-s22-")
    redis_url = ctx.redis().url
    by_id = {p.id: p for p in PLANNED}
    stores = {
        "plain": kvstore.open(os.path.join(root, "plain"), cache=None),
        "sealed": kvstore.open(os.path.join(root, "sealed"), cache=None, encryption=ring),
    }
    cached = {
        "plain": kvstore.open(os.path.join(root, "plain-c"), cache=redis_url),
        "sealed": kvstore.open(os.path.join(root, "sealed-c"), cache=redis_url, encryption=ring),
    }
    got: dict[str, list[float]] = {}
    try:
        for name, store in {**stores, **{f"{k}.hit": v for k, v in cached.items()}}.items():
            for i in range(n):
                store.set(f"k{i}", VALUE)
            if name.endswith(".hit"):
                for i in range(n):
                    store.get(f"k{i}")  # now cached
        for rep in range(reps):
            order = ["plain", "sealed"] if rep % 2 == 0 else ["sealed", "plain"]
            for kind in order:
                s = stores[kind]
                got.setdefault(f"set.{kind}", []).append(
                    _cpu_per_call(lambda i, s=s: s.set(f"w{i}", VALUE), n)
                )
                got.setdefault(f"get.{kind}", []).append(
                    _cpu_per_call(lambda i, s=s: s.get(f"k{i}"), n)
                )
                c = cached[kind]
                got.setdefault(f"hit.{kind}", []).append(
                    _cpu_per_call(lambda i, c=c: c.get(f"k{i}"), n)
                )
        size = ctx.size(16, 64) * 1024 * 1024
        blob = os.urandom(size)
        for rep in range(ctx.size(1, 2)):
            for kind in ("plain", "sealed") if rep % 2 == 0 else ("sealed", "plain"):
                s = stores[kind]
                name = f"big-{uuid.uuid4().hex[:6]}"
                t = time.perf_counter()
                s.artifacts.save(name, blob)
                loaded = s.artifacts.load(name)
                got.setdefault(f"artifact.{kind}", []).append(time.perf_counter() - t)
                assert loaded is not None and loaded.data == blob
    finally:
        for store in (*stores.values(), *cached.values()):
            store.close()
    m = {k: median(v) for k, v in got.items()}
    details: dict[str, Any] = {
        **{f"{k}.us": round(v * 1e6, 1) for k, v in m.items() if not k.startswith("artifact")},
        **{f"{k}.s": round(v, 3) for k, v in m.items() if k.startswith("artifact")},
        "calls": n,
        "artifact_mib": size // (1024 * 1024),
    }
    log(f"S22 details: {details}")
    return [
        by_id["S22.set"].row(m["set.sealed"] / m["set.plain"], details=details),
        by_id["S22.get"].row(m["get.sealed"] / m["get.plain"], details=details),
        by_id["S22.hit"].row(m["hit.sealed"] / m["hit.plain"], details=details),
        by_id["S22.artifact"].row(m["artifact.sealed"] / m["artifact.plain"], details=details),
    ]
