"""One client connection of ``kvstore serve``: its state (protocol, database, name, user,
a MULTI queue, WATCHed keys, subscriptions), how its bytes become commands and its
replies bytes, and the registry of connection commands (PING, HELLO, AUTH, MULTI ...:
:mod:`.basic`; CLIENT, COMMAND, INFO, CONFIG: :mod:`.admin`; pub/sub:
:mod:`.subscriptions`). Every other command goes to the command layer of the
connection's database, and its reply is written in the connection's protocol (RESP3
shapes: :mod:`.shapes`).

How a connection runs (an :class:`asyncio.Protocol` and one task per connection):

* **In order, in a task.** Bytes that arrive are parsed; the connection's task runs each
  whole command in turn, so replies always come back in the order of the commands, and
  every command runs inside a task (libraries under the store - redis-py, aiohttp -
  bind their timeouts to the running task).
* **One write per batch.** The replies of the commands read at once are written with
  one ``write`` when none is left to run (a pipeline of 16 GETs costs one send, not 16),
  or once they waited ``FLUSH_AFTER`` behind a slower command; a pub/sub message pushed
  to the connection goes out at once, after the replies of the commands that finished
  before it.
* **Bounded.** Reading pauses while more than ``READ_PAUSE`` bytes of commands wait to
  run (one command longer than that is read whole), and commands stop running while
  the client does not read its replies (the transport's high-water mark; a batch is
  written every ``WRITE_HIGH`` bytes, so this holds within one read's commands too); a
  subscriber whose unread messages pass ``OUTPUT_LIMIT`` is disconnected.
* **Failures.** A protocol error is answered with Redis's message and the connection
  closed. A connection that fails (reset, TLS) is one log line; a command that fails
  unexpectedly answers an error and is logged with its traceback, and the connection
  goes on. A command running when its client goes away still finishes (its write lands
  or not, as the object store decided); its reply goes nowhere.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from ..commands import COMMANDS, NOT_NOW, CommandError, Commands, Status
from ..commands.reply import err, wrong_args
from ..errors import KVStoreError
from .auth import Guard
from .config import ServerConfig
from .protocol import CommandReader, ProtocolError, Push, encode, error_line
from .pubsub import OUTPUT_LIMIT, Hub
from .shapes import resp3_shape

logger = logging.getLogger("kvstore.serve")

REDIS_VERSION = "7.2.0"
"""The Redis version kvstore's server answers as (``INFO``'s ``redis_version``): the
command set it follows. ``kvstore_version`` says what it is."""

DATABASES = 16
"""SELECT 0-15: database 0 is the store itself, database N its namespace ``db{N}``."""
READ_PAUSE = 4 * 1024 * 1024
"""Bytes of unrun commands at which a connection stops reading (until they ran)."""
WRITE_HIGH = 1024 * 1024
"""Bytes of unsent replies at which a connection stops running commands."""
FLUSH_AFTER = 0.002
"""Seconds a finished reply may wait for the replies after it to go out in the same
write: a pipeline of cache hits is one write; behind a slow command, the replies before
it go out after 2 ms, not when it finishes."""
CLOSE_WAIT = 5.0
"""Seconds a closing connection's unsent replies may wait for a client that does not
read them before the connection is cut."""


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
    @property
    def accepting(self) -> bool: ...
    def database(self, number: int, namespace: str | None = None) -> Commands: ...
    def reconfigure(self, **changes: Any) -> None: ...


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
_IDS = itertools.count(1)


class Many(tuple[Any, ...]):
    """Several replies to one command, written one after the other (SUBSCRIBE a b)."""


def connection_command(name: str, arity: int) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        CONNECTION_COMMANDS[name.encode()] = (handler, arity)
        return handler

    return register


def client_name(raw: bytes) -> bytes:
    """A client name as CLIENT SETNAME and HELLO SETNAME take it."""
    if any(ch <= 32 or ch >= 127 for ch in raw):
        raise err("Client names cannot contain spaces, newlines or special characters.")
    return raw


class Connection(asyncio.Protocol):
    """One client: reads its commands, runs them in order, writes the replies (see the
    module docstring)."""

    def __init__(self, server: Host) -> None:
        self.server = server
        self.id = next(_IDS)
        self.transport: asyncio.Transport | None = None
        self.commands = CommandReader(server.config.limits)
        self.task: asyncio.Task[None] | None = None  # runs its commands
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
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
        self.created = self.last_io = time.monotonic()
        self.last_command = b"NULL"
        self.addr = "unix"
        self._batch: list[bytes] = []  # replies gathered for one write
        self._batch_size = 0  # their bytes
        self._flush_timer: asyncio.TimerHandle | None = None  # writes the batch if it waits
        self._waiter: asyncio.Future[None] | None = None  # the task waits for its client
        self.busy = False  # running commands (not waiting for its client)
        self._write_paused = False
        self._read_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._database_at: tuple[int, str | None] | None = None
        self._database: Commands
        # read by the read callback, for the task to run (or answer: a protocol error)
        self._held: list[bytes] | ProtocolError | None = None

    @property
    def idle(self) -> bool:
        """Waiting for its client (no command running, none read and waiting to run)."""
        return not self.busy

    # ------------------------------------------------------------------ transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (a stream transport; uvloop's do not subclass asyncio.Transport)
        self.transport = transport = cast(asyncio.Transport, transport)
        server = self.server
        server.counters["total_connections_received"] += 1
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.addr = f"{peer[0]}:{peer[1]}"
        if not server.accepting or len(server.clients) >= server.config.maxclients:
            server.counters["rejected_connections"] += 1
            transport.write(error_line("ERR max number of clients reached"))
            self.closing = True
            transport.close()
            return
        server.clients[self.id] = self
        transport.set_write_buffer_limits(high=WRITE_HIGH)
        self.arm_timeout()
        self.task = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.clients.pop(self.id, None)
        self.unsubscribe_all()
        if self._timer is not None:
            self._timer.cancel()
        if exc is not None:  # reset, broken pipe, TLS: one line per connection
            logger.info("client %s (id=%d): %s", self.addr, self.id, exc)
        self._wake()
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.closing:  # nothing read now would run: not kept
            return
        self.last_io = time.monotonic()
        self.commands.feed(data)
        if (
            self.commands.buffered > READ_PAUSE
            and not self._read_paused
            and not self.closing
            and (self.busy or self._write_paused)
        ):  # (commands wait to run; not one command longer than that still arriving)
            self._read_paused = True
            self._transport.pause_reading()
        if self._answer_now():
            self._wake()

    def _answer_now(self) -> bool:
        """While the task waits for its client, answer here, in the read callback, the
        commands that can be answered without awaiting (cache-hit reads:
        ``Commands.answer_now``), in order, and write their replies with one write. The
        first command that cannot (a write, a miss, a connection command, an error in
        the stream) is held for the task, which runs it and everything after it. True if
        the task has something to do. Saves a task switch per read: half the CPU of a
        cache-hit GET."""
        waiter = self._waiter
        if (
            waiter is None  # the task is running or has not started: it reads them
            or waiter.done()
            or self._held is not None
            or self.busy
            or self._write_paused
            or not self.authenticated
            or self.multi is not None
            or self.channels
            or self.patterns
        ):
            return True
        database = self.database()
        reader, batch, protocol = self.commands, self._batch, self.protocol
        counters = self.server.counters
        answered = 0
        while not self._write_paused:
            try:
                args = reader.next(True)
            except ProtocolError as exc:
                self._held = exc  # the task answers it and closes
                break
            if args is None:
                break
            name = args[0].upper()
            spec = COMMANDS.get(name)
            reply: Any = NOT_NOW
            if spec is not None and not spec.write and name not in CONNECTION_COMMANDS:
                try:
                    reply = database.answer_now(args)
                    if protocol == 3 and reply is not NOT_NOW:
                        reply = resp3_shape(name, args, reply)
                except Exception as exc:
                    reply = self._failed(args, exc)
            if reply is NOT_NOW:
                self._held = args
                break
            counters["total_commands_processed"] += 1
            self.last_command = name.lower()
            encoded = self._encode(reply)
            batch.append(encoded)
            answered += 1
            self._batch_size += len(encoded)
            if self._batch_size >= WRITE_HIGH:
                self._flush()
        if self._held is None and not self._write_paused:
            if answered:
                self._flush()
            return False
        return True

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self.last_io = time.monotonic()  # the client reads its replies: it is not idle
        self._wake()

    @property
    def _transport(self) -> asyncio.Transport:
        assert self.transport is not None
        return self.transport

    def _wake(self) -> None:
        """Resume the connection's task if it waits for its client."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # ------------------------------------------------------------------ running commands
    async def _serve(self) -> None:
        """The connection's task: run the commands read, in order; gather their replies
        and write them with one write when no command is left to run (or every
        ``WRITE_HIGH`` bytes: then commands stop while the client does not read); wait
        for the client; close once ``closing``."""
        batch = self._batch
        try:
            while not self.closing:
                if self._write_paused:
                    self._flush()
                    await self._wait()
                    continue
                try:
                    held, self._held = self._held, None
                    if isinstance(held, ProtocolError):
                        raise held
                    args = held or self.commands.next(self.authenticated)
                except ProtocolError as exc:
                    batch.append(error_line(f"ERR {exc}"))
                    self.closing = True
                    logger.info("client %s (id=%d): %s; closing", self.addr, self.id, exc)
                    break
                if args is None:
                    self.busy = False
                    self._flush()
                    if self._read_paused:  # what is left is part of one command: read it
                        self._read_paused = False
                        self._transport.resume_reading()
                    await self._wait()
                    continue
                self.busy = True
                if batch and self._flush_timer is None:  # replies wait behind this one
                    self._flush_timer = asyncio.get_running_loop().call_later(
                        FLUSH_AFTER, self._flush
                    )
                reply = await self.reply_to(args)
                batch.append(reply)
                self._batch_size += len(reply)
                if self._batch_size >= WRITE_HIGH:
                    self._flush()
        finally:  # (cancelled: the server's grace ran out - the command running gets
            # no reply; those that finished before it do)
            self.busy = False
            self._flush()
            self._transport.close()
            asyncio.get_running_loop().call_later(CLOSE_WAIT, self._cut)

    def _cut(self) -> None:
        """A closed connection whose replies its client never read: let it go."""
        if not self.closed.done():
            logger.info("client %s (id=%d): does not read; cut", self.addr, self.id)
            self._transport.abort()

    def _flush(self) -> None:
        """Write the replies gathered with one write."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._batch and not self._transport.is_closing():
            # (writing counts as activity for the idle timeout, as in Redis: a command
            # slower than the timeout does not leave its client closed right after it)
            self.last_io = time.monotonic()
            self._transport.write(b"".join(self._batch))
        self._batch.clear()
        self._batch_size = 0

    def arm_timeout(self) -> None:
        """Check for idleness after the server's ``timeout`` (none: never)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.server.config.timeout and not self.closing:
            self._timer = asyncio.get_running_loop().call_later(
                self.server.config.timeout, self._check_idle
            )

    def _check_idle(self) -> None:
        timeout = self.server.config.timeout
        idle_for = time.monotonic() - self.last_io
        if self.closing or not timeout:
            return
        stalled = self._write_paused  # it does not read what it was sent
        if (self.idle or stalled) and idle_for >= timeout and not (self.channels or self.patterns):
            logger.info("client %s (id=%d): idle for %.0f s; closing", self.addr, self.id, idle_for)
            self.stop_reading()
            return
        wait = timeout - idle_for if idle_for < timeout else timeout
        self._timer = asyncio.get_running_loop().call_later(wait, self._check_idle)

    def stop_reading(self) -> None:
        """Finish the command running now (if any), answer it, then close."""
        self.closing = True
        self._wake()

    async def reply_to(self, args: list[bytes]) -> bytes:
        """Run one command; its reply in this connection's protocol."""
        self.server.counters["total_commands_processed"] += 1
        try:
            reply = await self.dispatch(args)
        except Exception as exc:
            reply = self._failed(args, exc)
        return self._encode(reply)

    def _failed(self, args: list[bytes], exc: Exception) -> CommandError:
        """The error reply of a command that raised."""
        if isinstance(exc, CommandError):
            return exc
        if isinstance(exc, KVStoreError):  # the store failed (BackendError ...): not applied
            return CommandError(f"ERR {exc}")
        # a defect: answered, logged, the connection goes on
        logger.error("client %s (id=%d): %r failed", self.addr, self.id, args[:1], exc_info=exc)
        return CommandError(f"ERR internal error ({type(exc).__name__}); see the server log")

    def _encode(self, reply: Any) -> bytes:
        if type(reply) is bytes:  # the commonest reply (GET), directly
            return b"$%d\r\n%s\r\n" % (len(reply), reply)
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
        at = (self.db, self.namespace)
        if at != self._database_at:
            self._database = self.server.database(self.db, self.namespace)
            self._database_at = at
        return self._database

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
        """Push a pub/sub message (in its place among the replies being gathered); a
        subscriber that does not read is disconnected once ``OUTPUT_LIMIT`` bytes wait
        for it."""
        if self.closing or self.transport is None:
            return
        self._flush()  # the replies of commands that finished come first
        transport = self.transport
        transport.write(encode(Push(message), self.protocol))
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


__all__ = ["CONNECTION_COMMANDS", "REDIS_VERSION", "Connection", "ProtocolError"]
