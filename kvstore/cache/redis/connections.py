"""How :class:`~kvstore.cache.redis.RedisCache` reaches Redis: one asyncio client per event
loop, one blocking connection pool per process (for the caller-thread hit path), and the
``run_id`` of the server each connection reached (the handshake that detects a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from typing import Any

from ...errors import ConfigurationError
from ..base import renew_lock_after_fork
from .scripts import _RUN_ID_LEN

_RESERVED = 2  # connections left outside the gate: health checks, late invalidations

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def _client_url(url: str) -> tuple[str, bool]:
    """The URL redis-py takes for ``url``, and whether it names a Redis Cluster."""
    scheme = url.partition("://")[0].lower()
    if scheme in _CLUSTER_SCHEMES:
        return _CLUSTER_SCHEMES[scheme] + url[len(scheme) :], True
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(f"not a Redis URL: {url!r}")
    return url, False


def _run_id_of(info: Any, default: bytes) -> bytes:
    """The run_id prefix in an ``INFO server`` reply (``default`` if there is none)."""
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("run_id:"):
            return line.split(":", 1)[1].strip()[:_RUN_ID_LEN].encode()
    return default


def _on_blocking_connect(connection: Any) -> None:
    """Every new blocking connection: the usual handshake, then note on the connection the
    run_id of the server it reached (per connection: after a restart, old and new
    connections may briefly coexist)."""
    connection.on_connect()
    connection.send_command("INFO", "server")
    try:
        info = connection.read_response()
    except Exception:  # INFO disabled (some managed Redis): no restart detection
        info = None
    connection.kvstore_run_id = _run_id_of(info, b"0" * _RUN_ID_LEN)


class RedisConnections:
    """The connection side of :class:`~kvstore.cache.redis.RedisCache`, its base class.

    A base class rather than an object the cache holds: the cache's hot paths reach the
    client, the gate and the pool through ``self`` with no extra attribute lookup. The
    subclass sets the configuration below, then calls :meth:`_init_connections`.
    """

    url: str
    cluster: bool
    socket_timeout: float
    connect_timeout: float
    max_connections: int

    def _init_connections(self) -> None:
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._run_id = b"0" * _RUN_ID_LEN  # learnt on connect (standalone Redis only)
        self._run_id_asked = float("-inf")  # when the INFO that gave _run_id was sent
        self._init_lock = asyncio.Lock()
        # More guarded calls in flight than pooled connections queue here rather than
        # fail with "Too many connections" (which would open the breaker of a healthy
        # Redis under a burst). redis-py's blocking pool would do the same at ~35 us more
        # per call; a Semaphore's uncontended acquire costs ~1 us.
        self._gate = asyncio.Semaphore(max(1, self.max_connections - _RESERVED))
        self._init_loop: asyncio.AbstractEventLoop | None = None
        # The blocking connection pool of lookup_now (callers' threads; one per process).
        self._blocking: Any = None
        self._blocking_pid = 0
        self._blocking_lock = threading.Lock()
        renew_lock_after_fork(self, "_blocking_lock")

    def _validate_url(self) -> None:
        """Build (without connecting) what a connection would be built from, so a typo in a
        URL option fails here rather than at the first call."""
        try:
            client = self._make_client()
            if not self.cluster:
                pool = client.connection_pool
                pool.connection_class(**pool.connection_kwargs)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"bad Redis URL {self.url!r}: {exc}") from exc

    def _make_client(self) -> Any:
        from redis.asyncio import Redis
        from redis.asyncio.cluster import RedisCluster
        from redis.asyncio.retry import Retry  # redis.retry.Retry cannot await
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        options: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            # One immediate retry for a broken pooled connection (Redis restarted); none
            # for timeouts: a hung Redis must cost one timeout, then the breaker decides.
            "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        }
        if self.cluster:
            return RedisCluster.from_url(self.url, **options)
        return Redis.from_url(
            self.url,
            max_connections=self.max_connections,
            redis_connect_func=self._on_connect,
            **options,
        )

    async def _connected(self) -> Any:
        """The client for the running loop; a cluster client maps its slots first (redis-py
        fails concurrent first commands on an uninitialised cluster client)."""
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        if self._init_loop is not loop:
            self._init_lock, self._init_loop = asyncio.Lock(), loop
        async with self._init_lock:
            if self._client is None or self._loop is not loop:
                client = self._make_client()
                if self.cluster:
                    await client.initialize()
                self._gate = asyncio.Semaphore(max(1, self.max_connections - _RESERVED))
                self._client, self._loop = client, loop
        return self._client

    async def _on_connect(self, connection: Any) -> None:
        """Every new connection: the usual handshake, then note the server's run_id.

        The answer to the most recently *asked* INFO wins: a connection whose INFO reached
        the server before a restart may finish its handshake after one that reached the
        restarted server, and must not put the old run_id back."""
        await connection.on_connect()
        asked = time.monotonic()
        await connection.send_command("INFO", "server")
        try:
            info = await connection.read_response()
        except Exception:  # INFO disabled (some managed Redis): no restart detection
            return
        if asked >= self._run_id_asked:
            self._run_id, self._run_id_asked = _run_id_of(info, self._run_id), asked

    def _blocking_pool(self) -> Any:
        """The blocking redis-py connection pool of ``lookup_now``, one per process (a
        forked child builds its own): same URL and timeouts as the asyncio client, at most
        ``max_connections``. Each connection notes the run_id of the server it reached."""
        if self._blocking is not None and self._blocking_pid == os.getpid():
            return self._blocking
        with self._blocking_lock:
            if self._blocking is None or self._blocking_pid != os.getpid():
                from redis import ConnectionPool

                self._blocking = ConnectionPool.from_url(
                    self.url,
                    socket_timeout=self.socket_timeout,
                    socket_connect_timeout=self.connect_timeout,
                    max_connections=self.max_connections,
                    redis_connect_func=_on_blocking_connect,
                )
                self._blocking_pid = os.getpid()
        return self._blocking

    async def _disconnect(self) -> None:
        """Close the asyncio client (if it belongs to the running loop) and this process's
        blocking pool; a dead connection is no error."""
        if self._client is not None and self._loop is asyncio.get_running_loop():
            client, self._client = self._client, None
            with contextlib.suppress(Exception):  # closing a dead connection is no error
                await client.aclose()
        self._client = None
        blocking, self._blocking = self._blocking, None
        if blocking is not None and self._blocking_pid == os.getpid():
            with contextlib.suppress(Exception):
                blocking.disconnect()
