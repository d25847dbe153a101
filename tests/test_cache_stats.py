"""stats() hit ratios are true: every key a data model looks up in the cache counts once,
in ``cache.hits`` or ``cache.misses`` - values, log plans and pieces, artifact manifests and
pointers alike."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import kvstore
from kvstore.cache import Lookup


class CountingCache(kvstore.LocalCache):
    """The in-process cache, counting the keys it is asked for."""

    def __init__(self) -> None:
        super().__init__(ttl=60)
        self.asked = 0

    async def lookup(self, keys: Sequence[str]) -> Lookup:
        self.asked += len(keys)
        return await super().lookup(keys)


def test_every_lookup_counts_once_on_every_data_model(make_target: Any) -> None:
    cache = CountingCache()

    async def main() -> dict[str, int]:
        async with make_target("memory").open_async(cache=cache) as store:
            await store.set("k", "v")
            await store.append("log", "a")
            await store.append("log", "b")
            await store.artifacts.save("doc", "x")
            for _ in range(3):
                assert await store.get("k") == b"v"
                assert await store.mget(["k", "missing", "k"]) == [b"v", None, b"v"]
                assert await store.range("log") == [b"a", b"b"]
                assert await store.length("log") == 2
                assert (await store.artifacts.load("doc")).data == b"x"
                assert (await store.artifacts.load("doc", version=0)).data == b"x"
                assert await store.exists("k", "log") == 2
            stats = store.stats()
            # (before close(): it settles the log, whose reads count too)
            return {
                "asked": cache.asked,
                **{k: stats.get(k, 0) for k in ("cache.hits", "cache.misses")},
            }

    counts = asyncio.run(main())
    assert counts["cache.hits"] + counts["cache.misses"] == counts["asked"]
    assert counts["cache.hits"] > 2 * counts["cache.misses"] > 0  # warm rounds mostly hit
