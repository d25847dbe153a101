"""A damaged cache entry of any kind is a miss that is repaired - never an error; and two
stores never share cache entries because they share a name.

Every kind of entry the store caches (a value, a log chunk, a log segment, a log plan, an
artifact manifest, a version's info, an artifact's latest-version pointer), on the
in-process cache and on a real redis-server: one bit of the entry is flipped, and the next
reads must return the right data, count ``cache.corrupt``, and put a good entry back.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import FakeClock, open_clocked

import kvstore
from kvstore.blob import WrapperBlobStore, open_blob_store
from kvstore.layout import chunk_name, segment_name
from kvstore.logs import limits as log_limits
from kvstore.stats import Stats


@dataclass
class Kind:
    """How to make one kind of cache entry, read it, and name it."""

    setup: Callable[[kvstore.KVStore, FakeClock], None]
    read: Callable[[kvstore.KVStore], Any]
    name: Callable[[kvstore.KVStore], str]  # the entry's name (path or cache-only name)


def _log(store: kvstore.KVStore, clock: FakeClock) -> None:
    for record in ("a", "b", "c"):
        store.append("log", record)  # one chunk each: c/0, c/1, c/2


def _compacted_log(store: kvstore.KVStore, clock: FakeClock) -> None:
    _log(store, clock)
    clock.advance(log_limits.MIN_AGE_MS + 1000)
    assert store.compact("log") == 2  # s/0-2 and the tail chunk c/2


def _log_dir(store: kvstore.KVStore) -> str:
    return store.aio._ctx.layout.log_dir("log")


def _art_dir(store: kvstore.KVStore) -> str:
    return store.aio._ctx.layout.artifact_dir("doc")


def _artifact(store: kvstore.KVStore, clock: FakeClock) -> None:
    store.artifacts.save("doc", "first")
    store.artifacts.save("doc", "second")


def _large_artifact(store: kvstore.KVStore, clock: FakeClock) -> None:
    # beyond the first 4 KiB that info reads: its info is cached apart from the manifest
    store.artifacts.save("doc", random.Random(0).randbytes(8192), metadata={"k": "v"})


KINDS = {
    "value": Kind(
        lambda s, c: s.set("k", "value"),
        lambda s: s.get("k"),
        lambda s: s.aio._ctx.layout.value("k"),
    ),
    "chunk": Kind(_log, lambda s: s.range("log", 0, -1), lambda s: _log_dir(s) + chunk_name(0)),
    "segment": Kind(
        _compacted_log,
        lambda s: s.range("log", 0, -1),
        lambda s: _log_dir(s) + segment_name(0, 2),
    ),
    "plan": Kind(
        _log,
        lambda s: s.range("log", 0, -1),
        lambda s: s.aio._ctx.layout.log_plan_key(_log_dir(s)),
    ),
    "manifest": Kind(
        _artifact,
        lambda s: s.artifacts.load("doc", version=0).data,
        lambda s: s.aio._ctx.layout.version(_art_dir(s), 0),
    ),
    "artifact info": Kind(
        _large_artifact,
        lambda s: s.artifacts.info("doc", 0),
        lambda s: s.aio._ctx.layout.version_info_key(s.aio._ctx.layout.version(_art_dir(s), 0)),
    ),
    "latest pointer": Kind(
        _artifact,
        lambda s: s.artifacts.load("doc").data,
        lambda s: s.aio._ctx.layout.latest_pointer_key(_art_dir(s)),
    ),
}


class LocalEntries:
    """Read and overwrite entries of a LocalCache in place."""

    def __init__(self, cache: kvstore.LocalCache) -> None:
        self.cache = cache

    def get(self, key: str) -> bytes | None:
        found = self.cache._entries.get(key)
        return None if found is None else found[0]

    def set(self, key: str, value: bytes) -> None:
        with self.cache._lock:
            self.cache._entries[key] = (value, self.cache._entries[key][1])


class RedisEntries:
    """Read and overwrite entries of a RedisCache with a client of the test's own server
    (the entry follows the generation prefix, which is kept)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, key: str) -> bytes | None:
        found = self.client.get(f"{{{key}}}:d")
        return None if found is None else bytes(found)

    def set(self, key: str, value: bytes) -> None:
        self.client.set(f"{{{key}}}:d", value, keepttl=True)


@pytest.fixture(params=["local", "redis"])
def cache_and_entries(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    if request.param == "local":
        cache = kvstore.LocalCache(ttl=60)
        yield cache, LocalEntries(cache)
        return
    server = request.getfixturevalue("redis_server")
    client = server.client()
    yield kvstore.RedisCache(server.url), RedisEntries(client)
    client.close()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_damaged_entry_is_a_repaired_miss(
    make_target: Any, cache_and_entries: tuple[Any, Any], kind: str
) -> None:
    cache, entries = cache_and_entries
    spec = KINDS[kind]
    clock = FakeClock()
    with open_clocked(make_target("memory"), clock, cache) as store:
        spec.setup(store, clock)
        expected = spec.read(store)
        spec.read(store)  # a guarded fill may need a second read after a write's invalidation
        key = store.aio._ctx.cache_prefix + spec.name(store)
        good = entries.get(key)
        assert good is not None, f"the {kind} was not cached"
        entries.set(key, good[:-1] + bytes([good[-1] ^ 0x01]))  # one bit flipped
        corrupt = store.stats().get("cache.corrupt", 0)

        assert spec.read(store) == expected  # never an error, never wrong data
        assert store.stats()["cache.corrupt"] == corrupt + 1
        for _ in range(2):  # dropped at once; refilled by a later read
            assert spec.read(store) == expected
        assert entries.get(key) == good or (kind == "plan" and entries.get(key) is not None)
        assert store.stats()["cache.corrupt"] == corrupt + 1  # repaired: no more damage seen


class SameName(WrapperBlobStore):
    """Two stores that look alike from the outside: the same hostname and path, as two
    containers with different volumes mounted at /data."""

    @property
    def identity(self) -> str:
        return "host-a:file:///data"


def test_two_stores_with_the_same_name_never_share_cache_entries(
    tmp_path: Any, redis_server: Any
) -> None:
    stats = Stats()
    one = SameName(open_blob_store(str(tmp_path / "volume-1"), stats=stats))
    two = SameName(open_blob_store(str(tmp_path / "volume-2"), stats=Stats()))
    assert one.identity == two.identity
    with (
        kvstore.open(one, cache=kvstore.RedisCache(redis_server.url)) as a,
        kvstore.open(two, cache=kvstore.RedisCache(redis_server.url)) as b,
    ):
        a.set("balance", "alice's")
        b.set("balance", "bob's")
        for _ in range(2):  # cold, then from the cache
            assert a.get("balance") == b"alice's"
            assert b.get("balance") == b"bob's"
        assert a.aio._ctx.cache_prefix != b.aio._ctx.cache_prefix
        # the id is read once per open store: no request on the hot path
        before = stats.get("requests.get")
        for _ in range(5):
            assert a.get("balance") == b"alice's"
        assert stats.get("requests.get") == before


def test_stores_of_one_location_share_the_id_and_stay_coherent(
    tmp_path: Any, redis_server: Any
) -> None:
    url = str(tmp_path / "shared")
    with (
        kvstore.open(url, cache=kvstore.RedisCache(redis_server.url)) as a,
        kvstore.open(url, cache=kvstore.RedisCache(redis_server.url)) as b,
    ):
        a.set("k", "1")
        assert b.get("k") == b"1"  # cached by b
        a.set("k", "2")  # invalidates the entry b filled: the same prefix
        assert b.get("k") == b"2"
        assert a.aio._ctx.cache_prefix == b.aio._ctx.cache_prefix
        stored = (tmp_path / "shared" / ".kvstore" / "id").read_bytes()
        assert len(stored) == 32


def test_a_store_without_a_shared_cache_makes_no_id(tmp_path: Any) -> None:
    with kvstore.open(str(tmp_path / "plain"), cache="local") as store:
        store.set("k", "v")
        assert store.get("k") == b"v"
    assert not (tmp_path / "plain" / ".kvstore" / "id").exists()
