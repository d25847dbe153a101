"""``kvstore serve``: the Redis protocol over TCP (or a unix socket) in front of a store.

Any Redis client - redis-cli, redis-py, ioredis, go-redis - talks to it as to Redis; every
data command runs in kvstore's command layer (:mod:`kvstore.commands`, the same one the
:class:`kvstore.Redis` face uses), so a write is acknowledged only once the object store
acknowledged it. The connection-level commands (HELLO, AUTH, SELECT, CLIENT, MULTI ...)
are :mod:`.session`'s.

Guarantees and costs:

* **Order.** A connection's commands run one after the other, in the order sent; a
  pipeline's replies are written together once the commands read at once have run
  (how a connection runs: :mod:`.session`).
* **Acknowledged means durable.** A reply is written after its command returned; a
  command that failed against the object store replies with an error. Closing the server
  (SIGTERM: :meth:`Server.close`) stops accepting, lets every running command finish
  (bounded by ``grace``), writes its reply, then closes the connections.
* **Bounded reads.** Each connection reads through a :class:`~.protocol.CommandReader`
  with the server's :class:`~.protocol.Limits`: a length is refused at its header, before
  anything is kept for it. A protocol error is answered with Redis's message and the
  connection closed; the server and every other connection go on.
* **Exposure.** A server that has no password refuses to listen anywhere but loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from typing import Any

from ..api import AsyncKVStore
from ..commands import Commands
from . import admin, basic, subscriptions  # noqa: F401  (they register their commands)
from .auth import Guard
from .config import ServerConfig
from .protocol import ProtocolError, encode
from .pubsub import Hub
from .session import DATABASES, Connection

logger = logging.getLogger("kvstore.serve")


class Server:
    """A RESP server of one store; ``await start()``, then ``await close()``."""

    def __init__(self, store: AsyncKVStore, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.config.check()
        self.store = store
        self.started = time.time()
        self.clients: dict[int, Connection] = {}
        self.counters = {
            "total_connections_received": 0,
            "total_commands_processed": 0,
            "rejected_connections": 0,
            "total_error_replies": 0,
        }
        self._databases: dict[tuple[str | None, int], Commands] = {}
        self.guard = Guard(self.config.all_users())
        self.hub = Hub()
        self._server: asyncio.AbstractServer | None = None
        self._closing = False
        self.port = self.config.port

    def database(self, number: int, namespace: str | None = None) -> Commands:
        """The command layer of database ``number`` (0: the store - or the user's
        ``namespace`` of it; N: its namespace dbN)."""
        found = self._databases.get((namespace, number))
        if found is None:
            view = self.store if namespace is None else self.store.namespace(namespace)
            if number:
                view = view.namespace(f"db{number}")
            found = self._databases[namespace, number] = Commands(view._ctx)
        return found

    def reconfigure(self, **changes: Any) -> None:
        """CONFIG SET: a new configuration (checked as at start); a new ``timeout``
        applies to every connection from now on."""
        config = dataclasses.replace(self.config, **changes)
        config.check()
        self.config = config
        if "timeout" in changes:
            for connection in list(self.clients.values()):
                connection.arm_timeout()

    @property
    def accepting(self) -> bool:
        """False once :meth:`close` began: a connection arriving then is refused."""
        return not self._closing

    async def start(self) -> None:
        tls = self.config.tls_context()
        loop = asyncio.get_running_loop()
        factory = functools.partial(Connection, self)
        if self.config.unix_socket is not None:
            self._server = await loop.create_unix_server(
                factory, path=self.config.unix_socket, ssl=tls
            )
        else:
            self._server = await loop.create_server(
                factory,
                host=self.config.host,
                port=self.config.port,
                reuse_address=True,
                ssl=tls,
                ssl_handshake_timeout=10 if tls else None,
            )
            self.port = int(self._server.sockets[0].getsockname()[1])

    async def serve_forever(self) -> None:
        assert self._server is not None
        with contextlib.suppress(asyncio.CancelledError):
            await self._server.serve_forever()

    async def close(self) -> None:
        """Stop accepting; let running commands finish (``grace``) and answer; close."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        connections = list(self.clients.values())
        for connection in connections:
            connection.stop_reading()
        busy = [c.task for c in connections if c.task is not None]
        if busy:
            _, pending = await asyncio.wait(busy, timeout=self.config.grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        closing = [c.closed for c in connections]
        if closing:
            _, stuck = await asyncio.wait(closing, timeout=5)
            for connection in connections:
                if connection.closed in stuck and connection.transport is not None:
                    connection.transport.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)


__all__ = ["DATABASES", "ProtocolError", "Server", "ServerConfig", "encode"]
