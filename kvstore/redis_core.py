"""The core both Redis faces share (:mod:`kvstore.redis_face`): a redis-py command call
becomes wire arguments for kvstore's command layer, and its reply becomes what redis-py
would have returned - decoded, through redis-py's response callbacks - or the exception
redis-py would have raised (which is also a :class:`kvstore.KVStoreError`). Pipelines and
transactions (one key each; WATCH as a precondition inside the compare-and-swap) run here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis._parsers.base import BaseParser
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, RedisError, ResponseError, WatchError

from . import errors
from .api import AsyncKVStore
from .commands import Commands, Op
from .commands.reply import CommandError

Live = tuple[bytes, int, int] | None


_BOTH: dict[tuple[str, str], type[BaseException]] = {}


def _both(redis_class: type[BaseException], ours: type[BaseException]) -> type[BaseException]:
    """An exception class that is redis-py's and kvstore's at once (made once per pair)."""
    slot = (redis_class.__qualname__ + redis_class.__module__, ours.__qualname__ + ours.__module__)
    found = _BOTH.get(slot)
    if found is None:
        found = _BOTH[slot] = type(
            redis_class.__name__, (redis_class, ours), {"__module__": __name__}
        )
    return found


def _as_redis_error(exc: BaseException) -> BaseException:
    """kvstore's error as the exception redis-py would raise (and still kvstore's)."""
    if isinstance(exc, RedisError):
        return exc
    if isinstance(exc, CommandError):
        parsed = BaseParser.parse_error(str(exc))
        ours: type[BaseException] = (
            errors.WrongTypeError if exc.code == "WRONGTYPE" else errors.KVStoreError
        )
        error = _both(type(parsed), ours)(*parsed.args)
        error.status_code = parsed.status_code  # type: ignore[attr-defined]
        return error
    if isinstance(exc, errors.ConfigurationError):
        target: type[BaseException] = DataError
    elif isinstance(exc, errors.BackendError):
        target = RedisConnectionError
    else:
        target = ResponseError
    both = _both(target, type(exc))
    new = both.__new__(both)  # kvstore's own __init__ takes other arguments: fill it in
    new.__dict__.update(target(str(exc)).__dict__)  # redis-py's attributes (error_type)
    new.__dict__.update(exc.__dict__)
    new.args = exc.args
    new.__cause__ = exc.__cause__
    return new


def _plain(reply: Any, decode: bool, encoding: str) -> Any:
    """A command layer reply as redis-py's parser gives it: bytes (str if decoding)."""
    if isinstance(reply, bytes):
        return reply.decode(encoding, "strict") if decode else bytes(reply)
    if isinstance(reply, list):
        return [_plain(r, decode, encoding) for r in reply]
    return reply


class RedisCore:
    """What both faces share: the store, its command layer, and how a command call
    becomes a reply in redis-py's shapes."""

    def __init__(self, store: AsyncKVStore, owned: bool) -> None:
        self.store = store
        self.owned = owned
        self.commands = Commands(store._ctx)

    @staticmethod
    def wire(args: Sequence[Any], encoder: Any) -> list[bytes]:
        """redis-py's encoding of a command's arguments (its first may be two words)."""
        name, *rest = args
        head = name.split() if isinstance(name, str) else [name]
        return [encoder.encode(a) for a in (*head, *rest)]

    def finish(self, name: str, reply: Any, options: dict[str, Any], client: Any) -> Any:
        """The reply as redis-py returns it: decoded, then through its response callback."""
        encoder = client.get_encoder()
        decode = encoder.decode_responses and NEVER_DECODE not in options
        options.pop(NEVER_DECODE, None)
        if isinstance(reply, CommandError):
            if EMPTY_RESPONSE in options:  # redis-py's default for an empty call (mget([]))
                return options[EMPTY_RESPONSE]
            return _as_redis_error(reply)
        options.pop(EMPTY_RESPONSE, None)
        options.pop("keys", None)
        reply = _plain(reply, decode, encoder.encoding)
        callback = client.response_callbacks.get(name)
        return reply if callback is None else callback(reply, **options)

    async def call(self, client: Any, args: Sequence[Any], options: dict[str, Any]) -> Any:
        name = args[0]
        try:
            reply = await self.commands.execute(self.wire(args, client.get_encoder()))
        except CommandError as exc:
            if EMPTY_RESPONSE in options:
                return options[EMPTY_RESPONSE]
            raise _as_redis_error(exc) from None
        except errors.KVStoreError as exc:
            raise _as_redis_error(exc) from exc
        return self.finish(name, reply, dict(options), client)

    async def run_pipeline(
        self,
        client: Any,
        stack: Sequence[tuple[Sequence[Any], dict[str, Any]]],
        transaction: bool,
        watched: dict[str, Live] | None,
        raise_on_error: bool,
    ) -> list[Any]:
        """Run queued commands: a transaction as one compare-and-swap of its key (the
        watched values checked inside it), otherwise each command on its own - commands
        on distinct keys concurrently, in order where they share one."""
        encoder = client.get_encoder()
        wires = [self.wire(args, encoder) for args, _ in stack]
        if transaction:  # a command Redis refuses while queueing aborts the transaction
            for i, (wire, (args, options)) in enumerate(zip(wires, stack, strict=True)):
                try:
                    self.commands.parse(wire)
                except CommandError as exc:
                    if EMPTY_RESPONSE in options:
                        continue
                    error = _as_redis_error(exc)
                    annotate(error, i + 1, args)
                    raise error from None
        try:
            if transaction:
                replies = await self.transaction(wires, watched)
            else:
                replies = await self.batch(wires)
        except CommandError as exc:
            raise _as_redis_error(exc) from None
        except errors.KVStoreError as exc:
            raise _as_redis_error(exc) from exc
        out = []
        for (args, options), reply in zip(stack, replies, strict=True):
            out.append(self.finish(args[0], reply, dict(options), client))
        if raise_on_error:
            for i, reply in enumerate(out):
                if isinstance(reply, BaseException):
                    annotate(reply, i + 1, stack[i][0])
                    raise reply
        return out

    async def batch(self, wires: list[list[bytes]]) -> list[Any]:
        parsed: list[Op | CommandError] = []
        for wire in wires:
            try:
                parsed.append(self.commands.parse(wire)[1])
            except CommandError as exc:
                parsed.append(exc)
        keys = [getattr(op, "key", None) for op in parsed]

        async def one(op: Any) -> Any:
            if isinstance(op, CommandError):
                return op
            try:
                return await self.commands.run_op(op)
            except CommandError as exc:
                return exc

        if None not in keys and len(set(keys)) == len(keys):
            return await self.commands.bounded([one(op) for op in parsed])
        return [await one(op) for op in parsed]

    async def transaction(
        self, wires: list[list[bytes]], watched: dict[str, Live] | None
    ) -> list[Any]:
        replies = await self.commands.watched_transaction(wires, watched or {})
        if replies is None:
            raise WatchError("Watched variable changed.")
        return replies

    async def watch_value(self, key: Any, encoder: Any) -> tuple[str, Live]:
        return await self.commands.watch(encoder.encode(key))

    async def close(self) -> None:
        if self.owned:
            await self.store.close()


def annotate(error: BaseException, number: int, args: Sequence[Any]) -> None:
    """Say which queued command failed, in redis-py's words."""
    redis.client.Pipeline.annotate_exception(None, error, number, args)  # type: ignore[arg-type]
