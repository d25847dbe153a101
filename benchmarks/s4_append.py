"""S4: appends to one log - a lone writer, and 32 concurrent tasks (group commit).

Latency model (and moto S3, smaller). The lone writer appends one 200-byte record at a
time, sequentially: each append must cost exactly one object write (a conditional create
of the next chunk). Then 32 tasks of one process append to the same log at once; appends
that arrive while a chunk write is in flight share the next chunk, so the log's append
rate should grow with the number of writers while the request count falls.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import kvstore

from . import data
from .harness import Context, Planned, Row, Skip, counting, log, median
from .latency import latency_store

ID = "S4"
TITLE = "appends: lone writer, 32 concurrent tasks"
TASKS = 32
PLANNED = [
    Planned(
        "S4.a",
        "lone writer: object requests per append",
        1.0,
        "<=",
        "requests/append",
        "1 conditional PUT per append",
    ),
    Planned(
        "S4.b",
        "32 concurrent tasks on one log: appends/s vs lone writer",
        10,
        ">=",
        "x",
        "the lone writer's appends/s, same run",
    ),
    Planned(
        "S4.s3.a",
        "moto S3: lone writer, object requests per append",
        1.0,
        "<=",
        "requests/append",
        "1 conditional PUT per append",
    ),
    Planned(
        "S4.s3.b",
        "moto S3: 32 concurrent tasks vs lone writer, appends/s",
        10,
        ">=",
        "x",
        "the lone writer's appends/s, same run",
    ),
]


async def measure(
    store: kvstore.AsyncKVStore, key: str, lone_n: int, per_task: int, reps: int
) -> dict[str, Any]:
    records = data.records(max(lone_n, TASKS * per_task))
    for i in range(3):  # warm up: the first append learns the tail (one LIST)
        await store.append(key, records[i])
    lone_rates, multi_rates = [], []
    for _ in range(reps):
        with counting(store) as lone_req:
            started = time.perf_counter()
            for i in range(lone_n):
                await store.append(key, records[i])
            lone_rates.append(lone_n / (time.perf_counter() - started))

        async def task(t: int) -> None:
            for i in range(per_task):
                await store.append(key, records[t * per_task + i])

        with counting(store) as multi_req:
            started = time.perf_counter()
            await asyncio.gather(*(task(t) for t in range(TASKS)))
            multi_rates.append(TASKS * per_task / (time.perf_counter() - started))
    length = await store.length(key)
    expected = 3 + reps * (lone_n + TASKS * per_task)
    assert length == expected, (length, expected)
    return {
        "lone_rate": median(lone_rates),
        "multi_rate": median(multi_rates),
        "lone_req": lone_req,
        "multi_req": multi_req,
        "lone_n": lone_n,
        "multi_n": TASKS * per_task,
    }


def rows_for(first: Planned, second: Planned, m: dict[str, Any]) -> list[Row]:
    lone_req, multi_req = m["lone_req"], m["multi_req"]
    return [
        first.row(
            lone_req["total"] / m["lone_n"],
            requests=lone_req,
            details={"appends": m["lone_n"], "appends_per_s": m["lone_rate"]},
        ),
        second.row(
            m["multi_rate"] / m["lone_rate"],
            requests={"concurrent": multi_req, "appends": m["multi_n"]},
            details={
                "lone_appends_per_s": m["lone_rate"],
                "concurrent_appends_per_s": m["multi_rate"],
                "requests_per_append_concurrent": multi_req["total"] / m["multi_n"],
            },
        ),
    ]


def run(ctx: Context) -> list[Row]:
    async def model() -> dict[str, Any]:
        async with latency_store(f"s4-{uuid.uuid4().hex[:8]}", ctx.latency) as store:
            return await measure(
                store, "session:1", ctx.size(50, 200), ctx.size(10, 30), ctx.size(2, 3)
            )

    m = asyncio.run(model())
    log(f"S4: lone {m['lone_rate']:.0f}/s, {TASKS} tasks {m['multi_rate']:.0f}/s")
    rows = rows_for(PLANNED[0], PLANNED[1], m)
    try:
        server = ctx.s3()
    except Skip as exc:
        return [*rows, PLANNED[2].skipped(str(exc)), PLANNED[3].skipped(str(exc))]

    async def moto() -> dict[str, Any]:
        url = server.url_for("kvbench", f"s4-{uuid.uuid4().hex[:8]}")
        async with kvstore.open_async(
            url, cache=None, storage_options=server.storage_options
        ) as store:
            return await measure(store, "session:1", 30, 5, 2)

    m = asyncio.run(moto())
    log(f"S4 moto: lone {m['lone_rate']:.0f}/s, {TASKS} tasks {m['multi_rate']:.0f}/s")
    return rows + rows_for(PLANNED[2], PLANNED[3], m)
