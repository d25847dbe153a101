"""LangChain's ``ByteStore`` on kvstore (:mod:`kvstore.integrations.langchain`): the
standard tests LangChain publishes for a ``BaseStore`` (``langchain-tests``, installed
from PyPI by the ``frameworks`` tox env: ``BaseStoreSyncTests`` and
``BaseStoreAsyncTests``) on memory, local disk and a real S3 server (SeaweedFS), then the
adapter's own contract: bad input refused with nothing written, namespaces, requests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from conftest import Target
from langchain_tests.integration_tests import BaseStoreAsyncTests, BaseStoreSyncTests

import kvstore
from kvstore.integrations.langchain import KVStoreByteStore

BACKENDS = ["memory", "local", "seaweedfs"]


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, make_target: Callable[[str], Target]) -> Target:
    return make_target(request.param)


@pytest.fixture
def byte_store(target: Target) -> Iterator[KVStoreByteStore]:
    store = KVStoreByteStore(target.open(cache=kvstore.LocalCache()))
    yield store
    store.store.close()


class TestKVStoreByteStoreSync(BaseStoreSyncTests[bytes]):
    @pytest.fixture
    def kv_store(self, byte_store: KVStoreByteStore) -> KVStoreByteStore:
        return byte_store

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"bar\x00\xff", b"buzz" * 1000


class TestKVStoreByteStoreAsync(BaseStoreAsyncTests[bytes]):
    @pytest.fixture
    async def kv_store(self, byte_store: KVStoreByteStore) -> KVStoreByteStore:
        return byte_store

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"bar\x00\xff", b"buzz" * 1000


def test_bad_input_is_refused_and_nothing_is_written(byte_store: KVStoreByteStore) -> None:
    with pytest.raises(TypeError, match="must be bytes"):
        byte_store.mset([("a", b"1"), ("b", "not bytes")])  # type: ignore[list-item]
    with pytest.raises(kvstore.InvalidKeyError, match="limit is 1024 bytes"):
        byte_store.mset([("k" * 2000, b"1")])
    with pytest.raises(kvstore.InvalidKeyError, match="not valid Unicode"):
        byte_store.mget(["bad\ud800key"])
    assert byte_store.mget(["a", "b"]) == [None, None]
    assert list(byte_store.yield_keys()) == []
    byte_store.mdelete([])  # nothing to do
    byte_store.mdelete(["never-written"])  # a missing key is not an error


def test_namespaces_are_separate_and_the_store_reads_what_langchain_wrote(
    target: Target,
) -> None:
    with target.open(cache=None) as root:
        a = KVStoreByteStore(root, namespace="a")
        b = KVStoreByteStore(root, namespace="b")
        a.mset([("doc:1", b"in a")])
        b.mset([("doc:1", b"in b"), ("doc:2", b"only b")])
        assert a.mget(["doc:1", "doc:2"]) == [b"in a", None]
        assert sorted(b.yield_keys(prefix="doc:")) == ["doc:1", "doc:2"]
        assert root.namespace("a").get("doc:1") == b"in a"  # plain kvstore values
        a.mdelete(["doc:1"])
        assert b.mget(["doc:1"]) == [b"in b"]


def test_built_from_a_url_it_owns_and_closes_its_store(tmp_path: object) -> None:
    store = KVStoreByteStore(url=str(tmp_path), cache=None, namespace="emb")
    store.mset([("k", b"v")])
    store.close()
    with kvstore.open(str(tmp_path), cache=None) as again:
        assert again.namespace("emb").get("k") == b"v"
    with pytest.raises(TypeError, match="not both"):
        KVStoreByteStore(again, url=str(tmp_path))
    with pytest.raises(TypeError, match="decode_responses"):
        KVStoreByteStore(url=str(tmp_path), cache=None, decode_responses=True)


def test_costs_one_batch_per_call(target: Target) -> None:
    """mset of 50: 50 PUTs (a write leaves the cache to the next read); a cold mget of
    50: 50 GETs (concurrent), a warm one none; mdelete of 50: no reads; yield_keys: LISTs
    only."""
    with target.open(cache=kvstore.LocalCache()) as root:
        store = KVStoreByteStore(root)
        pairs = [(f"k{i:02d}", b"v%d" % i) for i in range(50)]

        def requests() -> dict[str, int]:
            stats = root.stats()
            return {k: v for k, v in stats.items() if k.startswith("requests.")}

        before = requests()
        store.mset(pairs)
        after_set = requests()
        assert after_set.get("requests.put", 0) - before.get("requests.put", 0) == 50
        assert store.mget([k for k, _ in pairs]) == [v for _, v in pairs]  # cold
        after_cold = requests()
        assert after_cold.get("requests.get", 0) - after_set.get("requests.get", 0) == 50
        assert store.mget([k for k, _ in pairs]) == [v for _, v in pairs]  # warm
        after_warm = requests()
        assert after_warm.get("requests.get", 0) == after_cold.get("requests.get", 0)
        assert sorted(store.yield_keys(prefix="k")) == [k for k, _ in pairs]
        after_list = requests()
        assert after_list.get("requests.get", 0) == after_warm.get("requests.get", 0)
        store.mdelete([k for k, _ in pairs])
        after_delete = requests()
        assert after_delete.get("requests.get", 0) == after_list.get("requests.get", 0)
        assert store.mget([k for k, _ in pairs]) == [None] * 50


def test_async_iteration_stopped_early_leaves_nothing_running(byte_store: KVStoreByteStore) -> None:
    byte_store.mset([(f"k{i}", b"x") for i in range(10)])

    async def first_three() -> list[str]:
        seen = []
        async for key in byte_store.ayield_keys():
            seen.append(key)
            if len(seen) == 3:
                break
        return seen

    assert len(asyncio.run(first_three())) == 3
    assert len(asyncio.run(byte_store.amget([f"k{i}" for i in range(10)]))) == 10
