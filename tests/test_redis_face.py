"""kvstore.Redis / kvstore.AsyncRedis: the typed key space and the redis-py face, on every
backend that matters (memory, local disk, a real S3 server), with and without a cache.

redis-py's own tests run from its sdist (tests/test_redispy_suite.py); hypothesis compares
replies with a real redis-server (tests/test_redis_differential.py). This file holds the
properties those cannot show: what kvstore adds or refuses, what a command costs in
object-store requests, and atomicity across processes on a real S3 server.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import RACES, Target, open_clocked

import kvstore
from kvstore.testing import FakeClock, run_in_processes

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FACE = ["memory", "local", "seaweedfs"]


@pytest.fixture(params=FACE)
def face_target(request: pytest.FixtureRequest, make_target: Callable[[str], Target]) -> Target:
    return make_target(request.param)


@pytest.fixture(params=[None, "local"], ids=lambda c: f"cache={c}")
def r(request: pytest.FixtureRequest, face_target: Target) -> Iterator[kvstore.Redis]:
    store = face_target.open(cache=kvstore.LocalCache() if request.param else None)
    client = kvstore.Redis(store=store)
    yield client
    store.close()


def test_a_key_holds_one_type_and_other_commands_fail_with_wrongtype(r: kvstore.Redis) -> None:
    r.set("s", "v")
    r.hset("h", "f", "v")
    r.sadd("set", "m")
    r.zadd("z", {"m": 1})
    r.rpush("l", "a")
    assert [r.type(k) for k in ("s", "h", "set", "z", "l", "none")] == [
        b"string",
        b"hash",
        b"set",
        b"zset",
        b"list",
        b"none",
    ]
    for call in (
        lambda: r.get("h"),
        lambda: r.incr("h"),
        lambda: r.hget("s", "f"),
        lambda: r.sadd("h", "x"),
        lambda: r.zadd("set", {"x": 1}),
        lambda: r.rpush("z", "x"),
        lambda: r.lrange("s", 0, -1),
        lambda: r.append("l", "x"),
    ):
        with pytest.raises(redis.exceptions.ResponseError, match=r"^WRONGTYPE") as caught:
            call()
        assert isinstance(caught.value, kvstore.KVStoreError)
        assert isinstance(caught.value, kvstore.errors.WrongTypeError)
    # nothing was changed by the refused commands
    assert r.get("s") == b"v" and r.hgetall("h") == {b"f": b"v"} and r.lrange("l", 0, -1) == [b"a"]
    # SET replaces any type; MGET gives None for a key of another type, as Redis
    assert r.mget("s", "h") == [b"v", None]
    assert r.set("h", "now a string") and r.type("h") == b"string"


def test_the_native_face_sees_the_same_strings_and_refuses_other_types(
    face_target: Target,
) -> None:
    with face_target.open() as store:
        client = kvstore.Redis(store=store)
        store.set("k", "native")
        assert client.get("k") == b"native"
        client.incr("n")
        assert store.get("n") == b"1"
        client.hset("h", "f", "v")
        with pytest.raises(kvstore.errors.WrongTypeError):
            store.get("h")
        assert store.mget(["k", "h"]) == [b"native", None]
        assert store.ttl("h") == -1


@pytest.mark.parametrize("cache", [None, "local"])
def test_every_type_expires_and_an_expired_key_is_never_listed(
    face_target: Target, cache: str | None
) -> None:
    clock = FakeClock()
    store = open_clocked(face_target, clock, kvstore.LocalCache() if cache else None)
    r = kvstore.Redis(store=store)
    r.set("s", "v")
    r.hset("h", "f", "v")
    r.sadd("set", "m")
    r.zadd("z", {"m": 1})
    r.rpush("l", "a", "b")
    keys = ["s", "h", "set", "z", "l"]
    for key in keys:
        assert r.pexpire(key, 150)
        assert 0 < r.pttl(key) <= 150
    assert sorted(r.keys("*")) == sorted(k.encode() for k in keys)
    clock.advance(200)
    assert r.keys("*") == []
    assert list(r.scan_iter()) == []
    assert r.exists(*keys) == 0
    assert r.lrange("l", 0, -1) == [] and r.llen("l") == 0
    # a push after expiry starts a new list: the old records never come back
    assert r.rpush("l", "new") == 1
    assert r.lrange("l", 0, -1) == [b"new"]
    store.close()


def test_keys_are_binary_safe_and_may_be_empty(r: kvstore.Redis) -> None:
    odd = [b"", b"\xff\x00", b"a/../b", b"..", b"~", b"%41", "é".encode(), b"*?[x]"]
    for i, key in enumerate(odd):
        r.set(key, i)
    assert sorted(r.keys("*")) == sorted(odd)
    for i, key in enumerate(odd):
        assert r.get(key) == str(i).encode()
    assert r.keys(b"\\*\\?\\[x]") == [b"*?[x]"]
    assert r.keys("a/*") == [b"a/../b"]
    assert r.delete(*odd) == len(odd)


def test_keys_and_scan_take_redis_globs(r: kvstore.Redis) -> None:
    for key in ("hello", "hallo", "hxllo", "hllo", "heeeello", "a", "ab", "user:1", "user:2"):
        r.set(key, 1)
    r.hset("user:h", "f", "v")
    assert sorted(r.keys("h?llo")) == [b"hallo", b"hello", b"hxllo"]
    assert sorted(r.keys("h*llo")) == [b"hallo", b"heeeello", b"hello", b"hllo", b"hxllo"]
    assert sorted(r.keys("h[ae]llo")) == [b"hallo", b"hello"]
    assert sorted(r.keys("h[^e]llo")) == [b"hallo", b"hxllo"]
    assert sorted(r.keys("h[a-b]llo")) == [b"hallo"]
    assert r.keys("a") == [b"a"]  # not a prefix: "ab" is not returned
    assert sorted(r.scan_iter("user:*", _type="string")) == [b"user:1", b"user:2"]
    assert sorted(r.scan_iter("user:*", _type="hash")) == [b"user:h"]
    assert sorted(r.scan_iter(count=2)) == sorted(r.keys())


def test_a_scan_cursor_returns_every_key_that_existed_throughout(r: kvstore.Redis) -> None:
    stable = [f"k{i:03d}" for i in range(0, 60, 2)]
    for key in stable:
        r.set(key, 1)
    seen: list[bytes] = []
    cursor, batch = r.scan(0, count=7)
    seen += batch
    n = 0
    while cursor:
        r.set(f"k{n:03d}x", 1)  # new keys land before and after the cursor
        r.delete(f"k{n + 1:03d}x")
        n += 3
        cursor, batch = r.scan(cursor, count=7)
        seen += batch
    got = [k.decode() for k in seen]
    assert set(stable) <= set(got)
    assert len(got) == len(set(got))  # never twice


def test_strings_and_counters(r: kvstore.Redis) -> None:
    assert r.set("k", "v", nx=True) and r.set("k", "w", nx=True) is None
    assert r.set("k", "x", xx=True, get=True) == b"v"
    assert r.set("k", "y", ex=100) and 99 <= r.ttl("k") <= 100
    assert r.set("k", "z", keepttl=True) and r.ttl("k") > 0
    assert r.getex("k", persist=True) == b"z" and r.ttl("k") == -1
    assert r.append("k", "abc") == 4 and r.get("k") == b"zabc"
    assert r.setrange("k", 6, "!") == 7 and r.get("k") == b"zabc\x00\x00!"
    assert r.getrange("k", 1, 3) == b"abc" and r.strlen("k") == 7
    assert r.incr("n") == 1 and r.incrby("n", 10) == 11 and r.decrby("n", 2) == 9
    assert r.incrbyfloat("n", 0.5) == 9.5
    with pytest.raises(redis.exceptions.ResponseError, match="not an integer"):
        r.incr("n")
    r.set("big", 2**63 - 1)
    with pytest.raises(redis.exceptions.ResponseError, match="overflow"):
        r.incr("big")
    assert r.get("big") == str(2**63 - 1).encode()
    assert r.msetnx({"m1": 1, "m2": 2}) and not r.msetnx({"m2": 3, "m3": 3})
    assert r.mget("m1", "m2", "m3") == [b"1", b"2", None]
    assert r.getdel("m1") == b"1" and r.exists("m1") == 0
    with pytest.raises(redis.exceptions.DataError):
        r.set("k", "v", ex=1.5)  # redis-py's own argument check
    r.set("c", "v1")
    assert r.set("c", "v2", ifeq="nope") is None and r.set("c", "v2", ifeq="v1")
    assert r.set("c", "v3", ifne="v2") is None and r.set("c", "v3", ifne="x")
    assert r.get("c") == b"v3" and r.set("missing", "v", ifeq="v") is None


def test_hashes_sets_and_sorted_sets(r: kvstore.Redis) -> None:
    assert r.hset("h", mapping={"a": 1, "b": 2}) == 2
    assert r.hincrby("h", "a", 5) == 6 and r.hincrbyfloat("h", "b", 0.5) == 2.5
    assert r.hsetnx("h", "a", 0) == 0 and r.hmget("h", "a", "z") == [b"6", None]
    assert r.hdel("h", "a", "b") == 2 and r.exists("h") == 0  # the last field deleted
    assert r.sadd("s", "a", "b", "c") == 3 and r.srem("s", "a") == 1
    assert r.smismember("s", ["a", "b"]) == [0, 1]
    r.sadd("t", "b", "x")
    assert r.sinter("s", "t") == {b"b"} and r.sunion("s", "t") == {b"b", b"c", b"x"}
    assert r.sdiffstore("d", ["s", "t"]) == 1 and r.smembers("d") == {b"c"}
    assert r.zadd("z", {"a": 1, "b": 2, "c": 3}) == 3
    assert r.zadd("z", {"a": 5}, gt=True, ch=True) == 1 and r.zscore("z", "a") == 5.0
    assert r.zrange("z", 0, -1) == [b"b", b"c", b"a"]
    assert r.zrange("z", "(2", "+inf", byscore=True, withscores=True) == [(b"c", 3.0), (b"a", 5.0)]
    assert r.zrevrangebyscore("z", 4, 0) == [b"c", b"b"]
    assert r.zrank("z", "a") == 2 and r.zcount("z", 2, 3) == 2
    assert r.zpopmin("z") == [(b"b", 2.0)] and r.zremrangebyscore("z", 0, 3) == 1
    assert r.zcard("z") == 1


def test_lists_are_logs_with_atomic_pops_and_clear_refusals(r: kvstore.Redis) -> None:
    assert r.rpush("l", *range(10)) == 10
    assert r.lpop("l") == b"0" and r.lpop("l", 2) == [b"1", b"2"]
    assert r.lindex("l", -1) == b"9" and r.llen("l") == 7
    assert r.ltrim("l", -3, -1) and r.lrange("l", 0, -1) == [b"7", b"8", b"9"]
    assert r.rpushx("nothing", "x") == 0 and r.exists("nothing") == 0
    for refused in (lambda: r.lpush("l", "x"), lambda: r.rpop("l"), lambda: r.lset("l", 0, "x")):
        with pytest.raises(redis.exceptions.ResponseError, match="append log"):
            refused()
    with pytest.raises(redis.exceptions.ResponseError, match="LTRIM"):
        r.ltrim("l", 0, 0)
    assert r.lrange("l", 0, -1) == [b"7", b"8", b"9"]
    assert r.lpop("l", 5) == [b"7", b"8", b"9"]
    assert r.exists("l") == 0 and r.type("l") == b"none"  # an empty list does not exist
    with pytest.raises(redis.exceptions.ResponseError, match="no such key"):
        r.rename("l", "l2")  # an empty list is no key
    r.rpush("m", "a")
    assert r.rename("m", "moved") and r.lrange("moved", 0, -1) == [b"a"] and not r.exists("m")


def test_transactions_are_atomic_on_one_key_and_refuse_several(r: kvstore.Redis) -> None:
    with r.pipeline() as pipe:
        pipe.hset("h", "a", 1).hincrby("h", "a", 2).hget("h", "a").expire("h", 100)
        assert pipe.execute() == [1, 3, b"3", True]
    with r.pipeline() as pipe:
        pipe.set("a", 1).set("b", 2)
        with pytest.raises(redis.exceptions.ClusterCrossSlotError, match="one key"):
            pipe.execute()
    assert r.exists("a", "b") == 0  # nothing ran
    with r.pipeline() as pipe:  # an error in place, the rest applied: Redis's EXEC
        pipe.set("s", "x").incr("s").append("s", "y")
        results = pipe.execute(raise_on_error=False)
    assert results[0] is True and isinstance(results[1], redis.exceptions.ResponseError)
    assert results[2] == 2 and r.get("s") == b"xy"
    with r.pipeline(transaction=False) as pipe:
        pipe.set("a", 1).set("b", 2).get("a").mget("a", "b")
        assert pipe.execute() == [True, True, b"1", [b"1", b"2"]]


def test_watch_aborts_a_transaction_whose_key_changed(r: kvstore.Redis) -> None:
    r.set("w", 1)
    with r.pipeline() as pipe:
        pipe.watch("w")
        value = int(pipe.get("w"))
        r.set("w", 10)  # another client
        pipe.multi()
        pipe.set("w", value + 1)
        with pytest.raises(redis.exceptions.WatchError):
            pipe.execute()
    assert r.get("w") == b"10"

    def bump(pipe: Any) -> None:
        now = int(pipe.get("w"))
        pipe.multi()
        pipe.set("w", now + 1)

    r.transaction(bump, "w")
    assert r.get("w") == b"11"


def test_fsck_checks_and_repairs_the_logs_of_lists(make_target: Callable[[str], Target]) -> None:
    target = make_target("local")
    with target.open() as store:
        r = kvstore.Redis(store=store)
        r.rpush("l", "a", "b")
        r.rpush("l", "c")
        r.hset("h", "f", "v")
        assert store.fsck() == {"ok": True, "objects": 4, "damage": []}
        root = Path(target.url)
        first = sorted(root.glob("list/**/c/*"))[0]
        first.unlink()
        report = store.fsck(repair=True)
        assert [d["kind"] for d in report["damage"]] == ["missing"]
        assert "list/l~/" in report["damage"][0]["path"]
        with pytest.raises(kvstore.CorruptDataError, match="lost"):
            r.lrange("l", 0, -1)
        assert r.lrange("l", 2, 2) == [b"c"]


def test_unsupported_commands_fail_clearly(r: kvstore.Redis) -> None:
    with pytest.raises(redis.exceptions.ResponseError, match="not supported"):
        r.eval("return 1", 0)
    with pytest.raises(redis.exceptions.ResponseError, match="not supported"):
        r.publish("channel", "x")
    with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
        r.execute_command("NOSUCHCOMMAND")


def test_flushdb_is_scoped_to_the_namespace(face_target: Target) -> None:
    with face_target.open() as store:
        root = kvstore.Redis(store=store)
        tenant = kvstore.Redis(store=store.namespace("tenant"))
        root.set("a", 1)
        tenant.set("a", 2)
        tenant.hset("h", "f", "v")
        assert tenant.flushdb()
        assert tenant.keys() == [] and root.get("a") == b"1"


def test_an_uncontended_incr_costs_one_request() -> None:
    with kvstore.open("memory://incr-cost", cache="local") as store:
        r = kvstore.Redis(store=store)
        r.incr("n")
        before = store.stats()
        for _ in range(10):
            r.incr("n")
        after = store.stats()
        assert after["requests"] - before["requests"] == 10
        swaps = after["requests.put_if_match"] - before.get("requests.put_if_match", 0)
        assert swaps == 10
        assert r.get("n") == b"11"


def test_async_face_is_the_same_core() -> None:
    async def main() -> None:
        async with kvstore.AsyncRedis("memory://async-face", cache=None) as r:
            assert await r.set("a", 1)
            assert await r.incr("a") == 2
            pipe = r.pipeline()
            pipe.hset("h", "f", "v")
            pipe.hgetall("h")
            assert await pipe.execute() == [1, {b"f": b"v"}]
            async with r.lock("lock", timeout=5):
                assert await r.exists("lock") == 1
            assert await r.exists("lock") == 0

    asyncio.run(main())


def test_decode_responses_and_errors_as_redis_py_raises_them() -> None:
    r = kvstore.Redis("memory://decoded", cache=None, decode_responses=True)
    r.hset("h", mapping={"a": "1"})
    assert r.hgetall("h") == {"a": "1"} and r.type("h") == "hash"
    with pytest.raises(redis.exceptions.ResponseError) as caught:
        r.hincrby("h", "a", "x")
    assert str(caught.value) == "value is not an integer or out of range"
    r.close()


# -- multi-process proofs (a real S3 server and local disk) -------------------------------


def _hammer(url: str, options: dict[str, Any], command: str, n: int, barrier: Any) -> int:
    r = kvstore.Redis(url, cache=None, storage_options=options or None)
    barrier.wait()
    for i in range(n):
        if command == "incr":
            r.incr("counter")
        elif command == "hincrby":
            r.hincrby("hash", "field", 1)
        else:
            r.sadd("set", f"{id(r)}-{i}")
    r.close()
    return n


@pytest.mark.parametrize("backend", RACES)
@pytest.mark.parametrize("command", ["incr", "hincrby", "sadd"])
def test_eight_processes_lose_no_update(
    backend: str, command: str, make_target: Callable[[str], Target]
) -> None:
    target = make_target(backend)
    per = 100
    calls = [(target.url, target.storage_options, command, per) for _ in range(8)]
    run_in_processes(_hammer, calls, barrier=True, timeout=600)
    r = kvstore.Redis(target.url, cache=None, storage_options=target.storage_options or None)
    if command == "incr":
        assert r.get("counter") == str(8 * per).encode()
    elif command == "hincrby":
        assert r.hget("hash", "field") == str(8 * per).encode()
    else:
        assert r.scard("set") == 8 * per
    r.close()


def _hold(
    url: str, options: dict[str, Any], rounds: int, barrier: Any
) -> list[tuple[float, float]]:
    r = kvstore.Redis(url, cache=None, storage_options=options or None)
    barrier.wait()
    held = []
    for _ in range(rounds):
        with r.lock("the-lock", timeout=30, sleep=0.01):
            start = time.time()
            time.sleep(0.02)
            held.append((start, time.time()))
    r.close()
    return held


@pytest.mark.parametrize("backend", RACES)
def test_a_lock_is_held_by_one_process_at_a_time(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    target = make_target(backend)
    calls = [(target.url, target.storage_options, 5) for _ in range(4)]
    spans = sorted(s for held in run_in_processes(_hold, calls, barrier=True) for s in held)
    assert len(spans) == 20
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, "two processes held the lock at once"


def _popper(url: str, options: dict[str, Any], barrier: Any) -> list[bytes]:
    r = kvstore.Redis(url, cache=None, storage_options=options or None)
    barrier.wait()
    got: list[bytes] = []
    while True:
        item = r.lpop("queue")
        if item is None:
            break
        got.append(item)
    r.close()
    return got


@pytest.mark.parametrize("backend", RACES)
def test_concurrent_lpops_never_return_a_record_twice(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    target = make_target(backend)
    r = kvstore.Redis(target.url, cache=None, storage_options=target.storage_options or None)
    r.rpush("queue", *range(60))
    calls = [(target.url, target.storage_options) for _ in range(4)]
    popped = [x for got in run_in_processes(_popper, calls, barrier=True) for x in got]
    assert sorted(popped, key=int) == [str(i).encode() for i in range(60)]
    r.close()


# -- regressions from the adversarial review ------------------------------------------------


def test_another_clients_write_never_makes_a_remembered_version_answer(
    make_target: Callable[[str], Target],
) -> None:
    """A remembered (stale) version must not decide an error or a WATCH failure."""
    target = make_target("local")
    a = kvstore.Redis(target.url, cache=None)
    b = kvstore.Redis(target.url, cache=None)
    a.incr("w")
    b.incr("w")
    with a.pipeline() as pipe:
        pipe.watch("w")
        value = int(pipe.get("w"))
        pipe.multi()
        pipe.set("w", value + 1)
        assert pipe.execute() == [True]
    a.set("k", "abc")
    b.set("k", "5")
    assert a.incr("k") == 6
    a.hset("h", "f", 1)
    b.delete("h")
    b.set("h", "7")
    assert a.incr("h") == 8


def test_a_push_after_another_process_deleted_the_list_is_not_lost(
    make_target: Callable[[str], Target],
) -> None:
    """With the (per-process) local cache, a push must not go to a deleted incarnation."""
    target = make_target("local")
    reader = kvstore.Redis(target.url, cache="local")
    other = kvstore.Redis(target.url, cache=None)
    reader.rpush("l", "a")
    assert reader.lrange("l", 0, -1) == [b"a"]  # the head is now in reader's cache
    other.delete("l")
    assert reader.rpush("l", "b") == 1
    assert other.lrange("l", 0, -1) == [b"b"]


def test_errors_from_the_store_print_and_keep_their_cause(
    make_target: Callable[[str], Target],
) -> None:
    target = make_target("local")
    r = kvstore.Redis(target.url, cache=None)
    r.set("k", "v")
    (Path(target.url) / "kv" / "k~").write_bytes(b"junk" * 10)
    with pytest.raises(redis.exceptions.ResponseError) as caught:
        r.get("k")
    assert isinstance(caught.value, kvstore.CorruptDataError)
    assert "bad magic" in repr(caught.value) + str(caught.value)


def test_many_concurrent_commands_on_one_key_in_one_process() -> None:
    async def main() -> None:
        async with kvstore.AsyncRedis("memory://gathered", cache=None) as r:
            await asyncio.gather(*(r.incr("c") for _ in range(300)))
            assert await r.get("c") == b"300"

    asyncio.run(main())


def test_a_transaction_may_delete_and_inspect_its_own_key() -> None:
    r = kvstore.Redis("memory://own-key", cache=None)
    r.set("y", "x")
    assert r.pipeline().delete("y").hset("y", mapping={"a": 1}).type("y").execute() == [
        1,
        1,
        b"hash",
    ]
    assert r.pipeline().exists("y").ttl("y").execute() == [1, -1]


def test_an_rpush_longer_than_a_chunk() -> None:
    r = kvstore.Redis("memory://long-push", cache=None)
    assert r.rpush("l", *range(25_000)) == 25_000
    assert r.lindex("l", -1) == b"24999"


def test_fsck_reports_a_list_log_no_key_holds(make_target: Callable[[str], Target]) -> None:
    target = make_target("local")
    with target.open() as store:
        r = kvstore.Redis(store=store)
        r.rpush("moved", "x")
        r.rename("moved", "here")  # the records stay where they are: not an orphan
        r.rpush("c", "y")
        r.set("c", "a string now")
        report = store.fsck()
        assert report["ok"]
        assert [(d["kind"], d["path"].split("/")[1]) for d in report["damage"]] == [
            ("orphan", "c~")
        ]


def test_pops_remove_the_old_marks_they_leave(make_target: Callable[[str], Target]) -> None:
    clock = FakeClock()
    store = open_clocked(make_target("memory"), clock)
    r = kvstore.Redis(store=store)
    r.rpush("q", *range(600))
    for _ in range(300):
        r.lpop("q")
    clock.advance(11 * 60_000)  # the marks are old now
    for _ in range(256):
        r.lpop("q")
    objects = [p for page in _listing(store, "list/") for p in page]
    assert len([p for p in objects if "/m/" in p]) < 260
    assert r.llen("q") == 44 and r.lindex("q", 0) == b"556"
    store.close()


def _listing(store: kvstore.KVStore, prefix: str) -> list[list[str]]:
    async def pages() -> list[list[str]]:
        return [page async for page in store.aio._ctx.blob.list_pages(prefix)]

    return asyncio.run(pages())
