"""Attacks on the operations layer (kvstore/operations/): ``store.usage()`` against an
independent brute-force recount with odd names everywhere, and a prefix against a filter of
that recount; retention rules and ``store.maintain()`` against writers racing each step
(held at the exact request by a hook in front of the object store), foreign objects, Redis
lists, half-done artifact deletes, namespaces and prefixes, bad input, the command line and
a client clock years off the object store's."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, Target, open_clocked

import kvstore
from kvstore import codec
from kvstore.blob import BlobStore, WrapperBlobStore
from kvstore.blob.base import Blob, DatedPage
from kvstore.cli import main as cli_main
from kvstore.keys import decode_name
from kvstore.testing import ClockedBlobStore, request_delta

HOUR_MS = 3600 * 1000
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


# -- helpers -------------------------------------------------------------------------------------


def _raw(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")


def _put(blob: BlobStore, path: str, data: bytes = b"not kvstore's") -> None:
    asyncio.run(blob.put(path, data))


def _paths(blob: BlobStore, prefix: str = "") -> list[str]:
    async def run() -> list[str]:
        return [p async for page in blob.list_pages(prefix) for p in page]

    return asyncio.run(run())


def _decode(encoded: str) -> str | None:
    try:
        return decode_name(encoded)
    except ValueError:
        return None


_AREAS = {
    "kv": "values",
    "log": "logs",
    "list": "lists",
    "art": "artifacts",
    "artpart": "artifacts",
    "ses": "sessions",
    "rec": "records",
}

Item = tuple[str, ...]
Parsed = tuple[tuple[str, ...], str, Item | None, str | None]


def _parse(path: str) -> Parsed:
    """The layout table read by hand, written apart from Layout.kind_of: (namespaces, kind,
    the item it belongs to, the key or name a prefix selects it by). An encoded name ends
    at its first ``~``: ``~`` itself is always escaped."""
    names: list[str] = []
    rest = path
    while rest.startswith("ns/"):
        encoded, sep, tail = rest[3:].partition("~/")
        name = _decode(encoded + "~") if sep else None
        if not name:  # no namespace has this name
            return tuple(names), "foreign", None, None
        names.append(name)
        rest = tail
    area, _, inner = rest.partition("/")
    if area == ".kvstore":
        return tuple(names), "foreign" if names else "internal", None, None
    if area == "meta":
        return tuple(names), "internal", None, None
    kind = _AREAS.get(area)
    if kind is None:
        return tuple(names), "foreign", None, None
    encoded, sep, leaf = inner.partition("~/")
    if kind == "values":
        key = _decode(inner)
        return tuple(names), kind, None if key is None else ("v", key), key
    owner = _decode(encoded + "~") if sep else None
    if area == "artpart":
        return tuple(names), kind, None, owner
    if kind == "sessions":
        if owner is not None and leaf.startswith("head/"):
            user, _, session = leaf[5:].partition("~/")
            return tuple(names), kind, ("s", owner, user, session), owner
        return tuple(names), kind, None, owner
    return tuple(names), kind, None if owner is None else (area, owner), owner


Tally = dict[tuple[tuple[str, ...], str], dict[str, Any]]


async def _recount_async(blob: BlobStore) -> dict[str, tuple[int, Parsed]]:
    paths = [p async for page in blob.list_pages("") for p in page]
    got = await blob.get_many(paths)
    out = {}
    for path, found in zip(paths, got, strict=True):
        assert found is not None, path
        out[path] = (len(found.data), _parse(path))
    return out


def _recount(blob: BlobStore) -> dict[str, tuple[int, Parsed]]:
    """Every object read whole (its size: the bytes a GET returns), parsed by hand."""
    return asyncio.run(_recount_async(blob))


def _tally(found: dict[str, tuple[int, Parsed]], keep: Callable[[Parsed], bool]) -> Tally:
    out: Tally = {}
    for size, parsed in found.values():
        if not keep(parsed):
            continue
        names, kind, item, _ = parsed
        t = out.setdefault((names, kind), {"objects": 0, "bytes": 0, "items": set()})
        t["objects"] += 1
        t["bytes"] += size
        if item is not None:
            t["items"].add(item)
    return {k: {**t, "items": len(t["items"])} for k, t in out.items()}


def _report_tally(report: dict[str, Any]) -> Tally:
    return {
        (tuple(space["namespace"]), kind): dict(tally)
        for space in report["namespaces"]
        for kind, tally in space["kinds"].items()
    }


# odd names: unicode, '/', '%', '~', dots that start segments, names cut into segments of
# 240 characters (a multi-byte character and an escape straddling the cut), NUL, bytes
LONG_KEYS: list[str | bytes] = [
    "y" * 240,
    "z" * 241,
    "x" * 239 + ".",
    "x" * 239 + ".dot",
    "q" * 239 + "é",
    "w" * 238 + "%",
    "k" * 600,
]
KEYS: list[str | bytes] = [
    "",
    "é",
    "ключ/\u0441/слэшами",  # Cyrillic
    "a/b",
    "a/b/c",
    "a",
    "ab",
    "%41",
    "%",
    "~",
    "~x~",
    "a~/b",
    ".",
    "..",
    ".hidden",
    "\x00nul",
    "tab\tkey",
    "日本語" * 20,
    b"\xff\xfe",
    *LONG_KEYS,
]
NAMESPACES = ["tenant/1", "~", "%", "ns", "kv", "é/ü", "n" * 300, ".."]


def _populate(store: kvstore.KVStore, keys: list[str | bytes]) -> dict[str, set[Any]]:
    """Something of every kind under odd names; returns the items the view itself holds."""
    items: dict[str, set[Any]] = {k: set() for k in _AREAS.values()}
    redis = kvstore.Redis(store=store)
    for i, key in enumerate(keys):
        store.set(key, f"value {i}" * (i + 1))
        items["values"].add(_raw(key))
        if i % 2 == 0:
            store.append(key, *[f"r{j}" for j in range(3)])
            items["logs"].add(_raw(key))
        if i % 3 == 0 and isinstance(key, str) and key:
            store.artifacts.save(key, f"artifact {i}".encode())
            items["artifacts"].add(_raw(key))
    store.trim(keys[0], 1)
    store.compact(keys[0])
    redis.rpush("queue/é~", "a", "b", "c")
    redis.lpop("queue/é~")
    redis.rpush("q" * 300, "x")
    redis.hset("h%/1", mapping={"f": "v", "g": "w"})
    redis.sadd("set~", "m1", "m2")
    items["values"] |= {_raw(k) for k in ("queue/é~", "q" * 300, "h%/1", "set~")}
    items["lists"] |= {_raw("queue/é~"), _raw("q" * 300)}
    store.artifacts.save("raw~file%.bin", b"raw bytes", raw=True)
    store.artifacts.save("raw~file%.bin", b"raw bytes 2", raw=True)
    store.artifacts.delete("raw~file%.bin", 0)
    items["artifacts"].add(_raw("raw~file%.bin"))
    store.sessions.create("app/é", "u~1", "s%1", state={"x": 1, "user:n": "a", "app:v": 2})
    store.sessions.append_event("app/é", "u~1", "s%1", {"author": "user", "text": "hi"})
    store.sessions.create("app/é", "u/2", "." * 3)
    store.sessions.create("a" * 250, "u", "s")
    items["sessions"] |= {"s1", "s2", "s3"}
    metrics = store.records("metrics/é~", partition="hour")
    metrics.extend([({"v": i}, T0 + i * 1800, {"h": "a"}) for i in range(5)])
    store.records("m" * 245, partition="day").append({"v": 1}, timestamp=T0)
    items["records"] |= {"metrics/é~", "m" * 245}
    return items


def _populate_namespaces(store: kvstore.KVStore) -> None:
    for i, name in enumerate(NAMESPACES):
        view = store.namespace(name)
        view.set(name, "v")
        view.append("log~", "x")
        if i % 2:
            inner = view.namespace(NAMESPACES[-1 - i])
            inner.set("k", "v")
            inner.artifacts.save("a/b", b"a")


@pytest.fixture(autouse=True)
def _no_background_settles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writers settle their logs in the background half a second after they go idle (new
    segments, young chunks' covers): a recount compared with a listing, or a report
    compared with a second run, must not meet one halfway. The test of racing maintainers
    turns them back on."""
    from kvstore.logs import limits

    monkeypatch.setattr(limits, "SETTLE", False)


@pytest.fixture(params=["memory", "local"])
def fast(request: pytest.FixtureRequest, make_target: Callable[[str], Target]) -> Target:
    return make_target(request.param)


# -- usage ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "local", "seaweedfs"])
def test_usage_equals_an_independent_recount_with_odd_names(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    """Every object weighed by a GET and told apart by a parser written here: usage's
    objects, bytes and items per namespace and kind are the same, with odd key names,
    namespaces, Redis types, sessions, records, raw artifacts and foreign objects; and the
    items are exactly what was written. One LIST, nothing else."""
    target = make_target(backend)
    keys = KEYS if backend != "seaweedfs" else [k for k in KEYS if len(_raw(k)) < 300]
    with target.open(cache=kvstore.LocalCache()) as store:
        written = _populate(store, keys)
        _populate_namespaces(store)
    blob = target.blob_store()
    _put(blob, "elsewhere/not-kvstore")
    _put(blob, "zzz")
    _put(blob, "ns/tenant%2F1~/other/junk")
    _put(blob, "ns/tenant%2F1~/ns/%7E~/x/y")
    with target.open() as store, request_delta(store) as spent:
        report = store.usage()
    recount = _recount(target.blob_store())
    assert _report_tally(report) == _tally(recount, lambda p: True)
    assert report["objects"] == len(recount)
    assert report["bytes"] == sum(size for size, _ in recount.values())
    view = report["namespaces"][0]["kinds"]
    assert {kind: view[kind]["items"] for kind in written} == {
        kind: len(found) for kind, found in written.items()
    }
    assert report["kinds"]["foreign"] == {"objects": 4, "bytes": 4 * 13, "items": 0}
    expected_spaces = {(n,) for n in NAMESPACES} | {
        (n, NAMESPACES[-1 - i]) for i, n in enumerate(NAMESPACES) if i % 2
    }
    expected_spaces.add(("tenant/1", "~"))  # holds only a foreign object
    assert {tuple(ns["namespace"]) for ns in report["namespaces"][1:]} == expected_spaces
    assert report["namespaces"][0]["namespace"] == []
    assert set(spent) == {"requests.list"}, dict(spent)


def test_usage_of_a_namespace_view_and_across_listing_pages(fast: Target) -> None:
    """A namespace's own usage is the recount of what lies below it (names relative to
    it); an item whose objects span listing pages (a log of 1200 chunks) is counted once."""
    with fast.open() as store:
        _populate_namespaces(store)
        big = store.namespace("tenant/1")
        for i in range(1200):
            big.append("long~log", f"r{i}")
        big.mset({f"k{i}": "v" for i in range(1100)})
    # closed: the settles the appends started are done, nothing changes any more
    recount = _recount(fast.blob_store())
    with fast.open() as store:
        for name in NAMESPACES:
            view = store.namespace(name)
            with request_delta(store) as spent:
                report = view.usage()
            inner = {
                (names[1:], kind): t
                for (names, kind), t in _tally(recount, lambda p, n=name: p[0][:1] == (n,)).items()
            }
            assert _report_tally(report) == inner, name
            assert set(spent) == {"requests.list"}, dict(spent)
        tally = store.namespace("tenant/1").usage()["namespaces"][0]["kinds"]
        assert tally["logs"]["items"] == 2 and tally["logs"]["objects"] >= 1201
        assert tally["values"]["items"] == 1101


PREFIXES: list[str] = [
    "",
    "a",
    "a/",
    "a~",
    "%",
    "%4",
    "~",
    "é",
    "\udcc3",  # the first byte of "é" (0xC3 0xA9): keys are bytes
    "\udcff",
    ".",
    "..",
    "ключ",
    "y" * 240,
    "z" * 240,
    "z" * 241,
    "x" * 239,
    "x" * 239 + ".",
    "q" * 239,
    "w" * 238 + "%",
    "app/",
    "m",
    "metrics/é",
    "raw~",
    "queue/",
    "nothing",
]


def test_a_prefix_selects_exactly_the_keys_and_names_starting_with_it(fast: Target) -> None:
    """usage(prefix) against the recount filtered by the decoded key or name (as bytes):
    every kind, this view only (no namespace, no internal or foreign objects)."""
    with fast.open() as store:
        _populate(store, KEYS)
        _populate_namespaces(store)
        recount = _recount(fast.blob_store())
        for prefix in PREFIXES:
            want = _raw(prefix)

            def keep(parsed: Parsed, want: bytes = want) -> bool:
                names, kind, _, owner = parsed
                return (
                    names == ()
                    and kind in _AREAS.values()
                    and owner is not None
                    and _raw(owner).startswith(want)
                )

            with request_delta(store) as spent:
                report = store.usage(prefix)
            expected = _tally(recount, keep)
            assert _report_tally(report) == expected, prefix
            assert report["prefix"] == prefix
            assert set(spent) == {"requests.list"}, dict(spent)
            if prefix != "nothing":
                assert expected, f"the prefix {prefix!r} should select something"


def test_usage_refuses_a_prefix_no_key_can_start_with() -> None:
    with kvstore.open(f"memory://ops-{uuid.uuid4().hex}") as store:
        store.set("k", "v")
        for bad in ("\ud800", "x" * 1025, "é" * 513):
            with pytest.raises(kvstore.ConfigurationError, match="prefix"):
                store.usage(bad)


def test_usage_counts_names_kvstore_cannot_write_as_foreign() -> None:
    url = f"memory://ops-{uuid.uuid4().hex}"
    with kvstore.open(url) as store:
        blob = store._core._ctx.blob  # type: ignore[attr-defined]
        for path in ("ns/~/kv/a~", "kv/README", "kv/.~"):
            _put(blob, path)
        report = store.usage()
    assert [ns["namespace"] for ns in report["namespaces"]] == [[]]
    assert report["kinds"] == {"foreign": {"objects": 3, "bytes": 39, "items": 0}}


def test_maintain_over_odd_names_does_what_the_rules_say(fast: Target) -> None:
    """Every kind of rule over everything, on the odd names: values and lists go, logs
    keep their last record, artifacts their newest version, record partitions go; a
    second run changes nothing; fsck finds no damage; what stays is exactly this."""
    clock = FakeClock()
    with open_clocked(fast, clock) as store:
        written = _populate(store, KEYS)
        _populate_namespaces(store)
        store.set_retention("values", max_age=60)
        store.set_retention("logs", max_count=1)
        store.set_retention("artifacts", max_versions=1)
        store.set_retention("records", max_age=60)
        clock.advance(HOUR_MS)
        report = store.maintain()
        removed = {r["kind"]: r["removed"] for r in report["rules"]}
        assert removed["values"] == len(written["values"])
        assert "values" not in store.usage()["namespaces"][0]["kinds"]
        for key in written["values"]:
            assert store.get(key) is None, key
        for key in written["logs"]:
            assert store.length(key) == 1, key
        for name in written["artifacts"]:
            assert len(store.artifacts.versions(name.decode())) == 1, name
        assert store.records("metrics/é~", partition="hour").query() == []
        for name in NAMESPACES:  # other views: their own (absent) policies
            assert store.namespace(name).get(name) == b"v"
        again = store.maintain()
        assert [r["removed"] for r in again["rules"]] == [0, 0, 0, 0]
        assert again["freed"]["objects"] == 0
        fsck = store.fsck()
        assert fsck["ok"], fsck


# -- a blob store that runs a writer at an exact request -----------------------------------------


Action = Callable[[], Awaitable[None]]


class Hooked(WrapperBlobStore):
    """Runs ``action`` once, just before (or after) the first request of ``op`` on a path
    ``match`` accepts: a writer racing the rule at that exact point."""

    def __init__(self, inner: BlobStore) -> None:
        super().__init__(inner)
        self.hooks: list[tuple[str, str, Callable[[str], bool], Action]] = []
        self.fired: list[str] = []

    def on(
        self, op: str, match: Callable[[str], bool], action: Action, when: str = "before"
    ) -> None:
        self.hooks.append((op, when, match, action))

    async def _fire(self, op: str, when: str, path: str) -> None:
        for hook in list(self.hooks):
            if hook[0] == op and hook[1] == when and hook[2](path):
                self.hooks.remove(hook)
                self.fired.append(f"{when} {op} {path}")
                await hook[3]()

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        await self._fire("get", "before", path)
        found = await self.inner._get(path, head)
        await self._fire("get", "after", path)
        return found

    async def _delete_if_match(self, path: str, tag: str) -> bool:
        await self._fire("delete_if_match", "before", path)
        return await self.inner._delete_if_match(path, tag)

    async def _list(self, prefix: str) -> AsyncIterator[list[str]]:
        await self._fire("list", "before", prefix)
        async for page in self.inner._list(prefix):
            yield page

    async def _list_after(
        self, prefix: str, start_after: str | None, page_size: int | None
    ) -> AsyncIterator[list[str]]:
        await self._fire("list", "before", prefix)
        async for page in self.inner._list_after(prefix, start_after, page_size):
            yield page

    async def _list_dated(self, prefix: str) -> AsyncIterator[DatedPage]:
        await self._fire("list_dated", "before", prefix)
        async for page in self.inner._list_dated(prefix):
            yield page
        await self._fire("list_dated", "after", prefix)


class Race:
    """A maintainer's store behind :class:`Hooked` and a writer's store, on one memory
    store whose clock (and the object store's) is ``clock``."""

    def __init__(self, clock: FakeClock) -> None:
        self.url = f"memory://race-{uuid.uuid4().hex}"
        self.clock = clock
        self.hooked = Hooked(ClockedBlobStore(self._blob(), clock))
        self.maintainer = kvstore.AsyncKVStore(
            self.hooked, kvstore.NoCache(), stats=self.hooked.stats, clock=clock
        )
        writer_blob = ClockedBlobStore(self._blob(), clock)
        self.writer = kvstore.AsyncKVStore(
            writer_blob, kvstore.NoCache(), stats=writer_blob.stats, clock=clock
        )

    def _blob(self) -> BlobStore:
        from kvstore.blob import open_blob_store
        from kvstore.stats import Stats

        return open_blob_store(self.url, stats=Stats())

    async def close(self) -> None:
        await self.maintainer.close()
        await self.writer.close()


def _race(test: Callable[[Race, FakeClock], Awaitable[None]]) -> None:
    async def run() -> None:
        race = Race(FakeClock())
        try:
            await test(race, race.clock)
        finally:
            await race.close()

    asyncio.run(run())


def _is(suffix: str) -> Callable[[str], bool]:
    return lambda path: path.endswith(suffix)


# -- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("moment", ["before-read", "after-read", "after-second-listing"])
def test_a_value_rewritten_at_any_step_of_the_rule_survives(moment: str) -> None:
    """The three windows of the values rule - between the first listing and the read,
    between the read and the second listing, between the second listing and the delete:
    a rewrite in any of them survives, with its new value; the untouched old value goes."""

    async def test(race: Race, clock: FakeClock) -> None:
        await race.writer.set("old:a", "original")
        await race.writer.set("old:b", "original")
        await race.maintainer.set_retention("values", "old:", max_age=60)
        clock.advance(HOUR_MS)

        async def rewrite() -> None:
            await race.writer.set("old:a", "rewritten")

        if moment == "before-read":
            race.hooked.on("get", _is("kv/old%3Aa~"), rewrite)
        elif moment == "after-read":
            race.hooked.on("get", _is("kv/old%3Aa~"), rewrite, "after")
        else:
            race.hooked.on("delete_if_match", _is("kv/old%3Aa~"), rewrite)
        report = await race.maintainer.maintain()
        assert race.hooked.fired, "the race did not happen"
        assert report["rules"][0]["removed"] == 1
        assert await race.maintainer.get("old:a") == b"rewritten"
        assert await race.maintainer.get("old:b") is None

    _race(test)


@pytest.mark.parametrize("where", ["memory", "seaweedfs", "encrypted", "namespace"])
def test_the_values_rule_keeps_a_redis_list_that_is_pushed_to(
    where: str, make_target: Callable[[str], Target]
) -> None:
    """A list's head is a value that pushes and pops never rewrite: a list pushed to (or
    popped from) within the limit is written, and stays whole - renamed too (its records
    stay under the key it was created with); an idle list goes, its records with it; an
    idle hash goes. On a real S3 server, an encrypted store and in a namespace."""
    from kvstore.crypto import KeyRing, generate_key
    from kvstore.crypto.blob import EncryptingBlobStore

    clock = FakeClock()
    target = make_target("seaweedfs" if where == "seaweedfs" else "memory")
    ring = KeyRing({"k1": generate_key()})
    wrap = (lambda b: EncryptingBlobStore(b, ring)) if where == "encrypted" else None
    with open_clocked(target, clock, wrap=wrap) as root:
        store = root.namespace("n/~") if where == "namespace" else root
        redis = kvstore.Redis(store=store)
        redis.rpush("busy", "a")
        redis.rpush("popped", "a", "b", "c")
        redis.rpush("idle", "x", "y")
        redis.rpush("moved-from", "m")
        redis.rename("moved-from", "moved")
        redis.hset("hash", "f", "v")
        store.set_retention("values", max_age=3600)
        # 1024 incompressible bytes: the largest head there is (S3: too long a name)
        longest = random.Random(7).randbytes(1024)
        busy: list[str | bytes] = ["busy"] if where == "seaweedfs" else ["busy", longest]
        for key in busy[1:]:
            redis.rpush(key, "a")
        for i in range(4):
            clock.advance(1000 * 1000)  # 17 minutes: each push young, the heads 67 old
            for key in busy:
                redis.rpush(key, f"b{i}")
            redis.rpush("moved", f"m{i}")
        redis.lpop("popped")
        report = root.maintain()
        assert report["rules"][0]["removed"] == 2  # the idle list and the hash
        for key in busy[1:]:
            assert redis.llen(key) == 5
        assert redis.lrange("busy", 0, -1) == [b"a", b"b0", b"b1", b"b2", b"b3"]
        assert redis.lrange("moved", 0, -1) == [b"m", b"m0", b"m1", b"m2", b"m3"]
        assert redis.lrange("popped", 0, -1) == [b"b", b"c"]
        assert redis.exists("idle") == 0 and redis.exists("hash") == 0
        clock.advance(HOUR_MS + 1000)
        assert root.maintain()["rules"][0]["removed"] == 2 + len(busy)  # idle an hour now
        assert redis.exists("busy", "popped", "moved") == 0
        # their records went as DEL removes them: an empty mark and a "gone" marker per
        # list are left, which fsck knows (no orphan), and the next maintain, once they are
        # old, sweeps them
        blob = root._core._ctx.blob  # type: ignore[attr-defined]
        left = [p for p in _paths(blob) if "list/" in p]
        assert left and all("/log/items~/m/" in p or p.endswith("/gone") for p in left), left
        fsck = store.fsck()
        assert fsck["ok"] and fsck["damage"] == [], fsck
        clock.advance(HOUR_MS)
        root.maintain()
        assert [p for p in _paths(blob) if "list/" in p] == []


def test_a_deleted_list_leaves_nothing_behind_after_maintain() -> None:
    clock = FakeClock()
    with open_clocked(Target("memory", f"memory://ops-{uuid.uuid4().hex}"), clock) as store:
        redis = kvstore.Redis(store=store)
        for i in range(3):
            redis.rpush(f"q{i}", "a", "b")
            redis.delete(f"q{i}")
        clock.advance(HOUR_MS)
        store.maintain()
        assert "lists" not in store.usage()["kinds"]


def test_a_push_racing_the_delete_of_an_idle_lists_head_keeps_the_list() -> None:
    """A pusher that read the head before the rule deleted it and appended after the rule
    found the list idle: the rule sees the young record after its delete and puts the head
    back - the list is whole, the pushed record in it."""

    async def test(race: Race, clock: FakeClock) -> None:
        redis = kvstore.AsyncRedis(store=race.writer)
        await redis.rpush("queue", "a", "b")
        await race.maintainer.set_retention("values", max_age=60)
        clock.advance(HOUR_MS)

        async def push() -> None:
            await redis.rpush("queue", "late")

        race.hooked.on("delete_if_match", _is("kv/queue~"), push)
        report = await race.maintainer.maintain()
        assert race.hooked.fired and report["rules"][0]["removed"] == 0
        reader = kvstore.AsyncRedis(store=race.maintainer)
        assert await reader.lrange("queue", 0, -1) == [b"a", b"b", b"late"]

    _race(test)


def test_the_values_rule_leaves_foreign_objects_alone(fast: Target) -> None:
    """Objects below kv/ whose names kvstore never writes (no terminator, a directory of
    them, a dot that should have been escaped) are not values: an age rule never deletes
    them, nor counts them."""
    clock = FakeClock()
    foreign = ["kv/README", "kv/x~/y", "kv/.~", "kv/%zz~", "kv/a%2"]
    with open_clocked(fast, clock) as store:
        for path in foreign:  # through the clocked store: dated now, old in an hour
            _put(store._core._ctx.blob, path)  # type: ignore[attr-defined]
        store.set("real", "v")
        store.set_retention("values", max_age=1)
        clock.advance(HOUR_MS)
        report = store.maintain(purge_expired=False)
        assert report["rules"][0]["removed"] == 1 and store.get("real") is None
        assert sorted(p for p in _paths(fast.blob_store(), "kv/")) == sorted(foreign)


# -- foreign objects anywhere --------------------------------------------------------------------

FOREIGN_NAMES = [
    ["ns/~/kv/a~"],  # a namespace without a name
    ["art/~/00000000000000000000", "art/~/00000000000000000001"],  # an artifact without one
    ["rec/~/kv/span~"],  # a collection without one
    ["art/x~/junk", "art/x~/00000000000000000000.x"],
    ["log/k~/junk", "log/k~/c/abc"],
    ["ses/a~/junk", "list/~/0123456789abcdef/junk", "artpart/x~/junk", "meta/junk"],
    ["elsewhere", "ns/a~/.kvstore/id", "ns/b~/zzz"],
]


@pytest.mark.parametrize("foreign", FOREIGN_NAMES, ids=lambda f: f[0])
def test_maintain_never_fails_on_nor_removes_foreign_objects(foreign: list[str]) -> None:
    """Every kind of rule, old enough to act, over objects kvstore never writes: maintain
    runs to the end, twice, and every foreign object is still there."""
    clock = FakeClock()
    target = Target("memory", f"memory://ops-{uuid.uuid4().hex}")
    with open_clocked(target, clock) as store:
        for path in foreign:  # through the clocked store: dated now, old in ten hours
            _put(store._core._ctx.blob, path)  # type: ignore[attr-defined]
        store.set("k", "v")
        store.append("log", "r")
        store.artifacts.save("a", b"1")
        store.artifacts.save("a", b"2")
        store.set_retention("values", max_age=1)
        store.set_retention("logs", max_age=1, max_count=1)
        store.set_retention("artifacts", max_versions=1, max_age=1)
        store.set_retention("records", max_age=1)
        clock.advance(10 * HOUR_MS)
        for _ in range(2):
            report = store.maintain()
            assert len(report["rules"]) == 4
        assert set(foreign) <= set(_paths(target.blob_store()))
        assert store.get("k") is None and store.artifacts.versions("a") == [1]


def test_purge_never_fails_on_a_foreign_object_in_the_records_area() -> None:
    url = f"memory://ops-{uuid.uuid4().hex}"
    with kvstore.open(url) as store:
        _put(store._core._ctx.blob, "rec/~/kv/span~")  # type: ignore[attr-defined]
        assert store.purge() == {"expired": 0, "log_objects": 0}


def test_two_maintainers_and_a_writer_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two maintainers and a writer interleaving on a store with latency (and background
    settles on): every rewrite survives (deleted before it or not, the value written last
    is there), every other old value goes, each deletion counted once between the two;
    the log keeps its last records and the writer's last append."""
    from conftest import LatencyBlobStore

    from kvstore.blob import open_blob_store
    from kvstore.logs import limits
    from kvstore.stats import Stats

    monkeypatch.setattr(limits, "SETTLE", True)

    async def run() -> None:
        clock, url = FakeClock(), f"memory://ops-{uuid.uuid4().hex}"

        def make() -> kvstore.AsyncKVStore:
            blob = LatencyBlobStore(ClockedBlobStore(open_blob_store(url, stats=Stats()), clock))
            return kvstore.AsyncKVStore(blob, kvstore.NoCache(), stats=blob.stats, clock=clock)

        first, second, writer = make(), make(), make()
        keys = [f"old:{i}" for i in range(40)]
        await writer.mset({k: "original" for k in keys})
        await writer.append("chat", *[str(i) for i in range(20)])
        await first.set_retention("values", "old:", max_age=60)
        await first.set_retention("logs", max_count=5)
        clock.advance(HOUR_MS)

        async def write() -> None:
            for key in keys[::2]:
                await writer.set(key, "new")
                await writer.append("chat", key)

        reports = await asyncio.gather(first.maintain(), second.maintain(), write())
        for key in keys[::2]:
            assert await writer.get(key) == b"new", key
        for key in keys[1::2]:
            assert await writer.get(key) is None, key
        removed = sum(
            r["removed"] for report in reports[:2] for r in report["rules"] if r["kind"] == "values"
        )
        assert 20 <= removed <= 40  # an old value the writer had not reached yet may go first
        chat = await writer.range("chat")
        assert len(chat) >= 5 and chat[-1] == keys[-2].encode()
        for store in (first, second, writer):
            await store.close()

    asyncio.run(run())


# -- logs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("moment", ["before-bounds", "after-bounds", "after-second-listing"])
def test_a_record_appended_while_the_idle_log_rule_runs_survives(moment: str) -> None:
    """An append at each step of the idle-log rule (before it reads the log's end, between
    that read and its second dated listing, between that listing and the drop): the
    appended record is never dropped."""

    async def test(race: Race, clock: FakeClock) -> None:
        await race.writer.append("idle:x", "old1", "old2")
        await race.writer.append("idle:y", "old")
        await race.maintainer.set_retention("logs", "idle:", max_age=60)
        clock.advance(HOUR_MS)

        async def append() -> None:
            await race.writer.append("idle:x", "new")

        directory = "log/idle%3Ax~/"
        if moment == "before-bounds":  # the plan's listing, when the rule reads the end
            race.hooked.on("list", lambda p: p == directory, append)
        elif moment == "after-bounds":
            race.hooked.on("list_dated", lambda p: p == directory, append)
        else:
            race.hooked.on("list_dated", lambda p: p == directory, append, "after")
        await race.maintainer.maintain()
        assert race.hooked.fired
        assert (await race.maintainer.range("idle:x"))[-1:] == [b"new"]
        assert await race.maintainer.length("idle:y") == 0

    _race(test)


def test_the_count_rule_keeps_records_appended_during_its_trim() -> None:
    async def test(race: Race, clock: FakeClock) -> None:
        await race.writer.append("chat", *[f"m{i}" for i in range(10)])
        await race.maintainer.set_retention("logs", max_count=3)

        async def append() -> None:
            await race.writer.append("chat", "late1", "late2")

        race.hooked.on("list_dated", lambda p: p == "log/chat~/", append)  # inside the trim
        race.hooked.on("get", lambda p: p.startswith("log/chat~/"), append)
        await race.maintainer.maintain()
        records = [r.decode() for r in await race.maintainer.range("chat")]
        assert records[-2:] == ["late1", "late2"] and len(records) >= 3, records

    _race(test)


# -- artifacts ---------------------------------------------------------------------------------


def test_versions_saved_while_max_versions_runs_survive() -> None:
    async def test(race: Race, clock: FakeClock) -> None:
        for v in range(4):
            await race.writer.artifacts.save("doc", f"v{v}".encode())
        await race.maintainer.set_retention("artifacts", max_versions=2)

        async def save() -> None:
            await race.writer.artifacts.save("doc", b"new")

        race.hooked.on("get", lambda p: p.startswith("art/doc~/"), save)
        report = await race.maintainer.maintain()
        assert race.hooked.fired and report["rules"][0]["removed"] == 2
        versions = await race.maintainer.artifacts.versions("doc")
        assert versions == [2, 3, 4]
        assert (await race.maintainer.artifacts.load("doc")).data == b"new"

    _race(test)


@pytest.mark.parametrize("limit", [{"max_versions": 2}, {"max_age": 60}])
def test_a_half_done_delete_of_the_newest_version_is_no_version_to_keep(
    limit: dict[str, int],
) -> None:
    """A delete writes a tombstone over the manifest, then the .deleted marker. Between
    the two (a delete running now, or one that died there), the listing still shows the
    version: the rule must not count it as one of the newest it keeps - else it deletes
    the version that is now the newest (max_age: every live version)."""
    clock = FakeClock()
    target = Target("memory", f"memory://ops-{uuid.uuid4().hex}")
    with open_clocked(target, clock) as store:
        for v in range(3):
            store.artifacts.save("doc", f"v{v}".encode())
        clock.advance(HOUR_MS)
        store.artifacts.delete("doc", 2)
        blob = target.blob_store()
        asyncio.run(blob.delete("art/doc~/00000000000000000002.deleted"))  # the marker: not yet
        store.set_retention("artifacts", **limit)  # type: ignore[arg-type]
        store.maintain()
        listed = store.artifacts.versions("doc")  # the tombstone is still listed
        assert listed == ([0, 1, 2] if "max_versions" in limit else [1, 2]), listed
        assert store.artifacts.load("doc").data == b"v1"


# -- namespaces, prefixes, idempotence, the report ------------------------------------------------


def test_rules_act_only_on_their_namespace_and_prefix(fast: Target) -> None:
    """Every kind of rule with prefix "a", in the root and in an oddly named namespace:
    what starts with "a" in that view goes, "b" and everything in the other views stays -
    long keys cut into segments included."""
    clock = FakeClock()
    long_a, long_b = "a" * 300, "b" * 300
    with open_clocked(fast, clock) as store:
        odd = store.namespace("a/~%")
        views = {"root": store, "ns": odd, "inner": odd.namespace("a")}
        for view in views.values():
            for key in ("a", "ab", long_a, "b", long_b, "", "A"):
                view.set(key, "v")
                view.append(key, "1", "2", "3")
                if key:
                    view.artifacts.save(key, b"1")
                    view.artifacts.save(key, b"2")
            view.records("a-metrics", partition="hour").append({"v": 1}, timestamp=clock() / 1000)
            view.records("b-metrics", partition="hour").append({"v": 1}, timestamp=clock() / 1000)
        for kind, limits in (
            ("values", {"max_age": 60}),
            ("logs", {"max_count": 1}),
            ("artifacts", {"max_versions": 1}),
            ("records", {"max_age": 60}),
        ):
            views["ns"].set_retention(kind, "a", **limits)  # type: ignore[arg-type]
        clock.advance(10 * HOUR_MS)
        report = store.maintain()
        assert {(r["kind"], tuple(r["namespace"])) for r in report["rules"]} == {
            (k, ("a/~%",)) for k in ("values", "logs", "artifacts", "records")
        }
        for name, view in views.items():
            acted = name == "ns"
            for key in ("a", "ab", long_a):
                assert (view.get(key) is None) is acted, (name, key)
                assert view.length(key) == (1 if acted else 3), (name, key)
                assert view.artifacts.versions(key) == ([1] if acted else [0, 1]), (name, key)
            for key in ("b", long_b, "", "A"):
                assert view.get(key) == b"v", (name, key)
                assert view.length(key) == 3, (name, key)
            a, b = (view.records(n, partition="hour") for n in ("a-metrics", "b-metrics"))
            assert len(a.query()) == (0 if acted else 1) and len(b.query()) == 1, name


def test_maintain_is_idempotent_and_its_report_adds_up(fast: Target) -> None:
    """The freed objects and bytes are exactly what a recount before and after finds gone
    (and shrunk); a second run removes nothing and frees nothing."""
    clock = FakeClock()
    with open_clocked(fast, clock) as store:
        for i in range(5):
            store.set(f"c:{i}", "x" * 100)
            store.append(f"l:{i}", *[str(j) for j in range(10)])
            store.artifacts.save("art", f"{i}".encode() * 1000)
        store.set_retention("values", "c:", max_age=60)
        store.set_retention("logs", "l:", max_count=2)
        store.set_retention("artifacts", max_versions=1)
        clock.advance(HOUR_MS)
        before = {p: size for p, (size, _) in _recount(fast.blob_store()).items()}
        report = store.maintain()
        after = {p: size for p, (size, _) in _recount(fast.blob_store()).items()}
        gone = set(before) - set(after)
        shrunk = sum(max(0, n - after[p]) for p, n in before.items() if p in after)
        assert report["freed"] == {
            "objects": len(gone),
            "bytes": sum(before[p] for p in gone) + shrunk,
        }
        assert report["before"] == {"objects": len(before), "bytes": sum(before.values())}
        assert report["after"] == {"objects": len(after), "bytes": sum(after.values())}
        assert {(r["kind"], r["removed"]) for r in report["rules"]} == {
            ("values", 5),
            ("logs", 5),
            ("artifacts", 4),
        }
        again = store.maintain()
        assert [r["removed"] for r in again["rules"]] == [0, 0, 0]
        assert again["freed"] == {"objects": 0, "bytes": 0}
        assert store.fsck()["ok"]


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: s.set_retention(["values"], max_age=1), "kind"),
        (lambda s: s.set_retention({"values": 1}, max_age=1), "kind"),
        (lambda s: s.set_retention(None, max_age=1), "kind"),
        (lambda s: s.set_retention("values", "\ud800", max_age=1), "prefix"),
        (lambda s: s.set_retention("values", "x" * 1025, max_age=1), "prefix"),
        (lambda s: s.set_retention("values", b"a", max_age=1), "prefix"),
        (lambda s: s.set_retention("values", max_age=10**400), "max_age"),
        (lambda s: s.set_retention("values", max_age=float("nan")), "max_age"),
        (lambda s: s.set_retention("values", max_age=-1), "max_age"),
        (lambda s: s.set_retention("values", max_age=1j), "max_age"),
        (lambda s: s.set_retention("logs", max_count=1.0), "max_count"),
        (lambda s: s.set_retention("artifacts", max_versions=-1), "max_versions"),
        (lambda s: s.set_retention("records", max_versions=1), "takes max_age, max_count"),
        (lambda s: s.remove_retention(["logs"]), "kind"),
        (lambda s: s.remove_retention("logs", "\ud800"), "prefix"),
        (lambda s: s.maintain(purge_expired="no"), "purge_expired"),
        (lambda s: s.maintain(progress=3), "callable"),
        (lambda s: s.usage(1.5), "prefix"),
    ],
)
def test_bad_input_is_a_configuration_error_and_nothing_is_stored(call: Any, match: str) -> None:
    with kvstore.open(f"memory://ops-{uuid.uuid4().hex}") as store:
        with pytest.raises(kvstore.ConfigurationError, match=match):
            call(store)
        assert store.retention() == [] and store.usage()["objects"] == 0
        store.maintain()  # and nothing was left behind that makes maintain fail


def _write_policy(store: kvstore.KVStore, payload: bytes, base: str = "") -> None:
    path = f"{base}meta/kv/retention~"
    _put(store._core._ctx.blob, path, codec.encode(payload, bind=path))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"null",
        b"{}",
        b'{"kind": "values", "max_age": 1}',
        b'"values"',
        b"[1]",
        b"[[]]",
        b'[{"kind": "values"}]',
        b'[{"kind": "values", "max_age": 1, "extra": 2}]',
        b'[{"kind": "blobs", "max_age": 1}]',
        b'[{"kind": "values", "max_age": "1"}]',
        b'[{"kind": "values", "prefix": "\\ud800", "max_age": 1}]',
        b'[{"kind": "values", "max_age": 1e999}]',
        b"\xff\xfe",
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_a_policy_that_is_not_one_is_corrupt_data(payload: bytes) -> None:
    """A policy object that decodes (its checksum holds) but is not a list of rules - as a
    newer or broken writer could leave it - is CorruptDataError naming it, for reads,
    changes and maintain; in a namespace too."""
    with kvstore.open(f"memory://ops-{uuid.uuid4().hex}") as store:
        store.namespace("t").set("k", "v")
        _write_policy(store, payload, "ns/t~/")
        view = store.namespace("t")
        for call in (
            view.retention,
            lambda: view.set_retention("values", max_age=1),
            store.maintain,
        ):
            with pytest.raises(kvstore.CorruptDataError, match="retention"):
                call()
        assert view.get("k") == b"v"


# -- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["retention", "set", "values"],
        ["retention", "set", "values", "--max-age", "0"],
        ["retention", "set", "values", "--max-age", "inf"],
        ["retention", "set", "values", "--max-age", "nan"],
        ["retention", "set", "values", "--max-age", "1e400"],
        ["retention", "set", "values", "--max-age=-5m"],
        ["retention", "set", "values", "--max-age", "5y"],
        ["retention", "set", "values", "--max-age", ""],
        ["retention", "set", "values", "--max-age", "5", "--max-count", "3"],
        ["retention", "set", "logs", "--max-count", "0"],
        ["retention", "set", "artifacts", "--max-versions", "-2"],
        ["retention", "set", "values", "--max-age", "5", "--prefix", "x" * 1025],
        ["retention", "rm", "values", "--prefix", "x" * 1025],
        ["du", "--prefix", "x" * 1025],
    ],
)
def test_cli_bad_input_exits_2_with_one_error_line(
    argv: list[str], tmp_path: Path, capsysbinary: Any
) -> None:
    url = str(tmp_path / "s")
    assert cli_main(["--url", url, *argv]) == 2
    captured = capsysbinary.readouterr()
    err = captured.err.decode().splitlines()
    assert len(err) == 1 and err[0].startswith("kvstore: error: "), err
    assert captured.out == b""
    with kvstore.open(url) as store:
        assert store.retention() == []
    assert cli_main(["--url", url, "maintain", "--json"]) == 0


def test_cli_on_a_damaged_policy_exits_2_with_one_line(tmp_path: Path, capsysbinary: Any) -> None:
    url = str(tmp_path / "s")
    with kvstore.open(url) as store:
        _write_policy(store, b'{"not": "rules"}')
    for argv in (
        ["retention", "ls"],
        ["maintain"],
        ["retention", "set", "logs", "--max-count", "1"],
    ):
        assert cli_main(["--url", url, *argv]) == 2
        err = capsysbinary.readouterr().err.decode().splitlines()
        assert len(err) == 1 and "retention policy" in err[0], err


def test_cli_prints_rules_and_namespaces_that_are_not_utf8(
    tmp_path: Path, capsysbinary: Any
) -> None:
    url = str(tmp_path / "s")
    argv = ["--url", url, "retention", "set", "values", "--prefix", "\udcff", "--max-age", "5"]
    status = cli_main(argv)
    capsysbinary.readouterr()
    with kvstore.open(url) as store:
        store.namespace("\udcff").set("k", "v")
    assert status == 0
    assert cli_main(["--url", url, "retention", "ls"]) == 0
    assert cli_main(["--url", url, "du"]) == 0


# -- clocks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("skew_years", [-10, 10])
def test_rules_go_by_the_object_stores_clock_not_a_clients(
    skew_years: int, make_target: Callable[[str], Target]
) -> None:
    """Local disk dates objects by their mtimes and the machine's clock. A maintainer whose
    clock is ten years off (either way): what the store's clock says is old goes, what it
    says is young stays - values, idle logs, artifact versions by age."""
    target = make_target("local")
    clock = FakeClock(int((time.time() + skew_years * 365 * 86400) * 1000))
    with open_clocked(target, clock, store_clock=False) as store:
        for key in ("old", "young"):
            store.set(key, "v")
            store.append(key, "r1", "r2")
            store.artifacts.save(key, b"1")
            store.artifacts.save(key, b"2")
        store.set_retention("values", max_age=3600)
        store.set_retention("logs", max_age=3600)
        store.set_retention("artifacts", max_age=3600)
        old = time.time() - 2 * 3600
        root = Path(target.url)
        for area in ("kv/old~", "log/old~", "art/old~"):
            for file in [root / area, *(root / area).rglob("*")]:
                if file.is_file():
                    os.utime(file, (old, old))
        report = store.maintain(purge_expired=False)
        assert {r["kind"]: r["removed"] for r in report["rules"]} == {
            "values": 1,
            "logs": 1,
            "artifacts": 1,
        }
        assert store.get("old") is None and store.get("young") == b"v"
        assert store.length("old") == 0 and store.length("young") == 2
        assert store.artifacts.versions("old") == [1]
        assert store.artifacts.versions("young") == [0, 1]


@pytest.mark.parametrize("skew_years", [-10, 10])
def test_the_records_rule_measures_now_by_the_object_stores_clock(skew_years: int) -> None:
    """Records carry their writers' times; "now" is the store's: a maintainer ten years
    ahead drops no young partition, one ten years behind still drops the old ones."""
    clock = FakeClock(int((time.time() + skew_years * 365 * 86400) * 1000))
    target = Target("memory", f"memory://ops-{uuid.uuid4().hex}")
    with open_clocked(target, clock, store_clock=False) as store:
        metrics = store.records("metrics", partition="hour")
        real = time.time()
        metrics.extend([({"age": h}, real - h * 3600, None) for h in (0, 5, 50)])
        store.set_retention("records", max_age=86400)
        report = store.maintain()
        assert report["rules"][0]["removed"] == 1
        assert sorted(r.data["age"] for r in metrics.query()) == [0, 5]


def test_a_maintainer_whose_clock_is_ahead_keeps_young_values_on_memory() -> None:
    """memory:// dates objects by the process's real clock; the client's is a year ahead."""
    clock = FakeClock(int((time.time() + 365 * 86400) * 1000))
    target = Target("memory", f"memory://ops-{uuid.uuid4().hex}")
    with open_clocked(target, clock, store_clock=False) as store:
        store.set("k", "v")
        store.append("log", "r")
        store.artifacts.save("a", b"1")
        store.artifacts.save("a", b"2")
        store.set_retention("values", max_age=1)
        store.set_retention("logs", max_age=1)
        store.set_retention("artifacts", max_age=1)
        report = store.maintain()
        assert [r["removed"] for r in report["rules"]] == [0, 0, 0]
        assert store.get("k") == b"v" and store.length("log") == 1
        assert store.artifacts.versions("a") == [0, 1]
