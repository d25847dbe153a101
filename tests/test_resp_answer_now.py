"""Cache hits answered in a connection's read callback (``Connection._answer_now`` and
``Commands.answer_now``): the same replies, errors, counters and order as the task's
path, in every connection state that changes what a command means (a write before the
read in one pipeline, SELECT, MULTI, HELLO 3, AUTH, a list, a protocol error), never
with a cache that would block the loop (Redis), and no task switch for a pipeline of
hits. Real TCP sockets against a server the tests start; the bytes are checked exactly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Target
from test_resp_connection import bulk, connect, expect, multibulk, read_reply
from test_resp_server import LOOP, client, serving

import kvstore
from kvstore.cache.redis import RedisCache
from kvstore.commands import NOT_NOW, Commands, core
from kvstore.resp import session
from kvstore.resp.server import Server


@pytest.fixture(autouse=True, params=["uvloop", "asyncio"])
def event_loop_of_the_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test on both loops ``kvstore serve`` runs on (``--loop``)."""
    LOOP["choice"] = request.param
    yield request.param
    LOOP["choice"] = "auto"


@pytest.fixture
def disk_store(tmp_path: Path) -> kvstore.AsyncKVStore:
    return kvstore.open_async(str(tmp_path / "store"), cache=kvstore.LocalCache(ttl=600))


class TaskRuns:
    """Counts the commands the connections' tasks run (``Connection.reply_to``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[bytes] = []
        original = session.Connection.reply_to

        async def counted(connection: session.Connection, args: list[bytes]) -> bytes:
            self.names.append(args[0].upper())
            return await original(connection, args)

        monkeypatch.setattr(session.Connection, "reply_to", counted)


@pytest.fixture
def served(disk_store: kvstore.AsyncKVStore) -> Iterator[Server]:
    with serving(disk_store) as server:
        setup = client(server)
        setup.set("k", "v1")
        setup.hset("h", "f", "x")
        assert setup.get("k") == b"v1" and setup.hget("h", "f") == b"x"  # now cached
        setup.close()
        yield server


def info_field(s: Any, name: str) -> int:
    """A field of INFO, asked on the socket ``s`` (INFO itself counts as processed)."""
    s.sendall(multibulk("INFO", "stats"))
    text = read_reply(s).decode()
    (line,) = [x for x in text.splitlines() if x.startswith(name + ":")]
    return int(line.split(":")[1])


def test_a_pipeline_of_hits_runs_no_command_in_the_task(
    served: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = TaskRuns(monkeypatch)
    with connect(served) as s:
        processed = info_field(s, "total_commands_processed")
        errors = info_field(s, "total_error_replies")
        runs.names.clear()
        s.sendall(multibulk("GET", "k") * 100 + multibulk("STRLEN", "k") + multibulk("GET", "h"))
        expect(s, bulk("v1") * 100 + b":2\r\n")
        assert read_reply(s).args[0].startswith("WRONGTYPE")  # answered in place too
        assert runs.names == []
        # 102 answered in the callback, the second INFO and this one; the error counted
        assert info_field(s, "total_commands_processed") == processed + 1 + 102 + 1
        assert info_field(s, "total_error_replies") == errors + 1
        s.sendall(multibulk("CLIENT", "INFO"))
        assert b"cmd=client" in read_reply(s)
    assert runs.names == [b"INFO", b"INFO", b"CLIENT"]


def test_a_read_after_a_write_in_one_pipeline_sees_the_write(served: Server) -> None:
    with connect(served) as s:
        s.sendall(
            multibulk("GET", "k")
            + multibulk("SET", "k", "v2")
            + multibulk("GET", "k") * 3
            + multibulk("DEL", "k")
            + multibulk("GET", "k")
        )
        expect(s, bulk("v1") + b"+OK\r\n" + bulk("v2") * 3 + b":1\r\n" + b"$-1\r\n")
    # another connection's acknowledged write is what the next hit sees
    with connect(served) as a, connect(served) as b:
        b.sendall(multibulk("SET", "x", "old") + multibulk("GET", "x"))
        expect(b, b"+OK\r\n" + bulk("old"))
        a.sendall(multibulk("SET", "x", "new"))
        expect(a, b"+OK\r\n")
        b.sendall(multibulk("GET", "x") * 2)
        expect(b, bulk("new") * 2)


def test_connection_state_changed_in_a_pipeline_applies_to_the_reads_after_it(
    served: Server,
) -> None:
    r = client(served, db=1)
    r.set("k", "in db1")
    assert r.get("k") == b"in db1"
    r.close()
    with connect(served) as s:
        s.sendall(
            multibulk("GET", "k")
            + multibulk("SELECT", 1)
            + multibulk("GET", "k")
            + multibulk("SELECT", 0)
            + multibulk("GET", "k")
            + multibulk("MULTI")
            + multibulk("GET", "k")
            + multibulk("EXEC")
            + multibulk("GET", "missing")
            + multibulk("HELLO", 3)
        )
        expect(s, bulk("v1") + b"+OK\r\n" + bulk("in db1") + b"+OK\r\n" + bulk("v1"))
        expect(s, b"+OK\r\n+QUEUED\r\n*1\r\n" + bulk("v1") + b"$-1\r\n")
        assert read_reply(s)  # HELLO's map
        s.sendall(multibulk("GET", "missing") + multibulk("GET", "k"))
        expect(s, b"_\r\n" + bulk("v1"))  # RESP3 now: a null is '_'


def test_an_unauthenticated_pipeline_is_refused_until_auth(tmp_path: Path) -> None:
    store = kvstore.open_async(str(tmp_path), cache=kvstore.LocalCache(ttl=600))
    with serving(store, requirepass="s3cret-s3cret") as server:
        r = client(server, password="s3cret-s3cret")
        r.set("k", "v")
        assert r.get("k") == b"v"
        r.close()
        with connect(server) as s:
            s.sendall(multibulk("GET", "k") + multibulk("AUTH", "s3cret-s3cret"))
            s.sendall(multibulk("GET", "k") * 2)
            assert read_reply(s).args[0].startswith("NOAUTH")
            expect(s, b"+OK\r\n" + bulk("v") * 2)


def test_lists_go_to_the_task_and_an_emptied_list_reads_as_missing(
    served: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = client(served)
    r.rpush("l", "a")
    assert r.lpop("l") == b"a"  # the head stays; the list is empty
    r.rpush("full", "a")
    r.close()
    runs = TaskRuns(monkeypatch)
    with connect(served) as s:
        s.sendall(multibulk("GET", "l") + multibulk("EXISTS", "l") + multibulk("GET", "full"))
        expect(s, b"$-1\r\n:0\r\n")
        assert read_reply(s).args[0].startswith("WRONGTYPE")
    assert b"GET" in runs.names  # (whether a list is empty is in its log)


def test_a_protocol_error_after_hits_answers_them_then_closes(served: Server) -> None:
    with connect(served) as s:
        s.sendall(multibulk("GET", "k") * 2 + b"*1\r\n$x\r\n")
        expect(s, bulk("v1") * 2)
        assert "Protocol error" in read_reply(s).args[0]
        assert s.recv(1) == b""


def test_wrong_arity_and_unknown_commands_are_answered_as_before(served: Server) -> None:
    with connect(served) as s:
        s.sendall(multibulk("GET") + multibulk("GET", "a", "b") + multibulk("NOPE", "k"))
        for expected in ("wrong number of arguments", "wrong number", "unknown command"):
            got = read_reply(s)
            assert isinstance(got, Exception) and expected in str(got), got


def test_a_redis_cache_is_never_asked_on_the_loop(
    make_target: Callable[[str], Target],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Redis cache's blocking lookup makes a round trip: on the server's loop it would
    stall every client for it. Hits come from the loop's own (awaited) lookup."""
    redis_url = request.getfixturevalue("redis_server").url
    store = make_target("local").open_async(cache=redis_url)
    asked: list[Any] = []

    def blocking(self: RedisCache, keys: Any) -> Any:
        asked.append(keys)
        raise AssertionError("lookup_now on the loop")

    monkeypatch.setattr(RedisCache, "lookup_now", blocking)
    with serving(store) as server:
        r = client(server)
        r.set("k", "v")
        for _ in range(5):
            assert r.get("k") == b"v" and r.strlen("k") == 1
        r.close()
        stats = store.stats()
    assert asked == []
    assert stats.get("cache.hits", 0) >= 5 and not stats["cache"].get("errors")


def test_answer_now_gives_what_execute_gives(disk_store: kvstore.AsyncKVStore) -> None:
    """The core's side: each read command's reply (or error) is the task's, a miss and
    a write are NOT_NOW, the kept ops never hold a value (a key rewritten reads anew),
    and arguments that cannot be kept (a bytearray) are still answered."""
    import asyncio

    async def check() -> None:
        commands = Commands(disk_store._ctx)
        await commands.execute([b"SET", b"k", b"v1"])
        await commands.execute([b"HSET", b"h", b"f", b"x"])
        assert commands.answer_now([b"GET", b"k"]) is NOT_NOW  # not cached yet
        for args in ([b"GET", b"k"], [b"STRLEN", b"k"], [b"GETRANGE", b"k", b"0", b"0"]):
            expected = await commands.execute(args)
            assert commands.answer_now(args) == expected
        with pytest.raises(core.CommandError, match="WRONGTYPE"):
            await commands.execute([b"GET", b"h"])
        await commands.execute([b"HGET", b"h", b"f"])
        with pytest.raises(core.CommandError, match="WRONGTYPE"):
            commands.answer_now([b"GET", b"h"])
        assert commands.answer_now([b"SET", b"k", b"v9"]) is NOT_NOW
        assert commands.answer_now([b"MGET", b"k", b"k"]) is NOT_NOW
        await commands.execute([b"SET", b"k", b"v2"])
        assert commands.answer_now([b"GET", b"k"]) is NOT_NOW  # invalidated by the write
        assert await commands.execute([b"GET", b"k"]) == b"v2"
        assert commands.answer_now([b"GET", b"k"]) == b"v2"
        assert commands.answer_now([b"GET", bytearray(b"k")]) == b"v2"
        await disk_store.close()

    asyncio.run(check())


def test_the_kept_ops_are_bounded(
    disk_store: kvstore.AsyncKVStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    monkeypatch.setattr(core, "READ_OPS_KEPT", 8)

    async def check() -> None:
        commands = Commands(disk_store._ctx)
        for i in range(50):
            await commands.execute([b"SET", b"k%d" % i, b"v%d" % i])
            await commands.execute([b"GET", b"k%d" % i])
            assert commands.answer_now([b"GET", b"k%d" % i]) == b"v%d" % i
            assert len(commands._read_ops) <= 8
        big = b"x" * 600  # a long command is answered, not kept
        await commands.execute([b"GET", big])
        assert commands.answer_now([b"GET", big]) is None
        assert (b"GET", big) not in commands._read_ops
        await disk_store.close()

    asyncio.run(check())
