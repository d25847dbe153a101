"""Stateful property test: the value API against a plain dict model with expiry.

A fake clock is injected into AsyncKVStore, so expiry is exact and deterministic: time only
moves when the ``advance_clock`` rule says so. The model keeps every stored object,
including expired ones that ``purge_expired`` has not removed yet, because ``keys()`` lists
them (see ``AsyncKVStore.scan_iter``).
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import kvstore
from kvstore.blob import open_blob_store
from kvstore.portal import portal
from kvstore.stats import Stats
from kvstore.testing import FakeClock

KEYS = ["a", "ab", "a/b", "ключ", "..", "x\x00y"]
PREFIXES = ["", "a", "a/", "к", ".", "x", "zz"]

key_st = st.sampled_from(KEYS)
keys_st = st.lists(key_st, min_size=1, max_size=4)
value_st = st.one_of(st.binary(max_size=12), st.integers(-1000, 1000))
px_st = st.one_of(st.integers(1, 20_000), st.sampled_from([1, 500, 999, 1000, 1500]))
ttl_st = st.one_of(st.none(), px_st)


def as_bytes(value: bytes | int) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


class ValueModel(RuleBasedStateMachine):
    """Subclassed per backend with ``open_store(clock) -> KVStore``."""

    open_store: Callable[[FakeClock], kvstore.KVStore]

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.store = type(self).open_store(self.clock)
        self.model: dict[str, tuple[bytes, int]] = {}  # key -> (value, expires_at_ms or 0)

    def teardown(self) -> None:
        self.store.close()

    # -- model helpers ---------------------------------------------------------------------

    def live(self, key: str) -> tuple[bytes, int] | None:
        found = self.model.get(key)
        if found is None or (found[1] and found[1] <= self.clock.now):
            return None
        return found

    def expected_pttl(self, key: str) -> int:
        found = self.live(key)
        if found is None:
            return -2
        return -1 if found[1] == 0 else found[1] - self.clock.now

    # -- rules -----------------------------------------------------------------------------

    @rule(
        key=key_st,
        value=value_st,
        mode=st.sampled_from(["plain", "nx", "xx"]),
        keepttl=st.booleans(),
        px=ttl_st,
    )
    def set(self, key: str, value: bytes | int, mode: str, keepttl: bool, px: int | None) -> None:
        if keepttl:
            px = None
        result = self.store.set(
            key, value, px=px, nx=mode == "nx", xx=mode == "xx", keepttl=keepttl
        )
        live = self.live(key)
        if (mode == "nx" and live is not None) or (mode == "xx" and live is None):
            assert result is None
            return
        assert result is True
        if px is not None:
            expires = self.clock.now + px
        elif keepttl and live is not None:
            expires = live[1]
        else:
            expires = 0
        self.model[key] = (as_bytes(value), expires)

    @rule(key=key_st, value=value_st, px=px_st)
    def set_with_ttl(self, key: str, value: bytes | int, px: int) -> None:
        self.set(key, value, "plain", keepttl=False, px=px)

    @rule(mapping=st.dictionaries(key_st, value_st, min_size=1, max_size=3))
    def mset(self, mapping: dict[str, bytes | int]) -> None:
        assert self.store.mset(mapping) is True
        for key, value in mapping.items():
            self.model[key] = (as_bytes(value), 0)

    @rule(key=key_st)
    def get(self, key: str) -> None:
        live = self.live(key)
        assert self.store.get(key) == (None if live is None else live[0])

    @rule(keys=keys_st)
    def mget(self, keys: list[str]) -> None:
        expected = [None if (v := self.live(k)) is None else v[0] for k in keys]
        assert self.store.mget(keys) == expected

    @rule(keys=keys_st)
    def delete(self, keys: list[str]) -> None:
        expected = sum(self.live(k) is not None for k in set(keys))
        assert self.store.delete(*keys) == expected
        for key in keys:
            self.model.pop(key, None)

    @rule(keys=keys_st)
    def exists(self, keys: list[str]) -> None:
        assert self.store.exists(*keys) == sum(self.live(k) is not None for k in keys)

    @rule(
        key=key_st,
        ms=st.one_of(st.integers(-100, 20_000), st.sampled_from([0, 1, 1000])),
        condition=st.sampled_from([None, "nx", "xx", "gt", "lt"]),
    )
    def pexpire(self, key: str, ms: int, condition: str | None) -> None:
        flags = {condition: True} if condition else {}
        result = self.store.pexpire(key, ms, **flags)
        live = self.live(key)
        expected = live is not None
        if live is not None:
            current = live[1] or None
            new_at = self.clock.now + ms
            if (
                (condition == "nx" and current is not None)
                or (condition == "xx" and current is None)
                or (condition == "gt" and (current is None or new_at <= current))
                or (condition == "lt" and current is not None and new_at >= current)
            ):
                expected = False
        assert result is expected
        if expected:
            if ms <= 0:
                del self.model[key]
            else:
                self.model[key] = (self.model[key][0], self.clock.now + ms)

    @precondition(lambda self: any(e > self.clock.now for _, e in self.model.values()))
    @rule(
        data=st.data(),
        condition=st.sampled_from(["gt", "lt"]),
        delta=st.sampled_from([-1, 0, 1]),
    )
    def pexpire_at_the_boundary(self, data: st.DataObject, condition: str, delta: int) -> None:
        """GT/LT with a new expiry equal to (or 1 ms off) the current one."""
        key = data.draw(
            st.sampled_from(sorted(k for k, (_, e) in self.model.items() if e > self.clock.now))
        )
        self.pexpire(key, self.expected_pttl(key) + delta, condition)

    @precondition(lambda self: any(self.live(k) is None for k in self.model))
    @rule(data=st.data(), value=value_st, mode=st.sampled_from(["plain", "nx", "xx"]))
    def set_keepttl_over_expired(self, data: st.DataObject, value: bytes, mode: str) -> None:
        """An expired object's TTL must not be kept: the key counts as missing."""
        key = data.draw(st.sampled_from(sorted(k for k in self.model if self.live(k) is None)))
        self.set(key, value, mode, keepttl=True, px=None)

    @rule(key=key_st)
    def persist(self, key: str) -> None:
        live = self.live(key)
        expected = live is not None and live[1] != 0
        assert self.store.persist(key) is expected
        if expected:
            self.model[key] = (self.model[key][0], 0)

    @rule(key=key_st)
    def pttl(self, key: str) -> None:
        assert self.store.pttl(key) == self.expected_pttl(key)

    @rule(key=key_st)
    def ttl(self, key: str) -> None:
        ms = self.expected_pttl(key)
        assert self.store.ttl(key) == (ms if ms < 0 else (ms + 500) // 1000)

    @rule(prefix=st.sampled_from(PREFIXES))
    def keys(self, prefix: str) -> None:
        # every stored object, expired or not, until purge_expired removes it
        assert self.store.keys(prefix) == sorted(k for k in self.model if k.startswith(prefix))

    @rule(ms=st.one_of(st.integers(1, 3000), st.sampled_from([1, 999, 1000, 1001])))
    def advance_clock(self, ms: int) -> None:
        self.clock.now += ms

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def advance_to_an_expiry(self, data: st.DataObject) -> None:
        """Jump exactly to (or just before) some key's expiry: the boundary that matters."""
        expiries = sorted({e for _, e in self.model.values() if e > self.clock.now})
        if expiries:
            target = data.draw(st.sampled_from(expiries))
            self.clock.now = target - data.draw(st.sampled_from([0, 1]))

    @rule()
    def purge_expired(self) -> None:
        expired = [k for k in self.model if self.live(k) is None]
        assert self.store.purge_expired() == len(expired)
        for key in expired:
            del self.model[key]

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def every_key_matches(self) -> None:
        """Value, PTTL and TTL of every key, read in one trip to the store's event loop."""
        core = self.store.aio

        async def snapshot() -> tuple[list[Any], list[int], list[int], int]:
            values, exists, *times = await asyncio.gather(
                core.mget(KEYS),
                core.exists(*KEYS),
                *(core.pttl(k) for k in KEYS),
                *(core.ttl(k) for k in KEYS),
            )
            return values, times[: len(KEYS)], times[len(KEYS) :], exists

        values, pttls, ttls, exists = portal().run(snapshot())
        assert values == [None if (v := self.live(k)) is None else v[0] for k in KEYS]
        expected_pttls = [self.expected_pttl(k) for k in KEYS]
        assert pttls == expected_pttls
        assert ttls == [ms if ms < 0 else (ms + 500) // 1000 for ms in expected_pttls]
        assert exists == sum(self.live(k) is not None for k in KEYS)


def _run(opener: Callable[[FakeClock], kvstore.KVStore], examples: int, steps: int) -> None:
    machine = type("Machine", (ValueModel,), {"open_store": staticmethod(opener)})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )


def _opener(
    url_factory: Callable[[], str],
    storage_options: dict[str, Any] | None,
    cache: str | None,
) -> Callable[[FakeClock], kvstore.KVStore]:
    def open_store(clock: FakeClock) -> kvstore.KVStore:
        stats = Stats()
        blob = open_blob_store(url_factory(), storage_options, stats=stats)
        cached = kvstore.LocalCache() if cache == "local" else kvstore.NoCache()
        return kvstore.KVStore(kvstore.AsyncKVStore(blob, cached, stats=stats, clock=clock))

    return open_store


@pytest.mark.parametrize("cache", [None, "local"], ids=lambda c: f"cache={c}")
@pytest.mark.parametrize("backend", FAST)
def test_value_model(backend: str, cache: str | None, tmp_path: Path) -> None:
    if backend == "memory":

        def url() -> str:
            return f"memory://stateful-{uuid.uuid4().hex}"

        options = None
    else:

        def url() -> str:
            return tempfile.mkdtemp(dir=tmp_path)

        options = {"fsync": False}  # durability is not under test here; speed is
    _run(_opener(url, options, cache), examples=60 if backend == "memory" else 30, steps=40)


def test_value_model_s3(s3_server: Any) -> None:
    """A smaller run against moto: every request is a real HTTP round trip."""

    def url() -> str:
        return s3_server.url_for("kvstore-test", f"stateful-{uuid.uuid4().hex[:12]}")

    _run(_opener(url, s3_server.storage_options, "local"), examples=8, steps=30)
