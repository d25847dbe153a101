"""Lists on the append logs: RPUSH/RPUSHX, LRANGE, LLEN, LINDEX, LTRIM, LPOP.

A list is a value object of type ``list`` (its *head*: which incarnation of the list's
log holds the records, and when the list expires) plus that log,
``{base}list/{enc(key)}/{incarnation}/log/items~/`` (:meth:`kvstore.layout.Layout.list_log`).

* **RPUSH** reads the head (cached) and appends to the log: one conditional PUT, group
  committed with this process's concurrent pushes; the first push also creates the head
  (a conditional create). Safe with any number of pushers in any number of processes.
* **LPOP** claims each record it returns by the conditional create of the log's mark past
  it: no two poppers ever get the same record (:meth:`kvstore.logs.cleanup.LogCleanup.pop`).
* **LTRIM** drops records from the head (a mark); it cannot drop the tail of an append log
  atomically, so an LTRIM whose end leaves records at the tail is refused.
* **DEL** drops the head, then marks the log removed; a push that raced the delete lands
  in the old incarnation, never in a list created afterwards. SET, RENAME onto a list,
  and expiry replace or drop the head and leave the old log behind: ``fsck`` reports such
  logs as orphans (never deleted).
* An empty list does not exist (as in Redis): TYPE, EXISTS and KEYS check its length.

Refused with a clear error, because an append log cannot do them atomically: LPUSH,
LPUSHX, RPOP, LSET, LREM, LINSERT, LMOVE, RPOPLPUSH, LPOS, and the blocking pops.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import msgpack

from .. import codec
from ..context import StoreContext
from ..errors import CorruptDataError
from ..layout import INCARNATION_CHARS, LIST_LOG_KEY
from ..logs import Logs, incarnations
from ..logs import limits as log_limits
from .core import Live, Op, command, expect, key_of, raw_key
from .reply import OK, CommandError, Reply, err, parse_int

if TYPE_CHECKING:
    from . import Commands

LIST = codec.LIST
LOGS_KEPT = 1024
PUSH_BATCH = log_limits.CHUNK_MAX_RECORDS
"""Records per log append: a longer RPUSH is several appends (each atomic; another
pusher's records may fall between them)."""


class ListHead:
    """A decoded head: the incarnation and the key the list was created under (its log's
    place; RENAME moves the head and leaves the records where they are)."""

    __slots__ = ("incarnation", "origin")

    def __init__(self, incarnation: str, origin: str) -> None:
        self.incarnation = incarnation
        self.origin = origin

    @classmethod
    def new(cls, key: str) -> ListHead:
        return cls(secrets.token_hex(INCARNATION_CHARS // 2), key)

    def to_bytes(self) -> bytes:
        packed: bytes = msgpack.packb([self.incarnation, raw_key(self.origin)])
        return packed

    @classmethod
    def from_bytes(cls, payload: bytes) -> ListHead:
        try:
            incarnation, origin = msgpack.unpackb(payload, raw=False)
            return cls(str(incarnation), bytes(origin).decode("utf-8", "surrogateescape"))
        except Exception as exc:
            raise CorruptDataError(f"undecodable list head: {exc}") from exc


class ListLogs:
    """The logs of the lists of one store view, one :class:`Logs` per incarnation."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx
        self._logs: dict[tuple[str, str], Logs] = {}

    def of(self, head: ListHead) -> Logs:
        slot = (head.origin, head.incarnation)
        found = self._logs.get(slot)
        if found is None:
            if len(self._logs) >= LOGS_KEPT:
                self._logs.clear()
            layout = self.ctx.layout.list_log(head.origin, head.incarnation)
            found = self._logs[slot] = Logs(StoreContext(self.ctx.resources, layout))
        return found

    async def length(self, head: ListHead) -> int:
        return await self.of(head).length(LIST_LOG_KEY)

    async def remove(self, head: ListHead) -> None:
        """Delete the list's records and mark its incarnation gone: once old, every object
        of it is removed by ``purge``/``maintain`` (:mod:`kvstore.logs.incarnations`)."""
        await self.of(head).delete(LIST_LOG_KEY)
        layout = self.ctx.layout.list_log(head.origin, head.incarnation)
        await incarnations.mark_gone(self.ctx, layout)


def head_of(current: Live) -> ListHead | None:
    """The list's head, None if the key is missing; WRONGTYPE for another type."""
    if not expect(current, LIST):
        return None
    assert current is not None
    return ListHead.from_bytes(current[0])


async def read_head(core: Commands, key: str, write: bool = False) -> ListHead | None:
    """The list's head. For a read, through the cache. For a write (push, pop, trim) the
    cache must be coherent across processes - a Redis cache is; the local cache is not,
    and a push into a list another process deleted a moment ago would be acknowledged and
    lost - so without a shared cache a write reads the head from the object store."""
    if write and not core.ctx.cache.shared:
        return head_of(await core.values.read_fresh(key))
    (current,) = await core.values.load(core.values.plan([key]))
    return head_of(current)


async def make_head(core: Commands, key: str) -> ListHead:
    """The list's head, created (conditional create) if the key is missing."""
    found = await read_head(core, key, write=True)
    if found is not None:
        return found
    fresh = ListHead.new(key)

    def change(current: Live) -> tuple[ListHead, codec.Live | None]:
        head = head_of(current)
        if head is not None:
            return head, None
        return fresh, (fresh.to_bytes(), 0, LIST)

    return await core.values.update(key, change)


async def _revive(core: Commands, key: str, head: ListHead) -> None:
    """A push onto an emptied list whose head still has a TTL: in Redis the emptied list
    was deleted with its TTL and the push makes a new one, so the TTL goes (the
    incarnation stays: a concurrent pusher may already be appending to it)."""
    (current,) = await core.values.load(core.values.plan([key]))
    if current is None or current[1] == 0 or await core.lists.length(head) > 0:
        return
    payload = current[0]

    def persist(now: Live) -> tuple[None, codec.Live | None]:
        if now is None or now[0] != payload or now[1] == 0:
            return None, None
        return None, (now[0], 0, LIST)

    await core.values.update(key, persist)


def _refuse(name: str, why: str) -> None:
    @command(name, -1, write=True)
    def refused(core: Commands, args: list[bytes]) -> Op:
        raise err(
            f"{name} is not supported: a kvstore list is an append log in the object store "
            f"(RPUSH adds at the tail, LPOP and LTRIM remove from the head); {why}"
        )


for _name in ("LPUSH", "LPUSHX", "LINSERT", "LSET", "LREM"):
    _refuse(_name, "changing its head or middle would rewrite immutable chunks")
for _name in ("RPOP", "RPOPLPUSH", "LMOVE", "LMPOP"):
    _refuse(_name, "removing from the tail cannot be made atomic with concurrent pushes")
for _name in ("BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BLMPOP"):
    _refuse(_name, "blocking pops need server push, which an object store cannot give")
_refuse("LPOS", "read the list with LRANGE and search it")


def _push(core: Commands, args: list[bytes], create: bool) -> Op:
    key = key_of(args[0])
    items = args[1:]

    async def run() -> Reply:
        if create:
            head = await make_head(core, key)
            await _revive(core, key, head)
        else:
            found = await read_head(core, key, write=True)
            if found is None or await core.lists.length(found) == 0:
                return 0
            head = found
        logs = core.lists.of(head)
        length = 0
        for i in range(0, len(items), PUSH_BATCH):  # a log chunk holds at most PUSH_BATCH
            length = await logs.append(LIST_LOG_KEY, items[i : i + PUSH_BATCH])
        return length

    return Op(run=run)


@command("RPUSH", -3, write=True)
def rpush(core: Commands, args: list[bytes]) -> Op:
    return _push(core, args, True)


@command("RPUSHX", -3, write=True)
def rpushx(core: Commands, args: list[bytes]) -> Op:
    return _push(core, args, False)


@command("LLEN", 2)
def llen(core: Commands, args: list[bytes]) -> Op:
    key = key_of(args[0])

    async def run() -> Reply:
        head = await read_head(core, key)
        return 0 if head is None else await core.lists.length(head)

    return Op(run=run)


@command("LRANGE", 4)
def lrange(core: Commands, args: list[bytes]) -> Op:
    key = key_of(args[0])
    start, end = parse_int(args[1]), parse_int(args[2])

    async def run() -> Reply:
        head = await read_head(core, key)
        if head is None:
            return []
        return list(await core.lists.of(head).range(LIST_LOG_KEY, start, end))

    return Op(run=run)


@command("LINDEX", 3)
def lindex(core: Commands, args: list[bytes]) -> Op:
    key = key_of(args[0])
    index = parse_int(args[1])

    async def run() -> Reply:
        head = await read_head(core, key)
        if head is None:
            return None
        found = await core.lists.of(head).range(LIST_LOG_KEY, index, index)
        return found[0] if found else None

    return Op(run=run)


@command("LTRIM", 4, write=True)
def ltrim(core: Commands, args: list[bytes]) -> Op:
    key = key_of(args[0])
    start, end = parse_int(args[1]), parse_int(args[2])

    async def run() -> Reply:
        head = await read_head(core, key, write=True)
        if head is None:
            return OK
        logs = core.lists.of(head)
        length = await logs.length(LIST_LOG_KEY)
        lo = max(0, length + start) if start < 0 else start
        hi = length + end if end < 0 else end
        if lo > hi or lo >= length:
            await logs.trim(LIST_LOG_KEY, length)  # everything goes: the list is empty
        elif hi >= length - 1:
            await logs.trim(LIST_LOG_KEY, lo)
        else:
            raise err(
                "LTRIM that drops records at the tail is not supported: a kvstore list is an "
                "append log (keep the tail: LTRIM key start -1)"
            )
        return OK

    return Op(run=run)


@command("LPOP", -2, write=True)
def lpop(core: Commands, args: list[bytes]) -> Op:
    key = key_of(args[0])
    if len(args) > 2:
        raise err("syntax error")
    count: int | None = None
    if len(args) == 2:
        count = parse_int(args[1], "value is out of range, must be positive")
        if count < 0:
            raise err("value is out of range, must be positive")

    async def run() -> Reply:
        head = await read_head(core, key, write=True)
        if head is None:
            return None
        if count == 0:
            return [] if await core.lists.length(head) else None
        popped = await core.lists.of(head).pop(LIST_LOG_KEY, 1 if count is None else count)
        if count is None:
            return popped[0] if popped else None
        return list(popped) if popped else None

    return Op(run=run)


__all__ = ["CommandError", "ListHead", "ListLogs", "head_of", "make_head", "read_head"]
