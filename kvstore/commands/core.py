"""The command layer's core: the command table, how one command runs, and transactions.

Every command is parsed from Redis's wire arguments into an :class:`Op`, which says how it
runs against the typed key space (:meth:`kvstore.values.Values.update`):

* ``read(current)`` - a single-key read of the key's typed value (cached);
* ``change(current)`` - a single-key read-modify-write, pure: run under a compare-and-swap
  of the key's object (one conditional PUT when this process holds the current version),
  repeated on conflict, so it is atomic across processes;
* ``run()`` - anything else (several keys, lists, listings): not atomic as a whole.

A transaction (MULTI/EXEC) whose commands all read or change one key runs as *one*
compare-and-swap of that key - atomic like Redis's. Commands on several keys in one
transaction are refused before anything runs (``CROSSSLOT``, as Redis Cluster refuses
them), as is a transaction on a list.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .. import codec
from ..context import StoreContext
from ..keys import key_bytes, key_str
from ..values import DELETE, Change, Values
from .reply import CommandError, Reply, WrongType, err, wrong_args

Live = codec.Live | None


class NotNow:
    """What :meth:`Core.answer_now` returns for a command it cannot answer without
    awaiting (:data:`NOT_NOW`, compared by identity)."""


NOT_NOW = NotNow()
READ_OPS_KEPT = 4096
"""Parsed single-key reads :meth:`Core.answer_now` keeps (hot keys are read again and
again; a parse is a fifth of a cache hit's cost)."""


@dataclasses.dataclass(slots=True)
class Op:
    """A parsed command: exactly one of ``read``, ``change``, ``run`` is set."""

    key: str | None = None
    read: Callable[[Live], Reply] | None = None
    change: Callable[[Live], tuple[Reply, Change]] | None = None
    run: Callable[[], Awaitable[Reply]] | None = None
    alone: Callable[[], Awaitable[Reply]] | None = None
    """A cheaper way to run ``change`` when the command runs alone (a plain SET: one PUT,
    no read); a transaction uses ``change``."""


Parser = Callable[[Any, list[bytes]], Op]


@dataclasses.dataclass(frozen=True, slots=True)
class Spec:
    name: str
    parse: Parser
    arity: int  # Redis's: >= 0 exact (with the name), < 0 at least -arity
    write: bool


COMMANDS: dict[bytes, Spec] = {}


def command(name: str, arity: int, write: bool = False) -> Callable[[Parser], Parser]:
    """Register a parser for a command (``arity`` as Redis's COMMAND reports it)."""

    def register(parse: Parser) -> Parser:
        COMMANDS[name.upper().encode()] = Spec(name.upper(), parse, arity, write)
        return parse

    return register


def key_of(raw: bytes) -> str:
    """A wire key as the store's key (binary-safe: see :mod:`kvstore.keys`)."""
    try:
        return key_str(raw)
    except ValueError as exc:
        raise err(str(exc)) from None


def raw_key(key: str) -> bytes:
    return key_bytes(key)


def expect(current: Live, kind: int) -> bool:
    """True if the key holds ``kind``, False if it is missing; WRONGTYPE otherwise."""
    if current is None:
        return False
    if current[2] != kind:
        raise WrongType()
    return True


class Core:
    """What every command family shares: the store view, its typed values, the table."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx
        self.values = Values(ctx)
        self._read_ops: dict[tuple[bytes, ...], Op] = {}  # answer_now's parsed reads

    def parse(self, args: Sequence[bytes]) -> tuple[Spec, Op]:
        if not args:
            raise err("empty command")
        name = bytes(args[0]).upper()
        spec = COMMANDS.get(name)
        if spec is None:
            shown = args[0].decode("utf-8", "replace")
            raise err(f"unknown command '{shown}', with args beginning with: ")
        n = len(args)
        if (spec.arity >= 0 and n != spec.arity) or (spec.arity < 0 and n < -spec.arity):
            raise wrong_args(spec.name)
        return spec, spec.parse(self, [bytes(a) for a in args[1:]])

    async def execute(self, args: Sequence[bytes]) -> Reply:
        """Run one command given as Redis's wire arguments; raises CommandError."""
        _, op = self.parse(args)
        return await self.run_op(op)

    def answer_now(self, args: Sequence[bytes]) -> Reply | NotNow:
        """One command answered here and now, if it can be without awaiting anything: a
        single-key read whose key the in-process cache holds (``Cache.in_process``).
        The reply is the one :meth:`execute` would give at this instant (the same parse,
        the same cached entry, the same read); ``NOT_NOW`` if the command must run on the
        loop (a write, a miss, several keys, a list whose length must be read). Raises
        CommandError as :meth:`execute` does (a wrong arity, WRONGTYPE). Costs no
        request; a server answers a pipeline of cache hits this way without a task
        switch per command (:mod:`kvstore.resp.session`). The ops of small read commands
        are kept (at most ``READ_OPS_KEPT``), so a hot key is parsed once."""
        memo = self._read_ops
        try:
            op = memo.get(args_key := tuple(args))
        except (TypeError, ValueError):  # (a bytearray or memoryview argument: not kept)
            return self._answer_parsed(self.parse(args)[1])
        if op is None:
            spec, op = self.parse(args)
            if op.read is not None and not spec.write and sum(map(len, args)) <= 512:
                if len(memo) >= READ_OPS_KEPT:
                    memo.clear()
                memo[args_key] = op  # (a parse is pure: the same arguments, the same op)
        return self._answer_parsed(op)

    def _answer_parsed(self, op: Op) -> Reply | NotNow:
        read = op.read
        if read is None or op.alone is not None or op.run is not None:
            return NOT_NOW
        values = self.values
        assert op.key is not None
        found, _ = values.load_now(values.plan([op.key]), on_loop=True)
        if found is None:
            return NOT_NOW
        current = found[0]
        if current is not None and current[2] == codec.LIST:
            # whether the list is empty is in its log: the task reads it again (and counts
            # that hit), so this one is not counted
            self.ctx.stats.add_threadsafe("cache.hits", -1, "cache.hits_in_caller")
            return NOT_NOW
        return read(current)

    async def run_op(self, op: Op) -> Reply:
        if op.alone is not None:
            return await op.alone()
        if op.run is not None:
            return await op.run()
        key = op.key
        assert key is not None
        read, change = op.read, op.change
        seen = Seen(self)
        while True:
            try:
                if read is not None:
                    # a cache hit is answered here, without awaiting (the in-process
                    # cache answers in the caller); otherwise through the loop
                    values = self.values
                    plan = values.plan([key])
                    found, known = values.load_now(plan, on_loop=True)
                    if found is None:
                        found = await values.load(plan, known)
                    return read(seen(found[0]))
                assert change is not None
                return await self.values.update(key, lambda c: change(seen(c)))
            except _ListLength as need:
                await seen.learn(need.head)

    async def visible(self, keys: list[str]) -> list[Live]:
        """The live values of ``keys`` (cached reads), an empty list counting as missing."""
        found = await self.values.load(self.values.plan(keys))
        out: list[Live] = []
        for current in found:
            if (
                current is not None
                and current[2] == codec.LIST
                and await self.list_is_empty(current[0])
            ):
                current = None
            out.append(current)
        return out

    async def list_is_empty(self, head: bytes) -> bool:
        """Whether the list whose head object holds ``head`` has no records (the command
        layer's lists override this)."""
        return False

    async def transaction(
        self,
        commands: Sequence[Sequence[bytes]],
        precondition: Callable[[Live], object] | None = None,
    ) -> list[Reply]:
        """MULTI ... EXEC: every command reads or changes one and the same key, and the
        whole runs as one compare-and-swap of it (atomic across processes). A command
        that fails (WRONGTYPE, not an integer) gives its error in its place, as in Redis;
        a transaction Redis would refuse (an unknown command, wrong arity) or that touches
        several keys or a list raises before anything runs. ``precondition(current)``
        runs first, inside the compare-and-swap (WATCH: it raises to abort)."""
        ops: list[Op] = []
        for args in commands:
            try:
                ops.append(self.parse(args)[1])
            except CommandError as exc:
                raise CommandError(
                    f"EXECABORT Transaction discarded because of previous errors: {exc}"
                ) from None
        if not ops:
            return []
        keys = {op.key for op in ops}
        if len(keys) != 1 or None in keys or any(op.run is not None for op in ops):
            raise CommandError(
                "CROSSSLOT a transaction's commands must all read or write one key "
                "(each key is one object; kvstore, like Redis Cluster, cannot make several "
                "atomic together, and a list's log cannot join a transaction)"
            )
        (key,) = keys
        assert key is not None
        seen = Seen(self)
        while True:
            try:
                return await self._transaction(key, ops, precondition, seen)
            except _ListLength as need:
                await seen.learn(need.head)

    async def _transaction(
        self,
        key: str,
        ops: list[Op],
        precondition: Callable[[Live], object] | None,
        seen: Seen,
    ) -> list[Reply]:
        if all(op.read is not None for op in ops):
            (current,) = await self.values.load(self.values.plan([key]))
            if precondition is not None:
                precondition(current)
            visible = seen(current)
            reads = [op.read for op in ops if op.read is not None]
            return [_reply_of(functools.partial(read, visible)) for read in reads]

        def composed(current: Live) -> tuple[list[Reply], Change]:
            if precondition is not None:
                precondition(current)
            replies: list[Reply] = []
            state: Live = seen(current)
            changed = False
            for op in ops:
                if op.read is not None:
                    replies.append(_reply_of(functools.partial(op.read, state)))
                    continue
                assert op.change is not None
                try:
                    reply, new = op.change(state)
                except CommandError as exc:
                    replies.append(exc)
                    continue
                replies.append(reply)
                if new is not None:
                    changed = True
                    state = None if new is DELETE else new  # type: ignore[assignment]
            if not changed:
                return replies, None
            return replies, (DELETE if state is None else state)

        return await self.values.update(key, composed)

    async def watch(self, raw: bytes) -> tuple[str, Live]:
        """WATCH of one wire key: its name and the value seen now (a cached read)."""
        name = key_of(raw)
        (current,) = await self.values.load(self.values.plan([name]))
        return name, current

    async def watched_transaction(
        self, commands: Sequence[Sequence[bytes]], watched: dict[str, Live]
    ) -> list[Reply] | None:
        """MULTI ... EXEC after WATCH: :meth:`transaction`, run only if every watched key
        still holds what WATCH saw - checked inside the transaction's compare-and-swap, so
        atomic across processes. None (nothing ran) if one changed. One key can be watched
        (each key is one object: several cannot be checked together), and the
        transaction must be on it; otherwise CROSSSLOT before anything runs."""
        if not watched:
            return await self.transaction(commands)
        if len(watched) > 1:
            raise CommandError(
                "CROSSSLOT WATCH of several keys cannot be checked atomically (each key is "
                "one object); watch the one key the transaction changes"
            )
        ((key, seen),) = watched.items()
        if not commands:
            (now,) = await self.values.load(self.values.plan([key]))
            return None if now != seen else []
        ops = [self.parse(c)[1] for c in commands]
        if any(op.key != key for op in ops):
            raise CommandError(
                "CROSSSLOT a watched transaction must change the key it watches (each key is "
                "one object; kvstore cannot make several atomic together)"
            )

        def check(current: Live) -> None:
            if current != seen:
                raise _Changed()

        try:
            return await self.transaction(commands, precondition=check)
        except _Changed:
            return None


class _Changed(Exception):
    """A watched key changed before EXEC."""


class _ListLength(Exception):
    """A single-key command met a list: whether it is empty must be read first."""

    def __init__(self, head: bytes) -> None:
        self.head = head


class Seen:
    """What a single-key command sees of a key: an empty list is no key at all, as in
    Redis (a list's head object stays when LPOP or LTRIM empty its log: deleting it could
    lose a concurrent push). A list's emptiness needs its log, so the command is run
    again once it is known (a cached plan read; only for keys that hold a list)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.empty: dict[bytes, bool] = {}

    def __call__(self, current: Live) -> Live:
        if current is None or current[2] != codec.LIST:
            return current
        empty = self.empty.get(current[0])
        if empty is None:
            raise _ListLength(current[0])
        return None if empty else current

    async def learn(self, head: bytes) -> None:
        self.empty[head] = await self.core.list_is_empty(head)


def _reply_of(read: Callable[[], Reply]) -> Reply:
    try:
        return read()
    except CommandError as exc:
        return exc
