"""One client connection of ``kvstore serve``: its state (protocol, database, name,
authentication, a MULTI queue, WATCHed keys) and the connection commands Redis clients
send - PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET, CLIENT, COMMAND, INFO, CONFIG,
MULTI/EXEC/DISCARD/WATCH/UNWATCH. Every other command goes to the command layer of the
connection's database, and its reply is written in the connection's protocol (RESP3
shapes: :mod:`.shapes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .. import __version__
from ..commands import COMMANDS, CommandError, Commands, Status
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
    Verbatim,
    encode,
    error_line,
)
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
    def database(self, number: int, namespace: str | None = None) -> Commands: ...


Handler = Callable[["Connection", list[bytes]], Awaitable[Any]]
CONNECTION_COMMANDS: dict[bytes, tuple[Handler, int]] = {}
"""Connection commands: name -> (handler, Redis's arity)."""
_ANY_TIME = {b"AUTH", b"HELLO", b"QUIT", b"RESET"}  # before authenticating
_IN_MULTI = {b"EXEC", b"DISCARD", b"MULTI", b"WATCH", b"QUIT", b"RESET"}  # not queued


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
        except (TimeoutError, ConnectionError):
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
        self.closing = False
        self.created = time.monotonic()
        self.last_command = b"NULL"
        peer = writer.get_extra_info("peername")
        self.addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"

    def stop_reading(self) -> None:
        """Finish the command running now (if any), answer it, then close."""
        self.closing = True
        if self.task is not None and self.idle:
            self.task.cancel()

    idle = True

    async def run(self) -> None:
        try:
            while not self.closing:
                self.idle = True
                if not await self.reading.fill():
                    return
                self.idle = False
                replies: list[bytes] = []
                try:
                    while not self.closing:
                        args = self.reading.next(self.authenticated)
                        if args is None:
                            break
                        replies.append(await self.reply_to(args))
                except ProtocolError as exc:
                    replies.append(error_line(f"ERR {exc}"))
                    self.closing = True
                    logger.info("client %s (id=%d): %s; closing", self.addr, self.id, exc)
                self.writer.write(b"".join(replies))
                await self.writer.drain()
        except asyncio.CancelledError:
            pass  # closed while idle (server shutdown)
        except ConnectionError as exc:
            logger.info("client %s (id=%d): %s", self.addr, self.id, exc)
        finally:
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
        if isinstance(reply, CommandError):
            self.server.counters["total_error_replies"] += 1
        return encode(reply, self.protocol)

    async def dispatch(self, args: list[bytes]) -> Any:
        name = args[0].upper()
        self.last_command = name.lower()
        if not self.authenticated and name not in _ANY_TIME:
            raise CommandError("NOAUTH Authentication required.")
        if self.multi is not None and name not in _IN_MULTI:
            return self.queue(args)
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

    def reset(self) -> None:
        self.protocol, self.db, self.name = 2, 0, b""
        self.multi, self.multi_failed, self.watched = None, False, {}
        self.authenticated = not self.server.config.auth_required
        self.user, self.namespace = "default", None


# --------------------------------------------------------------------------- commands
@connection_command("PING", -1)
async def _ping(c: Connection, args: list[bytes]) -> Any:
    if len(args) > 2:
        raise wrong_args("ping")
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


@connection_command("CLIENT", -2)
async def _client(c: Connection, args: list[bytes]) -> Any:
    sub = args[1].upper()
    if sub == b"SETNAME" and len(args) == 3:
        c.name = _client_name(args[2])
        return OK
    if sub == b"GETNAME" and len(args) == 2:
        return c.name or None
    if sub == b"ID" and len(args) == 2:
        return c.id
    if sub == b"SETINFO" and len(args) == 4:
        attribute = args[2].lower().decode(errors="replace")
        if attribute not in c.lib:
            raise err(f"Unrecognized option '{args[2].decode(errors='replace')}'")
        c.lib[attribute] = args[3]
        return OK
    if sub == b"KILL" and len(args) >= 3:
        return _client_kill(c, args[2:])
    if sub == b"INFO" and len(args) == 2:
        return Verbatim(_client_line(c, c) + b"\n")
    if sub == b"LIST" and len(args) == 2:
        return Verbatim(b"".join(_client_line(c, other) + b"\n" for other in _clients(c)))
    raise err(f"unknown subcommand '{args[1].decode(errors='replace')}'. Try CLIENT HELP.")


def _clients(c: Connection) -> list[Connection]:
    """The connections ``c`` may see and kill: every one, or - for a user confined to a
    namespace - its own user's."""
    every = list(c.server.clients.values())
    return every if c.namespace is None else [o for o in every if o.user == c.user]


def _client_kill(c: Connection, filters: list[bytes]) -> Any:
    """CLIENT KILL addr (old form: OK, or an error if none) or CLIENT KILL ID n / ADDR a /
    USER u / SKIPME yes|no ... (the number killed). A killed connection finishes the
    command it is running, answers it and closes."""
    if len(filters) == 1:
        targets = [o for o in _clients(c) if o.addr.encode() == filters[0]]
        if not targets:
            raise err("No such client")
        for other in targets:
            other.stop_reading()
        return OK
    if len(filters) % 2:
        raise err("syntax error")
    targets = _clients(c)
    skip_me = True
    for field, value in zip(filters[::2], filters[1::2], strict=True):
        field = field.upper()
        if field == b"ID":
            wanted = parse_int(value)
            targets = [o for o in targets if o.id == wanted]
        elif field == b"ADDR":
            targets = [o for o in targets if o.addr.encode() == value]
        elif field == b"USER":
            targets = [o for o in targets if o.user.encode() == value]
        elif field == b"SKIPME" and value.lower() in (b"yes", b"no"):
            skip_me = value.lower() == b"yes"
        else:
            raise err("syntax error")
    if skip_me:
        targets = [o for o in targets if o is not c]
    for other in targets:
        other.stop_reading()
    return len(targets)


def _client_line(c: Connection, other: Connection) -> bytes:
    age = int(time.monotonic() - other.created)
    fields = [
        f"id={other.id}",
        f"addr={other.addr}",
        f"name={other.name.decode(errors='replace')}",
        f"user={other.user}",
        f"age={age}",
        f"db={other.db}",
        f"multi={-1 if other.multi is None else len(other.multi)}",
        f"cmd={other.last_command.decode(errors='replace')}",
        f"resp={other.protocol}",
        f"lib-name={other.lib['lib-name'].decode(errors='replace')}",
        f"lib-ver={other.lib['lib-ver'].decode(errors='replace')}",
    ]
    return " ".join(fields).encode()


@connection_command("COMMAND", -1)
async def _command(c: Connection, args: list[bytes]) -> Any:
    sub = args[1].upper() if len(args) > 1 else b""
    names = sorted({*COMMANDS, *CONNECTION_COMMANDS})
    if sub == b"COUNT":
        return len(names)
    if sub == b"LIST":
        return [n.lower() for n in names]
    if sub == b"DOCS":
        return Map([])  # no documentation is served (redis-cli asks for it; it is optional)
    if sub == b"INFO":
        wanted = [a.upper() for a in args[2:]] or names
        return [_command_info(n) for n in wanted]
    if not sub:
        return [_command_info(n) for n in names]
    raise err(f"unknown subcommand '{args[1].decode(errors='replace')}'. Try COMMAND HELP.")


def _command_info(name: bytes) -> Any:
    spec = COMMANDS.get(name)
    if spec is not None:
        flags = [Status(b"write")] if spec.write else [Status(b"readonly")]
        keyed = spec.arity not in (1, -1) and name not in CONNECTION_COMMANDS
        first = 1 if keyed else 0
        return [name.lower(), spec.arity, flags, first, first, first, [], [], [], []]
    found = CONNECTION_COMMANDS.get(name)
    if found is None:
        return None
    return [name.lower(), found[1], [Status(b"fast")], 0, 0, 0, [], [], [], []]


@connection_command("INFO", -1)
async def _info(c: Connection, args: list[bytes]) -> Any:
    server = c.server
    stats = server.store.stats()
    sections = {
        "server": [
            f"redis_version:{REDIS_VERSION}",
            f"kvstore_version:{__version__}",
            "redis_mode:standalone",
            f"tcp_port:{server.port}",
            f"uptime_in_seconds:{int(time.time() - server.started)}",
            f"store:{server.store.url if hasattr(server.store, 'url') else ''}",
        ],
        "clients": [
            f"connected_clients:{len(server.clients)}",
            f"maxclients:{server.config.maxclients}",
        ],
        "stats": [
            *(f"{k}:{v}" for k, v in server.counters.items()),
            *(
                f"kvstore_{k.replace('.', '_')}:{v}"
                for k, v in sorted(stats.items())
                if isinstance(v, int)
            ),
        ],
        "keyspace": [],
    }
    wanted = [a.decode(errors="replace").lower() for a in args[1:]]
    if not wanted or any(w in ("all", "everything", "default") for w in wanted):
        wanted = list(sections)
    text = "\r\n".join(
        f"# {name.capitalize()}\r\n" + "".join(line + "\r\n" for line in sections[name])
        for name in sections
        if name in wanted
    )
    return Verbatim(text.encode())


_CONFIG: dict[str, Callable[[Connection], str]] = {
    "maxclients": lambda c: str(c.server.config.maxclients),
    "timeout": lambda c: str(int(c.server.config.timeout)),
    "databases": lambda c: str(DATABASES),
    "proto-max-bulk-len": lambda c: str(c.server.config.limits.max_bulk),
    "save": lambda c: "",
    "appendonly": lambda c: "no",
}


@connection_command("CONFIG", -2)
async def _config(c: Connection, args: list[bytes]) -> Any:
    import fnmatch

    sub = args[1].upper()
    if sub == b"GET" and len(args) >= 3:
        patterns = [a.decode(errors="replace").lower() for a in args[2:]]
        found = [
            (name.encode(), value(c).encode())
            for name, value in _CONFIG.items()
            if any(fnmatch.fnmatchcase(name, p) for p in patterns)
        ]
        return Map(found)
    if sub == b"SET" and len(args) >= 4:
        raise err(
            f"CONFIG SET is not supported by kvstore serve: restart it with other options "
            f"('{args[2].decode(errors='replace')}')"
        )
    if sub == b"RESETSTAT" and len(args) == 2:
        for key in c.server.counters:
            c.server.counters[key] = 0
        return OK
    raise err(
        f"unknown subcommand or wrong number of arguments for '{args[1].decode(errors='replace')}'"
    )


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
