"""S6: bytes stored for 100k realistic chat messages, against raw JSON lines.

Conversations of varying length (log-normal, median ~500 messages) are written as an agent
would: one ``append`` per message, one log per conversation. Then the logs are compacted
(clock moved past ``MIN_AGE_MS``) and the figure is the sum of the sizes of every object the
store holds (memory backend: exact bytes) divided by the size of the same messages as JSON
lines (compact JSON + newline). Plain ``zstd -3`` of the whole JSON-lines file is shown
next to it as the reference a general-purpose compressor reaches on this data.
Only bytes are measured here: the latency model runs with 0 ms.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import zstandard

from . import data
from .harness import Context, Planned, Row, log
from .latency import Space, latency_store
from .s5_log_range import FakeClock

ID = "S6"
TITLE = "bytes stored for chat messages vs raw JSON lines"
PLANNED = [
    Planned(
        "S6",
        "bytes stored for 100k chat messages (compacted logs) / raw JSON lines",
        0.35,
        "<=",
        "x",
        "the same messages as JSON lines (compact JSON, one per line)",
    ),
]


def conversations(total: int, seed: int = data.SEED) -> list[list[bytes]]:
    rng = random.Random(seed)
    out: list[list[bytes]] = []
    left = total
    while left > 0:
        n = min(left, max(10, int(rng.lognormvariate(6.2, 0.6))))
        out.append([data.dumps(m) for m in data.messages(n, seed=seed + len(out))])
        left -= n
    return out


def run(ctx: Context) -> list[Row]:
    total = ctx.size(20_000, 100_000)
    started = time.perf_counter()
    convs = conversations(total)
    gen_s = time.perf_counter() - started
    raw = sum(len(m) + 1 for conv in convs for m in conv)
    jsonl = b"".join(m + b"\n" for conv in convs for m in conv)
    zstd3 = len(zstandard.ZstdCompressor(level=3).compress(jsonl))
    del jsonl
    space = Space()
    root = f"s6-{uuid.uuid4().hex[:8]}"
    clock = FakeClock()

    async def write() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with latency_store(root, 0.0, space=space, clock=clock) as store:
            t0 = time.perf_counter()
            for i, conv in enumerate(convs):
                for message in conv:
                    await store.append(f"chat:{i:04d}", message)
            out["append_s"] = time.perf_counter() - t0
            out["before"] = sum(space.sizes(root + "/").values())
            clock.advance(11 * 60_000)
            t0 = time.perf_counter()
            for i in range(len(convs)):
                await store.compact(f"chat:{i:04d}")
            out["compact_s"] = time.perf_counter() - t0
            sizes = space.sizes(root + "/")
            out["after"] = sum(sizes.values())
            out["objects"] = len(sizes)
            # Every message reads back intact.
            for i, conv in enumerate(convs):
                assert await store.range(f"chat:{i:04d}", 0, -1) == conv
        return out

    m = asyncio.run(write())
    value = m["after"] / raw
    log(
        f"S6: {total} messages in {len(convs)} conversations (gen {gen_s:.0f} s, append "
        f"{m['append_s']:.0f} s, compact {m['compact_s']:.0f} s); raw {raw:,} B, stored "
        f"{m['after']:,} B ({value:.3f}); zstd-3 of the JSONL {zstd3 / raw:.3f}"
    )
    name = PLANNED[0].name
    if total != 100_000:
        name = name.replace("100k", f"{total // 1000}k") + " (quick)"
    return [
        PLANNED[0].row(
            value,
            name=name,
            requests=None,
            details={
                "messages": total,
                "conversations": len(convs),
                "raw_jsonl_bytes": raw,
                "stored_bytes": m["after"],
                "stored_objects": m["objects"],
                "before_compaction_ratio": m["before"] / raw,
                "zstd3_whole_jsonl_ratio": zstd3 / raw,
                "mean_message_bytes": raw / total - 1,
            },
        )
    ]
