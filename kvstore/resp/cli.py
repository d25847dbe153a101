"""``kvstore serve``: open the store given by ``--url``/``--cache``, serve the Redis
protocol on it until SIGTERM or SIGINT, then close gracefully (running commands finish
and are answered; nothing is acknowledged that the object store did not acknowledge)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from typing import IO, Any

from .. import open_async
from ..commands_cli import PROG, open_arguments
from ..errors import ConfigurationError
from ..http.config import HTTP_ARGUMENTS
from .auth import load_users
from .config import ServerConfig
from .loops import loop_factory, loop_name, run
from .server import Server

PASSWORD_ENV = "KVSTORE_REQUIREPASS"

ARGUMENTS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (
        ("--port",),
        {"type": int, "default": None, "help": "TCP port (default 6379, --http 8084; 0: any)"},
    ),
    (
        ("--bind",),
        {
            "default": "127.0.0.1",
            "help": "address to listen on (default 127.0.0.1; others need a password)",
        },
    ),
    (("--unix-socket",), {"metavar": "PATH", "help": "listen on a unix socket instead"}),
    (
        ("--requirepass",),
        {
            "metavar": "PASSWORD",
            "help": f"clients must AUTH with it (or set ${PASSWORD_ENV}: not shown by ps)",
        },
    ),
    (
        ("--users",),
        {
            "metavar": "FILE",
            "help": 'users, each confined to a namespace: JSON {"NAME": {"password": ..., '
            '"namespace": ...}}',
        },
    ),
    (("--tls-cert",), {"metavar": "PEM", "help": "speak TLS only, with this certificate"}),
    (("--tls-key",), {"metavar": "PEM", "help": "... and this private key"}),
    (("--maxclients",), {"type": int, "default": 10_000, "help": "connections at most"}),
    *HTTP_ARGUMENTS,
    (
        ("--timeout",),
        {"type": float, "default": 0.0, "help": "close a client idle this many seconds (0: never)"},
    ),
    (
        ("--loop",),
        {
            "choices": ("auto", "asyncio", "uvloop"),
            "default": "auto",
            "help": "event loop: uvloop when installed (auto; kvstore[server] installs it), "
            "else asyncio's",
        },
    ),
)


def serve(args: argparse.Namespace, out: IO[bytes]) -> int:
    if args.http:
        from ..http.cli import serve_http

        return serve_http(args)
    for option in ("tokens",):
        if getattr(args, option, None):
            raise ConfigurationError(f"--{option} goes with --http")
    config = ServerConfig(
        host=args.bind,
        port=6379 if args.port is None else args.port,
        unix_socket=args.unix_socket,
        requirepass=args.requirepass or os.environ.get(PASSWORD_ENV) or None,
        maxclients=args.maxclients,
        users=load_users(args.users) if args.users else (),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        timeout=args.timeout,
    )
    config.check()  # before the store is opened: a refused exposure costs nothing
    config.tls_context()  # a bad certificate or key fails here too
    loop_factory(args.loop)  # (a loop that cannot be had fails before the store opens)
    run(_serve(args, config), args.loop)
    return 0


async def _serve(args: argparse.Namespace, config: ServerConfig) -> None:
    store = open_async(args.url, **open_arguments(args))
    server = Server(store, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        # What is loaded by now (modules, the store, the command table) lives as long as
        # the server: out of the collector's sight, a full collection no longer walks it
        # (the request path allocates, so collections are frequent).
        gc.collect()
        gc.freeze()
        where = config.unix_socket or f"{config.host}:{server.port}"
        print(
            f"{PROG} serve: listening on {where} ({store.url}; {loop_name()})",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
        print(f"{PROG} serve: closing", file=sys.stderr, flush=True)
    finally:
        await server.close()
        await store.close()
