"""Shared fixtures: real servers started by the tests, and stores on every backend.

Servers (moto S3, GCS emulator, redis-server) are started once per session on free loopback
ports by ``backends/`` and stopped at the end; nothing here talks to a port it did not start.
Every store gets a fresh prefix, so tests never see each other's objects.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # make `backends` importable without installing it
    sys.path.insert(0, str(ROOT))

import kvstore  # noqa: E402
from kvstore.blob import open_blob_store  # noqa: E402
from kvstore.stats import Stats  # noqa: E402

BACKENDS = ("memory", "local", "s3", "gcs")
CACHES = (None, "local")

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


@dataclass
class Target:
    """Where a test's store lives: a URL plus the storage_options to reach it."""

    backend: str
    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def open(self, **kwargs: Any) -> kvstore.KVStore:
        kwargs.setdefault("cache", None)
        return kvstore.open(self.url, storage_options=self.storage_options or None, **kwargs)

    def open_async(self, **kwargs: Any) -> kvstore.AsyncKVStore:
        kwargs.setdefault("cache", None)
        return kvstore.open_async(self.url, storage_options=self.storage_options or None, **kwargs)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    from backends import MotoS3Server

    with MotoS3Server() as server:
        yield server


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[Any]:
    from backends import GCSEmulator

    with GCSEmulator() as server:
        yield server


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
        unique = uuid.uuid4().hex[:12]
        if backend == "memory":
            return Target(backend, f"memory://test-{unique}")
        if backend == "local":
            return Target(backend, str(tmp_path_factory.mktemp("store") / unique))
        if backend == "s3":
            server = request.getfixturevalue("s3_server")
            return Target(backend, server.url_for("kvstore-test", unique), server.storage_options)
        if backend == "gcs":
            server = request.getfixturevalue("gcs_server")
            return Target(backend, server.url_for("kvstore-test", unique), server.storage_options)
        raise ValueError(backend)

    return make


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, make_target: Callable[[str], Target]) -> Target:
    """A fresh location on each backend in turn."""
    return make_target(request.param)


@pytest.fixture(params=CACHES, ids=lambda c: f"cache={c}")
def store(request: pytest.FixtureRequest, target: Target) -> Iterator[kvstore.KVStore]:
    """A KVStore on each backend, without and with the in-process cache."""
    cache = kvstore.LocalCache() if request.param == "local" else None
    with target.open(cache=cache) as s:
        yield s


class FakeClock:
    """Milliseconds since the epoch, moved only by the test. Starts at a whole second."""

    def __init__(self) -> None:
        self.now = (time.time_ns() // 10**9) * 1000

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def open_clocked(
    target: Target,
    clock: Callable[[], int],
    cache: kvstore.Cache | None = None,
    retry: kvstore.RetryPolicy | None = None,
    **kwargs: Any,
) -> kvstore.KVStore:
    """A store on ``target`` that reads the time from ``clock`` (expiry, log chunk ages)."""
    stats = Stats()
    blob = open_blob_store(target.url, target.storage_options or None, retry=retry, stats=stats)
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
