"""RESP3 shapes of the command layer's replies.

The command layer answers in RESP2's shapes (flat arrays, scores as bulk strings). Under
RESP3 (``HELLO 3``) Redis answers some commands with maps, sets and doubles, and clients
that speak RESP3 (redis-py with ``protocol=3``, ioredis, node-redis) expect them: HGETALL
is a map, SMEMBERS a set, ZSCORE a double. :func:`resp3_shape` turns a RESP2-shaped reply
into Redis's RESP3 one for the commands that differ; every other reply is the same in
both protocols.
"""

from __future__ import annotations

from typing import Any

from ..commands.reply import CommandError
from .protocol import Double, Map, SetReply


def _pairs(reply: Any) -> Any:
    return Map(list(zip(reply[::2], reply[1::2], strict=True)))


def _set(reply: Any) -> Any:
    return SetReply(reply)


def _double(reply: Any) -> Any:
    return None if reply is None else Double(float(reply))


def _doubles(reply: Any) -> Any:
    return [None if r is None else Double(float(r)) for r in reply]


def _scored(reply: Any) -> Any:
    """[member, score, member, score ...] -> [[member, score], ...] (ZRANGE WITHSCORES)."""
    return [[m, Double(float(s))] for m, s in zip(reply[::2], reply[1::2], strict=True)]


_WITHSCORES_OPTIONAL = {
    b"ZRANGE",
    b"ZRANGEBYSCORE",
    b"ZREVRANGE",
    b"ZREVRANGEBYSCORE",
    b"ZRANGEBYLEX",
    b"ZINTER",
    b"ZUNION",
    b"ZDIFF",
}

_ALWAYS = {
    b"HGETALL": _pairs,
    b"CONFIG": _pairs,
    b"SMEMBERS": _set,
    b"SINTER": _set,
    b"SUNION": _set,
    b"SDIFF": _set,
    b"ZSCORE": _double,
    b"ZINCRBY": _double,
    b"ZMSCORE": _doubles,
}


def resp3_shape(name: bytes, args: list[bytes], reply: Any) -> Any:
    """``reply`` (RESP2-shaped, from the command layer) as Redis answers ``name`` in
    RESP3; errors and nil pass through."""
    if reply is None or isinstance(reply, CommandError):
        return reply
    shape = _ALWAYS.get(name)
    if shape is not None:
        return shape(reply)
    if name == b"ZADD" and any(a.upper() == b"INCR" for a in args[2:]):
        return _double(reply)  # ZADD ... INCR answers like ZINCRBY
    if name in _WITHSCORES_OPTIONAL and any(a.upper() == b"WITHSCORES" for a in args[1:]):
        return _scored(reply)
    if name in (b"ZPOPMIN", b"ZPOPMAX") and isinstance(reply, list):
        pairs = _scored(reply)
        return pairs if len(args) > 2 else (pairs[0] if pairs else [])
    if name == b"ZRANDMEMBER" and any(a.upper() == b"WITHSCORES" for a in args[1:]):
        return _scored(reply)
    if name == b"HRANDFIELD" and any(a.upper() == b"WITHVALUES" for a in args[1:]):
        return [list(p) for p in zip(reply[::2], reply[1::2], strict=True)]
    return reply
