"""A pytest plugin that runs redis-py's own test suite against a client factory.

Loaded into a pytest run *inside redis-py's source distribution* (``-p redispy_plugin``,
with this directory on PYTHONPATH) by tests/test_redispy_suite.py. It is inert unless
``KVSTORE_REDISPY_CLIENT`` or ``KVSTORE_REDISPY_ASYNC_CLIENT`` is set.

How redis-py's clients are replaced
-----------------------------------
redis-py's client fixtures live in its own conftests, next to the tests, so fixtures
from a plugin cannot shadow them (a conftest's fixture is closer to the test). Instead,
in ``pytest_configure`` - after pytest has imported the conftests of the given test
paths, before the session's fixture manager reads their fixtures - this plugin replaces
two attributes of those conftest modules:

* ``tests.conftest._get_client`` - every sync client fixture (``r``, ``decoded_r``,
  ``r2``, ``r_timeout``, ...) and the tests that build a client themselves call it;
* ``tests.test_asyncio.conftest.create_redis`` - the async client factory fixture that
  the async ``r``, ``decoded_r`` and ``r2`` fixtures (and some tests) call.

Both then build clients with the factory named by ``KVSTORE_REDISPY_CLIENT`` /
``KVSTORE_REDISPY_ASYNC_CLIENT`` (``"module:function"``), called as
``factory(decode_responses, **kwargs)`` with the keyword arguments the test asked for;
an async factory may return the client or an awaitable of it. After each test the
client's database is flushed and the client closed, as redis-py's fixtures do.

Server facts
------------
redis-py's conftest asks the server at ``--redis-url`` for INFO when the session starts;
its version-gated markers (``skip_if_server_version_lt``) read the answer. With
``KVSTORE_REDISPY_SERVER_VERSION`` set, this plugin answers instead (a standalone,
64-bit, non-enterprise server of that version, no modules) and nothing is contacted.

Selection and results
---------------------
``KVSTORE_REDISPY_SELECT`` names a JSON file ``{"select": [...], "xfail": {...}}`` of
test names ``"<file>::<Class>::<test>"`` (parametrised ids included); every other test
collected is deselected, and the ``xfail`` ones get a strict xfail marker with the
given reason. ``KVSTORE_REDISPY_STATS`` names a JSON file this plugin writes at the end:
how many clients the factories built, and which selected names were not found.

The built-in factories
----------------------
:func:`redis_server_client` / :func:`redis_server_async_client` - plain redis-py clients
for ``KVSTORE_REDISPY_REDIS_URL``; :func:`kvstore_client` / :func:`kvstore_async_client`
- ``kvstore.Redis`` / ``kvstore.AsyncRedis`` opened with the JSON keyword arguments in
``KVSTORE_REDISPY_KVSTORE`` (``url``, ``cache``, ``storage_options``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

CLIENT_ENV = "KVSTORE_REDISPY_CLIENT"
ASYNC_CLIENT_ENV = "KVSTORE_REDISPY_ASYNC_CLIENT"
SERVER_VERSION_ENV = "KVSTORE_REDISPY_SERVER_VERSION"
SELECT_ENV = "KVSTORE_REDISPY_SELECT"
STATS_ENV = "KVSTORE_REDISPY_STATS"
REDIS_URL_ENV = "KVSTORE_REDISPY_REDIS_URL"
KVSTORE_ENV = "KVSTORE_REDISPY_KVSTORE"
AUDIT_ENV = "KVSTORE_REDISPY_AUDIT"
TRACEMALLOC_ENV = "KVSTORE_REDISPY_TRACEMALLOC"

SYNC_CONFTEST = "tests.conftest"
ASYNC_CONFTEST = "tests.test_asyncio.conftest"

# Keyword arguments redis-py's fixtures pass that only mean something to redis-py's own
# connection machinery; they are not handed to a factory.
_CONNECTION_ONLY = ("single_connection_client", "from_url", "url", "cls")

_stats: dict[str, Any] = {
    "clients_built": 0,
    "missing": [],
    "selected": 0,
    "collected": 0,
    "commands": {},  # test id -> commands the server executed for it (with AUDIT_ENV)
}

# What the audit does not charge to a test: connection handshakes and its own requests.
_AUDIT_IGNORES = frozenset({
    "hello", "client|setinfo", "select", "auth", "info", "config|resetstat",
    "client", "config",  # Redis < 7 counts subcommands under the container
})  # fmt: skip


def load_factory(spec: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise pytest.UsageError(f"client factory {spec!r} is not of the form 'module:function'")
    factory = getattr(importlib.import_module(module_name), attr, None)
    if not callable(factory):
        raise pytest.UsageError(f"client factory {spec!r}: no such function")
    return factory  # type: ignore[no-any-return]


def _factory_kwargs(kwargs: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    kwargs = {k: v for k, v in kwargs.items() if k not in _CONNECTION_ONLY}
    return bool(kwargs.pop("decode_responses", False)), kwargs


# -- the sync side: tests.conftest._get_client -----------------------------------------------


def _sync_get_client(factory: Callable[..., Any]) -> Callable[..., Any]:
    def _get_client(
        cls: Any,
        request: Any,
        single_connection_client: bool = True,
        flushdb: bool = True,
        from_url: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Replaces redis-py's ``tests.conftest._get_client`` (same signature)."""
        decode_responses, rest = _factory_kwargs(kwargs)
        client = factory(decode_responses, **rest)
        _stats["clients_built"] += 1
        if request is not None:

            def teardown() -> None:
                try:
                    if flushdb:
                        client.flushdb()
                finally:
                    close = getattr(client, "close", None)
                    if close is not None:
                        close()

            request.addfinalizer(teardown)
        return client

    return _get_client


# -- the async side: tests.test_asyncio.conftest.create_redis ---------------------------------


def _async_create_redis(factory: Callable[..., Any]) -> Any:
    import pytest_asyncio

    async def create_redis() -> AsyncIterator[Callable[..., Any]]:
        """Replaces redis-py's async ``create_redis`` fixture (a client factory)."""
        clients: list[tuple[Any, bool]] = []

        async def client_factory(flushdb: bool = True, **kwargs: Any) -> Any:
            """redis-py's ``create_redis(url=..., cls=..., flushdb=True, **kwargs)``."""
            decode_responses, rest = _factory_kwargs(kwargs)
            client = factory(decode_responses, **rest)
            if inspect.isawaitable(client):
                client = await client
            _stats["clients_built"] += 1
            clients.append((client, flushdb))
            return client

        yield client_factory

        for client, flushdb in clients:
            try:
                if flushdb:
                    await client.flushdb()
            finally:
                close = getattr(client, "aclose", None) or getattr(client, "close", None)
                if close is not None:
                    result = close()
                    if inspect.isawaitable(result):
                        await result

    # No params: redis-py's own create_redis runs every async test twice (a single
    # connection and a pool); for a factory that distinction does not exist.
    return pytest_asyncio.fixture(create_redis, name="create_redis")


# -- server facts: tests.conftest._get_info ----------------------------------------------------


def _fake_get_info(version: str) -> Callable[[str], dict[str, Any]]:
    def _get_info(redis_url: str) -> dict[str, Any]:
        """Replaces redis-py's ``tests.conftest._get_info``: no server is contacted."""
        return {
            "redis_version": version,
            "arch_bits": 64,
            "cluster_enabled": False,
            "enterprise": False,
            "modules": [],
        }

    return _get_info


def _no_tracemalloc() -> None:
    """Replaces redis-py's autouse fixture that runs the whole session under tracemalloc
    (it doubles the run time here)."""


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    sync_spec = os.environ.get(CLIENT_ENV)
    async_spec = os.environ.get(ASYNC_CLIENT_ENV)
    version = os.environ.get(SERVER_VERSION_ENV)
    if not (sync_spec or async_spec or version):
        return
    sync_conftest = sys.modules.get(SYNC_CONFTEST)
    if sync_conftest is None:
        raise pytest.UsageError(
            f"redispy_plugin: {SYNC_CONFTEST} is not imported; run pytest from the root of "
            "redis-py's source distribution and name its test files on the command line"
        )
    if os.environ.get(TRACEMALLOC_ENV) != "1":
        sync_conftest.enable_tracemalloc = pytest.fixture(  # type: ignore[attr-defined]
            _no_tracemalloc, scope="session", autouse=True, name="enable_tracemalloc"
        )
    if version:
        sync_conftest._get_info = _fake_get_info(version)  # type: ignore[attr-defined]
    if sync_spec:
        sync_conftest._get_client = _sync_get_client(load_factory(sync_spec))  # type: ignore[attr-defined]
    async_conftest = sys.modules.get(ASYNC_CONFTEST)
    if async_spec and async_conftest is not None:
        # Read by the session's fixture manager when the session starts (after this hook).
        async_conftest.create_redis = _async_create_redis(load_factory(async_spec))  # type: ignore[attr-defined]


def _test_name(item: pytest.Item) -> str:
    """``tests/test_commands.py::TestRedisCommands::test_get_and_set`` (no parameters)."""
    return item.nodeid.split("[", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    path = os.environ.get(SELECT_ENV)
    if not path:
        return
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    select = set(spec["select"])
    xfail: dict[str, str] = spec.get("xfail", {})
    keep, drop = [], []
    for item in items:
        name = _test_name(item)
        if name in select or item.nodeid in select:
            keep.append(item)
            reason = xfail.get(item.nodeid) or xfail.get(name)
            if reason:
                item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
        else:
            drop.append(item)
    found = {_test_name(item) for item in keep} | {item.nodeid for item in keep}
    _stats["missing"] = sorted(select - found)
    _stats["selected"] = len(select)
    _stats["collected"] = len(keep)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


_admin: Any = None


@pytest.fixture(autouse=True)
def _redispy_command_audit(request: pytest.FixtureRequest) -> Any:
    """With ``KVSTORE_REDISPY_AUDIT`` set: the commands the server at
    ``KVSTORE_REDISPY_REDIS_URL`` executed during each test (its INFO commandstats, reset
    before the test; read after every other fixture of the test has finished)."""
    global _admin
    if not os.environ.get(AUDIT_ENV):
        yield
        return
    if _admin is None:
        import redis

        _admin = redis.Redis.from_url(os.environ[REDIS_URL_ENV], protocol=2)
    _admin.config_resetstat()
    yield
    commands = {
        name.removeprefix("cmdstat_")
        for name in _admin.info("commandstats")
        if name.startswith("cmdstat_")
    }
    _stats["commands"][request.node.nodeid] = sorted(
        c.upper().replace("|", " ") for c in commands - _AUDIT_IGNORES
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get(STATS_ENV)
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(_stats, f)


# -- built-in factories -------------------------------------------------------------------------


def redis_server_client(decode_responses: bool = False, **kwargs: Any) -> Any:
    """A redis-py ``redis.Redis`` for the server at ``$KVSTORE_REDISPY_REDIS_URL``."""
    import redis

    return redis.Redis.from_url(
        os.environ[REDIS_URL_ENV], decode_responses=decode_responses, **kwargs
    )


def redis_server_async_client(decode_responses: bool = False, **kwargs: Any) -> Any:
    """A redis-py ``redis.asyncio.Redis`` for the server at ``$KVSTORE_REDISPY_REDIS_URL``."""
    import redis.asyncio

    return redis.asyncio.Redis.from_url(
        os.environ[REDIS_URL_ENV], decode_responses=decode_responses, **kwargs
    )


def _kvstore_options() -> dict[str, Any]:
    options: dict[str, Any] = json.loads(os.environ[KVSTORE_ENV])
    if not options.get("storage_options"):
        options.pop("storage_options", None)
    return options


def kvstore_client(decode_responses: bool = False, **kwargs: Any) -> Any:
    """``kvstore.Redis(**$KVSTORE_REDISPY_KVSTORE, decode_responses=...)``."""
    import kvstore

    return kvstore.Redis(**_kvstore_options(), decode_responses=decode_responses, **kwargs)  # type: ignore[attr-defined]


def kvstore_async_client(decode_responses: bool = False, **kwargs: Any) -> Any:
    """``kvstore.AsyncRedis(...)``, the asyncio twin of :func:`kvstore_client`."""
    import kvstore

    return kvstore.AsyncRedis(**_kvstore_options(), decode_responses=decode_responses, **kwargs)  # type: ignore[attr-defined]
