"""Strings and counters: GET/SET and its options, GETSET/GETDEL/GETEX, MGET/MSET/MSETNX,
APPEND, STRLEN, GETRANGE/SETRANGE, INCR/INCRBY/DECR/DECRBY/INCRBYFLOAT.

A string is a value object without a type mark (the native API's values are strings).
Every single-key read-modify-write is a compare-and-swap of the key's object: atomic across
processes, one conditional PUT when this process wrote the current version (an
uncontended INCR), a GET and a conditional PUT otherwise. A plain SET is one PUT.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import codec
from ..blob.base import AmbiguousWriteError
from ..values import DELETE, Change
from .collections import MAX_STRING_BYTES
from .core import Live, Op, command, expect, key_of
from .reply import (
    INT_MAX,
    INT_MIN,
    OK,
    OVERFLOW,
    SYNTAX,
    CommandError,
    Reply,
    err,
    fmt_incrbyfloat,
    parse_float,
    parse_int,
)

if TYPE_CHECKING:
    from . import Commands

STRING = codec.STRING
MAX_EXPIRY_MS = 2**62


def string_of(current: Live) -> bytes | None:
    """The key's string, None if missing; WRONGTYPE for another type."""
    if not expect(current, STRING):
        return None
    assert current is not None
    return current[0]


def _expiry(now: int, unit: bytes, raw: bytes, command_name: str) -> int:
    """Absolute expiry in ms from an EX/PX/EXAT/PXAT argument."""
    value = parse_int(raw)
    invalid = err(f"invalid expire time in '{command_name}' command")
    if value <= 0:
        raise invalid
    ms = value * 1000 if unit in (b"EX", b"EXAT") else value
    at = now + ms if unit in (b"EX", b"PX") else ms
    if ms > MAX_EXPIRY_MS or at > MAX_EXPIRY_MS:
        raise invalid
    return at


def _check_size(payload: bytes) -> bytes:
    if len(payload) > MAX_STRING_BYTES:
        raise err("string exceeds maximum allowed size (proto-max-bulk-len)")
    return payload


@command("GET", 2)
def get(core: Commands, args: list[bytes]) -> Op:
    return Op(key_of(args[0]), read=string_of)


@command("SET", -3, write=True)
def set_(core: Commands, args: list[bytes]) -> Op:
    key, value = key_of(args[0]), _check_size(args[1])
    nx = xx = get_old = keepttl = False
    expiry: tuple[bytes, bytes] | None = None
    ifeq: bytes | None = None  # with IFEQ (equal) or IFNE (not equal)
    equal = True
    i = 2
    while i < len(args):
        opt = args[i].upper()
        if opt == b"NX" and not xx and ifeq is None:
            nx = True
        elif opt == b"XX" and not nx and ifeq is None:
            xx = True
        elif opt == b"GET":
            get_old = True
        elif opt == b"KEEPTTL" and expiry is None:
            keepttl = True
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and expiry is None and not keepttl:
            if i + 1 >= len(args):
                raise err(SYNTAX)
            expiry = (opt, args[i + 1])
            i += 1
        elif opt in (b"IFEQ", b"IFNE") and not (nx or xx) and ifeq is None and i + 1 < len(args):
            ifeq, equal = args[i + 1], opt == b"IFEQ"
            i += 1
        elif opt in (b"IFDEQ", b"IFDNE"):
            raise err(f"SET {opt.decode()} (a digest compare) is not supported by kvstore")
        else:
            raise err(SYNTAX)
        i += 1
    clock = core.ctx.clock
    expires = 0 if expiry is None else _expiry(clock(), expiry[0], expiry[1], "set")

    def change(current: Live) -> tuple[Reply, Change]:
        old = string_of(current) if get_old or ifeq is not None else None
        exists = current is not None
        compared = ifeq is not None and (old == ifeq) != equal
        if (nx and exists) or (xx and not exists) or compared:
            return (old if get_old else None), None
        keep = current[1] if keepttl and current is not None else expires
        if expiry is not None and expiry[0] in (b"EX", b"PX"):
            keep = _expiry(clock(), expiry[0], expiry[1], "set")  # measured at the write
        return (old if get_old else OK), (value, keep, STRING)

    if nx or xx or get_old or keepttl or ifeq is not None:
        return Op(key, change=change)

    async def put() -> Reply:
        await core.values.set(key, value, pxat=expires or None)
        return OK

    return Op(key, change=change, alone=put)


@command("SETNX", 3, write=True)
def setnx(core: Commands, args: list[bytes]) -> Op:
    key, value = key_of(args[0]), _check_size(args[1])

    def change(current: Live) -> tuple[Reply, Change]:
        if current is not None:
            return 0, None
        return 1, (value, 0, STRING)

    return Op(key, change=change)


def _setex(name: str, unit: bytes) -> None:
    @command(name, 4, write=True)
    def setex(core: Commands, args: list[bytes]) -> Op:
        key, value = key_of(args[0]), _check_size(args[2])
        at = _expiry(core.ctx.clock(), unit, args[1], name.lower())

        def change(current: Live) -> tuple[Reply, Change]:
            return OK, (value, at, STRING)

        return Op(key, change=change)


_setex("SETEX", b"EX")
_setex("PSETEX", b"PX")


@command("GETSET", 3, write=True)
def getset(core: Commands, args: list[bytes]) -> Op:
    key, value = key_of(args[0]), _check_size(args[1])

    def change(current: Live) -> tuple[Reply, Change]:
        return string_of(current), (value, 0, STRING)

    return Op(key, change=change)


@command("GETDEL", 2, write=True)
def getdel(core: Commands, args: list[bytes]) -> Op:
    def change(current: Live) -> tuple[Reply, Change]:
        old = string_of(current)
        return old, (None if old is None else DELETE)

    return Op(key_of(args[0]), change=change)


@command("GETEX", -2, write=True)
def getex(core: Commands, args: list[bytes]) -> Op:
    key = key_of(args[0])
    opts = args[1:]
    persist = False
    unit: bytes | None = None
    raw = b""
    if opts:
        first = opts[0].upper()
        if first == b"PERSIST" and len(opts) == 1:
            persist = True
        elif first in (b"EX", b"PX", b"EXAT", b"PXAT") and len(opts) == 2:
            unit, raw = first, opts[1]
        else:
            raise err(SYNTAX)
    clock = core.ctx.clock
    if unit is not None:
        parse_int(raw)  # not a number: refused at once; out of range: once the key is found

    def change(current: Live) -> tuple[Reply, Change]:
        old = string_of(current)  # as Redis: the key and its type before the expiry
        if old is None or current is None:
            return None, None
        if persist:
            return old, (None if current[1] == 0 else (old, 0, STRING))
        if unit is not None:
            return old, (old, _expiry(clock(), unit, raw, "getex"), STRING)
        return old, None

    if not opts:
        return Op(key, read=string_of)
    return Op(key, change=change)


@command("MGET", -2)
def mget(core: Commands, args: list[bytes]) -> Op:
    keys = [key_of(a) for a in args]

    async def run() -> Reply:
        values = core.values
        found = await values.load(values.plan(keys))
        return [v[0] if v is not None and v[2] == STRING else None for v in found]

    return Op(run=run)


def _pairs(args: Sequence[bytes], name: str) -> list[tuple[str, bytes]]:
    if len(args) % 2:
        raise err(f"wrong number of arguments for '{name}' command")
    return [(key_of(args[i]), _check_size(args[i + 1])) for i in range(0, len(args), 2)]


@command("MSET", -3, write=True)
def mset(core: Commands, args: list[bytes]) -> Op:
    pairs = _pairs(args, "mset")
    if len({k for k, _ in pairs}) == 1:
        key, value = pairs[-1]
        return Op(key, change=lambda current: (OK, (value, 0, STRING)))

    async def run() -> Reply:
        await core.values.mset(dict(pairs))
        return OK

    return Op(run=run)


@command("MSETNX", -3, write=True)
def msetnx(core: Commands, args: list[bytes]) -> Op:
    pairs = list(dict(_pairs(args, "msetnx")).items())
    if len(pairs) == 1:
        key, value = pairs[0]
        return Op(key, change=lambda c: (0, None) if c is not None else (1, (value, 0, STRING)))

    async def run() -> Reply:
        return await claim_all(core, pairs)

    return Op(run=run)


@command("APPEND", 3, write=True)
def append(core: Commands, args: list[bytes]) -> Op:
    value = args[1]

    def change(current: Live) -> tuple[Reply, Change]:
        old = string_of(current) or b""
        new = _check_size(old + value)
        return len(new), (new, current[1] if current is not None else 0, STRING)

    return Op(key_of(args[0]), change=change)


@command("STRLEN", 2)
def strlen(core: Commands, args: list[bytes]) -> Op:
    return Op(key_of(args[0]), read=lambda current: len(string_of(current) or b""))


@command("SUBSTR", 4)
@command("GETRANGE", 4)
def getrange(core: Commands, args: list[bytes]) -> Op:
    start, end = parse_int(args[1]), parse_int(args[2])

    def read(current: Live) -> Reply:
        value = string_of(current) or b""
        n = len(value)
        if start < 0 and end < 0 and start > end:
            return b""
        lo = max(0, n + start) if start < 0 else start
        hi = max(0, n + end) if end < 0 else end
        hi = min(hi, n - 1)
        if lo > hi or n == 0:
            return b""
        return value[lo : hi + 1]

    return Op(key_of(args[0]), read=read)


@command("SETRANGE", 4, write=True)
def setrange(core: Commands, args: list[bytes]) -> Op:
    offset = parse_int(args[1])
    value = args[2]
    if offset < 0:
        raise err("offset is out of range")

    def change(current: Live) -> tuple[Reply, Change]:
        old = string_of(current) or b""  # as Redis: the type, then (if writing) the size
        if not value:
            return len(old), None
        if offset + len(value) > MAX_STRING_BYTES:
            raise err("string exceeds maximum allowed size (proto-max-bulk-len)")
        padded = old.ljust(offset, b"\x00")
        new = padded[:offset] + value + padded[offset + len(value) :]
        return len(new), (new, current[1] if current is not None else 0, STRING)

    return Op(key_of(args[0]), change=change)


def _increment(core: Commands, raw_key: bytes, by: int) -> Op:
    def change(current: Live) -> tuple[Reply, Change]:
        old = string_of(current)
        number = 0 if old is None else parse_int(old)
        new = number + by
        if not INT_MIN <= new <= INT_MAX:
            raise err(OVERFLOW)
        return new, (str(new).encode(), current[1] if current is not None else 0, STRING)

    return Op(key_of(raw_key), change=change)


@command("INCR", 2, write=True)
def incr(core: Commands, args: list[bytes]) -> Op:
    return _increment(core, args[0], 1)


@command("DECR", 2, write=True)
def decr(core: Commands, args: list[bytes]) -> Op:
    return _increment(core, args[0], -1)


@command("INCRBY", 3, write=True)
def incrby(core: Commands, args: list[bytes]) -> Op:
    return _increment(core, args[0], parse_int(args[1]))


@command("DECRBY", 3, write=True)
def decrby(core: Commands, args: list[bytes]) -> Op:
    by = parse_int(args[1])
    if by == INT_MIN:
        raise err("decrement would overflow")
    return _increment(core, args[0], -by)


@command("INCRBYFLOAT", 3, write=True)
def incrbyfloat(core: Commands, args: list[bytes]) -> Op:
    by = parse_float(args[1])

    def change(current: Live) -> tuple[Reply, Change]:
        old = string_of(current)
        number = 0.0 if old is None else parse_float(old, allow_inf=False)
        new = number + by
        if math.isnan(new) or math.isinf(new):
            raise err("increment would produce NaN or Infinity")
        text = fmt_incrbyfloat(new)
        return text, (text, current[1] if current is not None else 0, STRING)

    return Op(key_of(args[0]), change=change)


async def claim_all(core: Commands, pairs: list[tuple[str, bytes]]) -> int:
    """MSETNX on several keys: a conditional create of each key in turn; if one exists,
    the ones created are removed again by compare-and-delete (never a concurrent writer's
    newer value). Readers may see some of the keys meanwhile: all-or-nothing in the end,
    not isolated."""
    blob = core.ctx.blob
    made: list[tuple[str, str]] = []
    ok = True
    for key, value in pairs:
        path = core.values.path(key)
        data = codec.encode(value, bind=path)
        try:
            tag = await core.ctx.commit([path], functools.partial(blob.put_if_absent, path, data))
        except AmbiguousWriteError:
            found = await blob.get(path)
            tag = found.tag if found is not None and found.data == data else None
        if tag is None:
            (live,) = await core.values.load(core.values.plan([key]))
            if live is not None:  # present (an expired object does not count)
                ok = False
                break
            stored = await blob.get(path)
            tag = None
            if stored is not None:
                swap = functools.partial(blob.put_if_match, path, data, stored.tag)
                tag = await core.ctx.commit([path], swap)
            if tag is None:
                ok = False
                break
        made.append((path, tag))
    if not ok:
        for path, tag in made:
            await core.ctx.commit([path], functools.partial(blob.delete_if_match, path, tag))
        return 0
    return 1


__all__ = ["CommandError", "claim_all", "string_of"]
