"""One core, two faces: every public coroutine of the async face has its blocking twin,
with the same parameters and docstring (the blocking face is derived, never hand-copied)."""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

import pytest

import kvstore
from kvstore.artifacts import AsyncArtifacts
from kvstore.sync import Artifacts

PAIRS = [(kvstore.AsyncKVStore, kvstore.KVStore), (AsyncArtifacts, Artifacts)]


def _public(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and (callable(member) or inspect.isasyncgenfunction(member))
    }


@pytest.mark.parametrize(("core", "face"), PAIRS, ids=lambda c: c.__name__)
def test_every_async_method_has_a_blocking_twin(core: type, face: type) -> None:
    blocking = _public(face)
    missing = sorted(set(_public(core)) - set(blocking))
    assert not missing, f"{face.__name__} lacks {missing}"
    for name, method in _public(core).items():
        twin = blocking[name]
        assert not inspect.iscoroutinefunction(twin), f"{face.__name__}.{name} is async"
        assert inspect.getdoc(twin) == inspect.getdoc(method), f"{name}: docstrings differ"
        if inspect.iscoroutinefunction(method):
            async_params = list(inspect.signature(method).parameters)
            sync_params = list(inspect.signature(twin).parameters)
            assert sync_params == async_params, f"{name}: {sync_params} != {async_params}"


def test_the_twin_list_is_not_vacuous() -> None:
    coroutines = [
        n for n, m in _public(kvstore.AsyncKVStore).items() if inspect.iscoroutinefunction(m)
    ]
    assert {"get", "set", "append", "range", "purge_expired", "health"} <= set(coroutines)


def test_key_pages_check_keys_and_concurrency_are_public() -> None:
    with kvstore.open("memory://public-listing", cache=None, concurrency=7) as store:
        store.mset({f"k{i:04d}": b"v" for i in range(1500)})
        store.append("k-log", b"r")
        pages = list(store.key_pages("k"))
        assert [len(p) for p in pages] == [1000, 500, 1] and pages[-1] == ["k-log"]
        assert sum(map(len, store.key_pages("k", logs=False))) == 1500
        assert store.concurrency == 7 == store.aio.concurrency
        store.check_keys(["fine", "also fine"])
        with pytest.raises(kvstore.InvalidKeyError):
            store.check_keys(["fine", "x" * 2000])


@pytest.mark.parametrize("where", ["memory", "local"])
def test_namespaces_lists_the_children_of_a_view(where: str, tmp_path: Any) -> None:
    url = "memory://public-namespaces" if where == "memory" else str(tmp_path)
    with kvstore.open(url, cache=None) as store:
        assert store.namespaces() == []
        names = ["b", "a", "a/x", "c~d", "n" * 300, "<script>", "é"]
        for i, name in enumerate(names):
            view = store.namespace(name)
            if i % 2:
                view.set(f"k{i}", "v")
            else:
                view.append("log", b"r")
        store.namespace("a").namespace("inner").set("k", "v")
        store.namespace("a").artifacts.save("art", b"data")
        store.set("root-key", "v")
        assert store.namespaces() == sorted(names)
        assert store.namespace("a").namespaces() == ["inner"]
        assert store.namespace("b").namespaces() == []
        assert store.namespace("a").namespace("inner").namespaces() == []


def test_key_info_gives_type_ttl_and_size() -> None:
    with kvstore.open("memory://public-key-info", cache="local") as store:
        store.set("s", "four", px=60_000)
        store.set("plain", b"\x00" * 10)
        with contextlib.closing(kvstore.Redis(store=store)) as redis:
            redis.hset("h", mapping={"f": "v"})
        s, plain, h, missing = store.key_info(["s", "plain", "h", "missing"])
        assert s is not None and (s.type, s.size) == ("string", 4) and 0 < s.pttl <= 60_000
        assert plain == ("string", -1, 10)
        assert h is not None and h.type == "hash" and h.pttl == -1 and h.size > 0
        assert missing is None
