"""The library's own contract tests, run unchanged through the HTTP service's client.

Every test of tests/test_contract.py, tests/test_logs.py, tests/test_artifacts.py and
tests/test_records.py that takes nothing but a ``store`` runs here with ``store`` = ``kvstore.open("kvstore+http://
...")``: the same calls, the same expected results and errors, each test in a namespace of
its own on one service over memory:// (the service's store is the library, tested on
every backend by those modules; what this proves is the client and the wire). The tests
that do not apply are listed in SKIPPED, each with its reason.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import test_artifacts
import test_contract
import test_logs
import test_records
import test_usage
from http_server import serving

import kvstore
from kvstore.blob import open_blob_store
from kvstore.stats import Stats
from kvstore.testing import ClockedBlobStore, FakeClock

SKIPPED: dict[str, str] = {
    "test_stats_count_requests": "counts object-store requests; through the service, stats() "
    "counts requests to the service (tests/test_remote.py)",
    "test_namespace_shares_stats": "the same: object-store requests",
    "test_repr_and_url": "url is the service's (kvstore+http://), not a storage URL",
    "test_young_chunks_are_not_merged": "counts the log's objects in the store itself",
    "test_trim_and_delete_remove_old_objects": "counts the log's objects in the store itself",
}
"""Tests of those modules that do not apply to a store reached through the service."""


def _taking(fixture: str, *modules: Any) -> dict[str, Callable[..., Any]]:
    """The tests of ``modules`` that take ``fixture`` and nothing else."""
    found = {}
    for module in modules:
        for name, test in vars(module).items():
            if not name.startswith("test_") or not callable(test) or name in SKIPPED:
                continue
            if list(inspect.signature(test).parameters) == [fixture]:
                found[name] = test
    return found


REUSED = {
    **_taking("store", test_contract, test_logs, test_artifacts, test_records, test_usage),
    # expiry, to the millisecond: a service of its own per test, whose store reads the
    # test's clock (the service runs in this process)
    **_taking("clocked", test_contract, test_logs),
}
globals().update(REUSED)


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    with serving(lambda: kvstore.open_async(f"memory://remote-{uuid.uuid4().hex}")) as base:
        yield "kvstore+" + base


@pytest.fixture
def store(service: str) -> Iterator[kvstore.KVStore]:
    with kvstore.open(f"{service}/t-{uuid.uuid4().hex[:12]}") as remote:
        yield remote


@pytest.fixture
def clocked() -> Iterator[tuple[kvstore.KVStore, FakeClock]]:
    clock = FakeClock()

    def open_store() -> kvstore.AsyncKVStore:
        url = f"memory://remote-{uuid.uuid4().hex}"
        blob = ClockedBlobStore(open_blob_store(url, stats=Stats()), clock)
        return kvstore.AsyncKVStore(blob, kvstore.NoCache(), clock=clock)

    with serving(open_store) as base, kvstore.open("kvstore+" + base) as remote:
        yield remote, clock


def test_the_reused_tests_are_collected() -> None:
    assert len(REUSED) >= 40, sorted(REUSED)
