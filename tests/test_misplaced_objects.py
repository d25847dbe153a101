"""An intact object copied onto another key or position is refused, never returned as data.

Every object names, inside its checksummed metadata, the path it was written for (its
namespace, kind, key and position). Each test copies a whole, valid object over another
one - another key's value, another log's chunk, another position in the same log, another
artifact's or version's manifest, another part - and the read must raise CorruptDataError
naming the path it expected and the path the object was written for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import FAST, FakeClock, Target, open_clocked

import kvstore
from kvstore.layout import chunk_name, segment_name
from kvstore.logs import limits as log_limits
from kvstore.portal import portal


@pytest.fixture(params=FAST)
def target(request: pytest.FixtureRequest, make_target: Callable[[str], Target]) -> Target:
    return make_target(request.param)


def copy(store: kvstore.KVStore, source: str, destination: str) -> None:
    """Put the object at ``source`` over ``destination``, byte for byte."""
    blob = store.aio._ctx.blob

    async def run() -> None:
        found = await blob.get(source)
        assert found is not None, source
        await blob.put(destination, found.data)

    portal().run(run())


def assert_misplaced(read: Callable[[], Any], expected: str, found: str) -> None:
    with pytest.raises(kvstore.CorruptDataError) as info:
        read()
    message = str(info.value)
    assert "misplaced" in message and repr(expected) in message and repr(found) in message


def test_a_value_copied_onto_another_key(target: Target) -> None:
    with target.open() as store:
        store.set("alice:balance", "100")
        store.set("bob:balance", "5")
        layout = store.aio._ctx.layout
        alice, bob = layout.value("alice:balance"), layout.value("bob:balance")
        copy(store, bob, alice)
        assert_misplaced(lambda: store.get("alice:balance"), alice, bob)
        assert_misplaced(lambda: store.mget(["bob:balance", "alice:balance"]), alice, bob)
        assert store.get("bob:balance") == b"5"


def test_a_value_copied_into_another_namespace(target: Target) -> None:
    with target.open() as store:
        a, b = store.namespace("a"), store.namespace("b")
        a.set("k", "tenant a")
        b.set("k", "tenant b")
        source, destination = b.aio._ctx.layout.value("k"), a.aio._ctx.layout.value("k")
        copy(store, source, destination)
        assert_misplaced(lambda: a.get("k"), destination, source)


def test_a_chunk_copied_onto_another_log_or_position(target: Target) -> None:
    with target.open() as store:
        for log in ("one", "two"):
            for record in ("a", "b", "c"):
                store.append(log, f"{log}.{record}")  # one chunk each
        layout = store.aio._ctx.layout
        one_0 = layout.log_dir("one") + chunk_name(0)
        two_0 = layout.log_dir("two") + chunk_name(0)
        two_1 = layout.log_dir("two") + chunk_name(1)
        copy(store, one_0, two_0)
        assert_misplaced(lambda: store.range("two", 0, 0), two_0, one_0)
        copy(store, layout.log_dir("one") + chunk_name(1), one_0)  # same log, another slot
        assert_misplaced(lambda: store.range("one"), one_0, layout.log_dir("one") + chunk_name(1))
        assert store.range("two", 1, 1) == [b"two.b"]
        assert two_1  # untouched


def test_a_segment_copied_onto_another_log(target: Target) -> None:
    clock = FakeClock()
    with open_clocked(target, clock) as store:
        for log in ("one", "two"):
            for record in ("a", "b", "c"):
                store.append(log, f"{log}.{record}")
        clock.advance(log_limits.MIN_AGE_MS + 1000)
        assert store.compact("one") == 2 and store.compact("two") == 2
        layout = store.aio._ctx.layout
        one = layout.log_dir("one") + segment_name(0, 2)
        two = layout.log_dir("two") + segment_name(0, 2)
        copy(store, one, two)
        assert_misplaced(lambda: store.range("two"), two, one)


def test_a_manifest_copied_onto_another_artifact_or_version(target: Target) -> None:
    with target.open() as store:
        store.artifacts.save("a", "a0")
        store.artifacts.save("a", "a1")
        store.artifacts.save("b", "b0")
        layout = store.aio._ctx.layout
        a0 = layout.version(layout.artifact_dir("a"), 0)
        a1 = layout.version(layout.artifact_dir("a"), 1)
        b0 = layout.version(layout.artifact_dir("b"), 0)
        copy(store, a0, b0)
        assert_misplaced(lambda: store.artifacts.load("b"), b0, a0)
        copy(store, a0, a1)  # an older version over the newer one
        assert_misplaced(lambda: store.artifacts.load("a", version=1), a1, a0)
        assert store.artifacts.load("a", version=0).data == b"a0"


def test_a_part_copied_onto_another_part(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    import kvstore.artifacts as artifacts_module

    monkeypatch.setattr(artifacts_module.limits, "PART_SIZE", 1024)
    with target.open() as store:
        store.artifacts.save("big", bytes(range(256)) * 12)  # 3 parts
        layout = store.aio._ctx.layout
        directory = layout.artifact_dir("big")
        uploads = layout.part(directory, "", 0).rsplit("/", 2)[0] + "/"

        async def parts() -> list[str]:
            return [p async for page in store.aio._ctx.blob.list_pages(uploads) for p in page]

        first, second, _third = sorted(portal().run(parts()))
        copy(store, first, second)
        assert_misplaced(lambda: store.artifacts.load("big"), second, first)


def test_objects_written_before_bindings_are_still_read(target: Target) -> None:
    """An envelope without a binding (written by an older kvstore) is read as it is."""
    from kvstore import codec

    with target.open() as store:
        path = store.aio._ctx.layout.value("old")
        portal().run(store.aio._ctx.blob.put(path, codec.encode(b"from before")))
        assert store.get("old") == b"from before"
