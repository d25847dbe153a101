"""LangGraph's long-term store on kvstore (:class:`kvstore.integrations.langgraph.KVStoreStore`).

No installed package publishes conformance tests for a ``BaseStore`` (the
``langgraph-checkpoint-conformance`` suite covers checkpointers only), so: a
differential test against LangGraph's own ``InMemoryStore`` (the same seeded random
sequence of puts, deletes, gets, filtered and paginated searches, namespace listings and
batches gives the same results, timestamps aside) on memory, local disk and a real S3
server (SeaweedFS), on both faces; then the store's own contract from the interface:
timestamps, TTL and its refresh, namespaces kept apart, requests per call, bad input
refused with nothing written, a real graph writing memories a second store reads.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypedDict

import pytest
from conftest import Target
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore

import kvstore
from kvstore.integrations.langgraph import KVStoreSaver, KVStoreStore
from kvstore.testing import request_delta

BACKENDS = ["memory", "local", "seaweedfs"]


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, make_target: Callable[[str], Target]) -> Target:
    return make_target(request.param)


@pytest.fixture
def store(target: Target) -> Iterator[KVStoreStore]:
    with target.open(cache=kvstore.LocalCache()) as kv:
        yield KVStoreStore(kv)


def _plain(item: Item | None) -> tuple[Any, ...] | None:
    return None if item is None else (item.namespace, item.key, item.value)


# -- the differential test ------------------------------------------------------------------

LABELS = ["a", "b", "ab", "a b", "x/y", "%2F", "*", "ü"]
KEYS = ["k", "k/1", "%", "", "m", "ü/ü"]


class Model:
    """InMemoryStore as the reference, read in KVStoreStore's documented terms: search
    results in (namespace, key) order (InMemoryStore's order is insertion order), and
    namespaces listed only while they hold an item (InMemoryStore keeps listing one a get
    or a delete touched)."""

    def __init__(self) -> None:
        self.ref = InMemoryStore()

    def search(self, prefix: tuple[str, ...], **kw: Any) -> list[Any]:
        limit, offset = kw.pop("limit"), kw.pop("offset")
        found = self.ref.search(prefix, limit=10**9, **kw)
        found.sort(key=lambda i: (i.namespace, i.key))
        return [_plain(i) for i in found[offset : offset + limit]]

    def list_namespaces(self, **kw: Any) -> list[tuple[str, ...]]:
        for ns in [ns for ns, held in self.ref._data.items() if not held]:
            del self.ref._data[ns]
        return self.ref.list_namespaces(**kw)


def _namespace(rng: random.Random) -> tuple[str, ...]:
    return tuple(rng.choice(LABELS) for _ in range(rng.randint(1, 3)))


def _value(rng: random.Random) -> dict[str, Any]:
    value: dict[str, Any] = {"n": rng.randint(0, 9), "s": rng.choice(["x", "y", "z/%"])}
    if rng.random() < 0.5:
        value["tags"] = rng.sample(["p", "q", "r"], rng.randint(0, 2))
    if rng.random() < 0.5:
        value["doc"] = {"kind": rng.choice(["note", "fact"]), "depth": rng.randint(0, 2)}
    return value


def _filter(rng: random.Random) -> dict[str, Any] | None:
    choices: list[dict[str, Any] | None] = [
        None,
        {"n": rng.randint(0, 9)},
        {"s": rng.choice(["x", "y", "z/%"])},
        {"n": {rng.choice(["$gt", "$gte", "$lt", "$lte"]): rng.randint(0, 9)}},
        {"n": {"$gte": 2, "$lt": 7}, "s": {"$ne": "x"}},
        {"s": {"$eq": "y"}},
        {"doc": {"kind": "note"}},
        {"tags": ["p"]},
        {"doc": {"depth": {"$gt": 0}}},
    ]
    return rng.choice(choices)


def _condition(rng: random.Random) -> tuple[str, ...]:
    return tuple(rng.choice([*LABELS, "*"]) for _ in range(rng.randint(1, 2)))


def _random_call(
    rng: random.Random, written: list[tuple[tuple[str, ...], str]]
) -> tuple[str, dict[str, Any]]:
    """One call of the store's interface: (method, arguments). Gets and deletes mostly
    name an item put before (``written``), else any."""
    roll = rng.random()
    ns, key = _namespace(rng), rng.choice(KEYS)
    if roll < 0.35:
        written.append((ns, key))
        return "put", {"namespace": ns, "key": key, "value": _value(rng)}
    if written and rng.random() < 0.7:
        ns, key = rng.choice(written)
    if roll < 0.45:
        return "delete", {"namespace": ns, "key": key}
    if roll < 0.6:
        return "get", {"namespace": ns, "key": key}
    if roll < 0.8:
        prefix = ns[: rng.randint(0, len(ns))]
        kw = {"filter": _filter(rng), "limit": rng.choice([1, 3, 10, 100]), "offset": 0}
        kw["offset"] = rng.choice([0, 0, 1, 4])
        if rng.random() < 0.2:
            kw["query"] = "anything"  # no index: ignored, as by InMemoryStore
        return "search", {"prefix": prefix, **kw}
    if roll < 0.93:
        kw: dict[str, Any] = {"limit": rng.choice([2, 100]), "offset": rng.choice([0, 0, 1])}
        if rng.random() < 0.5:
            kw["prefix"] = _condition(rng)
        if rng.random() < 0.4:
            kw["suffix"] = _condition(rng)
        if rng.random() < 0.4:
            kw["max_depth"] = rng.randint(0, 3)
        return "list_namespaces", kw
    ops: list[Any] = []  # a batch: puts, deletes and gets of a few keys, repeats included
    for _ in range(rng.randint(2, 6)):
        ns, key = rng.choice([("a",), ("a", "b")]), rng.choice(["k", "m"])
        r = rng.random()
        value = _value(rng) if r < 0.5 else None
        ops.append(PutOp(ns, key, value) if r < 0.7 else GetOp(ns, key))
    return "batch", {"ops": ops}


def _on_model(model: Model, method: str, kw: dict[str, Any]) -> Any:
    ref = model.ref
    if method == "put":
        return ref.put(kw["namespace"], kw["key"], kw["value"])
    if method == "delete":
        return ref.delete(kw["namespace"], kw["key"])
    if method == "get":
        return _plain(ref.get(kw["namespace"], kw["key"]))
    if method == "search":
        return model.search(kw.pop("prefix"), **kw)
    if method == "list_namespaces":
        return model.list_namespaces(**kw)
    return [_plain(r) if isinstance(r, Item) else r for r in ref.batch(kw["ops"])]


async def _on_store(store: KVStoreStore, face: str, method: str, kw: dict[str, Any]) -> Any:
    kw = dict(kw)
    if method == "search":
        prefix = kw.pop("prefix")
        found = await store.asearch(prefix, **kw) if face == "async" else store.search(prefix, **kw)
        assert all(i.score is None for i in found)
        return [_plain(i) for i in found]
    call = getattr(store, method if face == "sync" else "a" + method)
    result = await call(**kw) if face == "async" else call(**kw)
    if method == "get":
        return _plain(result)
    if method == "batch":
        return [_plain(r) if isinstance(r, Item) else r for r in result]
    return result


@pytest.mark.parametrize("face", ["sync", "async"])
async def test_differential_against_langgraphs_in_memory_store(target: Target, face: str) -> None:
    rng = random.Random(f"{target.backend}-{face}")
    model = Model()
    n_ops = 200 if target.backend == "seaweedfs" else 300
    written: list[tuple[tuple[str, ...], str]] = []
    with target.open(cache=kvstore.LocalCache()) as kv:
        store = KVStoreStore(kv)
        seen: dict[str, int] = {}
        answered: dict[str, int] = {}  # calls whose answer was not empty
        for step in range(n_ops):
            method, kw = _random_call(rng, written)
            seen[method] = seen.get(method, 0) + 1
            expected = _on_model(model, method, dict(kw))
            got = await _on_store(store, face, method, kw)
            assert got == expected, (step, method, kw)
            answered[method] = answered.get(method, 0) + bool(got)
        # the sequence exercised every call, and gets, searches and listings found things
        assert set(seen) == {"put", "delete", "get", "search", "list_namespaces", "batch"}
        assert all(answered[m] >= 3 for m in ("get", "search", "list_namespaces")), answered
        everything = model.search((), limit=10**9, offset=0)
        assert len(everything) > 10
        assert [_plain(i) for i in store.search((), limit=10**9)] == everything


# -- the contract -----------------------------------------------------------------------------


async def test_items_timestamps_and_both_faces(store: KVStoreStore) -> None:
    store.put(("users", "u1"), "prefs", {"theme": "dark"})
    first = store.get(("users", "u1"), "prefs")
    assert first is not None and first.value == {"theme": "dark"}
    assert first.namespace == ("users", "u1") and first.key == "prefs"
    assert first.created_at == first.updated_at and first.created_at.tzinfo is not None
    await store.aput(("users", "u1"), "prefs", {"theme": "light"})
    second = await store.aget(("users", "u1"), "prefs")
    assert second is not None and second.value == {"theme": "light"}
    assert second.created_at == first.created_at  # kept on update
    assert second.updated_at >= first.updated_at
    assert [i.key for i in await store.asearch(("users",))] == ["prefs"]
    assert await store.alist_namespaces() == [("users", "u1")]
    await store.adelete(("users", "u1"), "prefs")
    assert store.get(("users", "u1"), "prefs") is None
    store.put(("users", "u1"), "prefs", {"theme": "again"})
    again = store.get(("users", "u1"), "prefs")
    assert again is not None and again.created_at > first.created_at  # a new item
    store.delete(("users", "u1"), "never-written")  # deleting nothing is not an error
    assert store.list_namespaces() == [("users", "u1")]


def test_a_batch_reads_first_then_writes_the_last_put_of_each_key(store: KVStoreStore) -> None:
    """As InMemoryStore: the reads of a batch see the store before its writes; of several
    puts of one key the last wins; results come in the order of the ops."""
    store.put(("a",), "k", {"v": 0})
    results = store.batch(
        [
            PutOp(("a",), "k", {"v": 1}),
            GetOp(("a",), "k"),
            PutOp(("a",), "k", {"v": 2}),
            SearchOp(("a",)),
            PutOp(("a",), "new", {"v": 3}),
            PutOp(("a",), "new", None),
            ListNamespacesOp(),
        ]
    )
    got = results[1]
    assert isinstance(got, Item) and got.value == {"v": 0}
    assert [i.value for i in results[3]] == [{"v": 0}]  # type: ignore[union-attr]
    assert results[6] == [("a",)]
    assert results[0] is results[2] is results[4] is results[5] is None
    now = store.get(("a",), "k")
    assert now is not None and now.value == {"v": 2}
    assert store.get(("a",), "new") is None
    assert store.batch([]) == []


def test_search_pages_and_filters(store: KVStoreStore) -> None:
    for i in range(12):
        store.put(("docs", f"g{i % 3}"), f"d{i:02}", {"n": i, "kind": ["a", "b"][i % 2]})
    keys = [i.key for i in store.search(("docs",), limit=100)]
    assert keys == sorted(keys, key=lambda k: (f"g{int(k[1:]) % 3}", k))  # (ns, key) order
    pages = [store.search(("docs",), limit=5, offset=o) for o in (0, 5, 10)]
    assert [i.key for p in pages for i in p] == keys and [len(p) for p in pages] == [5, 5, 2]
    big = store.search(("docs",), filter={"n": {"$gte": 6}, "kind": "a"}, limit=2, offset=1)
    # even n >= 6: 6 in g0, 10 in g1, 8 in g2 - in namespace order; the first skipped
    assert [i.value["n"] for i in big] == [10, 8]
    assert store.search(("docs", "g1"), filter={"n": {"$ne": 1}}, limit=100) != []
    assert store.search(("docs",), query="ignored", limit=100) == store.search(("docs",), limit=100)
    # a comparison with a missing or non-numeric field does not match (InMemoryStore
    # raises there); a bad operator or operand is refused before any request
    store.put(("docs", "odd"), "x", {"n": "many"})
    assert store.search(("docs", "odd"), filter={"n": {"$gt": 1}}) == []
    assert store.search(("docs", "odd"), filter={"missing": {"$lt": 1}}) == []
    with pytest.raises(ValueError, match="Unsupported operator"):
        store.search(("docs",), filter={"n": {"$in": [1]}})
    with pytest.raises(ValueError, match="compares numbers"):
        store.search(("docs",), filter={"n": {"$gt": "lots"}})
    assert store.search(("docs",), limit=0) == []


def test_namespaces_with_prefix_confusables_are_kept_apart(store: KVStoreStore) -> None:
    spaces = [("a",), ("a", "b"), ("ab",), ("a/b",), ("a%2Fb",), ("a", "b", "c"), ("b", "a")]
    for ns in spaces:
        store.put(ns, "k", {"ns": list(ns)})
    store.put(("a",), "b", {"ns": "item b of (a,)"})
    store.put(("a",), "b/k", {"ns": "a key with a slash"})
    for ns in spaces:
        item = store.get(ns, "k")
        assert item is not None and item.value == {"ns": list(ns)} and item.namespace == ns
    assert {i.namespace for i in store.search(("a",), limit=100)} == {
        ("a",),
        ("a", "b"),
        ("a", "b", "c"),
    }
    assert {(i.namespace, i.key) for i in store.search(("a", "b"), limit=100)} == {
        (("a", "b"), "k"),
        (("a", "b", "c"), "k"),
    }
    assert [i.namespace for i in store.search(("a/b",))] == [("a/b",)]
    assert store.list_namespaces(prefix=("a",)) == [("a",), ("a", "b"), ("a", "b", "c")]
    assert store.list_namespaces(prefix=("*", "a")) == [("b", "a")]
    assert store.list_namespaces(suffix=("b",)) == [("a", "b")]  # not ("a/b",): one label
    assert store.list_namespaces(prefix=("a",), max_depth=2) == [("a",), ("a", "b")]
    assert store.list_namespaces(max_depth=1, limit=2, offset=1) == [("a%2Fb",), ("a/b",)]
    assert store.get(("a",), "b/k") is not None and store.get(("a", "b"), "k") is not None
    other = KVStoreStore(store.store.namespace("other"))  # another kvstore namespace
    assert other.search((), limit=100) == [] and other.list_namespaces() == []
    other.put(("a",), "k", {"other": True})
    item = store.get(("a",), "k")
    assert item is not None and item.value == {"ns": ["a"]}


def test_an_item_expires_and_the_sweep_removes_it(store: KVStoreStore) -> None:
    store.put(("t",), "short", {"v": 1}, ttl=0.001)  # 60 ms
    store.put(("t",), "long", {"v": 2}, ttl=60)
    store.put(("t2",), "short", {"v": 3}, ttl=0.001)
    time.sleep(0.3)  # well past the short TTL
    assert store.get(("t",), "short") is None
    assert [i.key for i in store.search(("t",))] == ["long"]
    assert ("t2",) in store.list_namespaces()  # listed until swept (no reads in a listing)
    assert store.sweep_ttl() == 2
    assert store.list_namespaces() == [("t",)]
    long = store.get(("t",), "long")
    assert long is not None and long.value == {"v": 2}


def test_reads_refresh_the_ttl_when_asked(target: Target) -> None:
    with target.open(cache=kvstore.LocalCache()) as kv:
        store = KVStoreStore(kv)
        store.put(("t",), "k", {"v": 1}, ttl=1)  # 60 s
        name = "langgraph-store/t/k"
        for refresh, read in [
            (False, lambda: store.get(("t",), "k", refresh_ttl=False)),
            (True, lambda: store.get(("t",), "k")),  # the default: refresh
            (False, lambda: store.search(("t",), refresh_ttl=False)),
            (True, lambda: store.search(("t",), refresh_ttl=True)),
        ]:
            assert kv.pexpire(name, 5_000)
            assert read()
            assert (kv.pttl(name) > 5_000) is refresh
        store.put(("t",), "plain", {"v": 1})  # no TTL: a read adds none
        assert store.get(("t",), "plain") is not None and kv.pttl("langgraph-store/t/plain") == -1
        # TTLConfig: a default ttl for puts, and reads that do not refresh by default
        configured = KVStoreStore(kv, ttl={"default_ttl": 1, "refresh_on_read": False})
        configured.put(("c",), "k", {"v": 1})
        assert 0 < kv.pttl("langgraph-store/c/k") <= 60_000
        assert kv.pexpire("langgraph-store/c/k", 5_000)
        assert configured.get(("c",), "k") is not None
        assert kv.pttl("langgraph-store/c/k") <= 5_000
        configured.put(("c",), "forever", {"v": 1}, ttl=None)
        assert kv.pttl("langgraph-store/c/forever") == -1


def test_what_store_calls_cost(make_target: Callable[[str], Target]) -> None:
    """Requests per call on a real S3 server (SeaweedFS), with the in-process cache."""
    target = make_target("seaweedfs")
    with target.open(cache=kvstore.LocalCache()) as kv:
        store = KVStoreStore(kv)
        with request_delta(kv) as new:
            store.put(("mem", "u1"), "m0", {"text": "likes tea"})
        assert new == {"requests.get": 1, "requests.put": 1}, new  # the GET: created_at
        with request_delta(kv) as cold:
            assert store.get(("mem", "u1"), "m0") is not None
        assert cold == {"requests.get": 1}, cold
        with request_delta(kv) as warm:
            assert store.get(("mem", "u1"), "m0") is not None
        assert warm == {}, warm
        with request_delta(kv) as update:  # the old record is cached: one PUT
            store.put(("mem", "u1"), "m0", {"text": "likes green tea"})
        assert update == {"requests.put": 1}, update
        store.batch([PutOp(("mem", "u1"), f"m{i}", {"i": i}) for i in range(1, 5)])
        with request_delta(kv) as listing:
            assert store.list_namespaces() == [("mem", "u1")]
        assert listing == {"requests.list": 1}, listing
        with request_delta(kv) as deleted:
            store.batch([PutOp(("mem", "u1"), "m4", None), PutOp(("mem", "u1"), "m3", None)])
        assert deleted == {"requests.delete_many": 1}, deleted
        store.put(("ttl",), "k", {"v": 1}, ttl=60)
        assert store.get(("ttl",), "k", refresh_ttl=False) is not None  # now cached
        with request_delta(kv) as refreshed:  # a read that refreshes the TTL is a write
            assert store.get(("ttl",), "k") is not None
        assert refreshed == {"requests.put_if_match": 1}, refreshed
        with request_delta(kv) as after:  # ... and leaves the cache to the next read
            assert store.get(("ttl",), "k", refresh_ttl=False) is not None
        assert after == {"requests.get": 1}, after
        store.delete(("ttl",), "k")
    with target.open(cache=kvstore.LocalCache()) as kv:  # another process: a cold cache
        store = KVStoreStore(kv)
        with request_delta(kv) as search:
            assert len(store.search(("mem",))) == 3  # m0, m1, m2
        assert search == {"requests.list": 1, "requests.get": 3}, search
        with request_delta(kv) as again:
            assert len(store.search(("mem",))) == 3
        assert again == {"requests.list": 1}, again
        with request_delta(kv) as page:  # unfiltered: only what the page needs is read
            assert [i.key for i in store.search(("mem",), limit=1, offset=1)] == ["m1"]
        assert page == {"requests.list": 1}, page


BAD_BATCHES: list[tuple[list[Any], type[Exception], str]] = [
    ([PutOp((), "k", {})], InvalidNamespaceError, "cannot be empty"),
    ([PutOp(("langgraph",), "k", {})], InvalidNamespaceError, "langgraph"),
    ([PutOp(("a", ""), "k", {})], InvalidNamespaceError, "empty"),
    ([PutOp(("a.b",), "k", {})], InvalidNamespaceError, "'.'"),
    ([PutOp(("a", 1), "k", {})], InvalidNamespaceError, "str"),  # type: ignore[arg-type]
    ([PutOp(("a",), "k", ["not", "a", "dict"])], TypeError, "dict"),  # type: ignore[arg-type]
    ([PutOp(("a",), "k", {"when": object()})], TypeError, "not JSON serializable"),
    ([PutOp(("a",), "k", {"x": float("nan")})], ValueError, "Out of range float"),
    ([PutOp(("a",), "k", {1: "int key"})], TypeError, "str keys"),
    ([PutOp(("a",), 7, {})], TypeError, "key is a str"),  # type: ignore[arg-type]
    ([PutOp(("a",), "k", {}, ttl=-1)], ValueError, "positive"),
    ([PutOp(("a",), "k", {}, ttl="5")], ValueError, "number of minutes"),  # type: ignore[arg-type]
    ([PutOp(("a",), "k" * 2000, {})], kvstore.InvalidKeyError, "1024"),
    ([GetOp(("a\x00",), "k")], InvalidNamespaceError, "NUL"),
    ([SearchOp(("a",), filter={"n": {"$regex": "x"}})], ValueError, "Unsupported operator"),
    ([SearchOp(("a",), limit=-1)], ValueError, "limit"),
    ([ListNamespacesOp((MatchCondition("middle", ("a",)),))], ValueError, "match type"),  # type: ignore[arg-type]
    ([ListNamespacesOp(max_depth=-1)], ValueError, "max_depth"),
    (["not an op"], ValueError, "Unknown operation"),
]


@pytest.mark.parametrize(("ops", "error", "match"), BAD_BATCHES)
async def test_bad_input_is_refused_and_nothing_is_written(
    store: KVStoreStore, ops: list[Any], error: type[Exception], match: str
) -> None:
    batch = [PutOp(("fine",), "first", {"ok": True}), *ops, PutOp(("fine",), "last", {})]
    with pytest.raises(error, match=match):
        store.batch(batch)
    with pytest.raises(error, match=match):
        await store.abatch(batch)
    assert store.store.keys() == []


def test_the_base_methods_refuse_what_langgraph_refuses(store: KVStoreStore) -> None:
    with pytest.raises(InvalidNamespaceError):
        store.put(("a.b",), "k", {})
    with pytest.raises(InvalidNamespaceError):
        store.search(("",))
    with pytest.raises(InvalidNamespaceError):
        store.list_namespaces(prefix=("a.b",))
    with pytest.raises(TypeError, match="not JSON serializable"):
        store.put(("a",), "k", {"s": {1, 2}})
    assert store.store.keys() == []


def test_construction(tmp_path: Any) -> None:
    with KVStoreStore(url=str(tmp_path / "s"), namespace="mem") as owned:
        owned.put(("a",), "k", {"v": 1})
        assert owned.store.keys() == ["langgraph-store/a/k"]
        assert "KVStoreStore" in repr(owned)
    with kvstore.open(str(tmp_path / "s")) as kv:  # what it wrote, in the namespace
        assert kv.namespace("mem").keys() == ["langgraph-store/a/k"]
        with pytest.raises(TypeError, match="not both"):
            KVStoreStore(kv, url="memory://x")
        with pytest.raises(NotImplementedError, match="no vector index"):
            KVStoreStore(kv, index={"dims": 3})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown TTLConfig"):
            KVStoreStore(kv, ttl={"default": 1})  # type: ignore[typeddict-unknown-key]
        with pytest.raises(ValueError, match="positive"):
            KVStoreStore(kv, ttl={"default_ttl": 0})
        kv.set("k", b"v")
        assert kv.get("k") == b"v"  # the borrowed store is not closed by the adapter
    with pytest.raises(TypeError, match=r"kvstore\.KVStore"):
        KVStoreStore(kvstore.open_async("memory://x"))  # type: ignore[arg-type]
    assert KVStoreStore.supports_ttl is True


# -- in a real graph ------------------------------------------------------------------------


class Chat(TypedDict):
    user: str
    said: str
    known: list[str]


def _memory_graph(face: str) -> StateGraph[Chat]:
    """remember: store what the user said under ("memories", user); recall: read them
    all back (async nodes on the store's async face, sync nodes on the blocking one)."""

    def remember(state: Chat, *, store: BaseStore) -> dict[str, Any]:
        ns = ("memories", state["user"])
        store.put(ns, f"m{len(store.search(ns, limit=1000))}", {"text": state["said"]})
        return {}

    def recall(state: Chat, *, store: BaseStore) -> dict[str, Any]:
        found = store.search(("memories", state["user"]), limit=1000)
        return {"known": [i.value["text"] for i in found]}

    async def aremember(state: Chat, *, store: BaseStore) -> dict[str, Any]:
        ns = ("memories", state["user"])
        n = len(await store.asearch(ns, limit=1000))
        await store.aput(ns, f"m{n}", {"text": state["said"]})
        return {}

    async def arecall(state: Chat, *, store: BaseStore) -> dict[str, Any]:
        found = await store.asearch(("memories", state["user"]), limit=1000)
        return {"known": [i.value["text"] for i in found]}

    builder = StateGraph(Chat)
    builder.add_node("remember", aremember if face == "async" else remember)
    builder.add_node("recall", arecall if face == "async" else recall)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", "recall")
    builder.add_edge("recall", END)
    return builder


@pytest.mark.parametrize("face", ["sync", "async"])
async def test_a_graph_remembers_across_threads_and_store_objects(
    target: Target, face: str
) -> None:
    """Memories a graph writes in one thread are read in another, and by a new store
    object (a restart) over the same location; another user's namespace stays apart."""
    with target.open(cache=kvstore.LocalCache()) as kv:
        graph = _memory_graph(face).compile(checkpointer=KVStoreSaver(kv), store=KVStoreStore(kv))
        for thread, said in [("t1", "likes tea"), ("t2", "lives in Oslo")]:
            config: Any = {"configurable": {"thread_id": thread}}
            inputs: Chat = {"user": "ann", "said": said, "known": []}
            if face == "async":
                out = await graph.ainvoke(inputs, config)
            else:
                out = graph.invoke(inputs, config)
        assert out["known"] == ["likes tea", "lives in Oslo"]  # the second thread saw the first
    with target.open(cache=kvstore.LocalCache()) as kv:  # a new store object (a "restart")
        again = KVStoreStore(kv)
        assert [i.value["text"] for i in again.search(("memories", "ann"))] == [
            "likes tea",
            "lives in Oslo",
        ]
        assert again.list_namespaces(prefix=("memories",)) == [("memories", "ann")]
        graph = _memory_graph(face).compile(checkpointer=InMemorySaver(), store=again)
        inputs = {"user": "bob", "said": "hi", "known": []}
        if face == "async":
            out = await graph.ainvoke(inputs, {"configurable": {"thread_id": "x"}})
        else:
            out = graph.invoke(inputs, {"configurable": {"thread_id": "x"}})
        assert out["known"] == ["hi"]  # another user's memories are not bob's
        assert len(again.search(("memories",))) == 3
