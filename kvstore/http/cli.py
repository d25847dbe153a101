"""``kvstore serve --http``: the HTTP service on uvicorn, until SIGTERM or SIGINT (requests
in flight are answered first - up to 30 s - then the store is closed)."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .. import open_async
from ..commands_cli import PROG, open_arguments
from ..errors import ConfigurationError
from .app import create_app
from .config import DEFAULT_PORT, TOKEN_ENV, HttpConfig, load_tokens

GRACE_S = 30


def serve_http(args: argparse.Namespace) -> int:
    for option in ("requirepass", "users"):
        if getattr(args, option, None):
            raise ConfigurationError(
                f"--{option} is the Redis protocol's; the HTTP service takes --tokens FILE "
                f"(or ${TOKEN_ENV})"
            )
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigurationError("TLS needs both --tls-cert and --tls-key")
    config = HttpConfig(
        host=args.bind,
        port=DEFAULT_PORT if args.port is None else args.port,
        tokens=load_tokens(args.tokens, os.environ.get(TOKEN_ENV)),
        max_body=args.max_body,
    )
    config.check()  # before the store is opened: a refused exposure costs nothing
    options = open_arguments(args)  # a bad key file fails here, before serving

    def open_store() -> object:
        return open_async(args.url, **options)

    app = create_app(open_store, config)  # type: ignore[arg-type]
    import uvicorn

    where = args.unix_socket or f"{config.host}:{config.port}"
    print(f"{PROG} serve --http: listening on {where}", file=sys.stderr, flush=True)
    # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again for the
    # handler it found - by default the process would die of it: exit 0 instead (as
    # `kvstore serve` does), also for a signal before uvicorn takes them over.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        uds=args.unix_socket,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        limit_concurrency=args.maxclients,
        timeout_graceful_shutdown=GRACE_S,
        log_level="warning",
        access_log=False,
        server_header=False,
        loop=args.loop,
    )
    return 0


def _stopped(signum: int, frame: object) -> None:
    raise SystemExit(0)
