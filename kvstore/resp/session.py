"""One client connection of ``kvstore serve``: its state (protocol, database, name, user,
a MULTI queue, WATCHed keys, subscriptions) and the connection commands it answers itself
- PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET, MULTI/EXEC/DISCARD/WATCH/UNWATCH (CLIENT,
COMMAND, INFO and CONFIG are :mod:`.admin`'s, pub/sub :mod:`.subscriptions`'). Every other
command goes to the command layer of the connection's database, and its reply is written
in the connection's protocol (RESP3 shapes: :mod:`.shapes`). A failure of the connection
is one log line; a command that fails unexpectedly answers an error and is logged with
its traceback, and the connection goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..commands import CommandError, Commands, Status
from ..commands.reply import OK, err, parse_int, wrong_args
from ..errors import KVStoreError
from .auth import Guard
from .config import ServerConfig
from .protocol import (
    NULL_ARRAY,
    CommandReader,
    Limits,
    Map,
    ProtocolError,
    Push,
    encode,
    error_line,
)
from .pubsub import OUTPUT_LIMIT, Hub
from .shapes import resp3_shape

logger = logging.getLogger("kvstore.serve")

REDIS_VERSION = "7.2.0"
"""The Redis version kvstore's server answers as (``INFO``'s ``redis_version``): the
command set it follows. ``kvstore_version`` says what it is."""

DATABASES = 16
"""SELECT 0-15: database 0 is the store itself, database N its namespace ``db{N}``."""
READ_SIZE = 64 * 1024


class Host(Protocol):
    """What a connection uses of its server (:class:`kvstore.resp.server.Server`)."""

    @property
    def config(self) -> ServerConfig: ...
    @property
    def store(self) -> Any: ...
    @property
    def clients(self) -> dict[int, Connection]: ...
    @property
    def counters(self) -> dict[str, int]: ...
    @property
    def port(self) -> int: ...
    @property
    def started(self) -> float: ...
    @property
    def guard(self) -> Guard: ...
    @property
    def hub(self) -> Hub: ...
    def database(self, number: int, namespace: str | None = None) -> Commands: ...


Handler = Callable[["Connection", list[bytes]], Awaitable[Any]]
CONNECTION_COMMANDS: dict[bytes, tuple[Handler, int]] = {}
"""Connection commands: name -> (handler, Redis's arity)."""
_ANY_TIME = {b"AUTH", b"HELLO", b"QUIT", b"RESET"}  # before authenticating
_IN_MULTI = {b"EXEC", b"DISCARD", b"MULTI", b"WATCH", b"QUIT", b"RESET"}  # not queued
_SUBSCRIBED = {  # what a RESP2 connection may send while subscribed
    b"SUBSCRIBE",
    b"PSUBSCRIBE",
    b"SSUBSCRIBE",
    b"UNSUBSCRIBE",
    b"PUNSUBSCRIBE",
    b"SUNSUBSCRIBE",
    b"PING",
    b"QUIT",
    b"RESET",
}


class Many(tuple[Any, ...]):
    """Several replies to one command, written one after the other (SUBSCRIBE a b)."""


def connection_command(name: str, arity: int) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        CONNECTION_COMMANDS[name.encode()] = (handler, arity)
        return handler

    return register


class Reading:
    """A connection's reading side: bytes in, commands out, within the limits."""

    def __init__(self, reader: asyncio.StreamReader, limits: Limits, timeout: float) -> None:
        self.reader = reader
        self.commands = CommandReader(limits)
        self.timeout = timeout or None

    async def fill(self) -> bool:
        """Read what the client sent; False at its end (closed, idle too long)."""
        try:
            data = await asyncio.wait_for(self.reader.read(READ_SIZE), self.timeout)
        except (TimeoutError, OSError):  # idle too long, reset, a broken TLS stream
            return False
        if not data:
            return False
        self.commands.feed(data)
        return True

    def next(self, authenticated: bool) -> list[bytes] | None:
        return self.commands.next(authenticated)


class Connection:
    """One client: reads its commands, runs them in order, writes the replies."""

    def __init__(
        self,
        server: Host,
        number: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.id = number
        self.writer = writer
        self.reading = Reading(reader, server.config.limits, server.config.timeout)
        self.task: asyncio.Task[Any] | None = None
        self.protocol = 2
        self.db = 0
        self.name = b""
        self.lib = {"lib-name": b"", "lib-ver": b""}
        self.authenticated = not server.config.auth_required
        self.user = "default"
        self.namespace: str | None = None  # the user's, if it is confined to one
        self.multi: list[list[bytes]] | None = None
        self.multi_failed = False
        self.watched: dict[str, Any] = {}
        self.channels: set[bytes] = set()
        self.patterns: set[bytes] = set()
        self.closing = False
        self.idle = True  # waiting for the client (not running a command)
        self.created = time.monotonic()
        self.last_command = b"NULL"
        peer = writer.get_extra_info("peername")
        self.addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"

    def stop_reading(self) -> None:
        """Finish the command running now (if any), answer it, then close."""
        self.closing = True
        if self.task is not None and self.idle:
            self.task.cancel()

    async def run(self) -> None:
        try:
            while not self.closing:
                self.idle = True
                if not await self.reading.fill():
                    return
                self.idle = False
                try:
                    while not self.closing:
                        args = self.reading.next(self.authenticated)
                        if args is None:
                            break
                        # written at once (the transport buffers a pipeline's replies),
                        # so a pub/sub message pushed meanwhile keeps its place
                        self.writer.write(await self.reply_to(args))
                except ProtocolError as exc:
                    self.writer.write(error_line(f"ERR {exc}"))
                    self.closing = True
                    logger.info("client %s (id=%d): %s; closing", self.addr, self.id, exc)
                await self.writer.drain()
        except asyncio.CancelledError:
            pass  # closed while idle (server shutdown)
        except OSError as exc:  # reset, broken pipe, TLS: one line per connection
            logger.info("client %s (id=%d): %s", self.addr, self.id, exc)
        finally:
            self.unsubscribe_all()
            self.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer.wait_closed(), 5)

    async def reply_to(self, args: list[bytes]) -> bytes:
        """Run one command; its reply in this connection's protocol."""
        self.server.counters["total_commands_processed"] += 1
        try:
            reply = await self.dispatch(args)
        except CommandError as exc:
            reply = exc
        except KVStoreError as exc:  # the store failed (BackendError ...): not applied
            reply = CommandError(f"ERR {exc}")
        except Exception as exc:  # a defect: answered, logged, the connection goes on
            logger.exception("client %s (id=%d): %r failed", self.addr, self.id, args[:1])
            reply = CommandError(f"ERR internal error ({type(exc).__name__}); see the server log")
        if isinstance(reply, CommandError):
            self.server.counters["total_error_replies"] += 1
        if isinstance(reply, Many):
            return b"".join(encode(r, self.protocol) for r in reply)
        return encode(reply, self.protocol)

    async def dispatch(self, args: list[bytes]) -> Any:
        name = args[0].upper()
        self.last_command = name.lower()
        if not self.authenticated and name not in _ANY_TIME:
            raise CommandError("NOAUTH Authentication required.")
        if self.multi is not None and name not in _IN_MULTI:
            return self.queue(args)
        if self.protocol == 2 and (self.channels or self.patterns) and name not in _SUBSCRIBED:
            raise err(
                f"Can't execute '{name.decode(errors='replace').lower()}': only (P|S)SUBSCRIBE "
                "/ (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            )
        found = CONNECTION_COMMANDS.get(name)
        if found is not None:
            handler, arity = found
            if (arity >= 0 and len(args) != arity) or (arity < 0 and len(args) < -arity):
                raise wrong_args(name.decode())
            return await handler(self, args)
        reply = await self.database().execute(args)
        return resp3_shape(name, args, reply) if self.protocol == 3 else reply

    def database(self) -> Commands:
        """The command layer of this connection's database (in its user's namespace)."""
        return self.server.database(self.db, self.namespace)

    def queue(self, args: list[bytes]) -> Any:
        """A command inside MULTI: checked now (an unknown command or a wrong arity fails
        the EXEC, as in Redis), run at EXEC."""
        try:
            if args[0].upper() not in CONNECTION_COMMANDS:
                self.database().parse(args)
            else:
                raise err(f"'{args[0].decode(errors='replace')}' inside MULTI is not allowed")
        except CommandError:
            self.multi_failed = True
            raise
        assert self.multi is not None
        self.multi.append(args)
        return Status(b"QUEUED")

    def deliver(self, message: list[Any]) -> None:
        """Push a pub/sub message; a subscriber that does not read is disconnected once
        ``OUTPUT_LIMIT`` bytes wait for it."""
        if self.closing:
            return
        self.writer.write(encode(Push(message), self.protocol))
        transport = self.writer.transport
        if transport.get_write_buffer_size() > OUTPUT_LIMIT:
            logger.info("client %s (id=%d): pub/sub output over its limit", self.addr, self.id)
            self.closing = True
            transport.abort()

    def unsubscribe_all(self) -> None:
        hub = self.server.hub
        for channel in self.channels:
            hub.unsubscribe(self, self.namespace, channel)
        for pattern in self.patterns:
            hub.punsubscribe(self, self.namespace, pattern)
        self.channels, self.patterns = set(), set()

    def reset(self) -> None:
        self.unsubscribe_all()
        self.protocol, self.db, self.name = 2, 0, b""
        self.multi, self.multi_failed, self.watched = None, False, {}
        self.authenticated = not self.server.config.auth_required
        self.user, self.namespace = "default", None


# --------------------------------------------------------------------------- commands
@connection_command("PING", -1)
async def _ping(c: Connection, args: list[bytes]) -> Any:
    if len(args) > 2:
        raise wrong_args("ping")
    if c.protocol == 2 and (c.channels or c.patterns):  # as Redis answers a subscriber
        return [b"pong", args[1] if len(args) == 2 else b""]
    return args[1] if len(args) == 2 else Status(b"PONG")


@connection_command("ECHO", 2)
async def _echo(c: Connection, args: list[bytes]) -> Any:
    return args[1]


@connection_command("QUIT", -1)
async def _quit(c: Connection, args: list[bytes]) -> Any:
    c.closing = True
    return OK


@connection_command("RESET", 1)
async def _reset(c: Connection, args: list[bytes]) -> Any:
    c.reset()
    return Status(b"RESET")


async def _check_password(c: Connection, user: bytes, password: bytes) -> None:
    host = c.addr.rsplit(":", 1)[0]
    found = await c.server.guard.check(host, user, password)
    c.authenticated, c.user, c.namespace = True, found.name, found.namespace


@connection_command("AUTH", -2)
async def _auth(c: Connection, args: list[bytes]) -> Any:
    if len(args) > 3:
        raise err("syntax error")
    user, password = (b"default", args[1]) if len(args) == 2 else (args[1], args[2])
    await _check_password(c, user, password)
    return OK


@connection_command("HELLO", -1)
async def _hello(c: Connection, args: list[bytes]) -> Any:
    protocol = c.protocol
    rest = args[1:]
    if rest:
        try:
            protocol = parse_int(rest[0])
        except CommandError:
            raise err("Protocol version is not an integer or out of range") from None
        if protocol not in (2, 3):
            raise CommandError("NOPROTO unsupported protocol version")
        rest = rest[1:]
    name = None
    while rest:
        option = rest[0].upper()
        if option == b"AUTH" and len(rest) >= 3:
            await _check_password(c, rest[1], rest[2])
            rest = rest[3:]
        elif option == b"SETNAME" and len(rest) >= 2:
            name = _client_name(rest[1])
            rest = rest[2:]
        else:
            raise err(f"Syntax error in HELLO option '{rest[0].decode(errors='replace')}'")
    if not c.authenticated:
        raise CommandError("NOAUTH HELLO must be called with the client already authenticated")
    c.protocol = protocol
    if name is not None:
        c.name = name
    return Map(
        [
            (b"server", b"redis"),
            (b"version", REDIS_VERSION.encode()),
            (b"proto", protocol),
            (b"id", c.id),
            (b"mode", b"standalone"),
            (b"role", b"master"),
            (b"modules", []),
        ]
    )


@connection_command("SELECT", 2)
async def _select(c: Connection, args: list[bytes]) -> Any:
    try:
        number = parse_int(args[1])
    except CommandError:
        raise err("value is not an integer or out of range") from None
    if not 0 <= number < DATABASES:
        raise err("DB index is out of range")
    c.db = number
    return OK


def _client_name(raw: bytes) -> bytes:
    if any(ch <= 32 or ch >= 127 for ch in raw):
        raise err("Client names cannot contain spaces, newlines or special characters.")
    return raw


@connection_command("MULTI", 1)
async def _multi(c: Connection, args: list[bytes]) -> Any:
    if c.multi is not None:
        raise err("MULTI calls can not be nested")
    c.multi, c.multi_failed = [], False
    return OK


@connection_command("DISCARD", 1)
async def _discard(c: Connection, args: list[bytes]) -> Any:
    if c.multi is None:
        raise err("DISCARD without MULTI")
    c.multi, c.multi_failed, c.watched = None, False, {}
    return OK


@connection_command("EXEC", 1)
async def _exec(c: Connection, args: list[bytes]) -> Any:
    if c.multi is None:
        raise err("EXEC without MULTI")
    queued, failed, watched = c.multi, c.multi_failed, c.watched
    c.multi, c.multi_failed, c.watched = None, False, {}
    if failed:
        raise CommandError("EXECABORT Transaction discarded because of previous errors.")
    database = c.database()
    replies = await database.watched_transaction(queued, watched)
    if replies is None:
        return NULL_ARRAY
    if c.protocol == 3:
        replies = [resp3_shape(a[0].upper(), a, r) for a, r in zip(queued, replies, strict=True)]
    return replies


@connection_command("WATCH", -2)
async def _watch(c: Connection, args: list[bytes]) -> Any:
    if c.multi is not None:
        raise err("WATCH inside MULTI is not allowed")
    database = c.database()
    for raw in args[1:]:
        name, current = await database.watch(raw)
        c.watched.setdefault(name, current)
    return OK


@connection_command("UNWATCH", 1)
async def _unwatch(c: Connection, args: list[bytes]) -> Any:
    c.watched = {}
    return OK


__all__ = ["CONNECTION_COMMANDS", "REDIS_VERSION", "Connection", "ProtocolError"]
