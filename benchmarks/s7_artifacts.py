"""S7: artifacts - request costs of save and load, and concurrent savers losing nothing.

Written against the artifacts spec (``store.artifacts.save/load/versions``).
Latency model throughout.

* save when this process already knows the latest version (its pointer is fresh):
  object requests (spec: 1 conditional create).
* load of the latest version by a new store (empty cache): object requests
  (spec: 1 LIST + 1 GET).
* 8 savers - 8 separate stores, each with its own cache, as 8 processes would be - each
  saving 20 versions of one name at once: versions lost (a save whose returned version
  does not load back with its bytes). Baseline: an ADK-style saver (google-adk's
  ``GcsArtifactService.save_artifact``: list the versions, take max + 1, upload) on the
  same latency model (fsspec), run the same way; it loses versions to overwrites.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import kvstore

from .harness import Context, Planned, Row, Skip, counting, log
from .latency import LatencyMemoryFS, Space, latency_store

ID = "S7"
TITLE = "artifacts: save/load requests, concurrent savers"
SAVERS = 8
SAVES = 20
PLANNED = [
    Planned(
        "S7.a",
        "artifact save with a fresh latest pointer: object requests",
        2,
        "<=",
        "requests",
        "spec: 1 conditional create",
    ),
    Planned(
        "S7.b",
        "cold load of the latest version: object requests",
        2,
        "<=",
        "requests",
        "spec: 1 LIST + 1 GET",
    ),
    Planned(
        "S7.c",
        "8 concurrent savers x 20 saves: versions lost",
        0,
        "<=",
        "versions",
        "ADK-style list-then-put saver (GcsArtifactService), same latency model",
    ),
]


def require_artifacts() -> None:
    try:
        import kvstore.artifacts
    except ImportError as exc:
        raise Skip(f"artifacts not available ({exc})") from exc
    probe = kvstore.open("memory://kvbench-probe", cache=None)
    try:
        if not hasattr(probe, "artifacts") or not hasattr(probe.aio, "artifacts"):
            raise Skip("artifacts not available (store.artifacts missing)")
    finally:
        probe.close()


async def adk_style(latency: float) -> dict[str, Any]:
    """The baseline: list versions, save at max + 1 with a plain PUT (no condition)."""
    fs = LatencyMemoryFS(latency, asynchronous=True)
    base = "/adk/app/user/session/report.txt"

    async def save(data: bytes) -> int:
        names = await fs._ls(base, detail=False)
        versions = [int(n.rsplit("/", 1)[-1]) for n in names]
        version = max(versions) + 1 if versions else 0
        await fs._pipe_file(f"{base}/{version}", data)
        return version

    async def saver(i: int) -> list[tuple[int, bytes]]:
        out = []
        for j in range(SAVES):
            data = f"saver {i} save {j}".encode()
            out.append((await save(data), data))
        return out

    results = [pair for batch in await asyncio.gather(*map(saver, range(SAVERS))) for pair in batch]
    kept = sum(1 for version, data in results if fs.mem.cat_file(f"{base}/{version}") == data)
    return {"saves": len(results), "lost": len(results) - kept, "requests": dict(fs.counts)}


async def measure(ctx: Context) -> dict[str, Any]:
    space = Space()
    root = f"s7-{uuid.uuid4().hex[:8]}"
    out: dict[str, Any] = {}

    def store(cache: Any = None) -> kvstore.AsyncKVStore:
        return latency_store(root, ctx.latency, cache or kvstore.LocalCache(ttl=600), space=space)

    async with store() as s:
        await s.artifacts.save("report.txt", b"version 0", mime_type="text/plain")
        with counting(s) as req:  # this process now knows the latest version
            started = time.perf_counter()
            version = await s.artifacts.save("report.txt", b"version 1", mime_type="text/plain")
            out["save_ms"] = (time.perf_counter() - started) * 1e3
        assert version == 1, version
        out["save_req"] = req
    async with store() as s:
        with counting(s) as req:
            started = time.perf_counter()
            art = await s.artifacts.load("report.txt")
            out["load_ms"] = (time.perf_counter() - started) * 1e3
        assert art is not None and art.version == 1 and art.data == b"version 1"
        out["load_req"] = req

    # Concurrent savers: separate stores (separate caches and writer state).
    savers = [store(kvstore.LocalCache(ttl=600)) for _ in range(SAVERS)]

    async def saver(i: int) -> list[tuple[int, bytes]]:
        done = []
        for j in range(SAVES):
            data = f"saver {i} save {j}".encode()
            done.append((await savers[i].artifacts.save("shared.bin", data), data))
        return done

    started = time.perf_counter()
    results = [p for batch in await asyncio.gather(*map(saver, range(SAVERS))) for p in batch]
    out["concurrent_s"] = time.perf_counter() - started
    async with store(kvstore.NoCache()) as check:
        kept = 0
        for version, data in results:
            art = await check.artifacts.load("shared.bin", version)
            kept += art is not None and art.data == data
        out["versions_listed"] = len(await check.artifacts.versions("shared.bin"))
    out["distinct_versions"] = len({v for v, _ in results})
    out["lost"] = len(results) - kept
    out["concurrent_req"] = sum((s.stats().get("requests", 0) for s in savers), 0)
    for s in savers:
        await s.close()
    out["adk"] = await adk_style(ctx.latency)
    return out


def run(ctx: Context) -> list[Row]:
    require_artifacts()
    m = asyncio.run(measure(ctx))
    adk = m["adk"]
    log(
        f"S7: save {m['save_req']} ({m['save_ms']:.0f} ms), load {m['load_req']} "
        f"({m['load_ms']:.0f} ms); concurrent lost {m['lost']}, ADK-style lost {adk['lost']}"
    )
    return [
        PLANNED[0].row(
            m["save_req"]["total"], requests=m["save_req"], details={"ms": m["save_ms"]}
        ),
        PLANNED[1].row(
            m["load_req"]["total"], requests=m["load_req"], details={"ms": m["load_ms"]}
        ),
        PLANNED[2].row(
            m["lost"],
            requests={"kvstore_total": m["concurrent_req"], "baseline": adk["requests"]},
            details={
                "saves": SAVERS * SAVES,
                "distinct_versions_returned": m["distinct_versions"],
                "versions_listed": m["versions_listed"],
                "baseline_lost": adk["lost"],
                "kvstore_s": m["concurrent_s"],
            },
        ),
    ]
