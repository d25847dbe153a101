"""The key space: TYPE, EXISTS, DEL/UNLINK, the expiry commands, KEYS, SCAN, RENAME,
DBSIZE, FLUSHDB, and the connection commands that need no server (PING, ECHO).

Every type lives in one object per key (``{base}kv/{enc(key)}``), so these commands work
the same on every type; a list's records are deleted behind its head.

* **Expiry** (EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT with NX/XX/GT/LT, PERSIST) is a
  compare-and-swap of the key's object: atomic. An expired key is invisible at once.
* **KEYS and SCAN** list the object store (one LIST per 1000 keys, narrowed to the
  pattern's literal prefix) and read each candidate's value through the cache, so an
  expired key, an empty list, or a key of another TYPE is never returned. A SCAN cursor
  is a listing in progress kept by this process (``SCAN_CURSORS_KEPT``): listings are in
  key order and resume where they stopped, so a key that exists for the whole scan is
  returned exactly once; one created or deleted meanwhile may or may not be.
* **RENAME** writes the destination, then deletes the source (compare-and-delete on the
  version copied): not atomic - a reader may see both for a moment - but nothing is lost.
* **FLUSHDB/FLUSHALL** delete every key of this store view (its namespace), nothing else.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from .. import codec
from ..values import DELETE, Change
from .core import Live, Op, command, key_of, raw_key
from .glob import literal_prefix, matches
from .lists import ListHead, head_of
from .reply import NOT_INTEGER, OK, SYNTAX, CommandError, Reply, Status, err, parse_int

if TYPE_CHECKING:
    from . import Commands

SCAN_CURSORS_KEPT = 10_000
DEFAULT_COUNT = 10
TYPES = {name.encode(): kind for kind, name in codec.KIND_NAMES.items()}


# -- existence, types ---------------------------------------------------------------------


@command("TYPE", 2)
def type_(core: Commands, args: list[bytes]) -> Op:
    def read(current: Live) -> Reply:  # an empty list is None here (core.Seen)
        return Status(b"none" if current is None else codec.KIND_NAMES[current[2]].encode())

    return Op(key_of(args[0]), read=read)


@command("EXISTS", -2)
def exists(core: Commands, args: list[bytes]) -> Op:
    keys = [key_of(a) for a in args]
    if len(keys) == 1:  # one key: a read, so a transaction on that key may hold it
        return Op(keys[0], read=lambda current: int(current is not None))

    async def run() -> Reply:
        unique = list(dict.fromkeys(keys))
        found = dict(zip(unique, await core.visible(unique), strict=True))
        return sum(found[k] is not None for k in keys)

    return Op(run=run)


async def delete(core: Commands, key: str) -> bool:
    """Remove a key of any type; True if it existed (a list: with records)."""

    def take(current: Live) -> tuple[Live, Change]:
        return current, (None if current is None else DELETE)

    old = await core.values.update(key, take)
    if old is None:
        return False
    if old[2] == codec.LIST:
        head = ListHead.from_bytes(old[0])
        held = await core.lists.length(head) > 0
        await core.lists.remove(head)
        return held
    return True


@command("UNLINK", -2, write=True)
@command("DEL", -2, write=True)
def del_(core: Commands, args: list[bytes]) -> Op:
    keys = list(dict.fromkeys(key_of(a) for a in args))

    async def run() -> Reply:
        return sum(await core.bounded([delete(core, k) for k in keys]))

    if len(keys) > 1:
        return Op(run=run)

    def change(current: Live) -> tuple[Reply, Change]:
        """DEL inside a transaction on its key (a list's log cannot join one)."""
        if current is None:
            return 0, None
        if current[2] == codec.LIST:
            raise CommandError(
                "CROSSSLOT a transaction cannot delete a list (its records are a log of their "
                "own); DEL it outside the transaction"
            )
        return 1, DELETE

    return Op(keys[0], change=change, alone=run)


# -- expiry -------------------------------------------------------------------------------


def _expire(name: str, unit_ms: int, absolute: bool) -> None:
    @command(name, -3, write=True)
    def expire(core: Commands, args: list[bytes]) -> Op:
        key = key_of(args[0])
        amount = parse_int(args[1])
        flags = set()
        for raw in args[2:]:
            if raw.upper() not in (b"NX", b"XX", b"GT", b"LT"):
                raise err(f"Unsupported option {raw.decode('utf-8', 'replace')}")
            flags.add(raw.upper())
        nx, xx, gt, lt = (f in flags for f in (b"NX", b"XX", b"GT", b"LT"))
        if nx and (xx or gt or lt):
            raise err("NX and XX, GT or LT options at the same time are not compatible")
        if gt and lt:
            raise err("GT and LT options at the same time are not compatible")
        try:
            ms = amount * unit_ms
        except OverflowError:
            ms = 2**63
        clock = core.ctx.clock
        if abs(ms) > 2**62 or (not absolute and abs(clock() + ms) > 2**62):
            raise err(f"invalid expire time in '{name.lower()}' command")

        def change(current: Live) -> tuple[Reply, Change]:
            if current is None:
                return 0, None
            at = ms if absolute else clock() + ms
            now_ttl = current[1] or None
            if (nx and now_ttl is not None) or (xx and now_ttl is None):
                return 0, None
            if gt and (now_ttl is None or at <= now_ttl):
                return 0, None
            if lt and now_ttl is not None and at >= now_ttl:
                return 0, None
            if at <= clock():
                return 1, DELETE
            return 1, (current[0], at, current[2])

        return Op(key, change=change)


_expire("EXPIRE", 1000, False)
_expire("PEXPIRE", 1, False)
_expire("EXPIREAT", 1000, True)
_expire("PEXPIREAT", 1, True)


@command("PERSIST", 2, write=True)
def persist(core: Commands, args: list[bytes]) -> Op:
    def change(current: Live) -> tuple[Reply, Change]:
        if current is None or current[1] == 0:
            return 0, None
        return 1, (current[0], 0, current[2])

    return Op(key_of(args[0]), change=change)


def _ttl(name: str, read: str) -> None:
    @command(name, 2)
    def ttl(core: Commands, args: list[bytes]) -> Op:
        clock = core.ctx.clock

        def answer(current: Live) -> Reply:
            if current is None:
                return -2
            if current[1] == 0:
                return -1
            if read == "pttl":
                return max(0, current[1] - clock())
            if read == "ttl":
                return max(0, (current[1] - clock() + 500) // 1000)
            if read == "pexpiretime":
                return current[1]
            return current[1] // 1000

        return Op(key_of(args[0]), read=answer)


_ttl("TTL", "ttl")
_ttl("PTTL", "pttl")
_ttl("EXPIRETIME", "expiretime")
_ttl("PEXPIRETIME", "pexpiretime")


# -- listing ------------------------------------------------------------------------------


async def candidates(core: Commands, pattern: bytes) -> AsyncIterator[list[str]]:
    """Pages of stored keys whose names match ``pattern`` (not yet checked for expiry)."""
    prefix = literal_prefix(pattern)
    async for page in core.values.scan_pages(prefix.decode("utf-8", "surrogateescape")):
        yield [k for k in page if matches(pattern, raw_key(k))]


async def live_keys(core: Commands, keys: list[str], kind: int | None) -> list[bytes]:
    found = await core.visible(keys)
    return [
        raw_key(k)
        for k, v in zip(keys, found, strict=True)
        if v is not None and (kind is None or v[2] == kind)
    ]


@command("KEYS", 2)
def keys_(core: Commands, args: list[bytes]) -> Op:
    pattern = args[0]

    async def run() -> Reply:
        out: list[Reply] = []
        async for page in candidates(core, pattern):
            out.extend(await live_keys(core, page, None))
        return out

    return Op(run=run)


class Cursors:
    """SCAN cursors of one store: listings in progress, by number (LRU)."""

    def __init__(self) -> None:
        self.numbers = itertools.count(random.randrange(1, 1 << 20))
        self.open: dict[int, tuple[AsyncIterator[list[str]], list[str]]] = {}

    def start(self, pages: AsyncIterator[list[str]]) -> int:
        number = next(self.numbers)
        if len(self.open) >= SCAN_CURSORS_KEPT:
            del self.open[next(iter(self.open))]
        self.open[number] = (pages, [])
        return number


@command("SCAN", -2)
def scan(core: Commands, args: list[bytes]) -> Op:
    cursor = parse_int(args[0], "invalid cursor")
    pattern, count, kind = b"*", DEFAULT_COUNT, None
    i = 1
    while i < len(args):
        opt = args[i].upper()
        if i + 1 >= len(args):
            raise err(SYNTAX)
        if opt == b"MATCH":
            pattern = args[i + 1]
        elif opt == b"COUNT":
            count = parse_int(args[i + 1], NOT_INTEGER)
            if count < 1:
                raise err(SYNTAX)
        elif opt == b"TYPE":
            name = args[i + 1].lower()
            kind = TYPES.get(name, -1)
        else:
            raise err(SYNTAX)
        i += 2

    async def run() -> Reply:
        cursors = core.ctx.state(Cursors)
        if cursor == 0:
            number = cursors.start(candidates(core, pattern))
        elif cursor in cursors.open:
            number = cursor
        else:
            raise err("invalid cursor (a SCAN cursor lives in the process that returned it)")
        pages, buffered = cursors.open.pop(number)
        while len(buffered) < count:
            page = await anext(pages, None)
            if page is None:
                keys = await live_keys(core, buffered, kind)
                return [b"0", keys]
            buffered.extend(page)
        batch, rest = buffered[:count], buffered[count:]
        cursors.open[number] = (pages, rest)
        return [str(number).encode(), await live_keys(core, batch, kind)]

    return Op(run=run)


@command("DBSIZE", 1)
def dbsize(core: Commands, args: list[bytes]) -> Op:
    async def run() -> Reply:
        total = 0
        async for page in candidates(core, b"*"):
            total += len(await live_keys(core, page, None))
        return total

    return Op(run=run)


@command("FLUSHALL", -1, write=True)
@command("FLUSHDB", -1, write=True)
def flushdb(core: Commands, args: list[bytes]) -> Op:
    if any(a.upper() not in (b"ASYNC", b"SYNC") for a in args) or len(args) > 1:
        raise err(SYNTAX)

    async def run() -> Reply:
        async for page in core.values.scan_pages(""):
            await core.bounded([delete(core, k) for k in page])
        return OK

    return Op(run=run)


def _rename(name: str, nx: bool) -> None:
    @command(name, 3, write=True)
    def rename(core: Commands, args: list[bytes]) -> Op:
        source, target = key_of(args[0]), key_of(args[1])

        async def run() -> Reply:
            (current,) = await core.visible([source])
            if current is None:
                raise err("no such key")
            if source == target:
                return 0 if nx else OK
            moved = current

            def put(existing: Live) -> tuple[bool, Change]:
                if nx and existing is not None:
                    return False, None
                return True, moved

            if not await core.values.update(target, put):
                return 0

            def take(now: Live) -> tuple[None, Change]:
                # Remove the source only if it is still what was copied.
                if now is None or now[0] != moved[0] or now[2] != moved[2]:
                    return None, None
                return None, DELETE

            await core.values.update(source, take)
            return 1 if nx else OK

        return Op(run=run)


_rename("RENAME", False)
_rename("RENAMENX", True)


@command("PING", -1)
def ping(core: Commands, args: list[bytes]) -> Op:
    if len(args) > 1:
        raise err("wrong number of arguments for 'ping' command")

    async def run() -> Reply:
        return args[0] if args else Status(b"PONG")

    return Op(run=run)


@command("DISCARD", 1)
def discard(core: Commands, args: list[bytes]) -> Op:
    raise err("DISCARD without MULTI")


@command("TIME", 1)
def time_(core: Commands, args: list[bytes]) -> Op:
    """The store's clock (this process's: there is no server), as Redis's [s, us]."""

    async def run() -> Reply:
        ms = core.ctx.clock()
        return [str(ms // 1000).encode(), str((ms % 1000) * 1000).encode()]

    return Op(run=run)


@command("ECHO", 2)
def echo(core: Commands, args: list[bytes]) -> Op:
    async def run() -> Reply:
        return args[0]

    return Op(run=run)


def _unsupported(name: str, why: str) -> None:
    @command(name, -1)
    def unsupported(core: Commands, args: list[bytes]) -> Op:
        raise err(f"{name} is not supported by kvstore: {why}")


for _name in ("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "SCRIPT", "FUNCTION"):
    _unsupported(_name, "scripts would need a server that runs them next to the data")
for _name in ("PUBLISH", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE"):
    _unsupported(_name, "pub/sub needs server push, which an object store cannot give")
_unsupported("MOVE", "use a namespace (kvstore.open(...).namespace(name))")
_unsupported("SELECT", "use a namespace (kvstore.open(...).namespace(name))")

__all__ = ["CommandError", "delete", "head_of"]
