"""How one ``kvstore serve`` connection runs (kvstore.resp.session): commands run in
order in the connection's task, replies written in batches, reading and running bounded,
the idle timeout, and closing the server in the middle of a pipeline. Real TCP sockets
against a server started by the tests (:func:`test_resp_server.serving`); the bytes on
the wire are checked exactly."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import hiredis
import pytest
from test_resp_server import LOOP, client, serving

import kvstore
from kvstore.resp import session
from kvstore.resp.server import Server

T = TypeVar("T")


@pytest.fixture(autouse=True, params=["uvloop", "asyncio"])
def event_loop_of_the_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test on both loops ``kvstore serve`` runs on (``--loop``)."""
    LOOP["choice"] = request.param
    yield request.param
    LOOP["choice"] = "auto"


# --------------------------------------------------------------------------- helpers
def multibulk(*args: bytes | str | int) -> bytes:
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def bulk(value: bytes | str) -> bytes:
    raw = value if isinstance(value, bytes) else value.encode()
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


def connect(server: Server, timeout: float = 10) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exactly(s: socket.socket, size: int) -> bytes:
    """``size`` bytes (fewer only if the server closed the connection first)."""
    out = bytearray()
    while len(out) < size:
        chunk = s.recv(min(size - len(out), 1 << 20))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def expect(s: socket.socket, wanted: bytes) -> None:
    got = recv_exactly(s, len(wanted))
    assert got == wanted


def read_reply(s: socket.socket) -> Any:
    """One whole reply, parsed by hiredis (an independent reader)."""
    reader = hiredis.Reader(notEnoughData=Ellipsis)
    while True:
        got = reader.gets()
        if got is not Ellipsis:
            return got
        chunk = s.recv(1)  # one byte at a time: nothing after this reply is consumed
        assert chunk, "closed before a whole reply"
        reader.feed(chunk)


def closed_by_server(s: socket.socket) -> bool:
    """True once the server closed the connection (EOF or reset)."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def on_loop(server: Server, fn: Callable[[], T]) -> T:
    """``fn()`` called on the server's event loop (its thread), its result here."""
    assert server._server is not None

    async def call() -> T:
        return fn()

    return asyncio.run_coroutine_threadsafe(call(), server._server.get_loop()).result(10)


def only_connection(server: Server) -> session.Connection:
    (connection,) = on_loop(server, lambda: list(server.clients.values()))
    return connection


class Gate:
    """A command (``name``, no arguments) that waits until the test opens the gate."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: bytes = b"SLOWCMD") -> None:
        self.started = threading.Event()
        self.opened = asyncio.Event()  # (bound to the server's loop when first awaited)

        async def slow(connection: session.Connection, args: list[bytes]) -> Any:
            self.started.set()
            await self.opened.wait()
            return b"slow done"

        monkeypatch.setitem(session.CONNECTION_COMMANDS, name, (slow, 1))

    def open(self, server: Server) -> None:
        assert server._server is not None
        server._server.get_loop().call_soon_threadsafe(self.opened.set)


class IdleChecks:
    """Counts the idle-timeout checks (``Connection._check_idle``) per connection id."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: collections.Counter[int] = collections.Counter()
        self.changed = threading.Condition()
        original = session.Connection._check_idle

        def check(connection: session.Connection) -> None:
            original(connection)
            with self.changed:
                self.counts[connection.id] += 1
                self.changed.notify_all()

        monkeypatch.setattr(session.Connection, "_check_idle", check)

    def count(self, connection_id: int) -> int:
        with self.changed:
            return self.counts[connection_id]

    def wait(self, connection_id: int, count: int, timeout: float = 10) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.counts[connection_id] >= count, timeout), (
                f"connection {connection_id}: {self.counts[connection_id]} idle checks"
            )


def client_id(s: socket.socket) -> int:
    s.sendall(b"CLIENT ID\r\n")
    found = read_reply(s)
    assert isinstance(found, int)
    return found


@pytest.fixture
def disk_store(tmp_path: Path) -> kvstore.AsyncKVStore:
    """A local-disk store whose writes wait (a thread), with the in-process cache (a
    cached GET is answered without waiting)."""
    return kvstore.open_async(str(tmp_path / "store"), cache=kvstore.LocalCache())


# --------------------------------------------------------------------------- 2. order
def test_pipelined_replies_keep_their_order_across_waits_and_immediate_answers(
    disk_store: kvstore.AsyncKVStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(2024)
    with serving(disk_store) as server:
        setup = client(server)
        warm = {f"warm{j}": f"value {j} " * (j + 1) for j in range(8)}
        setup.mset(warm)
        for key in warm:  # now in the in-process cache: a GET of it does not wait
            assert setup.get(key) == warm[key].encode()
        setup.close()

        model: dict[str, bytes] = {k: v.encode() for k, v in warm.items()}
        commands, replies = [], []
        writes = 0
        for i in range(200):
            kind = rng.choice(["PING", "ECHO", "GET warm", "SET", "INCR", "GET new", "GET none"])
            if kind == "PING":
                commands.append(b"PING\r\n")  # (inline, as a person types it)
                replies.append(b"+PONG\r\n")
            elif kind == "ECHO":
                commands.append(multibulk("ECHO", f"echo {i}\r\n"))
                replies.append(bulk(f"echo {i}\r\n"))
            elif kind == "GET warm":
                key = rng.choice(sorted(warm))
                commands.append(multibulk("GET", key))
                replies.append(bulk(model[key]))
            elif kind == "SET":
                key, value = f"new{i}", f"set by command {i}".encode()
                commands.append(multibulk("SET", key, value))
                replies.append(b"+OK\r\n")
                model[key] = value
                writes += 1
            elif kind == "INCR":
                key = f"counter{rng.randrange(3)}"
                number = int(model.get(key, b"0")) + 1
                model[key] = str(number).encode()
                commands.append(multibulk("INCR", key))
                replies.append(b":%d\r\n" % number)
                writes += 1
            elif kind == "GET new":
                key = rng.choice(sorted(model))
                commands.append(multibulk("GET", key))
                replies.append(bulk(model[key]))
            else:
                commands.append(multibulk("GET", f"none{i}"))
                replies.append(b"$-1\r\n")
        assert writes >= 40 and len(commands) == 200

        with connect(server) as s:
            s.sendall(b"".join(commands))  # one write: ~200 pipelined commands
            expect(s, b"".join(replies))
            s.sendall(b"PING\r\n")
            expect(s, b"+PONG\r\n")  # nothing more came before it


# --------------------------------------------------------------------------- 3. bounded
def test_a_client_that_does_not_read_a_huge_pipeline_is_held_bounded(
    disk_store: kvstore.AsyncKVStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """6000 GETs of 10 KiB values (6 MB of commands, 61 MB of replies) sent at once by a
    client that reads nothing: the server stops running them (its write buffer) and stops
    reading (its read buffer) - memory stays far below the replies' size, other clients
    are served meanwhile; then the client reads every reply, whole and in order."""
    paused = {"writing": threading.Event(), "reading": threading.Event()}
    pause_writing, data_received = (
        session.Connection.pause_writing,
        session.Connection.data_received,
    )

    def on_pause_writing(connection: session.Connection) -> None:
        pause_writing(connection)
        paused["writing"].set()

    def on_data(connection: session.Connection, data: bytes) -> None:
        data_received(connection, data)
        if connection._read_paused:
            paused["reading"].set()

    monkeypatch.setattr(session.Connection, "pause_writing", on_pause_writing)
    monkeypatch.setattr(session.Connection, "data_received", on_data)

    count, size = 6000, 10 * 1024
    keys = [f"{j}:".encode().ljust(1000, b"k") for j in range(3)]  # long keys: 6 MB of GETs
    values = [bytes([ord("a") + j]) * size for j in range(3)]
    with serving(disk_store) as server:
        setup = client(server)
        for key, value in zip(keys, values, strict=True):
            setup.set(key, value)
            assert setup.get(key) == value  # cached: the GETs below never wait
        setup.close()

        pipeline = b"".join(multibulk(b"GET", keys[i % 3]) for i in range(count))
        one_round = b"".join(bulk(values[i]) for i in range(3))  # the replies, periodic
        expected_size = len(one_round) * count // 3
        assert len(pipeline) > session.READ_PAUSE and expected_size > 50 * 1024 * 1024

        tracemalloc.start()
        try:
            big = socket.socket()
            big.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            big.settimeout(30)
            big.connect(("127.0.0.1", server.port))
            sender = threading.Thread(target=big.sendall, args=(pipeline,), daemon=True)
            sender.start()
            for what, event in paused.items():
                assert event.wait(10), f"the server never paused {what}"
            connection = only_connection(server)
            buffered, unsent = on_loop(
                server,
                lambda: (
                    connection.commands.buffered,
                    connection._transport.get_write_buffer_size(),
                ),
            )
            assert buffered <= session.READ_PAUSE + 512 * 1024  # it stopped reading
            assert unsent <= 2 * session.WRITE_HIGH + 2 * size  # it stopped running

            started = time.monotonic()
            with connect(server) as other:  # others are served meanwhile
                other.sendall(b"PING\r\n" + multibulk(b"GET", keys[1]) + multibulk("SET", "o", 1))
                expect(other, b"+PONG\r\n" + bulk(values[1]) + b"+OK\r\n")
            assert time.monotonic() - started < 2

            # every reply, whole and in order, read without keeping them
            period = one_round * 40
            offset, chunk = 0, bytearray(1 << 20)
            while offset < expected_size:
                got = big.recv_into(chunk, min(len(chunk), expected_size - offset))
                assert got, f"closed after {offset} of {expected_size} bytes"
                at = offset % len(one_round)
                assert chunk[:got] == period[at : at + got], f"reply bytes differ at {offset}"
                offset += got
            sender.join(10)
            assert not sender.is_alive()
            big.sendall(b"PING\r\n")
            expect(big, b"+PONG\r\n")  # nothing more came, and the connection goes on
            big.close()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # what the server held at its peak (the commands it read, replies it had not
        # sent) - and this test's own buffers - is a small part of the 61 MB of replies
        assert peak < 24 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB traced"


# --------------------------------------------------------------------------- 4. framing
def test_commands_cut_into_single_bytes_and_many_in_one_write(
    disk_store: kvstore.AsyncKVStore,
) -> None:
    value = b"binary\r\n\x00\xff value with a CRLF inside"
    stream = b"".join(
        [
            multibulk("SET", "split", value),
            multibulk("GET", "split"),
            b"PING\r\n",
            b"ECHO 'in line'\r\n",
            b"\r\n",  # an empty line: no command
            multibulk("INCR", "counter"),
            multibulk("GET", "split"),
        ]
    )
    replies = b"+OK\r\n" + bulk(value) + b"+PONG\r\n" + bulk("in line") + b":1\r\n" + bulk(value)
    with serving(disk_store) as server:
        with connect(server) as s:
            for at in range(len(stream)):
                s.sendall(stream[at : at + 1])  # one byte per send (TCP_NODELAY)
            expect(s, replies)
        with connect(server) as s:  # 5000 commands in one write, every 25th waits
            many = b"".join(
                multibulk("INCR", "many") if i % 25 == 0 else multibulk("ECHO", f"m{i}")
                for i in range(5000)
            )
            s.sendall(many)
            expect(
                s,
                b"".join(
                    b":%d\r\n" % (i // 25 + 1) if i % 25 == 0 else bulk(f"m{i}")
                    for i in range(5000)
                ),
            )


def test_a_command_longer_than_the_read_pause_is_read_whole(
    disk_store: kvstore.AsyncKVStore,
) -> None:
    """Reading pauses when more than READ_PAUSE bytes of commands wait to run - not while
    one command longer than that is still arriving (it would never be whole)."""
    big = bytes(range(256)) * (6 * 1024 * 1024 // 256)  # 6 MiB
    assert len(big) > session.READ_PAUSE
    with serving(disk_store) as server, connect(server) as s:
        s.sendall(multibulk("SET", "big", big))  # alone
        expect(s, b"+OK\r\n")
        # behind a write that waits for the disk: it arrives while that one runs
        s.sendall(
            multibulk("SET", "small", "1")
            + multibulk("SET", "big2", big)
            + multibulk("GET", "big")
            + multibulk("STRLEN", "big2")
            + b"PING\r\n"
        )
        expect(s, b"+OK\r\n+OK\r\n" + bulk(big) + b":%d\r\n+PONG\r\n" % len(big))


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_a_protocol_error_mid_pipeline_answers_what_came_before_then_closes(
    kind: str, tmp_path: Path
) -> None:
    url = f"memory://protocol-error-{kind}" if kind == "memory" else str(tmp_path / "store")
    with serving(kvstore.open_async(url, cache=None)) as server:
        with connect(server) as s:
            s.sendall(
                multibulk("SET", "before", "1")
                + b"PING\r\n"
                + multibulk("INCR", "before")
                + multibulk("ECHO", "last")
                + b"*2\r\n:1\r\n"  # not a bulk: the protocol is broken here
                + multibulk("SET", "after", "1")
                + b"PING\r\n"
            )
            expect(
                s,
                b"+OK\r\n+PONG\r\n:2\r\n"
                + bulk("last")
                + b"-ERR Protocol error: expected '$', got ':'\r\n",
            )
            assert closed_by_server(s)
        r = client(server)
        assert r.get("before") == b"2" and r.get("after") is None  # nothing after it ran
        r.close()


# --------------------------------------------------------------------------- 5. pub/sub
def test_a_message_to_its_own_channel_comes_before_publishs_reply(
    disk_store: kvstore.AsyncKVStore,
) -> None:
    def push(message: str) -> bytes:
        return b">3\r\n" + bulk("message") + bulk("news") + bulk(message)

    with serving(disk_store) as server, connect(server) as s:
        s.sendall(b"HELLO 3\r\n")
        assert read_reply(s)[b"proto"] == 3
        s.sendall(
            multibulk("SUBSCRIBE", "news")
            + multibulk("PUBLISH", "news", "first")  # answered at once
            + multibulk("SET", "k", "v")  # waits for the disk: the rest runs after it
            + multibulk("PUBLISH", "news", "second")
            + multibulk("GET", "k")
            + multibulk("PUBLISH", "other", "nobody")
            + b"PING\r\n"
        )
        expect(
            s,
            b">3\r\n" + bulk("subscribe") + bulk("news") + b":1\r\n"
            + push("first") + b":1\r\n"
            + b"+OK\r\n"
            + push("second") + b":1\r\n"
            + bulk("v")
            + b":0\r\n"
            + b"+PONG\r\n",
        )  # fmt: skip
        # another client's message arrives as a push between this one's replies
        other = client(server)
        assert other.publish("news", "from another") == 1
        other.close()
        expect(s, push("from another"))
        s.sendall(b"PING\r\n")
        expect(s, b"+PONG\r\n")


# --------------------------------------------------------------------------- 6. timeout
def test_the_idle_timeout_closes_an_idle_client_but_not_a_subscribed_or_busy_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timeout = 0.4
    checks = IdleChecks(monkeypatch)
    gate = Gate(monkeypatch)
    store = kvstore.open_async("memory://idle-timeout", cache=None)
    with (
        serving(store, timeout=timeout) as server,
        connect(server) as idle,
        connect(server) as subscriber,
        connect(server) as busy,
    ):
        subscriber_id, busy_id = client_id(subscriber), client_id(busy)
        subscriber.sendall(multibulk("SUBSCRIBE", "news"))
        expect(subscriber, b"*3\r\n" + bulk("subscribe") + bulk("news") + b":1\r\n")
        busy.sendall(b"SLOWCMD\r\n")
        assert gate.started.wait(10)

        idle.sendall(b"PING\r\n")
        expect(idle, b"+PONG\r\n")
        quiet_since = time.monotonic()
        assert closed_by_server(idle)  # (blocks until the server closes it)
        assert timeout * 0.9 <= time.monotonic() - quiet_since < timeout + 3

        # the subscriber and the client whose command runs were checked while idle
        # longer than the timeout, and kept
        checks.wait(subscriber_id, 3)
        at = checks.count(busy_id)
        checks.wait(busy_id, at + 2)
        # open the gate halfway between two checks (positions the reply; not a wait for
        # anything): the check after the reply finds the client active, not idle
        at = checks.count(busy_id)
        time.sleep(timeout / 2)
        gate.open(server)
        expect(busy, bulk("slow done"))
        checks.wait(busy_id, at + 1)  # the first check after the reply
        busy.sendall(b"PING\r\n")
        expect(busy, b"+PONG\r\n")

        publisher = client(server)
        assert publisher.publish("news", "still here") == 1
        publisher.close()
        expect(subscriber, b"*3\r\n" + bulk("message") + bulk("news") + bulk("still here"))

        # once idle, the busy one is closed as well
        assert closed_by_server(busy)


def test_the_idle_timeout_spares_a_client_reading_a_long_pipelines_replies(
    disk_store: kvstore.AsyncKVStore,
) -> None:
    """A client that reads its replies slower than the timeout, but steadily, is not
    idle: it gets every reply (its commands waiting to run are not dropped)."""
    timeout, count = 0.5, 2000
    value = b"r" * (10 * 1024)
    with serving(disk_store, timeout=timeout) as server:
        setup = client(server)
        setup.set("big", value)
        assert setup.get("big") == value
        setup.close()
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.settimeout(10)
        with s:
            s.connect(("127.0.0.1", server.port))
            s.sendall(multibulk("GET", "big") * count)
            wanted = bulk(value)
            expected_size = len(wanted) * count  # 20 MB
            offset, step = 0, 2 * 1024 * 1024
            started = time.monotonic()
            while offset < expected_size:  # 2 MiB per 0.1 s: ~1 s, twice the timeout
                got = recv_exactly(s, min(step, expected_size - offset))
                assert got, f"closed after {offset} of {expected_size} bytes"
                assert (
                    got
                    == (wanted * (step // len(wanted) + 2))[
                        offset % len(wanted) : offset % len(wanted) + len(got)
                    ]
                )
                offset += len(got)
                time.sleep(0.1)  # (the client's pace, not a synchronization)
            assert time.monotonic() - started > 2 * timeout


# --------------------------------------------------------------------------- 7. close
@pytest.mark.parametrize("grace", [30.0, 0.0])
def test_closing_the_server_mid_pipeline_acknowledges_only_writes_that_landed(
    grace: float, tmp_path: Path
) -> None:
    count = 3000
    url = str(tmp_path / "store")
    with serving(kvstore.open_async(url, cache=None), grace=grace) as server:
        s = connect(server, timeout=30)
        s.sendall(b"".join(multibulk("SET", f"k{i}", f"v{i}") for i in range(count)))
        expect(s, b"+OK\r\n" * 10)  # it runs
        assert server._server is not None
        closing = asyncio.run_coroutine_threadsafe(server.close(), server._server.get_loop())
        received = b""
        with contextlib.suppress(ConnectionResetError):  # (grace 0: aborted)
            while chunk := s.recv(65536):
                received += chunk
        s.close()
        closing.result(30)
    acknowledged = 10 + received.count(b"+OK\r\n")
    whole, cut = received[: 5 * (acknowledged - 10)], received[5 * (acknowledged - 10) :]
    assert whole == b"+OK\r\n" * (acknowledged - 10)  # replies, nothing else
    # (closed: after whole replies; aborted: perhaps in the middle of one, not counted)
    assert cut == b"" if grace else b"+OK\r\n".startswith(cut)
    assert acknowledged < count  # the pipeline was cut
    with kvstore.open(url, cache=None) as lib:
        values = lib.mget([f"k{i}" for i in range(count)])
    landed = [i for i, v in enumerate(values) if v is not None]
    # every acknowledged write is there; writes ran in order, none after a gap; none
    # beyond the one running when the server closed
    assert values[:acknowledged] == [f"v{i}".encode() for i in range(acknowledged)]
    assert landed == list(range(len(landed)))
    assert acknowledged <= len(landed) <= acknowledged + 1


# --------------------------------------------------------------------------- review fixes
def test_a_finished_reply_does_not_wait_for_a_slow_command_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = Gate(monkeypatch)
    with serving(kvstore.open_async("memory://slow-after", cache=None)) as server:
        s = connect(server)
        s.sendall(b"PING\r\n" + multibulk("SLOWCMD"))
        assert gate.started.wait(10)
        expect(s, b"+PONG\r\n")  # within FLUSH_AFTER, while SLOWCMD still runs
        gate.open(server)
        expect(s, bulk(b"slow done"))
        s.close()


def test_a_resp3_subscriber_busy_with_a_command_still_gets_its_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = Gate(monkeypatch)
    with serving(kvstore.open_async("memory://busy-sub", cache=None)) as server:
        sub = connect(server)
        sub.sendall(multibulk("HELLO", "3") + multibulk("SUBSCRIBE", "news"))
        read_reply(sub)  # HELLO's map
        assert read_reply(sub) == [b"subscribe", b"news", 1]
        sub.sendall(multibulk("SLOWCMD"))
        assert gate.started.wait(10)
        publisher = client(server)
        for i in range(3):
            assert publisher.publish("news", f"m{i}") == 1
        for i in range(3):  # delivered while its command runs, not held behind it
            assert read_reply(sub) == [b"message", b"news", f"m{i}".encode()]
        gate.open(server)
        assert read_reply(sub) == b"slow done"
        publisher.close()
        sub.close()


def test_a_killed_connection_keeps_nothing_it_is_sent_afterwards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = Gate(monkeypatch)
    with serving(kvstore.open_async("memory://killed", cache=None)) as server:
        s = connect(server)
        s.sendall(multibulk("SLOWCMD"))
        assert gate.started.wait(10)
        victim = only_connection(server)
        killer = client(server)
        assert killer.execute_command("CLIENT KILL", "ID", victim.id) == 1
        for _ in range(5):  # 20 MB that will never run
            s.sendall(multibulk("SET", "k", b"x" * (4 << 20)))
        assert on_loop(server, lambda: victim.commands.buffered) < session.READ_PAUSE
        gate.open(server)
        assert read_reply(s) == b"slow done"  # the running command is answered, then closed
        assert closed_by_server(s)
        killer.close()


def test_a_client_that_stops_reading_is_let_go_by_the_idle_timeout() -> None:
    with serving(kvstore.open_async("memory://stalled", cache=None), timeout=1) as server:
        setup = client(server)
        setup.set("big", b"x" * (1 << 20))
        setup.close()
        s = connect(server)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(multibulk("GET", "big") * 20)  # 20 MB of replies it never reads
        deadline = time.monotonic() + 20

        def stalled() -> bool:
            return any(c._write_paused for c in server.clients.values())

        while not on_loop(server, stalled) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert on_loop(server, stalled)  # its replies are stuck: it stopped reading
        while on_loop(server, lambda: len(server.clients)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert on_loop(server, lambda: len(server.clients)) == 0  # closed, then cut
        s.close()
