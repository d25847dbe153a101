"""Hashes: HSET/HMSET/HSETNX/HGET/HMGET/HGETALL/HDEL/HEXISTS/HLEN/HKEYS/HVALS/HSTRLEN/
HINCRBY/HINCRBYFLOAT/HSCAN/HRANDFIELD.

A hash is one value object (:mod:`.collections`); each write is a compare-and-swap of it -
atomic across processes, one conditional PUT when this process holds the current version.
Reads are cached. A hash whose last field is deleted is deleted (as in Redis).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .. import codec
from ..values import DELETE, Change
from .collections import dump_hash, load_hash
from .core import Live, Op, command, expect, key_of
from .reply import (
    INT_MAX,
    INT_MIN,
    OK,
    OVERFLOW,
    Reply,
    err,
    fmt_incrbyfloat,
    parse_float,
    parse_int,
    wrong_args,
)
from .scanning import scan_items

if TYPE_CHECKING:
    from . import Commands

HASH = codec.HASH


def hash_of(current: Live) -> dict[bytes, bytes]:
    if not expect(current, HASH):
        return {}
    assert current is not None
    return load_hash(current[0])


def _written(current: Live, data: dict[bytes, bytes]) -> Change:
    if not data:
        return DELETE if current is not None else None
    return dump_hash(data), (current[1] if current is not None else 0), HASH


def _pairs(args: list[bytes], name: str) -> dict[bytes, bytes]:
    if not args or len(args) % 2:
        raise wrong_args(name)
    return {args[i]: args[i + 1] for i in range(0, len(args), 2)}


@command("HSET", -4, write=True)
def hset(core: Commands, args: list[bytes]) -> Op:
    fields = _pairs(args[1:], "HSET")

    def change(current: Live) -> tuple[Reply, Change]:
        data = hash_of(current)
        added = sum(f not in data for f in fields)
        data.update(fields)
        return added, _written(current, data)

    return Op(key_of(args[0]), change=change)


@command("HMSET", -4, write=True)
def hmset(core: Commands, args: list[bytes]) -> Op:
    op = hset(core, args)
    change = op.change
    assert change is not None
    return Op(op.key, change=lambda current: (OK, change(current)[1]))


@command("HSETNX", 4, write=True)
def hsetnx(core: Commands, args: list[bytes]) -> Op:
    field, value = args[1], args[2]

    def change(current: Live) -> tuple[Reply, Change]:
        data = hash_of(current)
        if field in data:
            return 0, None
        data[field] = value
        return 1, _written(current, data)

    return Op(key_of(args[0]), change=change)


@command("HGET", 3)
def hget(core: Commands, args: list[bytes]) -> Op:
    field = args[1]
    return Op(key_of(args[0]), read=lambda current: hash_of(current).get(field))


@command("HMGET", -3)
def hmget(core: Commands, args: list[bytes]) -> Op:
    fields = args[1:]

    def read(current: Live) -> Reply:
        data = hash_of(current)
        return [data.get(f) for f in fields]

    return Op(key_of(args[0]), read=read)


@command("HGETALL", 2)
def hgetall(core: Commands, args: list[bytes]) -> Op:
    def read(current: Live) -> Reply:
        out: list[Reply] = []
        for field, value in hash_of(current).items():
            out.extend((field, value))
        return out

    return Op(key_of(args[0]), read=read)


@command("HKEYS", 2)
def hkeys(core: Commands, args: list[bytes]) -> Op:
    return Op(key_of(args[0]), read=lambda current: list(hash_of(current)))


@command("HVALS", 2)
def hvals(core: Commands, args: list[bytes]) -> Op:
    return Op(key_of(args[0]), read=lambda current: list(hash_of(current).values()))


@command("HLEN", 2)
def hlen(core: Commands, args: list[bytes]) -> Op:
    return Op(key_of(args[0]), read=lambda current: len(hash_of(current)))


@command("HEXISTS", 3)
def hexists(core: Commands, args: list[bytes]) -> Op:
    field = args[1]
    return Op(key_of(args[0]), read=lambda current: int(field in hash_of(current)))


@command("HSTRLEN", 3)
def hstrlen(core: Commands, args: list[bytes]) -> Op:
    field = args[1]
    return Op(key_of(args[0]), read=lambda current: len(hash_of(current).get(field, b"")))


@command("HDEL", -3, write=True)
def hdel(core: Commands, args: list[bytes]) -> Op:
    fields = set(args[1:])

    def change(current: Live) -> tuple[Reply, Change]:
        data = hash_of(current)
        removed = [f for f in fields if f in data]
        if not removed:
            return 0, None
        for f in removed:
            del data[f]
        return len(removed), _written(current, data)

    return Op(key_of(args[0]), change=change)


@command("HINCRBY", 4, write=True)
def hincrby(core: Commands, args: list[bytes]) -> Op:
    field, by = args[1], parse_int(args[2])

    def change(current: Live) -> tuple[Reply, Change]:
        data = hash_of(current)
        old = data.get(field)
        number = 0 if old is None else parse_int(old, "hash value is not an integer")
        new = number + by
        if not INT_MIN <= new <= INT_MAX:
            raise err(OVERFLOW)
        data[field] = str(new).encode()
        return new, _written(current, data)

    return Op(key_of(args[0]), change=change)


@command("HINCRBYFLOAT", 4, write=True)
def hincrbyfloat(core: Commands, args: list[bytes]) -> Op:
    field, by = args[1], parse_float(args[2])

    def change(current: Live) -> tuple[Reply, Change]:
        data = hash_of(current)
        old = data.get(field)
        number = 0.0 if old is None else parse_float(old, "hash value is not a float")
        new = number + by
        if math.isnan(new) or math.isinf(new):
            raise err("increment would produce NaN or Infinity")
        data[field] = text = fmt_incrbyfloat(new)
        return text, _written(current, data)

    return Op(key_of(args[0]), change=change)


@command("HSCAN", -3)
def hscan(core: Commands, args: list[bytes]) -> Op:
    def items(current: Live) -> list[tuple[bytes, list[bytes]]]:
        return [(f, [f, v]) for f, v in hash_of(current).items()]

    return scan_items(core, args, items)


__all__ = ["hash_of"]
