"""Async quickstart: the same API as coroutines, with ``kvstore.open_async``.

Run it (no servers needed):

    python examples/async_quickstart.py

It works in a fresh temporary directory that is removed at the end, or in the store named
by ``KVSTORE_URL`` when that is set. Independent requests go out concurrently: the gather
below costs about one object-store round trip, not ten.
"""

from __future__ import annotations

import asyncio
import os
import tempfile

import kvstore


async def tour(store: kvstore.AsyncKVStore) -> None:
    await store.set("greeting", "hello, world")
    print("greeting:", await store.get("greeting"))

    await store.set("flash", "now you see me", px=200)
    await asyncio.sleep(0.3)
    print("flash after 300 ms:", await store.get("flash"))

    print("first lock:", await store.set("lock", "worker-1", nx=True))
    print("second lock:", await store.set("lock", "worker-2", nx=True))

    # Ten writes, then ten reads, each batch concurrently.
    await asyncio.gather(*(store.set(f"user:{i}", f"name-{i}") for i in range(10)))
    names = await asyncio.gather(*(store.get(f"user:{i}") for i in range(10)))
    print("gathered:", len(names), "values, first", names[0], "last", names[-1])
    print("mget:", await store.mget(["user:0", "no-such-key", "user:9"]))

    tenant = store.namespace("tenant-a")
    await tenant.set("greeting", "hej")
    print("tenant greeting:", await tenant.get("greeting"))
    print("keys with prefix user:", len(await store.keys("user:")))
    print("stats: requests =", store.stats()["requests"])


async def run(url: str) -> None:
    async with kvstore.open_async(url, cache="local") as store:
        print("store:", store.url)
        await tour(store)


async def main() -> None:
    url = os.environ.get("KVSTORE_URL")
    if url:
        await run(url)
        return
    with tempfile.TemporaryDirectory(prefix="kvstore-async-") as tmp:
        await run(tmp)


if __name__ == "__main__":
    asyncio.run(main())
