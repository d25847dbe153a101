"""Attacks on ``kvstore+http://`` (kvstore.remote) and ``POST /v1/call``, from an
adversarial review: security of the call route (tokens, namespaces, the allow-list,
hostile msgpack: nesting that overflowed the C stack, colliding map keys, opaque types,
ranges the library would expand), fidelity of the client to the library (subclasses,
iterables, artifact arguments), and robustness (threads, loops, restarts, timeouts, a
500 that must not break the next call).

A test whose docstring says ``BUG Bn`` failed on the code as first reviewed (it says what
was wrong and what the library, or a safe service, does); the rest proved what held.

Every service here runs in this process (tests/http_server.serving) over memory://, except
where a request could kill the process: those run the real CLI in a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
import io
import json
import math
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from http_server import (
    cli,
    client,
    error_of,
    serving,
    tokens_file,
    wait_until_healthy,
)

import kvstore
from kvstore.http.config import HttpConfig, load_tokens
from kvstore.remote import wire
from kvstore.remote.artifacts import PIECE
from kvstore.testing.servers._process import free_port

CALL_BYTES = 16 << 20  # the size at which saves once switched from a call to a stream

# -- helpers --------------------------------------------------------------------------------


@contextlib.contextmanager
def service(config: HttpConfig | None = None) -> Iterator[tuple[str, str, list[Any]]]:
    """A service over a fresh memory:// store: ``(base URL, store URL, [the service's
    store])`` - the last filled once the service has opened it (its counters show what
    the service wrote)."""
    url = f"memory://review-{uuid.uuid4().hex}"
    opened: list[Any] = []

    def open_store() -> kvstore.AsyncKVStore:
        store = kvstore.open_async(url, cache=None)
        opened.append(store)
        return store

    with serving(open_store, config) as base:
        yield base, url, opened


def post(
    base: str,
    body: bytes,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    """One POST /v1/call on a connection of its own (a 500 may close it)."""
    with client(base, token) as http:
        return http.post(
            "/v1/call",
            content=body,
            params=params,
            headers={"Content-Type": wire.MEDIA_TYPE, **(headers or {})},
        )


def writes(store: Any) -> int:
    """Bytes the service's store has written, and its write requests."""
    counts = store.stats()
    return counts.get("bytes_written", 0) + sum(
        v for k, v in counts.items() if k.startswith(("requests.put", "requests.delete"))
    )


def outcome(call: Callable[[Any], Any], store: Any) -> tuple[str, Any]:
    """``("ok", result)`` or ``("raises", the exception's class name)``."""
    try:
        return ("ok", call(store))
    except Exception as exc:
        return ("raises", type(exc).__name__)


@pytest.fixture
def twins() -> Iterator[tuple[kvstore.KVStore, kvstore.KVStore]]:
    """The same store reached through the service (namespace ``r``) and directly by the
    library (namespace ``l``)."""
    with service() as (base, url, _):
        lib = kvstore.open(url, cache=None)
        try:
            with kvstore.open(f"kvstore+{base}/r") as remote:
                yield remote, lib.namespace("l")
        finally:
            lib.close()


def _nested_ext(code: int, depth: int) -> bytes:
    """A msgpack value: an empty array inside ``depth`` extension values of ``code``."""
    value = msgpack.packb([])
    for _ in range(depth):
        value = msgpack.packb(msgpack.ExtType(code, value))
    return value


def _nested_tuple(depth: int) -> Any:
    value: Any = ()
    for _ in range(depth):
        value = (value,)
    return value


def _call_with_arg(op: str, packed_arg: bytes) -> bytes:
    """``[op, [arg], {}]`` with ``arg`` already packed."""
    return b"\x93" + msgpack.packb(op) + b"\x91" + packed_arg + b"\x80"


# -- security: tokens, namespaces, the allow-list (these hold) -----------------------------

SECRETS = {n: f"{n}-secret-{uuid.uuid4().hex}" for n in ("admin", "reader", "tenant")}

CALLS: dict[str, tuple[list[Any], dict[str, Any]]] = {
    "get": (["k"], {}),
    "mget": ([["k", "x"]], {}),
    "get_versioned": (["k"], {}),
    "exists": (["k"], {}),
    "key_info": ([["k"]], {}),
    "pttl": (["k"], {}),
    "ttl": (["k"], {}),
    "set": (["k", "v"], {}),
    "mset": ([{"k": "v"}], {}),
    "delete": (["k"], {}),
    "discard": (["k"], {}),
    "delete_prefix": ([""], {}),
    "pexpire": (["k", 1000], {}),
    "expire": (["k", 1], {}),
    "persist": (["k"], {}),
    "purge_expired": ([], {}),
    "purge": ([], {}),
    "append": (["log", "x"], {}),
    "extend": (["log", ["x"]], {}),
    "range": (["log"], {}),
    "range_at": (["log"], {}),
    "range_from": (["log"], {}),
    "next_seq": (["log"], {}),
    "length": (["log"], {}),
    "log_keys": ([], {}),
    "trim": (["log", 1], {}),
    "compact": (["log"], {}),
    "settle": (["log"], {}),
    "keys": ([], {}),
    "key_page": (["", None, 10], {}),
    "namespaces": ([], {}),
    "health": ([], {}),
    "fsck": ([], {}),
    "usage": ([], {}),
    "retention": ([], {}),
    "set_retention": (["logs"], {"max_count": 3}),
    "remove_retention": (["logs"], {}),
    "maintain": ([], {"progress": False}),
    "rekey": ([], {"progress": False}),
    "artifacts.versions": (["a"], {}),
    "artifacts.versions_info": (["a"], {}),
    "artifacts.info": (["a"], {}),
    "artifacts.list": ([], {}),
    "artifacts.url": (["a"], {}),
    "artifacts.delete": (["a"], {}),
    "records.append": (["r", "day", {"x": 1}], {}),
    "records.extend": (["r", "day", [[1]]], {}),
    "records.query": (["r", "day"], {}),
    "records.partitions": (["r", "day"], {}),
    "records.drop_before": (["r", "day", 0], {}),
    "records.purge": (["r", "day"], {}),
    "sessions.create": (["app", "user", "s2"], {}),
    "sessions.get": (["app", "user", "s"], {}),
    "sessions.scope_state": (["app"], {}),
    "sessions.list": (["app"], {}),
    "sessions.append_event": (["app", "user", "s", {"t": 1}], {}),
    "sessions.update_state": (["app", "user", "s", {"x": 1}], {}),
    "sessions.delete": (["app", "user", "s"], {}),
    "sessions.delete_user": (["app", "user"], {"progress": False}),
    "sessions.delete_app": (["app"], {"progress": False}),
}
"""A plausible call of every operation of the wire."""


def test_every_operation_is_covered_here() -> None:
    assert set(CALLS) == set(wire.OPS)


def test_a_read_only_token_writes_nothing_whatever_it_calls(tmp_path: Path) -> None:
    path = tokens_file(
        tmp_path,
        {
            "admin": {"token": SECRETS["admin"]},
            "reader": {"token": SECRETS["reader"], "access": "read"},
        },
    )
    with service(HttpConfig(tokens=load_tokens(path, None))) as (base, _, opened):
        with kvstore.open(f"kvstore+{base}", token=SECRETS["admin"]) as admin:
            admin.set("k", "v")
            admin.extend("log", ["a", "b", "c"])
            admin.artifacts.save("a", b"data")
            admin.sessions.create("app", "user", "s", state={"x": 0})
            before = (admin.keys(), admin.range("log"), admin.artifacts.versions("a"))
        (store,) = opened
        written = writes(store)
        for op, (args, kwargs) in CALLS.items():
            answer = post(base, wire.call(op, tuple(args), kwargs), SECRETS["reader"])
            if wire.OPS[op] in ("write", "whole", "whole-write"):
                # whole: this reader is the whole store's, but artifacts.url on memory:// is
                # 501 - and must not be a write either
                status = 501 if wire.OPS[op] == "whole" else 403
                assert error_of(answer, status)["type"] in (
                    "Forbidden",
                    "UnsupportedOperationError",
                ), op
            else:
                assert answer.status_code in (200, 501), (op, answer.text)
        assert writes(store) == written, "a read-only token made the service write"
        with kvstore.open(f"kvstore+{base}", token=SECRETS["admin"]) as admin:
            after = (admin.keys(), admin.range("log"), admin.artifacts.versions("a"))
            assert after == before
            session = admin.sessions.get("app", "user", "s")
            assert session is not None and session.state == {"x": 0}


NAMESPACE_TRICKS = [
    ['".."'],
    ['"..", ".."'],
    ['"../other"'],
    ['"a/../../other"'],
    ['"."'],
    ['"/"'],
    ['"%2E%2E"'],
    ['"\\u002e\\u002e"'],
    ['"other"'],
    [],
]


def test_a_namespace_token_stays_in_its_namespace(tmp_path: Path) -> None:
    path = tokens_file(
        tmp_path,
        {
            "admin": {"token": SECRETS["admin"]},
            "tenant": {"token": SECRETS["tenant"], "namespace": "tenant"},
        },
    )
    with service(HttpConfig(tokens=load_tokens(path, None))) as (base, url, _):
        for i, parts in enumerate(NAMESPACE_TRICKS):
            header = "[" + ", ".join(parts) + "]"
            answer = post(
                base,
                wire.call("set", (f"k{i}", "v"), {}),
                SECRETS["tenant"],
                headers={"X-KVStore-Namespace": header},
            )
            assert answer.status_code == 200, (header, answer.text)
        for ns in ("..", "other", "../other"):
            answer = post(
                base, wire.call("set", ("q", ns), {}), SECRETS["tenant"], params={"ns": ns}
            )
            assert answer.status_code in (200, 400), answer.text
        huge = json.dumps(["a"] * 3000)
        answer = post(
            base,
            wire.call("set", ("deep", "v"), {}),
            SECRETS["tenant"],
            headers={"X-KVStore-Namespace": huge},
        )
        assert answer.status_code in (200, 400), answer.text
        refused = ['[""]', "{}", '"tenant"', "null", "[1]", "[[]]", "not json", '["a", null]']
        for header in refused:
            answer = post(
                base,
                wire.call("set", ("no", "v"), {}),
                SECRETS["tenant"],
                headers={"X-KVStore-Namespace": header},
            )
            error_of(answer, 400)
        both = post(
            base,
            wire.call("keys", (), {}),
            SECRETS["tenant"],
            headers={"X-KVStore-Namespace": '["a"]'},
            params={"ns": "b"},
        )
        error_of(both, 400)
        with kvstore.open(url, cache=None) as lib:
            assert lib.keys() == [], "the tenant wrote outside its namespace"
            assert lib.namespaces() == ["tenant"]
            assert lib.namespace("other").keys() == []
            tenant = lib.namespace("tenant")
            assert tenant.get("no") is None
            assert "k0" in tenant.namespace("..").keys()  # noqa: SIM118 - a store, not a dict


@pytest.mark.parametrize(
    "op",
    [
        "_values",
        "_ctx",
        "namespace",
        "close",
        "key_pages",
        "scan_iter",
        "get.__globals__",
        "artifacts",
        "sessions",
        "artifacts._versions",
        "artifacts.save.__code__",
        "sessions.artifact_name",
        "sessions.__init__",
        "__class__.__init__",
        "",
        ".get",
        "get ",
        "GET",
    ],
)
def test_no_call_reaches_beyond_the_allow_list(op: str) -> None:
    with service() as (base, url, _):
        error_of(post(base, msgpack.packb([op, [], {}])), 400)
        # nor a keyword the library's signature does not have (private ones included)
        error_of(post(base, wire.call("set", ("k", "v"), {"_context": 1})), 400)
        assert kvstore.open(url).keys() == []


def test_check_keys_is_the_clients_own_and_no_operation() -> None:
    """Once an operation that always answered 500 (the library's check_keys is no
    coroutine): the client checks keys itself (no request), and the service names no such
    operation."""
    with service() as (base, url, _):
        error_of(post(base, wire.call("check_keys", (["k"],), {})), 400)
        with kvstore.open(url) as store:
            store.check_keys(["k", b"\xff"])
            with pytest.raises(kvstore.InvalidKeyError):
                store.check_keys(["k", "\ud800"])
            assert store.stats()["requests"] == 0


# -- security: hostile msgpack --------------------------------------------------------------


def test_nested_extension_values_are_refused_not_a_crash() -> None:
    """BUG B1: every extension type whose payload is msgpack (tuple, range, datetime,
    timedelta, record) is decoded by a nested ``msgpack.unpackb`` call (wire._ext ->
    wire.unpack): the C unpacker's ~32 KiB stack frame per level overflows the C stack
    at ~200 levels - SIGSEGV - long before Python's recursion limit (2 Python frames per
    level). A 700-byte body kills the process that decodes it: the service (any token,
    read-only too: the call is parsed before the access check), or a client reading an
    answer. It must be a WireError."""
    code = textwrap.dedent(
        """
        import msgpack
        from kvstore.remote import wire
        value = msgpack.packb([])
        for _ in range(400):
            value = msgpack.packb(msgpack.ExtType(wire.TUPLE, value))
        try:
            wire.unpack(value)
        except wire.WireError:
            print("refused")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "refused" in done.stdout, (
        f"wire.unpack of 400 nested tuples: exit {done.returncode} (-11: SIGSEGV)"
    )


def test_a_nested_value_does_not_kill_the_service() -> None:
    """BUG B1, end to end: ``kvstore serve --http`` dies (SIGSEGV) on one small call.
    Not only a hostile one: the client itself sends ``store.set("k", t)`` for a tuple
    ``t`` nested 300 deep (1.4 KB: wire.pack nests it without complaint) - the library
    refuses the value (InvalidValueError), the service crashes decoding it."""
    port = free_port()
    proc = cli("--url", f"memory://cli-{uuid.uuid4().hex}", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, proc)
        with kvstore.open(f"kvstore+{base}", timeout=10) as store:
            got = outcome(lambda s: s.set("k", _nested_tuple(300)), store)
        time.sleep(0.2)
        assert proc.poll() is None, f"the service died: exit {proc.returncode}, got {got}"
        assert got == ("raises", "InvalidValueError")
        raw = post(base, _call_with_arg("get", _nested_ext(wire.TUPLE, 400)))
        assert raw.status_code == 400 and proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=30)
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


P61 = 2**61 - 1


def _int_map(keys: list[int]) -> bytes:
    """A msgpack map of the ``keys`` (each a BIGINT extension) to nil."""
    entries = b"".join(
        msgpack.packb(msgpack.ExtType(wire.BIGINT, str(k).encode())) + b"\xc0" for k in keys
    )
    return b"\xdf" + len(keys).to_bytes(4, "big") + entries


def test_colliding_map_keys_do_not_stall_the_service() -> None:
    """BUG B2: wire.unpack takes any map key (``strict_map_key=False``) and BIGINT makes
    ints of any size: every multiple of 2**61-1 has Python hash 0, so a map of n such
    keys costs O(n^2) to build - on the service's event loop, which answers nothing else
    meanwhile. 20,000 keys (half a MiB) take seconds; a 64 MiB body, hours. The same map
    with ordinary keys takes milliseconds. Any token may send it (read-only too)."""
    with service() as (base, _, _):
        n = 20_000
        control = _call_with_arg("get", _int_map([2**70 + i for i in range(n)]))
        colliding = _call_with_arg("get", _int_map([P61 * i for i in range(1, n + 1)]))
        started = time.perf_counter()
        assert post(base, control).status_code == 400
        plain = time.perf_counter() - started
        started = time.perf_counter()
        answer = post(base, colliding)
        hashed = time.perf_counter() - started
        assert answer.status_code == 400
        assert hashed < 0.5 + 20 * plain, (
            f"a map of {n} colliding keys ({len(colliding)} bytes) took {hashed:.2f} s "
            f"to refuse, the same map of other keys {plain:.3f} s"
        )


def _peak_while(call: Callable[[], Any]) -> tuple[Any, int]:
    """``call()``'s result, and the peak of memory allocated meanwhile (this process:
    the service runs in a thread of it)."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_opaque_extensions_do_not_amplify_memory() -> None:
    """BUG B3: each OPAQUE extension decodes to an instance of a *new class*
    (wire._opaque: ``type(name, (Opaque,), {})()``), ~2.5 KiB each: a 90 KB body of
    30,000 of them makes the service allocate ~70 MiB (and a 64 MiB body ~50 GB). One
    class per name would cost nothing."""
    n = 30_000
    ext = msgpack.packb(msgpack.ExtType(wire.OPAQUE, b"X"))
    body = _call_with_arg("get", b"\xdd" + n.to_bytes(4, "big") + ext * n)
    with service() as (base, _, _):
        post(base, wire.call("get", ("warm",), {}))
        answer, peak = _peak_while(lambda: post(base, body))
        assert answer.status_code == 400
        assert peak < 8 << 20, f"{len(body)} bytes made the service allocate {peak >> 20} MiB"


def _raw_range_call(op: str, stop: int) -> bytes:
    """A call whose one argument is a RANGE extension (the client itself sends a list)."""
    bound = msgpack.ExtType(wire.BIGINT, str(stop).encode()) if stop >= 2**64 else stop
    packed = msgpack.packb([0, bound, 1], use_bin_type=True)
    return msgpack.packb([op, [msgpack.ExtType(wire.RANGE, packed)], {}], use_bin_type=True)


def test_a_range_argument_is_not_expanded_by_the_service() -> None:
    """BUG B4: a RANGE extension is a range object of any length; mget/key_info give it
    to the library, whose ``flatten``/``list(keys)`` materializes it before refusing its
    first key (an int): 20 bytes of body make the service build a list of a million ints
    (~36 MiB); ``range(10**9)`` would take tens of GB. (extend(key, range(...)) appends
    that many records for a write token.)"""
    with service() as (base, _, _):
        post(base, wire.call("get", ("warm",), {}))
        body = _raw_range_call("mget", 10**6)
        answer, peak = _peak_while(lambda: post(base, body))
        assert answer.status_code == 400
        assert peak < 8 << 20, f"{len(body)} bytes made the service allocate {peak >> 20} MiB"


OPAQUE_GENERATOR = msgpack.ExtType(wire.OPAQUE, b"generator")
BAD_CALLS: dict[str, bytes] = {
    # the library raises MemoryError / OverflowError / TypeError: a 500, not a 4xx
    "mget(range(2**62))": _raw_range_call("mget", 2**62),
    "mget(range(2**70))": _raw_range_call("mget", 2**70),
    "key_info(range(2**70))": _raw_range_call("key_info", 2**70),
    "key_info(<generator>)": msgpack.packb(["key_info", [OPAQUE_GENERATOR], {}]),
    "health('x')": wire.call("health", ("x",), {}),
    "delete_user(app, user, 'yes')": wire.call("sessions.delete_user", ("a", "u", "yes"), {}),
    "delete_app(app, <function>)": msgpack.packb(
        ["sessions.delete_app", ["a", msgpack.ExtType(wire.OPAQUE, b"function")], {}]
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_every_bad_call_gets_a_4xx_json_error(name: str) -> None:
    """BUG B5: an exception that is not the library's (TypeError, OverflowError,
    MemoryError from the arguments) escapes POST /v1/call: a 500 whose body is Starlette's
    plain text "Internal Server Error", not the service's JSON error - and uvicorn then
    drops the connection (see the next test)."""
    with service() as (base, url, _):
        answer = post(base, BAD_CALLS[name])
        assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text[:100])
        error_of(answer, answer.status_code)
        assert kvstore.open(url).keys() == []


class _BuggyStore(kvstore.AsyncKVStore):
    """A store whose ``ttl`` has a bug (not a library error): the service answers 500."""

    async def ttl(self, key: str) -> int:
        raise RuntimeError("a bug")


def test_a_failed_call_does_not_fail_the_next_one() -> None:
    """B5: after a 500 (a bug) the service drops the kept-alive connection; it says so
    (``Connection: close``), so the client's next call - an append - goes on a new
    connection, is received and made once, instead of failing on a reset socket."""

    def open_store() -> kvstore.AsyncKVStore:
        blob = kvstore.open_async(f"memory://buggy-{uuid.uuid4().hex}", cache=None)
        return _BuggyStore(blob._ctx.blob, kvstore.NoCache())

    with serving(open_store) as base, kvstore.open(f"kvstore+{base}") as store:
        failures = []
        for i in range(5):
            with pytest.raises(kvstore.BackendError, match="500"):
                store.ttl("k")
            try:
                store.append("log", str(i))
            except kvstore.BackendError as exc:
                failures.append(str(exc))
        assert not failures, failures
        assert store.length("log") == 5
        with client(base) as http:
            answer = http.post("/v1/call", content=wire.call("ttl", ("k",), {}))
            assert error_of(answer, 500)["type"] == "InternalServerError"
            assert answer.headers["connection"] == "close"


@pytest.mark.parametrize("route", ["POST /v1/call", "GET /v1/keys", "GET /v1/values/k"])
def test_deep_json_in_the_namespace_header_is_a_400(route: str) -> None:
    """BUG B6: kvstore/http/scope.py `_names` catches ValueError from json.loads, not
    RecursionError: ~1000 nested '[' (2 KB of header) make every route that takes the
    header answer 500 (plain text). The X-KVStore-Metadata parser catches both."""
    header = "[" * 1000 + "]" * 1000
    method, path = route.split()
    with service() as (base, _, _), client(base) as http:
        body = wire.call("keys", (), {}) if method == "POST" else None
        answer = http.request(
            method,
            path,
            content=body,
            headers={"X-KVStore-Namespace": header, "Content-Type": wire.MEDIA_TYPE},
        )
        error_of(answer, 400)


# -- fidelity: the client takes and returns what the library does ---------------------------


class Color(str, enum.Enum):
    RED = "red"


class Price(float):
    """A float subclass, as numpy.float64 is."""


SAME_AS_THE_LIBRARY: dict[str, Callable[[Any], Any]] = {
    # BUG B7: msgpack's strict_types=True sends a subclass of str/float/bytes/list as
    # OPAQUE: the service's library refuses what the caller's library would take
    "str-enum key": lambda s: (s.set(Color.RED, "v"), s.get("red")),
    "str-enum value": lambda s: (s.set("c", Color.RED), s.get("c")),
    "float-subclass value": lambda s: (s.set("f", Price(1.5)), s.get("f")),
    "str-enum namespace name": lambda s: s.namespace(Color.RED).set("k", "v"),
    # BUG B7: an iterable that is not a list/tuple/set (generator, dict view, iterator)
    # is sent as OPAQUE: refused (mget) or a 500 -> BackendError (key_info)
    "mget(generator)": lambda s: (s.set("a", 1), s.mget(k for k in ["a", "b"])),
    "mget(dict keys)": lambda s: (s.set("a", 1), s.mget({"a": 0, "b": 0}.keys())),
    "mget(iterator)": lambda s: (s.set("a", 1), s.mget(iter(["a"]))),
    "key_info(generator)": lambda s: (s.set("a", 1), s.key_info(k for k in ["a"])),
    # BUG B12: wire.pack lets RecursionError out (the library: InvalidValueError)
    "deeply nested value": lambda s: s.set("k", _nested_tuple(2000)),
    # these hold
    "mget(set)": lambda s: (s.set("a", 1), s.mget({"a"})),
    "extend(tuple)": lambda s: s.extend("l", ("x", "y")),
    "bytearray value": lambda s: (s.set("b", bytearray(b"\x00")), s.get("b")),
    "memoryview key": lambda s: (s.set(memoryview(b"mk"), "v"), s.get("mk")),
    "int-enum value": lambda s: (s.set("i", enum.IntEnum("N", "ONE").ONE), s.get("i")),
}


@pytest.mark.parametrize("name", list(SAME_AS_THE_LIBRARY))
def test_the_client_takes_what_the_library_takes(
    twins: tuple[kvstore.KVStore, kvstore.KVStore], name: str
) -> None:
    remote, lib = twins
    call = SAME_AS_THE_LIBRARY[name]
    assert outcome(call, remote) == outcome(call, lib)


def _shown(found: Any) -> Any:
    """An artifact without its date (two stores save at two times)."""
    if found is None:
        return None
    return {k: v for k, v in vars(found).items() if k != "created_at"}


def _workload(store: kvstore.KVStore) -> list[Any]:
    """Edge cases of every kind of call whose results and errors must match."""
    out: list[Any] = []

    def step(call: Callable[[], Any]) -> None:
        out.append(outcome(lambda _: call(), None))

    when = datetime.datetime(2100, 1, 1, tzinfo=datetime.timezone.utc)
    step(lambda: (store.set(b"\xff", "non-utf8 key"), store.get(b"\xff"), store.get("\udcff")))
    step(lambda: (store.set("", b""), store.get(""), store.exists("", "", "nope")))
    step(lambda: (store.set("big", -(2**80)), store.get("big")))
    step(lambda: (store.set("f", 0.1), store.set("inf", math.inf), store.mget("f", "inf")))
    step(lambda: store.set("nan", math.nan))
    step(lambda: store.set("bool", True))
    step(lambda: store.set("none", None))
    step(lambda: (store.set("e", "v", ex=datetime.timedelta(hours=1)), store.ttl("e") > 0))
    step(lambda: (store.set("e2", "v", exat=when), store.ttl("e2") > 10**9))
    step(lambda: (store.set("e3", "v", pxat=when), store.pttl("e3") > 10**12))
    step(lambda: (store.set("e4", "v", ex=1.5), store.pttl("e4") > 0))
    step(lambda: store.set("e5", "v", ex=-1))
    step(lambda: store.set("e6", "v", ex=2**70))
    step(lambda: store.set("e7", "v", exat=datetime.datetime(1970, 1, 1)))
    step(lambda: store.expire("e", datetime.timedelta(seconds=-5)))
    step(lambda: (store.ttl("nope"), store.pttl("nope"), store.persist("nope")))
    step(lambda: store.extend("log", [b"\x00", "é", 3, 2.5]))
    step(lambda: (store.range("log", -2, -1), store.range("log", 5, 1), store.range("log", 1.0)))
    step(lambda: (store.range_at("log", -100, 100), store.range_from("log", 2, 2**70)))
    step(lambda: store.range_from("log", -1))
    step(lambda: store.append("log", "x", expect_next=3))
    step(lambda: store.get("log"))
    step(lambda: store.mget("log", "f"))
    step(lambda: store.key_info(["log", "f", "nope"]))
    step(lambda: type(store.get_versioned("f")).__name__)
    step(lambda: store.get_versioned("f").value)  # type: ignore[union-attr]
    step(lambda: store.get_versioned("nope"))
    step(lambda: store.mset({b"m1": "1", "m2": 2}))
    step(lambda: store.delete())
    step(lambda: store.delete("m1", "m1", "nope"))
    step(lambda: store.get("\ud800"))
    step(lambda: store.get(1))
    step(lambda: store.namespace("").get("k"))
    step(lambda: (store.namespace("a/b").set("k", 1), store.namespace("é").set("k", 2)))
    step(lambda: store.namespaces())
    step(lambda: store.namespace(b"a/b").get("k"))
    step(lambda: sorted(store.keys()))
    step(lambda: list(store.scan_iter("m")))
    arts = store.artifacts
    step(lambda: (arts.save("empty", b""), _shown(arts.load("empty"))))
    step(lambda: arts.open("empty").read())  # type: ignore[union-attr]
    step(lambda: arts.save("meta", b"x", metadata={"b": b"\xff", "l": [1, [b"y", None]]}))
    step(lambda: arts.info("meta").metadata)  # type: ignore[union-attr]
    step(lambda: arts.save("meta", b"x", metadata={"t": datetime.datetime(2020, 1, 1)}))
    step(lambda: (arts.save("raw", b"abc", raw=True), arts.info("raw").raw))  # type: ignore[union-attr]
    step(lambda: (arts.save("s.txt", "é"), arts.load("s.txt").text))  # type: ignore[union-attr]

    def seek_beyond() -> Any:
        file = arts.open("raw")
        assert file is not None
        file.seek(100)
        found = (file.read(5), file.tell())
        file.seek(1)
        return (*found, file.read(), file.read())

    step(seek_beyond)
    step(lambda: (arts.versions("nope"), arts.info("nope"), arts.load("nope"), arts.open("nope")))
    step(lambda: [_shown(i) for i in arts.versions_info("meta")])
    step(lambda: arts.load("raw", -1))
    step(lambda: arts.load("raw", True))
    step(lambda: arts.save("..", b"dots"))
    step(lambda: (arts.save("a/../b", b"x"), arts.load("a/../b").data))  # type: ignore[union-attr]
    step(lambda: sorted(arts.list()))
    sessions = store.sessions
    state = {"b": b"\x00\xff", "n": [1, {"x": None}], "app:shared": 1}
    step(lambda: sessions.create("app", "user", "s", state=state).state)
    step(lambda: sessions.get("app", "user", "s").state)  # type: ignore[union-attr]
    step(lambda: sessions.append_event("app", "user", "s", {"t": (1, 2)}, {"b": None}).data)
    step(lambda: sessions.append_event("app", "user", "s", {"t": 1}, expect_last=-1))
    step(lambda: sessions.update_state("app", "user", "s", {"n": b"\x01"}, title="T").state)
    step(lambda: sessions.scope_state("app"))
    step(lambda: [s.id for s in sessions.list("app").sessions])
    progress: list[Any] = []
    step(lambda: (sessions.delete_user("app", "user", lambda *a: progress.append(a)), progress))
    return out


def test_edge_cases_give_the_librarys_results_and_errors(
    twins: tuple[kvstore.KVStore, kvstore.KVStore],
) -> None:
    remote, lib = twins
    through, direct = _workload(remote), _workload(lib)
    assert len(through) == len(direct)
    for i, (mine, theirs) in enumerate(zip(through, direct, strict=True)):
        assert mine == theirs, (i, mine, theirs)


def test_decode_responses_edge_cases(twins: tuple[kvstore.KVStore, kvstore.KVStore]) -> None:
    remote, lib = twins
    with (
        kvstore.open(remote.url + "/r", decode_responses=True) as text_remote,
        kvstore.open(lib.url, cache=None, decode_responses=True) as text_root,
    ):
        text_lib = text_root.namespace("l")
        for store in (remote, lib):
            store.set("t", "é")
            store.set("bin", b"\xff")
            store.extend("log", ["a", b"\xfe", ""])

        def calls(s: kvstore.KVStore) -> list[Any]:
            return [
                outcome(lambda s: s.get("t"), s),
                outcome(lambda s: s.mget("t", "nope", "log"), s),
                outcome(lambda s: s.mget("t", "bin"), s),
                outcome(lambda s: s.get_versioned("t").value, s),  # type: ignore[union-attr]
                outcome(lambda s: s.range("log", 0, 0), s),
                outcome(lambda s: s.range("log"), s),
                outcome(lambda s: s.range_at("log", 2), s),
                outcome(lambda s: s.range_from("log", 0, 1), s),
                outcome(lambda s: s.keys(), s),
            ]

        assert calls(text_remote) == calls(text_lib)


@pytest.mark.parametrize("size", [0, 1, PIECE - 1, PIECE, PIECE + 1, CALL_BYTES, CALL_BYTES + 1])
def test_artifact_sizes_at_the_boundaries(
    twins: tuple[kvstore.KVStore, kvstore.KVStore], size: int
) -> None:
    """What holds: sizes around a piece (8 MiB) and the call/stream boundary (16 MiB),
    saved and read whole and by ranges (seek and read past the end too)."""
    remote, _ = twins
    data = (bytes(range(251)) * (size // 251 + 1))[:size]
    assert remote.artifacts.save("a.bin", data) == 0
    found = remote.artifacts.load("a.bin")
    assert found is not None and found.data == data and found.size == size
    file = remote.artifacts.open("a.bin")
    assert file is not None
    for start, count in ((PIECE - 3, 6), (max(0, size - 2), 10), (size, 5), (size + 99, 5), (0, 3)):
        file.seek(start)
        assert file.read(count) == data[start : start + count], (start, count)
    file.seek(0)
    assert file.read() == data
    file.close()


def test_artifacts_on_a_service_with_a_small_body_limit() -> None:
    """BUG B8: bytes or str data up to CALL_BYTES (16 MiB) is saved through POST
    /v1/call, whose body the service limits to ``max_body`` ("bytes a value or a log
    record may have", --max-body): on a service started with 1 MiB, saving 2 MiB of bytes
    fails with ConfigurationError ("the body is over 1048576 bytes") although the same
    data from a file (streamed PUT, no limit for artifacts) is saved fine."""
    with (
        service(HttpConfig(max_body=1 << 20)) as (base, _, _),
        kvstore.open(f"kvstore+{base}") as store,
    ):
        data = b"x" * (2 << 20)
        assert store.artifacts.save("streamed.bin", io.BytesIO(data)) == 0
        assert store.artifacts.save("bytes.bin", data) == 0


def test_a_str_of_call_bytes_characters_is_saved() -> None:
    """BUG B8: the call/stream choice counts a str's characters, not its bytes: a str
    of CALL_BYTES 4-byte characters is 64 MiB of UTF-8 - over the default service's body
    limit (64 MiB), so ``save`` raises ConfigurationError where the library saves it."""
    with service() as (base, _, _), kvstore.open(f"kvstore+{base}") as store:
        text = "\U0001f600" * CALL_BYTES
        assert outcome(lambda s: s.artifacts.save("emoji.txt", text), store) == ("ok", 0)
        info = store.artifacts.info("emoji.txt")
        assert info is not None and info.size == 4 * CALL_BYTES


STREAMED: dict[str, Callable[[Any], Any]] = {
    # BUG B9: a streamed save (a file, a path, an async iterable, or data over 16 MiB)
    # carries metadata and mime type in HTTP headers
    "metadata of 200 KB": lambda s: (
        s.artifacts.save("m1", io.BytesIO(b"x"), metadata={"n": "y" * 200_000}),
        len(s.artifacts.info("m1").metadata["n"]),
    ),
    "metadata holding {'$base64': ...}": lambda s: (
        s.artifacts.save("m2", io.BytesIO(b"x"), metadata={"d": {"$base64": "aGk="}}),
        s.artifacts.info("m2").metadata,
    ),
    "metadata holding NaN": lambda s: s.artifacts.save(
        "m3", io.BytesIO(b"x"), metadata={"n": math.nan}
    ),
    "metadata not a dict": lambda s: s.artifacts.save("m4", io.BytesIO(b"x"), metadata=[1]),
    "mime type with spaces": lambda s: (
        s.artifacts.save("m5", io.BytesIO(b"x"), mime_type=" text/plain "),
        s.artifacts.info("m5").mime_type,
    ),
    "mime type not ASCII": lambda s: (
        s.artifacts.save("m6", io.BytesIO(b"x"), mime_type="text/é"),
        s.artifacts.info("m6").mime_type,
    ),
    "mime type empty": lambda s: s.artifacts.save("m7", io.BytesIO(b"x"), mime_type=""),
    "mime type with CRLF": lambda s: s.artifacts.save(
        "m8", io.BytesIO(b"x"), mime_type="text/plain\r\nX-Evil: 1"
    ),
    # these hold
    "metadata with bytes and lists": lambda s: (
        s.artifacts.save("m9", io.BytesIO(b"x"), metadata={"b": b"\xff", "l": [1, [None]]}),
        s.artifacts.info("m9").metadata,
    ),
    "raw, streamed": lambda s: (
        s.artifacts.save("m10", io.BytesIO(b"abc"), raw=True),
        s.artifacts.info("m10").raw,
    ),
    "empty file": lambda s: (
        s.artifacts.save("m11", io.BytesIO(b"")),
        s.artifacts.load("m11").data,
    ),
}


@pytest.mark.parametrize("name", list(STREAMED))
def test_a_streamed_save_is_the_librarys(
    twins: tuple[kvstore.KVStore, kvstore.KVStore], name: str
) -> None:
    remote, lib = twins
    call = STREAMED[name]
    assert outcome(call, remote) == outcome(call, lib)


# -- robustness -----------------------------------------------------------------------------


def test_the_async_client_on_concurrent_event_loops_in_threads() -> None:
    with service() as (base, url, _):
        store = kvstore.open_async(f"kvstore+{base}")
        errors: list[BaseException] = []

        def worker(me: int) -> None:
            async def work() -> None:
                for i in range(10):
                    await store.append("log", f"{me}:{i}")
                await store.close()

            try:
                for _ in range(3):
                    asyncio.run(work())
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        with kvstore.open(url) as lib:
            assert lib.length("log") == 8 * 3 * 10


def test_a_closed_client_reconnects_as_the_library_keeps_working() -> None:
    with service() as (base, url, _):
        store = kvstore.open(f"kvstore+{base}")
        store.set("k", "v")
        store.close()
        lib = kvstore.open(url)
        lib.close()
        assert (
            outcome(lambda s: (s.get("k"), s.set("j", 1)), store)[0]
            == outcome(lambda s: (s.get("k"), s.set("j", 1)), lib)[0]
        )
        store.close()


@contextlib.contextmanager
def _serving_on(port: int, url: str) -> Iterator[int]:
    """The service over ``url`` on ``port`` (0: any free one), in a thread."""
    import uvicorn

    from kvstore.http import create_app

    app = create_app(lambda: kvstore.open_async(url), HttpConfig())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_the_client_goes_on_after_the_service_restarts() -> None:
    """A kept-alive connection to a service that stopped is not reused: the first call
    after a restart (an append: never sent twice) is made once."""
    url = f"memory://restart-{uuid.uuid4().hex}"
    with _serving_on(0, url) as port:
        store = kvstore.open(f"kvstore+http://127.0.0.1:{port}")
        assert store.append("log", "a") == 1
    with pytest.raises(kvstore.BackendError):
        store.append("log", "while down")
    with _serving_on(port, url):
        assert store.append("log", "b") == 2
    with _serving_on(port, url):  # no call while it was down
        assert store.append("log", "c") == 3
        assert store.range("log") == [b"a", b"b", b"c"]
    store.close()


@contextlib.contextmanager
def _silent_service() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"kvstore+http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_a_silent_service_is_a_backend_error_within_the_timeout() -> None:
    with _silent_service() as url, kvstore.open(url, timeout=0.5) as store:
        started = time.perf_counter()
        with pytest.raises(kvstore.BackendError):
            store.append("log", "x")
        assert time.perf_counter() - started < 5


def test_health_answers_within_its_timeout() -> None:
    """BUG B10: ``health(timeout=)`` "never raises ... within timeout seconds" (the
    library); the client passes ``timeout`` to the service but waits for the answer as
    long as its own request timeout (``open(timeout=)``, 60 s by default): against a
    service that does not answer, ``health(timeout=0.3)`` takes 3 s here (60 s with the
    defaults) - a readiness probe times out instead of reading ``ok: False``."""
    with _silent_service() as url, kvstore.open(url, timeout=3) as store:
        started = time.perf_counter()
        found = store.health(timeout=0.3)
        took = time.perf_counter() - started
        assert found["ok"] is False
        assert took < 1.5, f"health(timeout=0.3) took {took:.1f} s"
