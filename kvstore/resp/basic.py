"""The connection commands every client sends, registered on
:data:`.session.CONNECTION_COMMANDS`: PING, ECHO, QUIT, RESET, AUTH, HELLO, SELECT and
the transaction commands MULTI/EXEC/DISCARD/WATCH/UNWATCH (a transaction's rules are the
command layer's: :meth:`kvstore.commands.core.Core.watched_transaction`)."""

from __future__ import annotations

from typing import Any

from ..commands import CommandError, Status
from ..commands.reply import OK, err, parse_int, wrong_args
from .protocol import NULL_ARRAY, Map
from .session import DATABASES, REDIS_VERSION, Connection, client_name, connection_command
from .shapes import resp3_shape


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
            name = client_name(rest[1])
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
