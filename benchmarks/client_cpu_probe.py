"""Client CPU per S3 request: kvstore's S3 backend as configured, against the same backend
with botocore's defaults restored (per-request User-Agent rebuild, parameter validation,
dateutil date parsing), on SeaweedFS on loopback. Issue 16's first step; the full rows
(obstore, s3fs, moto) are still to come.

    python -m benchmarks.client_cpu_probe [--requests 1000] [--rounds 3]

Each round: 1000 PUTs of 1 KiB, then 1000 GETs of them, 32 in flight; the number is this
process's CPU time (kvstore, botocore, aiohttp; not the server's) per request, the median
of interleaved rounds of both configurations.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from kvstore.blob import open_blob_store
from kvstore.stats import Stats

BOTOCORE_DEFAULTS: dict[str, Any] = {
    "config_kwargs": {"user_agent": None, "parameter_validation": True},
}


async def _round(url: str, options: dict[str, Any], n: int) -> float:
    if "session" in options:
        from aiobotocore.session import AioSession

        options = {**options, "session": AioSession()}
    blob = open_blob_store(url, options, stats=Stats())
    data = os.urandom(1024)
    gate = asyncio.Semaphore(32)

    async def put(i: int) -> None:
        async with gate:
            await blob.put(f"k{i}", data)

    async def get(i: int) -> None:
        async with gate:
            await blob.get(f"k{i}")

    await asyncio.gather(*(put(i) for i in range(32)))  # connections and probes warm
    started = time.process_time()
    await asyncio.gather(*(put(i) for i in range(n)))
    await asyncio.gather(*(get(i) for i in range(n)))
    spent = time.process_time() - started
    await blob.close()
    return spent / (2 * n) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from backends import SeaweedFS

    with SeaweedFS(buckets=("cpu-probe",)) as server:
        url = server.url_for("cpu-probe", "probe")
        base = dict(server.storage_options)
        defaults = {**base, "session": None, **BOTOCORE_DEFAULTS}
        kvstore_ms: list[float] = []
        botocore_ms: list[float] = []
        for _ in range(args.rounds):
            kvstore_ms.append(asyncio.run(_round(url, base, args.requests)))
            botocore_ms.append(asyncio.run(_round(url, defaults, args.requests)))
        ours, theirs = statistics.median(kvstore_ms), statistics.median(botocore_ms)
        print(f"client CPU per request, median of {args.rounds} interleaved rounds:")
        print(f"  kvstore's S3 backend:        {ours:.2f} ms")
        print(f"  with botocore's defaults:    {theirs:.2f} ms  ({ours / theirs:.2f}x)")


if __name__ == "__main__":
    main()
