"""The value API contract (redis-py conventions) on every backend, with and without a cache.

Expiry is tested against a fake clock injected into AsyncKVStore, so it is exact and fast;
one test uses the real clock to prove the default clock works too.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import FakeClock, stable_repr

import kvstore

CACHES = (None, "local")
Target = Any  # tests/conftest.py's Target: .backend, .url, .storage_options, .open()


# -- set / get -----------------------------------------------------------------------------


def test_set_get_overwrite(store: kvstore.KVStore) -> None:
    assert store.get("k") is None
    assert store.set("k", b"v1") is True
    assert store.get("k") == b"v1"
    assert store.set("k", b"v2") is True
    assert store.get("k") == b"v2"
    assert isinstance(store.get("k"), bytes)


def test_set_nx_xx(store: kvstore.KVStore) -> None:
    assert store.set("k", "x", xx=True) is None
    assert store.get("k") is None
    assert store.set("k", "first", nx=True) is True
    assert store.set("k", "second", nx=True) is None
    assert store.get("k") == b"first"
    assert store.set("k", "third", xx=True) is True
    assert store.get("k") == b"third"
    with pytest.raises(ValueError):
        store.set("k", "both", nx=True, xx=True)
    assert store.get("k") == b"third"


def test_mset_mget(store: kvstore.KVStore) -> None:
    assert store.mset({"a": 1, "b": "two", "c": b"three"}) is True
    assert store.mget(["a", "b", "missing", "c"]) == [b"1", b"two", None, b"three"]
    assert store.mget("c", "a", "missing") == [b"three", b"1", None]
    assert store.mget(("b", "b")) == [b"two", b"two"]
    assert store.mget("a") == [b"1"]
    assert store.mget(["missing"]) == [None]
    assert store.mset({"a": "new"}) is True
    assert store.mget(["a", "b"]) == [b"new", b"two"]


def test_delete_counts_live_keys(store: kvstore.KVStore) -> None:
    store.mset({"a": 1, "b": 2, "c": 3})
    assert store.delete("a", "a", "missing") == 1
    assert store.delete("a") == 0
    assert store.delete("b", "c") == 2
    assert store.mget("a", "b", "c") == [None, None, None]
    assert store.keys() == []


def test_exists_counts_duplicates(store: kvstore.KVStore) -> None:
    store.mset({"a": 1, "b": 2})
    assert store.exists("a") == 1
    assert store.exists("a", "a", "b", "missing") == 3
    assert store.exists("missing") == 0
    store.delete("a")
    assert store.exists("a", "b") == 1


def test_empty_value(store: kvstore.KVStore) -> None:
    assert store.set("empty", b"") is True
    assert store.get("empty") == b""
    assert store.exists("empty") == 1
    assert store.mget(["empty", "missing"]) == [b"", None]
    assert store.set("empty", "", xx=True) is True
    assert store.get("empty") == b""


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (b"raw\x00\xff", b"raw\x00\xff"),
        (bytearray(b"ba"), b"ba"),
        (memoryview(b"mv"), b"mv"),
        ("héllo ключ 🔑", "héllo ключ 🔑".encode()),
        (0, b"0"),
        (-42, b"-42"),
        (2**70, str(2**70).encode()),
        (1.5, b"1.5"),
        (0.1, b"0.1"),
        (-0.0, b"-0.0"),
        (1e100, b"1e+100"),
        (float("inf"), b"inf"),
    ],
    ids=stable_repr,
)
def test_value_types_encode_like_redis_py(
    make_target: Callable[[str], Target], value: object, stored: bytes
) -> None:
    with make_target("memory").open() as store:
        assert store.set("k", value) is True
        assert store.get("k") == stored
        store.mset({"m": value})
        assert store.mget("m") == [stored]


def test_value_types_on_every_backend(store: kvstore.KVStore) -> None:
    store.mset({"i": 7, "f": 2.5, "s": "é", "b": b"\x00", "ba": bytearray(b"x")})
    store.set("mv", memoryview(b"view"))
    assert store.mget("i", "f", "s", "b", "ba", "mv") == [
        b"7",
        b"2.5",
        "é".encode(),
        b"\x00",
        b"x",
        b"view",
    ]


def test_decode_responses(target: Target) -> None:
    with target.open(decode_responses=True, cache="local") as store:
        assert store.decode_responses is True
        assert store.set("k", "ключ") is True
        store.set("n", 5)
        assert store.get("k") == "ключ"
        assert store.mget("k", "n", "missing") == ["ключ", "5", None]
        assert store.get("missing") is None
        ns = store.namespace("ns")
        ns.set("k", b"bytes in")
        assert ns.get("k") == "bytes in"


@pytest.mark.parametrize("kind", ["compressible", "random"])
def test_large_value(target: Target, kind: str) -> None:
    size = 5 * 2**20
    if kind == "random":
        value = random.Random(1).randbytes(size)
    else:
        value = (b"0123456789abcdef" * (size // 16))[:size]
    with target.open(cache="local") as store:
        assert store.set("big", value) is True
        assert store.get("big") == value
        assert store.get("big") == value  # warm (cached) read
    with target.open(cache=None) as reopened:
        assert reopened.get("big") == value
        written = reopened.stats()
    assert written["bytes_read"] >= (size if kind == "random" else 1)
    if kind == "compressible":
        assert written["bytes_read"] < size // 10  # stored compressed


def test_data_survives_reopen(target: Target) -> None:
    with target.open() as store:
        store.mset({"a": "1", "b/c": "2"})
        store.set("t", "3", ex=1000)
    with target.open(cache="local") as store:
        assert store.mget("a", "b/c", "t") == [b"1", b"2", b"3"]
        assert 990 <= store.ttl("t") <= 1000
        assert store.keys() == ["a", "b/c", "t"]


# -- expiry --------------------------------------------------------------------------------


def test_set_expiry_arguments(clocked: tuple[kvstore.KVStore, FakeClock]) -> None:
    store, clock = clocked
    now_s = clock.now // 1000
    store.set("ex", 1, ex=10)
    store.set("px", 1, px=2500)
    store.set("exat", 1, exat=now_s + 100)
    store.set("pxat", 1, pxat=clock.now + 7000)
    store.set("td", 1, ex=datetime.timedelta(seconds=30))
    store.set("tdpx", 1, px=datetime.timedelta(milliseconds=1234))
    at = datetime.datetime.fromtimestamp(now_s + 50, tz=datetime.timezone.utc)
    store.set("dt", 1, exat=at)
    store.set("none", 1)
    assert store.pttl("ex") == 10_000
    assert store.pttl("px") == 2500
    assert store.pttl("exat") == 100_000
    assert store.pttl("pxat") == 7000
    assert store.pttl("td") == 30_000
    assert store.pttl("tdpx") == 1234
    assert store.pttl("dt") == 50_000
    assert store.pttl("none") == -1
    assert store.pttl("missing") == -2
    assert store.ttl("ex") == 10
    assert store.ttl("px") == 3  # 2.5 s rounds like Redis: (ms + 500) // 1000
    assert store.ttl("none") == -1
    assert store.ttl("missing") == -2


def test_set_expiry_argument_errors(clocked: tuple[kvstore.KVStore, FakeClock]) -> None:
    store, _ = clocked
    store.set("k", "keep")
    bad: list[dict[str, Any]] = [
        {"ex": 1, "px": 1000},
        {"ex": 1, "exat": 2**31},
        {"px": 1, "pxat": 2**40},
        {"ex": 0},
        {"px": 0},
        {"ex": -1},
        {"exat": 0},
        {"pxat": -5},
        {"ex": float("nan")},
        {"ex": "10"},
        {"px": True},
        {"keepttl": True, "ex": 5},
        {"nx": True, "xx": True},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            store.set("k", "new", **kwargs)
    assert store.get("k") == b"keep"
    assert store.ttl("k") == -1


def test_ttl_rounding(clocked: tuple[kvstore.KVStore, FakeClock]) -> None:
    store, _ = clocked
    for ms, expected in [(1, 0), (499, 0), (500, 1), (1499, 1), (1500, 2), (10_000, 10)]:
        store.set("k", "v", px=ms)
        assert store.pttl("k") == ms
        assert store.ttl("k") == expected, ms


def test_expired_values_are_invisible_at_once(clocked: tuple[kvstore.KVStore, FakeClock]) -> None:
    store, clock = clocked
    store.set("t", "v", px=150)
    store.set("p", "v")
    assert store.get("t") == b"v"  # warms the cache, if there is one
    assert store.mget("t", "p") == [b"v", b"v"]
    clock.advance(149)
    assert store.get("t") == b"v"
    assert store.pttl("t") == 1
    clock.advance(1)
    assert store.get("t") is None
    assert store.mget("t", "p") == [None, b"v"]
    assert store.exists("t", "p") == 1
    assert store.ttl("t") == -2
    assert store.pttl("t") == -2
    assert store.expire("t", 100) is False
    assert store.persist("t") is False
    assert store.set("t", "x", xx=True) is None
    assert store.set("t", "x", xx=True, keepttl=True) is None
    assert store.set("t", "kept", keepttl=True) is True  # the expired TTL is not kept
    assert store.ttl("t") == -1
    store.set("t", "v", px=150)
    clock.advance(150)
    assert store.set("t", "fresh", nx=True) is True  # an expired key counts as missing
    assert store.get("t") == b"fresh"
    assert store.ttl("t") == -1


def test_delete_does_not_count_expired(clocked: tuple[kvstore.KVStore, FakeClock]) -> None:
    store, clock = clocked
    store.set("t", "v", px=10)
    store.set("p", "v")
    clock.advance(10)
    assert store.delete("t", "p") == 1
    assert store.keys() == []  # the expired object is gone too


def test_keepttl(clocked: tuple[kvstore.KVStore, FakeClock]) -> None:
    store, clock = clocked
    store.set("k", "v1", ex=100)
    clock.advance(10_000)
    assert store.set("k", "v2", keepttl=True) is True
    assert store.get("k") == b"v2"
    assert store.pttl("k") == 90_000
    assert store.set("k", "v3") is True  # a plain set clears the TTL
    assert store.ttl("k") == -1
    assert store.set("k", "v4", keepttl=True) is True
    assert store.ttl("k") == -1
    assert store.set("new", "v", keepttl=True) is True  # missing: stored without TTL
    assert store.ttl("new") == -1
    store.set("k", "v5", px=500)
    assert store.set("k", "v6", xx=True, keepttl=True) is True
    assert store.pttl("k") == 500
    clock.advance(500)
    assert store.get("k") is None


def test_expire_pexpire_persist(clocked: tuple[kvstore.KVStore, FakeClock]) -> None:
    store, clock = clocked
    assert store.expire("missing", 10) is False
    assert store.pexpire("missing", 10) is False
    assert store.persist("missing") is False
    store.set("k", "v")
    assert store.persist("k") is False  # no TTL to remove
    assert store.expire("k", 10) is True
    assert store.pttl("k") == 10_000
    assert store.pexpire("k", 2500) is True
    assert store.pttl("k") == 2500
    assert store.expire("k", datetime.timedelta(seconds=7)) is True
    assert store.pttl("k") == 7000
    assert store.expire("k", 1.5) is True
    assert store.pttl("k") == 1500
    assert store.persist("k") is True
    assert store.ttl("k") == -1
    assert store.get("k") == b"v"  # the value is untouched throughout
    store.pexpire("k", 100)
    clock.advance(100)
    assert store.get("k") is None


@pytest.mark.parametrize("ttl", [0, -1, -1000])
def test_expire_zero_or_negative_deletes(
    clocked: tuple[kvstore.KVStore, FakeClock], ttl: int
) -> None:
    store, _ = clocked
    store.set("k", "v")
    store.set("j", "v", ex=100)
    assert store.expire("k", ttl) is True
    assert store.pexpire("j", ttl) is True
    assert store.get("k") is None
    assert store.get("j") is None
    assert store.exists("k", "j") == 0
    assert store.keys() == []


def test_expire_conditions(clocked: tuple[kvstore.KVStore, FakeClock]) -> None:
    store, _ = clocked
    store.set("k", "v")
    # no TTL: XX and GT fail (no TTL counts as infinite), NX and LT succeed
    assert store.expire("k", 10, xx=True) is False
    assert store.expire("k", 10, gt=True) is False
    assert store.ttl("k") == -1
    assert store.expire("k", 10, lt=True) is True
    assert store.ttl("k") == 10
    assert store.expire("k", 20, nx=True) is False
    assert store.expire("k", 5, gt=True) is False
    assert store.expire("k", 10, gt=True) is False  # equal is not greater
    assert store.expire("k", 20, gt=True) is True
    assert store.ttl("k") == 20
    assert store.expire("k", 30, lt=True) is False
    assert store.expire("k", 20, lt=True) is False  # equal is not less
    assert store.ttl("k") == 20
    assert store.expire("k", 5, lt=True) is True
    assert store.ttl("k") == 5
    assert store.expire("k", 7, xx=True) is True
    assert store.expire("k", 9, xx=True, gt=True) is True
    assert store.ttl("k") == 9
    assert store.persist("k") is True
    assert store.expire("k", 3, nx=True) is True
    assert store.ttl("k") == 3
    assert store.pexpire("k", 1, xx=True, lt=True) is True
    assert store.pttl("k") == 1
    for bad in ({"nx": True, "xx": True}, {"gt": True, "lt": True}, {"nx": True, "gt": True}):
        with pytest.raises(ValueError):
            store.expire("k", 10, **bad)
    with pytest.raises(ValueError):
        store.expire("k", 10, xx=True, gt=True, lt=True)
    assert store.pttl("k") == 1


def test_real_clock_expiry(store: kvstore.KVStore) -> None:
    store.get("warm-up")  # the first request of a remote store opens its session
    start = time.monotonic()
    store.set("t", "v", px=1000)
    value, pttl = store.get("t"), store.pttl("t")
    if time.monotonic() - start >= 1.0:  # the wall clock check needs a fast enough machine
        pytest.skip("set+get took over 1 s here; the fake-clock tests cover expiry logic")
    assert value == b"v"
    assert 0 < pttl <= 1000
    time.sleep(max(0.0, start + 1.01 - time.monotonic()))
    assert store.get("t") is None
    assert store.pttl("t") == -2


def test_purge_expired(clocked: tuple[kvstore.KVStore, FakeClock]) -> None:
    store, clock = clocked
    store.set("a/1", "x", px=100)
    store.set("a/2", "x", px=100)
    store.set("b/1", "x", px=100)
    store.set("later", "x", px=10_000)
    store.set("forever", "x")
    assert store.purge_expired() == 0
    clock.advance(100)
    # until purged, an expired object is still listed (see scan_iter's docstring)
    assert store.keys() == ["a/1", "a/2", "b/1", "forever", "later"]
    assert store.purge_expired("a/") == 2
    assert store.keys() == ["b/1", "forever", "later"]
    assert store.purge_expired() == 1
    assert store.purge_expired() == 0
    assert store.keys() == ["forever", "later"]
    assert store.mget("forever", "later") == [b"x", b"x"]
    assert store.pttl("later") == 9_900


def test_expiry_in_namespace(clocked: tuple[kvstore.KVStore, FakeClock]) -> None:
    store, clock = clocked
    ns = store.namespace("n")
    ns.set("k", "v", px=100)
    store.set("k", "parent", px=1000)
    clock.advance(100)
    assert ns.get("k") is None
    assert store.get("k") == b"parent"
    assert ns.purge_expired() == 1
    assert store.keys() == ["k"]


# -- listing -------------------------------------------------------------------------------

TRICKY_KEYS = [
    "a",
    "ab",
    "a/b",
    "a b",
    "a%2F",
    "a..b",
    "..",
    "a\x00",
    "A",
    "ключ",
    "ключи",
    "🔑",
    "b~",
]


def test_keys_and_scan_iter(store: kvstore.KVStore) -> None:
    store.mset({k: k for k in TRICKY_KEYS})
    everything = store.keys()
    assert everything == sorted(TRICKY_KEYS)
    assert sorted(store.scan_iter()) == everything
    assert store.keys("a") == ["a", "a\x00", "a b", "a%2F", "a..b", "a/b", "ab"]
    assert store.keys("a/") == ["a/b"]
    assert store.keys("ab") == ["ab"]
    assert store.keys("abc") == []
    assert store.keys("клю") == ["ключ", "ключи"]
    assert store.keys("ключ") == ["ключ", "ключи"]
    assert store.keys("🔑") == ["🔑"]
    assert store.keys("..") == [".."]
    assert store.keys(".") == [".."]
    assert store.keys("b") == ["b~"]
    assert sorted(store.scan_iter("a")) == store.keys("a")
    assert store.mget(everything) == [k.encode() for k in everything]


def test_keys_long_keys(store: kvstore.KVStore) -> None:
    """Keys longer than one path segment (240 chars) list and read back whole."""
    long_a = "x" * 700
    long_b = "x" * 300 + "/" + "y" * 400
    store.mset({long_a: 1, long_b: 2, "x": 3})
    assert store.keys() == sorted([long_a, long_b, "x"])
    assert store.keys("x" * 250) == sorted([long_a, long_b])
    assert store.keys("x" * 300 + "/") == [long_b]
    assert store.mget(long_a, long_b) == [b"1", b"2"]


def test_longest_key(store: kvstore.KVStore) -> None:
    """1024 bytes is the key limit; on S3/GCS the object name (prefix + escaped key) must
    also fit their 1024-byte limit, which a long key that needs escaping can exceed."""
    longest = "k" * 1024
    if store.url.startswith(("s3://", "gs://")):
        with pytest.raises(kvstore.InvalidKeyError, match="too long"):
            store.set(longest, 1)
        with pytest.raises(kvstore.InvalidKeyError):
            store.get(longest)
        assert store.keys() == []
    else:
        assert store.set(longest, 1) is True
        assert store.get(longest) == b"1"
        assert store.keys() == [longest]
    with pytest.raises(kvstore.InvalidKeyError, match="1024"):
        store.set("k" * 1025, 1)


def test_keys_empty_store(store: kvstore.KVStore) -> None:
    assert store.keys() == []
    assert list(store.scan_iter()) == []
    assert store.keys("p") == []


# -- namespaces ----------------------------------------------------------------------------


def test_namespaces_isolated(store: kvstore.KVStore) -> None:
    a = store.namespace("tenant-a")
    b = store.namespace("tenant-b")
    nested = a.namespace("tenant-b")
    views = {"root": store, "a": a, "b": b, "nested": nested}
    for name, view in views.items():
        assert view.set("k", name) is True
    assert {name: view.get("k") for name, view in views.items()} == {
        name: name.encode() for name in views
    }
    a.set("only-a", 1)
    assert store.keys() == ["k"]
    assert a.keys() == ["k", "only-a"]
    assert b.keys() == ["k"]
    assert nested.keys() == ["k"]
    assert store.exists("only-a") == 0
    assert b.get("only-a") is None
    assert a.delete("k", "only-a") == 2
    assert [store.get("k"), b.get("k"), nested.get("k")] == [b"root", b"b", b"nested"]
    assert store.namespace("tenant-a").namespace("tenant-b").get("k") == b"nested"


def test_namespace_names_with_separators(store: kvstore.KVStore) -> None:
    """namespace("a/b") is one namespace, not namespace("a").namespace("b")."""
    flat = store.namespace("a/b")
    nested = store.namespace("a").namespace("b")
    flat.set("k", "flat")
    nested.set("k", "nested")
    assert flat.get("k") == b"flat"
    assert nested.get("k") == b"nested"
    assert store.namespace("a").keys() == []
    assert store.keys() == []


def test_namespace_names_validated(store: kvstore.KVStore) -> None:
    for bad in ("", None, "x" * 1025, 5):
        with pytest.raises(kvstore.InvalidKeyError):
            store.namespace(bad)  # type: ignore[arg-type]
    odd = store.namespace("../..")
    odd.set("k", 1)
    assert store.keys() == []
    assert odd.keys() == ["k"]


# -- the two faces and the request counters ------------------------------------------------


def _script_sync(store: kvstore.KVStore) -> list[Any]:
    return [
        store.set("a", "1"),
        store.set("a", "2", nx=True),
        store.mset({"b": 2, "c": b"3"}),
        store.mget("a", "b", "zz"),
        store.get("zz"),
        store.exists("a", "a", "zz"),
        store.expire("a", 100),
        store.ttl("a"),
        store.persist("a"),
        store.keys(),
        store.delete("b", "zz"),
        store.namespace("n").set("a", "in n"),
        store.namespace("n").get("a"),
        store.get("a"),
    ]


async def _script_async(store: kvstore.AsyncKVStore) -> list[Any]:
    return [
        await store.set("a", "1"),
        await store.set("a", "2", nx=True),
        await store.mset({"b": 2, "c": b"3"}),
        await store.mget("a", "b", "zz"),
        await store.get("zz"),
        await store.exists("a", "a", "zz"),
        await store.expire("a", 100),
        await store.ttl("a"),
        await store.persist("a"),
        await store.keys(),
        await store.delete("b", "zz"),
        await store.namespace("n").set("a", "in n"),
        await store.namespace("n").get("a"),
        await store.get("a"),
    ]


def test_async_face_matches_sync_face(make_target: Callable[[str], Target], target: Target) -> None:
    with target.open() as sync_store:
        expected = _script_sync(sync_store)

    async def run() -> tuple[list[Any], list[str]]:
        async with make_target(target.backend).open_async(cache="local") as astore:
            got = await _script_async(astore)
            keys = [k async for k in astore.scan_iter()]
            return got, keys

    got, scanned = asyncio.run(run())
    assert got == expected
    assert sorted(scanned) == ["a", "c"]
    assert expected[:4] == [True, None, True, [b"1", b"2", None]]
    assert expected[-3:] == [True, b"in n", b"1"]


def test_async_store_survives_its_event_loop(target: Target) -> None:
    """One AsyncKVStore used from two successive asyncio.run() calls (two loops)."""
    astore = target.open_async(cache="local")

    async def write() -> None:
        await astore.set("k", "v")

    async def read_and_close() -> Any:
        try:
            return await astore.get("k"), await astore.keys()
        finally:
            await astore.close()

    asyncio.run(write())
    assert asyncio.run(read_and_close()) == (b"v", ["k"])


def test_async_and_sync_see_each_other(target: Target) -> None:
    with target.open(cache=None) as sync_store:
        sync_store.set("from-sync", "s")

        async def run() -> list[Any]:
            async with target.open_async() as astore:
                await astore.set("from-async", "a")
                return await astore.mget("from-sync", "from-async")

        assert asyncio.run(run()) == [b"s", b"a"]
        assert sync_store.get("from-async") == b"a"


def _requests(store: kvstore.KVStore, kind: str) -> int:
    return int(store.stats().get(f"requests.{kind}", 0))


def test_stats_count_requests(store: kvstore.KVStore) -> None:
    cached = store.stats()["cache"]["kind"] == "local"
    before = store.stats()["requests"]
    assert store.set("k", "v") is True
    assert _requests(store, "put") == 1
    assert store.stats()["requests"] == before + 1

    gets = _requests(store, "get")
    assert store.get("k") == b"v"  # cold: one object GET
    assert _requests(store, "get") == gets + 1
    assert store.get("k") == b"v"  # warm: free with a cache, one GET without
    assert _requests(store, "get") == gets + (1 if cached else 2)
    assert store.get("missing") is None
    assert store.get("missing") is None  # a cached "missing" costs nothing either
    assert _requests(store, "get") == gets + (2 if cached else 4)

    store.set("k", "v2")  # invalidates: the next read goes to the object store
    gets = _requests(store, "get")
    assert store.get("k") == b"v2"
    assert _requests(store, "get") == gets + 1

    gets = _requests(store, "get")
    assert store.mget("a", "b", "c") == [None, None, None]
    assert _requests(store, "get") == gets + 3
    stats = store.stats()
    assert stats["bytes_written"] > 0
    assert stats["bytes_read"] > 0
    assert stats["cache"]["kind"] in ("none", "local")
    if cached:
        assert stats["cache.hits"] >= 2
        assert stats["cache"]["entries"] >= 1


def test_namespace_shares_stats(store: kvstore.KVStore) -> None:
    ns = store.namespace("n")
    ns.set("k", "v")
    assert store.stats()["requests.put"] == 1
    assert ns.stats() == store.stats()


def test_local_cache_is_coherent_within_process(target: Target) -> None:
    cache = kvstore.LocalCache()
    with target.open(cache=cache) as one, target.open(cache=cache) as two:
        one.set("k", "v1")
        assert two.get("k") == b"v1"
        assert one.get("k") == b"v1"
        two.set("k", "v2")
        assert one.get("k") == b"v2"
        two.delete("k")
        assert one.get("k") is None
        two.set("k", "v3", nx=True)
        assert one.get("k") == b"v3"


def test_repr_and_url(store: kvstore.KVStore) -> None:
    assert store.url.split("://")[0] in ("memory", "file", "s3", "gs")
    assert store.url in repr(store)
    assert "namespace='x'" in repr(store.namespace("x"))
    assert store.namespace("x").url == store.url
