"""Immutable objects (log chunks, artifact versions) are cached without any guard."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kvstore.cache import Fill, LocalCache, NoCache
from kvstore.cache.redis import RedisCache
from kvstore.testing.cache_contract import CacheContract


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_local_put_immutable_outlives_the_mutable_ttl_and_respects_its_own() -> None:
    cache = LocalCache(max_bytes=10_000, ttl=0.05)

    async def scenario() -> tuple[Any, Any]:
        await cache.put_immutable([Fill("chunk", b"x" * 100, 0.5), Fill("gone", b"y", 0.01)])
        await asyncio.sleep(0.1)  # past the mutable ttl and past "gone"'s own ttl
        return (await cache.lookup(["chunk", "gone"])).values, cache.info()

    values, info = _run(scenario())
    assert values == [b"x" * 100, None]
    assert info["entries"] == 1


def test_local_put_immutable_skips_objects_bigger_than_a_quarter_of_the_cache() -> None:
    cache = LocalCache(max_bytes=4_000)

    async def scenario() -> list[bytes | None]:
        await cache.put_immutable([Fill("big", b"b" * 1_500, 60), Fill("small", b"s", 60)])
        return (await cache.lookup(["big", "small"])).values

    assert _run(scenario()) == [None, b"s"]


def test_no_cache_put_immutable_stores_nothing() -> None:
    cache = NoCache()

    async def scenario() -> list[bytes | None]:
        await cache.put_immutable([Fill("k", b"v", 60)])
        return (await cache.lookup(["k"])).values

    assert _run(scenario()) == [None]


@pytest.mark.parametrize("size", [10, 2_000])
def test_redis_put_immutable_is_served_and_capped(redis_server: Any, size: int) -> None:
    cache = RedisCache(redis_server.url, max_entry_bytes=1_000)
    key = f"kvstore:test-immutable:{size}"

    async def scenario() -> tuple[list[bytes | None], int]:
        try:
            await cache.put_immutable([Fill(key, b"z" * size, 30)])
            values = CacheContract.data(cache, (await cache.lookup([key])).values)
            ttl = await (await cache._connected()).pttl(f"{{{key}}}:d")
            return values, ttl
        finally:
            await cache.close()

    values, ttl = _run(scenario())
    if size <= 1_000:
        assert values == [b"z" * size]
        assert 0 < ttl <= 30_000
    else:
        assert values == [None]
        assert ttl == -2  # never written
