"""Sets: SADD/SREM/SMEMBERS/SISMEMBER/SMISMEMBER/SCARD/SPOP/SRANDMEMBER/SSCAN, the reads
SINTER/SUNION/SDIFF/SINTERCARD, the stores SINTERSTORE/SUNIONSTORE/SDIFFSTORE, and SMOVE.

A set is one value object (:mod:`.collections`); each single-key write is a
compare-and-swap of it (atomic across processes). The multi-key commands read their
sources (cached, concurrently) and then write one destination: each step is atomic, the
whole is not isolated from concurrent writers. SMOVE adds to the destination, then removes
from the source: a crash between leaves the member in both, never in neither.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from .. import codec
from ..values import DELETE, Change
from .collections import dump_set, load_set
from .core import Live, Op, command, expect, key_of
from .reply import Reply, err, parse_int
from .scanning import scan_items

if TYPE_CHECKING:
    from . import Commands

SET = codec.SET


def set_of(current: Live) -> set[bytes]:
    if not expect(current, SET):
        return set()
    assert current is not None
    return load_set(current[0])


def _written(current: Live, members: set[bytes]) -> Change:
    if not members:
        return DELETE if current is not None else None
    return dump_set(members), (current[1] if current is not None else 0), SET


@command("SADD", -3, write=True)
def sadd(core: Commands, args: list[bytes]) -> Op:
    new = set(args[1:])

    def change(current: Live) -> tuple[Reply, Change]:
        members = set_of(current)
        added = len(new - members)
        if not added:
            return 0, None
        return added, _written(current, members | new)

    return Op(key_of(args[0]), change=change)


@command("SREM", -3, write=True)
def srem(core: Commands, args: list[bytes]) -> Op:
    gone = set(args[1:])

    def change(current: Live) -> tuple[Reply, Change]:
        members = set_of(current)
        removed = len(members & gone)
        if not removed:
            return 0, None
        return removed, _written(current, members - gone)

    return Op(key_of(args[0]), change=change)


@command("SMEMBERS", 2)
def smembers(core: Commands, args: list[bytes]) -> Op:
    return Op(key_of(args[0]), read=lambda current: sorted(set_of(current)))


@command("SISMEMBER", 3)
def sismember(core: Commands, args: list[bytes]) -> Op:
    member = args[1]
    return Op(key_of(args[0]), read=lambda current: int(member in set_of(current)))


@command("SMISMEMBER", -3)
def smismember(core: Commands, args: list[bytes]) -> Op:
    wanted = args[1:]

    def read(current: Live) -> Reply:
        members = set_of(current)
        return [int(m in members) for m in wanted]

    return Op(key_of(args[0]), read=read)


@command("SCARD", 2)
def scard(core: Commands, args: list[bytes]) -> Op:
    return Op(key_of(args[0]), read=lambda current: len(set_of(current)))


def _count(args: list[bytes], name: str) -> int | None:
    if len(args) > 2:
        raise err("syntax error")
    if len(args) < 2:
        return None
    return parse_int(args[1], "value is out of range, must be positive")


@command("SPOP", -2, write=True)
def spop(core: Commands, args: list[bytes]) -> Op:
    count = _count(args, "spop")
    if count is not None and count < 0:
        raise err("value is out of range, must be positive")

    def change(current: Live) -> tuple[Reply, Change]:
        members = set_of(current)
        if count is None:
            if not members:
                return None, None
            member = random.choice(sorted(members))
            return member, _written(current, members - {member})
        if not members:
            return [], None
        taken = random.sample(sorted(members), min(count, len(members)))
        if not taken:
            return [], None
        return list(taken), _written(current, members - set(taken))

    return Op(key_of(args[0]), change=change)


@command("SRANDMEMBER", -2)
def srandmember(core: Commands, args: list[bytes]) -> Op:
    count = _count(args, "srandmember")

    def read(current: Live) -> Reply:
        members = sorted(set_of(current))
        if count is None:
            return random.choice(members) if members else None
        if count >= 0:
            return random.sample(members, min(count, len(members)))
        return [random.choice(members) for _ in range(-count)] if members else []

    return Op(key_of(args[0]), read=read)


@command("SSCAN", -3)
def sscan(core: Commands, args: list[bytes]) -> Op:
    return scan_items(core, args, lambda current: [(m, [m]) for m in sorted(set_of(current))])


async def _sets(core: Commands, keys: list[str]) -> list[set[bytes]]:
    found = await core.visible(keys)
    return [set_of(current) for current in found]


def _combine(name: str, sets: list[set[bytes]]) -> set[bytes]:
    first, rest = sets[0], sets[1:]
    if name == "SINTER":
        return first.intersection(*rest)
    if name == "SUNION":
        return first.union(*rest)
    return first.difference(*rest)


def _algebra(name: str) -> None:
    @command(name, -2)
    def read(core: Commands, args: list[bytes]) -> Op:
        keys = [key_of(a) for a in args]

        async def run() -> Reply:
            return sorted(_combine(name, await _sets(core, keys)))

        return Op(run=run)

    @command(name + "STORE", -3, write=True)
    def store(core: Commands, args: list[bytes]) -> Op:
        target = key_of(args[0])
        keys = [key_of(a) for a in args[1:]]

        async def run() -> Reply:
            result = _combine(name, await _sets(core, keys))

            def change(current: Live) -> tuple[Reply, Change]:
                if not result:
                    return 0, (DELETE if current is not None else None)
                return len(result), (dump_set(result), 0, SET)

            return await core.values.update(target, change)

        return Op(run=run)


for _name in ("SINTER", "SUNION", "SDIFF"):
    _algebra(_name)


@command("SINTERCARD", -3)
def sintercard(core: Commands, args: list[bytes]) -> Op:
    numkeys = parse_int(args[0])
    if numkeys <= 0:
        raise err("numkeys should be greater than 0")
    if len(args) < 1 + numkeys:
        raise err("Number of keys can't be greater than number of args")
    keys = [key_of(a) for a in args[1 : 1 + numkeys]]
    limit = 0
    rest = args[1 + numkeys :]
    if rest:
        if len(rest) != 2 or rest[0].upper() != b"LIMIT":
            raise err("syntax error")
        limit = parse_int(rest[1])
        if limit < 0:
            raise err("LIMIT can't be negative")

    async def run() -> Reply:
        size = len(_combine("SINTER", await _sets(core, keys)))
        return min(size, limit) if limit else size

    return Op(run=run)


@command("SMOVE", 4, write=True)
def smove(core: Commands, args: list[bytes]) -> Op:
    source, target, member = key_of(args[0]), key_of(args[1]), args[2]

    async def run() -> Reply:
        (src, dst) = await core.visible([source, target])
        if src is None:
            return 0  # as Redis: a missing source first, then both types, then the member
        members = set_of(src)
        set_of(dst)
        if source == target or member not in members:
            return int(member in members)

        def add(current: Live) -> tuple[Reply, Change]:
            members = set_of(current)
            if member in members:
                return 1, None
            return 1, _written(current, members | {member})

        await core.values.update(target, add)

        def remove(current: Live) -> tuple[Reply, Change]:
            members = set_of(current)
            if member not in members:
                return 0, None
            return 1, _written(current, members - {member})

        return await core.values.update(source, remove)

    return Op(run=run)
