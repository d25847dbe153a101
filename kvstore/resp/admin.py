"""Connection commands about the server and its clients: CLIENT, COMMAND, INFO, CONFIG
(registered on :data:`.session.CONNECTION_COMMANDS`)."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..commands import COMMANDS, CommandError, Status
from ..commands.reply import OK, err, parse_int
from .loops import loop_name
from .protocol import Map, Verbatim
from .session import (
    CONNECTION_COMMANDS,
    DATABASES,
    REDIS_VERSION,
    Connection,
    client_name,
    connection_command,
)


@connection_command("CLIENT", -2)
async def _client(c: Connection, args: list[bytes]) -> Any:
    sub = args[1].upper()
    if sub == b"SETNAME" and len(args) == 3:
        c.name = client_name(args[2])
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
    """COMMAND INFO of one command: the server's own (it answers them first: PING,
    PUBLISH, SELECT ...), else the command layer's; None for an unknown one."""
    found = CONNECTION_COMMANDS.get(name)
    if found is not None:
        return [name.lower(), found[1], [Status(b"fast")], 0, 0, 0, [], [], [], []]
    spec = COMMANDS.get(name)
    if spec is None:
        return None
    flags = [Status(b"write")] if spec.write else [Status(b"readonly")]
    first = 0 if spec.arity in (1, -1) else 1
    return [name.lower(), spec.arity, flags, first, first, first, [], [], [], []]


@connection_command("INFO", -1)
async def _info(c: Connection, args: list[bytes]) -> Any:
    server = c.server
    stats = server.store.stats()
    sections = {
        "server": [
            f"redis_version:{REDIS_VERSION}",
            f"kvstore_version:{__version__}",
            "redis_mode:standalone",
            f"kvstore_event_loop:{loop_name()}",
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
            *(f"{k}:{v}" for k, v in info_fields(stats)),
        ],
        "keyspace": [],
    }
    wanted = [a.decode(errors="replace").lower() for a in args[1:]]
    if "keyspace" in wanted:  # asked for by name only: counting keys lists the store
        found = await c.database().execute([b"DBSIZE"])
        keys = found if isinstance(found, int) else 0
        sections["keyspace"] = [f"db{c.db}:keys={keys},expires=0,avg_ttl=0"] if keys else []
    if not wanted or any(w in ("all", "everything", "default") for w in wanted):
        wanted = list(sections)
    text = "\r\n".join(
        f"# {name.capitalize()}\r\n" + "".join(line + "\r\n" for line in sections[name])
        for name in sections
        if name in wanted
    )
    return Verbatim(text.encode())


def info_fields(stats: dict[str, Any]) -> list[tuple[str, int | float]]:
    """The store's counters as INFO fields: the numbers of ``store.stats()`` - what
    ``kvstore stats`` prints as JSON - each name prefixed and its dots made underscores
    (``requests.put`` -> ``kvstore_requests_put``); a nested report (the cache's) under
    its own name (``cache`` -> ``kvstore_cache_info_entries``). Text (a cache's URL,
    which may carry a password) is never shown."""
    fields: list[tuple[str, int | float]] = []

    def add(prefix: str, values: dict[str, Any]) -> None:
        for key, value in sorted(values.items()):
            name = prefix + key.replace(".", "_").replace("-", "_")
            if isinstance(value, dict):
                add(name + "_info_", value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                fields.append((name, value))

    add("kvstore_", stats)
    return fields


_CONFIG: dict[str, Callable[[Connection], str]] = {
    "maxclients": lambda c: str(c.server.config.maxclients),
    "timeout": lambda c: str(int(c.server.config.timeout)),
    "databases": lambda c: str(DATABASES),
    "proto-max-bulk-len": lambda c: str(c.server.config.limits.max_bulk),
    "save": lambda c: "",
    "appendonly": lambda c: "no",
}


_SETTABLE = {"maxclients": "maxclients", "timeout": "timeout"}
"""CONFIG SET: what a running server can change (the others are fixed at start)."""


def _config_set(c: Connection, pairs: list[bytes]) -> Any:
    """CONFIG SET name value [name value ...]: all applied, or none (as Redis)."""
    changes: dict[str, int] = {}
    for raw, value in zip(pairs[::2], pairs[1::2], strict=True):
        name = raw.decode(errors="replace").lower()
        if name not in _SETTABLE:
            if name in _CONFIG:
                raise err(
                    f"CONFIG SET failed (possibly related to argument '{name}') - kvstore "
                    "serve fixes it at start (restart it with other options)"
                )
            raise err(f"Unknown option or number of arguments for CONFIG SET - '{name}'")
        try:
            number = parse_int(value)
        except CommandError:
            number = -1
        if number < (1 if name == "maxclients" else 0):
            raise err(
                f"CONFIG SET failed (possibly related to argument '{name}') - argument "
                "couldn't be parsed into an integer"
            )
        changes[_SETTABLE[name]] = number
    c.server.reconfigure(**changes)
    return OK


@connection_command("CONFIG", -2)
async def _config(c: Connection, args: list[bytes]) -> Any:
    sub = args[1].upper()
    if sub == b"GET" and len(args) >= 3:
        patterns = [a.decode(errors="replace").lower() for a in args[2:]]
        found = [
            (name.encode(), value(c).encode())
            for name, value in _CONFIG.items()
            if any(fnmatch.fnmatchcase(name, p) for p in patterns)
        ]
        return Map(found)
    if sub == b"SET" and len(args) >= 4 and len(args) % 2 == 0:
        return _config_set(c, args[2:])
    if sub == b"RESETSTAT" and len(args) == 2:
        for key in c.server.counters:
            c.server.counters[key] = 0
        return OK
    raise err(
        f"unknown subcommand or wrong number of arguments for '{args[1].decode(errors='replace')}'"
    )
