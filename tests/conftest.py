"""Shared fixtures: real servers started by the tests, and stores on every backend.

Servers (moto S3, GCS emulator, redis-server) are started once per session on free loopback
ports by ``backends/`` and stopped at the end; nothing here talks to a port it did not start.
Every store gets a fresh prefix, so tests never see each other's objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # make `backends` importable without installing it
    sys.path.insert(0, str(ROOT))

import kvstore  # noqa: E402
from kvstore.blob import Blob, BlobStore, WrapperBlobStore, open_blob_store  # noqa: E402
from kvstore.blob.base import DatedPage  # noqa: E402
from kvstore.stats import Stats  # noqa: E402
from kvstore.testing import ClockedBlobStore, FakeClock  # noqa: E402  (FakeClock re-exported)

CACHES = (None, "local")

# tests/frameworks runs the frameworks' own published suites (langchain-tests ...) in the
# `frameworks` tox env, which installs them; the main env does not collect it.
collect_ignore = [] if os.environ.get("KVSTORE_FRAMEWORK_TESTS") else ["frameworks"]

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


class LatencyBlobStore(WrapperBlobStore):
    """Any blob store with ``delay`` seconds added to every request (each primitive, and
    each page of a listing): the memory backend then behaves like a (very fast) remote
    store - requests overlap and interleave, so ordering bugs hidden by memory's instant,
    in-order answers show. Counting is the inner store's (WrapperBlobStore)."""

    delay = 0.001

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        await asyncio.sleep(self.delay)
        return await self.inner._get(path, head)

    async def _get_range(self, path: str, start: int, size: int) -> Blob | None:
        await asyncio.sleep(self.delay)
        return await self.inner._get_range(path, start, size)

    async def _put(self, path: str, data: bytes) -> str:
        await asyncio.sleep(self.delay)
        return await self.inner._put(path, data)

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        await asyncio.sleep(self.delay)
        return await self.inner._put_if_absent(path, data)

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        await asyncio.sleep(self.delay)
        return await self.inner._put_if_match(path, data, tag)

    async def _delete(self, path: str) -> None:
        await asyncio.sleep(self.delay)
        await self.inner._delete(path)

    async def _delete_many(self, paths: Sequence[str]) -> None:
        await asyncio.sleep(self.delay)
        await self.inner._delete_many(paths)

    async def _delete_if_match(self, path: str, tag: str) -> bool:
        await asyncio.sleep(self.delay)
        return await self.inner._delete_if_match(path, tag)

    async def _list(self, prefix: str) -> AsyncIterator[list[str]]:
        async for page in self.inner._list(prefix):
            await asyncio.sleep(self.delay)
            yield page

    async def _list_after(
        self, prefix: str, start_after: str | None, page_size: int | None
    ) -> AsyncIterator[list[str]]:
        async for page in self.inner._list_after(prefix, start_after, page_size):
            await asyncio.sleep(self.delay)
            yield page

    async def _list_dated(self, prefix: str) -> AsyncIterator[DatedPage]:
        async for page in self.inner._list_dated(prefix):
            await asyncio.sleep(self.delay)
            yield page


Wrap = Callable[[BlobStore], BlobStore]


@dataclass
class Target:
    """Where a test's store lives: a URL plus the storage_options to reach it, and
    optionally ``wrap``, which puts a WrapperBlobStore in front of the URL's blob store
    (then stores are opened with ``kvstore.open(blob_instance)``)."""

    backend: str
    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    wrap: Wrap | None = None

    def blob_store(
        self, *, retry: kvstore.RetryPolicy | None = None, stats: Stats | None = None
    ) -> BlobStore:
        """A fresh blob store on this target (wrapped if the backend says so)."""
        blob = open_blob_store(
            self.url, self.storage_options or None, retry=retry, stats=stats or Stats()
        )
        return blob if self.wrap is None else self.wrap(blob)

    def open(self, **kwargs: Any) -> kvstore.KVStore:
        kwargs.setdefault("cache", None)
        if self.wrap is not None:
            return kvstore.open(self.blob_store(retry=kwargs.pop("retry", None)), **kwargs)
        return kvstore.open(self.url, storage_options=self.storage_options or None, **kwargs)

    def open_async(self, **kwargs: Any) -> kvstore.AsyncKVStore:
        kwargs.setdefault("cache", None)
        if self.wrap is not None:
            return kvstore.open_async(self.blob_store(retry=kwargs.pop("retry", None)), **kwargs)
        return kvstore.open_async(self.url, storage_options=self.storage_options or None, **kwargs)


# -- the backends, in ONE registry -------------------------------------------------------------
# name -> factory(request, tmp_path_factory, unique) -> a fresh, empty Target

MakeTarget = Callable[[pytest.FixtureRequest, pytest.TempPathFactory, str], Target]


def _server_target(backend: str, fixture: str, **options: Any) -> MakeTarget:
    def make(request: pytest.FixtureRequest, _tmp: pytest.TempPathFactory, unique: str) -> Target:
        server = request.getfixturevalue(fixture)
        url = server.url_for("kvstore-test", unique)
        return Target(backend, url, {**server.storage_options, **options})

    return make


BACKEND_REGISTRY: dict[str, MakeTarget] = {
    "memory": lambda _r, _t, unique: Target("memory", f"memory://test-{unique}"),
    "memory+latency": lambda _r, _t, unique: Target(
        "memory+latency", f"memory://test-{unique}", wrap=LatencyBlobStore
    ),
    "local": lambda _r, tmp, unique: Target("local", str(tmp.mktemp("store") / unique)),
    "s3": _server_target("s3", "s3_server"),
    "gcs": _server_target("gcs", "gcs_server"),
    # A real S3 server that enforces conditional writes atomically (moto serialises them):
    # where claims about atomicity and the object store's own clock are proven.
    "seaweedfs": _server_target("seaweedfs", "seaweedfs_server"),
    # s3:// opens on obstore where it is installed (the default transport); the s3fs
    # transport, which a user gets by choice or with s3fs-only options, on the same servers:
    "s3fs": _server_target("s3fs", "s3_server", transport="s3fs"),
    "seaweedfs+s3fs": _server_target("seaweedfs+s3fs", "seaweedfs_server", transport="s3fs"),
}

# The groups tests are parametrized over (@pytest.mark.parametrize("backend", FAST)).
ALL = ["memory", "local", "s3", "gcs"]  # every real backend
CONTRACT = [*ALL, "memory+latency"]  # the `target` fixture: contract, blob, log, artifact suites
FAST = ["memory", "local"]  # in-process: no server
FAST_AND_S3 = ["memory", "local", "s3"]  # where GCS adds time but nothing new
SHARED = ["local", "seaweedfs", "gcs"]  # seen by several processes (memory:// is per process)
# Races between processes: stores that enforce conditional writes atomically themselves -
# local disk (os.link, flock) and a real S3 server. Not moto: it checks preconditions but
# not atomically, so backends/ serialises its requests (a layer that would make the race
# pass for it); not the GCS emulator, whose preconditions backends/ enforces.
RACES = ["local", "seaweedfs"]
FILES = ["local", "s3"]  # durable and shared, without the slow GCS emulator
REMOTE = ["s3", "gcs"]  # reached over the network


def _probed(server: Any) -> Any:
    """A started test server whose precondition probe (kvstore/blob/preconditions.py) has
    run in this process, so no test's request counts depend on whether it came first
    (tests/test_preconditions.py probes on purpose)."""
    from kvstore.blob import preconditions

    async def probe() -> None:
        blob = open_blob_store(
            server.url_for("kvstore-test", "probe"), server.storage_options, stats=Stats()
        )
        try:
            await preconditions.ensure(blob, "atomic_create")
        finally:
            await blob.close()

    asyncio.run(probe())
    return server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    from backends import MotoS3Server

    with MotoS3Server() as server:
        yield _probed(server)


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[Any]:
    from backends import GCSEmulator

    with GCSEmulator() as server:
        yield _probed(server)


@pytest.fixture(scope="session")
def seaweedfs_server() -> Iterator[Any]:
    from backends import SeaweedFS

    with SeaweedFS(buckets=("kvstore-test",)) as server:
        yield _probed(server)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    from backends import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture
def make_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Target]:
    """A factory: ``make_target("s3")`` -> a fresh, empty location on that backend."""

    def make(backend: str) -> Target:
        if backend not in BACKEND_REGISTRY:
            raise ValueError(f"unknown backend {backend!r}; known: {sorted(BACKEND_REGISTRY)}")
        return BACKEND_REGISTRY[backend](request, tmp_path_factory, uuid.uuid4().hex[:12])

    return make


@pytest.fixture(params=CONTRACT)
def target(request: pytest.FixtureRequest, make_target: Callable[[str], Target]) -> Target:
    """A fresh location on each backend of CONTRACT in turn."""
    return make_target(request.param)


@pytest.fixture(params=CACHES, ids=lambda c: f"cache={c}")
def store(request: pytest.FixtureRequest, target: Target) -> Iterator[kvstore.KVStore]:
    """A KVStore on each backend, without and with the in-process cache."""
    cache = kvstore.LocalCache() if request.param == "local" else None
    with target.open(cache=cache) as s:
        yield s


@pytest.fixture
def open_cached(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., kvstore.KVStore]]:
    """``open_cached(target, cache, **kwargs)``: a store on ``target`` with no cache
    (``None``), the in-process one (``"local"``) or a shared Redis (``"redis"``: the
    session's redis-server); every store opened is closed after the test."""
    opened: list[kvstore.KVStore] = []

    def open_(target: Target, cache: str | None, **kwargs: Any) -> kvstore.KVStore:
        chosen: Any = None
        if cache == "redis":
            chosen = request.getfixturevalue("redis_server").url
        elif cache == "local":
            chosen = kvstore.LocalCache()
        store = target.open(cache=chosen, **kwargs)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def open_clocked(
    target: Target,
    clock: Callable[[], int],
    cache: kvstore.Cache | None = None,
    retry: kvstore.RetryPolicy | None = None,
    wrap: Wrap | None = None,
    *,
    store_clock: bool = True,
    **kwargs: Any,
) -> kvstore.KVStore:
    """A store on ``target`` that reads the time from ``clock`` (expiry, log chunk ages),
    on an object store whose own clock is ``clock`` too (ClockedBlobStore: its dated
    listings, which decide when a chunk is old, follow the test's time) unless
    ``store_clock`` is False (then the object store keeps its real clock, and ``clock`` is
    only the client's: a client with a wrong clock). ``wrap`` puts a WrapperBlobStore
    (fault injection) in front."""
    stats = Stats()
    blob = target.blob_store(retry=retry, stats=stats)
    if store_clock:
        blob = ClockedBlobStore(blob, clock)
    if wrap is not None:
        blob = wrap(blob)
    core = kvstore.AsyncKVStore(
        blob, cache or kvstore.NoCache(), stats=stats, clock=clock, **kwargs
    )
    return kvstore.KVStore(core)


@pytest.fixture(params=CACHES, ids=lambda c: f"cache={c}")
def clocked(request: pytest.FixtureRequest, target: Target) -> Iterator[tuple[Any, FakeClock]]:
    """(store, clock) on each backend x cache, the store reading time from ``clock``."""
    clock = FakeClock()
    cache = kvstore.LocalCache() if request.param == "local" else None
    with open_clocked(target, clock, cache) as s:
        yield s, clock


@contextlib.contextmanager
def backends_up(only: str, last_line: str, timeout: float = 60) -> Iterator[list[str]]:
    """``python -m backends up --only ONLY`` until it prints a line starting with
    ``last_line``; yields the lines printed so far. Afterwards (SIGINT) it must exit 0 and
    say it stopped everything."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "backends", "up", "--only", only],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while not any(line.startswith(last_line) for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, lines
            lines.append(proc.stdout.readline().rstrip("\n"))
        yield lines
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "backends stopped" in err


def exports(lines: list[str]) -> dict[str, str]:
    """The ``export NAME=value`` lines of ``backends up``, as a dict (quotes removed)."""
    return {
        name: value.strip("'")
        for name, value in (
            line.removeprefix("export ").split("=", 1)
            for line in lines
            if line.startswith("export ")
        )
    }


def stable_repr(value: object) -> str:
    """A parametrized test's id that is the same in every process: ``repr``, except for
    objects whose repr holds their address (``<object object at 0x...>``), named by type.
    pytest-xdist's workers must collect the same ids (.ci/run runs the suite with -n)."""
    text = repr(value)
    return f"<{type(value).__name__}>" if " at 0x" in text else text
