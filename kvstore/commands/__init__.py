"""The command layer: Redis's data types and commands on object storage.

One layer behind every Redis-speaking face - :class:`kvstore.Redis` /
:class:`kvstore.AsyncRedis` (redis-py's interface) and the RESP server: a command arrives
as Redis's wire arguments (``[b"HSET", b"k", b"f", b"v"]``) and leaves as Redis's reply
(:mod:`.reply`), or a :class:`~.reply.CommandError` carrying Redis's error message.

The key space is typed (docs/architecture.md, "The Redis data model"): every key is one
value object holding one type - string, hash, set, sorted set, or the head of a list whose
records are an append log - so a command on the wrong type fails with WRONGTYPE, and the
key-space commands (TYPE, DEL, EXPIRE, KEYS, SCAN ...) work on every type. The native
:class:`kvstore.KVStore` values are this key space's strings.

One module per family: :mod:`.keyspace`, :mod:`.strings`, :mod:`.hashes`, :mod:`.sets`,
:mod:`.zsets`, :mod:`.lists`; :mod:`.core` runs commands and transactions;
:mod:`.collections` is how a hash, set or sorted set is stored, and its size limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TypeVar

from .. import aio
from ..context import StoreContext
from . import hashes, keyspace, lists, sets, strings, zsets  # noqa: F401  (they register)
from .core import COMMANDS, NOT_NOW, Core, Op, Spec
from .reply import OK, CommandError, Reply, Status, WrongType

T = TypeVar("T")


class Commands(Core):
    """The commands of one store view (the root or a namespace)."""

    def __init__(self, ctx: StoreContext) -> None:
        super().__init__(ctx)
        self.lists = lists.ListLogs(ctx)

    async def list_is_empty(self, head: bytes) -> bool:
        return await self.lists.length(lists.ListHead.from_bytes(head)) == 0

    async def bounded(self, tasks: Sequence[Awaitable[T]]) -> list[T]:
        return await aio.bounded(list(tasks), self.ctx.concurrency)


__all__ = [
    "COMMANDS",
    "NOT_NOW",
    "OK",
    "CommandError",
    "Commands",
    "Op",
    "Reply",
    "Spec",
    "Status",
    "WrongType",
]
