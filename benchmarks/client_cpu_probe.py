"""Client CPU per S3 request of kvstore's blob layer, by transport, against raw obstore,
on SeaweedFS on loopback (issue 16):

* kvstore's obstore transport (the default);
* kvstore's s3fs transport as configured (fixed User-Agent, no parameter validation,
  standard-library date parsing);
* the s3fs transport with botocore's defaults restored;
* obstore's own ``put_async``/``get_async``, the floor a Python client of object_store has.

    python -m benchmarks.client_cpu_probe [--requests 1000] [--rounds 3]

Each round: 1000 PUTs of 1 KiB, then 1000 GETs of them, 32 in flight; the number is this
process's CPU time (every thread: kvstore, botocore, aiohttp, obstore's Rust runtime; not
the server's) per request, the median of interleaved rounds of every configuration. Then
the CPU of one dated listing of those objects (``list_dated``: what a log's settle and
compaction send; raw obstore: ``obstore.list`` of them).
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


async def _raw_obstore_round(server: Any, url: str, n: int) -> tuple[float, float]:
    import obstore

    from .harness import obstore_client

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    store = obstore_client(server, bucket, prefix)
    data = os.urandom(1024)
    gate = asyncio.Semaphore(32)

    async def put(i: int) -> None:
        async with gate:
            await obstore.put_async(store, f"k{i}", data)

    async def get(i: int) -> None:
        async with gate:
            result = await obstore.get_async(store, f"k{i}")
            bytes(await result.bytes_async())

    await asyncio.gather(*(put(i) for i in range(32)))
    started = time.process_time()
    await asyncio.gather(*(put(i) for i in range(n)))
    await asyncio.gather(*(get(i) for i in range(n)))
    per_request = (time.process_time() - started) / (2 * n) * 1000
    started = time.process_time()
    listed = [meta async for page in obstore.list(store, chunk_size=1000) for meta in page]
    assert len(listed) >= n
    return per_request, (time.process_time() - started) * 1000


async def _round(url: str, options: dict[str, Any], n: int) -> tuple[float, float]:
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
    started = time.process_time()
    assert len((await blob.list_dated("")).paths) >= n
    listing = time.process_time() - started
    await blob.close()
    return spent / (2 * n) * 1000, listing * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from backends import SeaweedFS

    with SeaweedFS(buckets=("cpu-probe",)) as server:
        url = server.url_for("cpu-probe", "probe")
        base = dict(server.storage_options)
        configurations: dict[str, Any] = {
            "kvstore, obstore transport (default)": {**base, "transport": "obstore"},
            "kvstore, s3fs transport": {**base, "transport": "s3fs"},
            "kvstore, s3fs with botocore's defaults": {
                **base,
                "transport": "s3fs",
                "session": None,
                **BOTOCORE_DEFAULTS,
            },
            "obstore put_async/get_async (raw)": None,
        }
        spent: dict[str, list[tuple[float, float]]] = {name: [] for name in configurations}
        for _ in range(args.rounds):
            for name, options in configurations.items():
                if options is None:
                    spent[name].append(asyncio.run(_raw_obstore_round(server, url, args.requests)))
                else:
                    spent[name].append(asyncio.run(_round(url, options, args.requests)))
        raw = spent["obstore put_async/get_async (raw)"]
        floor = statistics.median(r[0] for r in raw)
        list_floor = statistics.median(r[1] for r in raw)
        print(
            f"client CPU per request, and of one dated listing of the {args.requests} "
            f"objects, median of {args.rounds} interleaved rounds:"
        )
        for name, values in spent.items():
            ms = statistics.median(v[0] for v in values)
            listing = statistics.median(v[1] for v in values)
            print(
                f"  {name:42s} {ms:.2f} ms  ({ms / floor:.2f}x raw obstore); "
                f"listing {listing:.1f} ms ({listing / list_floor:.2f}x)"
            )


if __name__ == "__main__":
    main()
