"""S9: Redis killed during a mixed get/set workload.

Four clients (four stores, each with its own ``RedisCache``, as four app processes would
have) share one object store (latency model) and one redis-server of this scenario's own,
started with persistence (AOF, fsync every second): a restarted Redis comes back *with its
old entries*, the hard case for coherence.
16 workers each own a slice of 200 keys and loop 80% ``get`` / 20% ``set`` (512-byte
values), each call through a randomly chosen client; every read is checked against a model
of what was last written, so a stale read (either client, any phase) is caught exactly.

Phases, in cycles (2 quick, 4 full): the same workload on stores without a cache (the
no-cache reference p99, on a store root of its own); with Redis, warm; Redis SIGKILLed (the
outage); Redis restarted on the same port, from its AOF (recovery).
Figures: p99 latency during the outage against the no-cache p99, errors raised to the
caller (all phases), stale reads after recovery (and in every other phase, in details).
Extra figures, beyond the issue: the same with Redis paused (SIGSTOP: connections stay
open, nothing answers) instead of killed; and once more paused with the caches'
``invalidation_wait`` at 5 ms instead of 50 (S9.d.5ms, S9.e.5ms): what a write pays while
Redis hangs against the stale reads after it resumes - the trade-off README.md states.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import defaultdict
from typing import Any

import kvstore
from kvstore.cache.redis import RedisCache

from .harness import Context, Planned, Row, log, percentile
from .latency import Space, latency_store

ID = "S9"
TITLE = "Redis killed during a mixed get/set workload"
WORKERS = 16
CLIENTS = 4
KEYS = 200
VALUE = 512
PLANNED = [
    Planned(
        "S9.a",
        "p99 latency while Redis is down (killed) / no-cache p99",
        2.0,
        "<=",
        "x",
        "the same workload on stores with cache=None, same run",
    ),
    Planned("S9.b", "errors raised to callers (all phases)", 0, "<=", "errors", "none allowed"),
    Planned(
        "S9.c",
        "stale reads after Redis restarts with its old contents",
        0,
        "<=",
        "reads",
        "model of the last write of every key",
    ),
    Planned(
        "S9.d",
        "beyond the issue: p99 while Redis is hung (SIGSTOP) / no-cache p99",
        2.0,
        "<=",
        "x",
        "the same workload on stores with cache=None, same run",
    ),
    Planned(
        "S9.e",
        "beyond the issue: stale reads after a hung Redis (SIGSTOP) resumes",
        0,
        "<=",
        "reads",
        "model of the last write of every key",
    ),
    Planned(
        "S9.d.5ms",
        "p99 while Redis is hung / no-cache p99, invalidation_wait=5 ms (default 50)",
        2.0,
        "<=",
        "x",
        "the same workload on stores with cache=None, same run",
    ),
    Planned(
        "S9.e.5ms",
        "stale reads after a hung Redis resumes, invalidation_wait=5 ms",
        0,
        "<=",
        "reads",
        "model of the last write of every key",
    ),
]


class Workload:
    """The workers, a model of the last value written per key, and per-phase tallies.

    Two groups of clients - without a cache and with Redis - each on its own store root
    with its own model (writes without a cache never invalidate Redis, so the groups must
    not share keys). The schedule switches the group per phase.
    """

    def __init__(self) -> None:
        self.models: dict[str, dict[str, bytes]] = defaultdict(dict)
        self.groups: dict[str, list[kvstore.AsyncKVStore]] = {}
        self.group = ""
        self.counter = 0
        self.phase = "setup"
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.stale: dict[str, int] = defaultdict(int)
        self.ops: dict[str, int] = defaultdict(int)
        self.reads: dict[str, int] = defaultdict(int)
        self.first_error: str | None = None
        self.running = False

    def value(self, key: str) -> bytes:
        self.counter += 1
        head = f"{key}:{self.counter}:".encode()
        return head + b"x" * (VALUE - len(head))

    async def add_group(self, name: str, clients: list[kvstore.AsyncKVStore]) -> None:
        self.groups[name] = clients
        values = {f"k:{i:03d}": self.value(f"k:{i:03d}") for i in range(KEYS)}
        await clients[0].mset(values)
        self.models[name].update(values)

    async def worker(self, w: int) -> None:
        keys = [f"k:{i:03d}" for i in range(KEYS) if i % WORKERS == w]
        rng = random.Random(w)
        while self.running:
            key = rng.choice(keys)
            phase, model = self.phase, self.models[self.group]
            client = rng.choice(self.groups[self.group])
            started = time.perf_counter()
            try:
                if rng.random() < 0.2:
                    value = self.value(key)
                    await client.set(key, value)
                    model[key] = value
                else:
                    got = await client.get(key)
                    self.reads[phase] += 1
                    if got != model[key]:
                        self.stale[phase] += 1
            except Exception as exc:
                self.errors[phase] += 1
                self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"
                with contextlib.suppress(Exception):  # a failed set may have landed
                    model[key] = await client.get(key) or b""
            self.latencies[phase].append(time.perf_counter() - started)
            self.ops[phase] += 1

    async def run(self, schedule: list[tuple[str, str, float, Any]]) -> None:
        """``schedule``: (phase, group, seconds, action run at the phase's start in a
        thread, or None)."""
        self.running = True
        self.phase, self.group = schedule[0][0], schedule[0][1]
        workers = [asyncio.ensure_future(self.worker(w)) for w in range(WORKERS)]
        try:
            for phase, group, seconds, action in schedule:
                if action is not None:
                    # While the harness kills or restarts Redis (restart forks this
                    # process to spawn redis-server, which can stall it), calls are
                    # tallied apart: "<phase>-start".
                    self.phase = f"{phase}-start"
                    await asyncio.to_thread(action)
                self.phase, self.group = phase, group
                await asyncio.sleep(seconds)
        finally:
            self.running = False
            await asyncio.gather(*workers)


async def scenario(ctx: Context, fault: str, wait: float | None = None) -> dict[str, Any]:
    from backends import RedisServer

    t_base, t_warm, t_fault, t_back = ctx.size((2, 2, 3, 3), (3, 3, 5, 5))
    cycles = ctx.size(2, 4)
    space = Space()
    root = f"s9-{uuid.uuid4().hex[:8]}"
    load = Workload()
    # AOF with fsync every second (Redis's recommended setting): a killed Redis comes back
    # with the entries it had, up to a second old - the hard case for coherence.
    with RedisServer(persistence=True, extra_args=("--appendfsync", "everysec")) as server:
        plain = [latency_store(root + "-plain", ctx.latency, space=space) for _ in range(CLIENTS)]
        cached = [
            latency_store(root, ctx.latency, _cache(server.url, wait), space=space)
            for _ in range(CLIENTS)
        ]
        await load.add_group("plain", plain)
        await load.add_group("cached", cached)
        if fault == "kill":
            down, up = server.kill, server.restart
        else:
            down, up = server.pause, server.resume
        # Each cycle: the no-cache reference (so it is measured across the same stretch of
        # time as the outages: the machine's load drifts), warm Redis, fault, recovery.
        schedule: list[tuple[str, str, float, Any]] = []
        for _ in range(cycles):
            schedule += [
                ("no-cache", "plain", t_base, None),
                ("warm", "cached", t_warm, None),
                ("outage", "cached", t_fault, down),
                ("recovery", "cached", t_back, up),
            ]
        await load.run(schedule)
        infos = [c.stats()["cache"] for c in cached]
        for store in (*plain, *cached):
            await store.close()
    out: dict[str, Any] = {
        "p99_ms": {p: percentile(v, 99) * 1e3 for p, v in load.latencies.items()},
        "p50_ms": {p: percentile(v, 50) * 1e3 for p, v in load.latencies.items()},
        "ops": dict(load.ops),
        "reads": dict(load.reads),
        "errors": dict(load.errors),
        "stale": dict(load.stale),
        "first_error": load.first_error,
        "cache": [
            {k: v for k, v in info.items() if k in ("outages", "generation_bumps", "errors")}
            for info in infos
        ],
    }
    log(f"S9 ({fault}): p99 ms {out['p99_ms']}; errors {out['errors']}; stale {out['stale']}")
    return out


def _cache(url: str, wait: float | None) -> RedisCache:
    return RedisCache(url) if wait is None else RedisCache(url, invalidation_wait=wait)


def after_recovery(counts: dict[str, int]) -> int:
    """From the restart (or resume) on: its transition and the recovery phase."""
    return counts.get("recovery-start", 0) + counts.get("recovery", 0)


def run(ctx: Context) -> list[Row]:
    killed = asyncio.run(scenario(ctx, "kill"))
    hung = asyncio.run(scenario(ctx, "pause"))
    hung_5ms = asyncio.run(scenario(ctx, "pause", wait=0.005))
    p99, ops = killed["p99_ms"], killed["ops"]
    details = {
        "p99_no_cache_ms": p99["no-cache"],
        "p99_warm_ms": p99["warm"],
        "p99_outage_ms": p99["outage"],
        "p99_recovery_ms": p99["recovery"],
        "p99_while_killing_ms": p99.get("outage-start", 0.0),
        "p99_while_restarting_ms": p99.get("recovery-start", 0.0),
        "p50_no_cache_ms": killed["p50_ms"]["no-cache"],
        "p50_outage_ms": killed["p50_ms"]["outage"],
        "ops_outage": ops.get("outage", 0),
        "ops_recovery": ops.get("recovery", 0),
    }
    rows = [
        PLANNED[0].row(p99["outage"] / p99["no-cache"], details=details),
        PLANNED[1].row(
            sum(killed["errors"].values()),
            details={"by_phase": str(killed["errors"]), "first": killed["first_error"] or ""},
        ),
        PLANNED[2].row(
            after_recovery(killed["stale"]),
            details={
                "stale_by_phase": str(killed["stale"]),
                "reads_checked": after_recovery(killed["reads"]),
                "cache_counters": str(killed["cache"]),
            },
        ),
    ]
    rows += _hung_rows(hung, PLANNED[3], PLANNED[4])
    rows += _hung_rows(hung_5ms, PLANNED[5], PLANNED[6])
    return rows


def _hung_rows(hung: dict[str, Any], p99_row: Planned, stale_row: Planned) -> list[Row]:
    rows: list[Row] = []
    hp = hung["p99_ms"]
    rows.append(
        p99_row.row(
            hp["outage"] / hp["no-cache"],
            details={
                "p99_no_cache_ms": hp["no-cache"],
                "p99_hung_ms": hp["outage"],
                "p99_after_resume_ms": hp["recovery"],
                "errors": sum(hung["errors"].values()),
            },
        )
    )
    rows.append(
        stale_row.row(
            after_recovery(hung["stale"]),
            details={
                "stale_by_phase": str(hung["stale"]),
                "reads_checked": after_recovery(hung["reads"]),
                "errors_by_phase": str(hung["errors"]),
                "cache_counters": str(hung["cache"]),
            },
        )
    )
    return rows
