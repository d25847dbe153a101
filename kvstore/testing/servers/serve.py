"""``kvstore serve`` as a managed process: the Redis protocol on a store, for a Redis
client (redis-cli, redis-benchmark, ioredis, an application) to talk to in tests,
benchmarks and ``python -m backends up --only ...,serve``."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ._process import HOST, BackendError, ManagedProcess, free_port
from .redis import RespAddress, _ping


class KVStoreServer(RespAddress, ManagedProcess):
    """``python -m kvstore serve`` on ``url`` (any store URL), on ``127.0.0.1``.

    ``cache`` is the CLI's ``--cache`` (``local``, ``none``, a ``redis://`` URL);
    ``storage_options`` are passed as ``--storage-option KEY=JSON``; ``requirepass``
    through the environment (not the command line)."""

    name = "kvstore-serve"

    def __init__(
        self,
        url: str,
        *,
        cache: str = "local",
        storage_options: Mapping[str, Any] | None = None,
        port: int | None = None,
        requirepass: str | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        stop_timeout: float = 30.0,
    ) -> None:
        super().__init__(startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self.store_url = url
        self.cache = cache
        self.storage_options = dict(storage_options or {})
        self.requirepass = requirepass
        self.extra_args = tuple(extra_args)
        self._port = port if port is not None else free_port()

    def _command(self) -> list[str]:
        cmd = [sys.executable, "-m", "kvstore", "serve", "--url", self.store_url]
        cmd += ["--cache", self.cache, "--port", str(self._port), "--bind", HOST]
        for key, value in self.storage_options.items():
            cmd += ["--storage-option", f"{key}={json.dumps(value)}"]
        return cmd + list(self.extra_args)

    def _child_env(self) -> dict[str, str] | None:
        env = dict(os.environ)
        env.pop("KVSTORE_REQUIREPASS", None)
        if self.requirepass:
            env["KVSTORE_REQUIREPASS"] = self.requirepass
        return env

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        # (NOAUTH when it wants a password: it is up either way)
        while not _ping(self._port, answers=(b"+PONG", b"-NOAUTH")):
            if not self.running:
                raise BackendError(f"kvstore serve exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"kvstore serve: no answer on port {self._port}")
            time.sleep(0.05)
