"""Extension points: a BlobStore instance as ``kvstore.open``'s url, the backend registry,
and WrapperBlobStore (delegation, counting once, retries of injected faults)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import kvstore
import kvstore.blob as blob_module
from kvstore.blob import (
    Blob,
    BlobStore,
    RetryPolicy,
    WrapperBlobStore,
    open_blob_store,
    register_backend,
    unregister_backend,
)
from kvstore.blob.generic import FsspecBlobStore
from kvstore.blob.local import LocalBlobStore
from kvstore.blob.memory import MemoryBlobStore
from kvstore.stats import Stats
from kvstore.testing import (
    ClockedBlobStore,
    FakeClock,
    ProcessFailure,
    request_delta,
    run_in_processes,
)


def memory_blob(name: str = "ext", **kwargs: Any) -> BlobStore:
    """A memory store no other test has used (an id() of a freed object can repeat)."""
    return open_blob_store(f"memory://{name}-{uuid.uuid4().hex}", stats=Stats(), **kwargs)


# -- kvstore.open(BlobStore) -----------------------------------------------------------------


def test_open_takes_a_blob_store_instance_and_its_stats() -> None:
    blob = memory_blob()
    with kvstore.open(blob, cache=None) as store:
        assert store.aio._ctx.blob is blob
        store.set("k", "v")
        assert store.get("k") == b"v"
        assert store.stats()["requests.put"] == 1
        assert blob.stats.get("requests.put") == 1  # one Stats: the instance's


def test_open_async_takes_a_blob_store_instance() -> None:
    async def main() -> bytes | None:
        async with kvstore.open_async(memory_blob(), cache="local") as store:
            await store.set("k", "v")
            return await store.get("k")

    assert asyncio.run(main()) == b"v"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"storage_options": {}}, "storage_options"),
        ({"storage_options": {"endpoint_url": "http://x"}}, "storage_options"),
        ({"retry": RetryPolicy(attempts=1)}, "retry"),
    ],
)
def test_open_with_an_instance_refuses_what_belongs_to_the_instance(
    kwargs: dict[str, Any], name: str
) -> None:
    for opener in (kvstore.open, kvstore.open_async):
        with pytest.raises(kvstore.ConfigurationError) as info:
            opener(memory_blob(), cache=None, **kwargs)
        assert str(info.value) == (
            f"{name} cannot be given with a BlobStore instance as url: "
            "pass it to the blob store when you make it"
        )


# -- the registry ------------------------------------------------------------------------------


@pytest.fixture
def custom_protocol() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    calls: list[tuple[str, dict[str, Any]]] = []

    def factory(
        rest: str, options: dict[str, Any], *, retry: RetryPolicy | None, stats: Stats
    ) -> BlobStore:
        calls.append((rest, options))
        return MemoryBlobStore(f"custom-{rest}", retry=retry, stats=stats)

    register_backend(["kvtest-custom", "KVTEST-alias"], factory)
    try:
        yield calls
    finally:
        unregister_backend(["kvtest-custom", "kvtest-alias"])


def test_a_registered_protocol_opens_with_its_factory(
    custom_protocol: list[tuple[str, dict[str, Any]]],
) -> None:
    retry = RetryPolicy(attempts=2)
    blob = open_blob_store("kvtest-custom://a/b", {"x": 1}, retry=retry, stats=Stats())
    assert isinstance(blob, MemoryBlobStore)
    assert blob.url == "memory://custom-a/b"
    assert blob.retry is retry
    assert custom_protocol == [("a/b", {"x": 1})]
    open_blob_store("KVTEST-ALIAS://c", stats=Stats())  # protocols are case-insensitive
    assert custom_protocol[-1] == ("c", {})
    with kvstore.open("kvtest-custom://d", cache=None) as store:
        store.set("k", "v")
        assert store.get("k") == b"v"


def test_register_refuses_a_taken_protocol_unless_replacing(
    custom_protocol: list[tuple[str, dict[str, Any]]],
) -> None:
    def other(rest: str, options: dict[str, Any], **kwargs: Any) -> BlobStore:
        return MemoryBlobStore("other", **kwargs)

    with pytest.raises(kvstore.ConfigurationError, match="already has a backend"):
        register_backend("memory", other)
    with pytest.raises(kvstore.ConfigurationError, match="already has a backend"):
        register_backend("kvtest-custom", other)
    register_backend("kvtest-custom", other, replace=True)
    assert open_blob_store("kvtest-custom://x", stats=Stats()).url == "memory://other"
    for bad in ("", "a b", "s3://", 3):
        with pytest.raises(kvstore.ConfigurationError, match="bad protocol name"):
            register_backend(bad, other)  # type: ignore[arg-type]
    with pytest.raises(kvstore.ConfigurationError, match="callable"):
        register_backend("kvtest-x", "not a factory")  # type: ignore[arg-type]


def test_unregistered_protocols_fall_back_to_fsspec(tmp_path: Any) -> None:
    """Without its factory, ``local://`` is what fsspec makes of it: the generic store."""
    builtin = blob_module._BACKENDS["local"]
    unregister_backend("local")
    try:
        generic = open_blob_store(f"local://{tmp_path}", stats=Stats())
        assert type(generic) is FsspecBlobStore
        with pytest.raises(kvstore.ConfigurationError, match="unknown storage protocol"):
            open_blob_store("kvtest-never-registered://x", stats=Stats())
        unregister_backend("kvtest-never-registered")  # missing: ignored
    finally:
        register_backend("local", builtin)
    assert type(open_blob_store(f"local://{tmp_path}", stats=Stats())) is LocalBlobStore


# -- WrapperBlobStore --------------------------------------------------------------------------


class Flaky(WrapperBlobStore):
    """Fails the next ``failures`` GETs with a connection reset."""

    failures = 0

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError(104, "reset (injected)")
        return await self.inner._get(path, head)


def test_wrapper_delegates_and_shares_url_retry_stats() -> None:
    inner = memory_blob(retry=RetryPolicy(attempts=3, base_delay=0.001))
    wrapper = WrapperBlobStore(inner)
    assert (wrapper.url, wrapper.retry, wrapper.stats) == (inner.url, inner.retry, inner.stats)
    assert wrapper.identity == inner.identity
    assert (wrapper.atomic_create, wrapper.atomic_conditional_put) == (True, True)
    assert wrapper.atomic_conditional_delete is True
    wrapper.expect_concurrency(17)
    assert inner.connections == wrapper.connections == 17
    assert "around" in repr(wrapper)
    with pytest.raises(TypeError):
        WrapperBlobStore("memory://x")  # type: ignore[arg-type]


def test_wrapper_counts_each_request_once() -> None:
    async def main() -> None:
        wrapper = WrapperBlobStore(memory_blob())
        with request_delta(wrapper.stats) as spent:
            tag = await wrapper.put("a", b"1")
            assert (await wrapper.get("a")) == Blob(b"1", tag)
            assert await wrapper.put_if_absent("a", b"2") is None
            new = await wrapper.put_if_match("a", b"3", tag)
            assert new is not None
            assert await wrapper.delete_if_match("a", new) is True
            await wrapper.delete("a")
            assert [p async for p in wrapper.list_pages("")] == []
        assert spent == {
            "requests.put": 1,
            "requests.get": 1,
            "requests.put_if_absent": 1,
            "requests.put_if_match": 1,
            "requests.delete_if_match": 1,
            "requests.delete": 1,
            "requests.list": 1,
        }

    asyncio.run(main())


def test_wrapper_faults_are_retried_and_translated_like_a_backends() -> None:
    async def main() -> None:
        flaky = Flaky(memory_blob(retry=RetryPolicy(attempts=3, base_delay=0.001)))
        await flaky.put("a", b"1")
        flaky.failures = 2
        with request_delta(flaky.stats, prefix="") as spent:
            found = await flaky.get("a")
        assert found is not None and found.data == b"1"
        assert spent == {"requests.get": 3, "requests": 3, "retries": 2, "bytes_read": 1}
        flaky.failures = 3
        with pytest.raises(kvstore.BackendError) as info:
            await flaky.get("a")
        assert info.value.operation == "get"
        assert isinstance(info.value.cause, ConnectionResetError)

    asyncio.run(main())


def test_a_wrapper_may_declare_a_capability_false() -> None:
    class NoCreate(WrapperBlobStore):
        atomic_create = False

    async def main() -> None:
        blob = NoCreate(memory_blob())
        assert blob.atomic_create is False
        assert blob.atomic_conditional_put is True
        with pytest.raises(kvstore.UnsupportedOperationError, match="conditional create"):
            await blob.put_if_absent("a", b"1")

    asyncio.run(main())


def test_wrapper_passes_bulk_deletes_and_listings_from_a_position_through() -> None:
    async def main() -> None:
        wrapper = WrapperBlobStore(memory_blob("bulk"))
        assert wrapper.delete_batch == wrapper.inner.delete_batch == 1000
        await asyncio.gather(*(wrapper.put(f"k{i}", b"1") for i in range(5)))
        with request_delta(wrapper.stats) as spent:
            assert [p async for p in wrapper.list_pages("k", "k1", 2)] == [["k2", "k3"], ["k4"]]
            await wrapper.delete_many(["k0", "k1", "k9"])
        assert spent == {"requests.list": 2, "requests.delete_many": 1}
        assert [p async for p in wrapper.list_pages("")] == [["k2", "k3", "k4"]]

    asyncio.run(main())


def test_a_wrapper_that_overrides_a_single_primitive_sees_the_bulk_ones() -> None:
    """An override of ``_delete`` (``_list``) is not bypassed by ``delete_many``
    (``list_pages`` from a position): they go through it, one path at a time."""

    class Watching(WrapperBlobStore):
        deleted: list[str] = []
        listed: list[str] = []

        async def _delete(self, path: str) -> None:
            self.deleted.append(path)
            await self.inner._delete(path)

        async def _list(self, prefix: str) -> Any:
            self.listed.append(prefix)
            async for page in self.inner._list(prefix):
                yield page

    async def main() -> None:
        watching = Watching(memory_blob("watching"))
        assert watching.delete_batch == 1
        await asyncio.gather(*(watching.put(f"k{i}", b"1") for i in range(4)))
        assert [p async for p in watching.list_pages("k", "k1", 1)] == [["k2"], ["k3"]]
        assert watching.listed == ["k"]
        with request_delta(watching.stats) as spent:
            await watching.delete_many(["k0", "k2", "k9"])
        assert sorted(watching.deleted) == ["k0", "k2", "k9"]
        assert spent == {"requests.delete_many": 3}
        assert [p async for p in watching.list_pages("")] == [["k1", "k3"]]

    asyncio.run(main())


def test_a_backend_with_only_the_old_primitives_gets_the_new_operations() -> None:
    """A third-party backend written before ``_delete_many`` and ``_list_after``: the
    base class deletes concurrently through ``_delete`` and filters ``_list``."""

    class Old(BlobStore):
        def __init__(self) -> None:
            super().__init__("old://x", stats=Stats())
            self.objects: dict[str, bytes] = {}
            self.in_flight = self.most = 0

        async def _get(self, path: str, head: int | None = None) -> Blob | None:
            data = self.objects.get(path)
            return None if data is None else Blob(data[:head], "")

        async def _put(self, path: str, data: bytes) -> str:
            self.objects[path] = data
            return ""

        async def _put_if_absent(self, path: str, data: bytes) -> str | None:
            raise NotImplementedError

        async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
            raise NotImplementedError

        async def _delete(self, path: str) -> None:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            await asyncio.sleep(0.001)
            self.objects.pop(path, None)
            self.in_flight -= 1

        async def _delete_if_match(self, path: str, tag: str) -> bool:
            raise NotImplementedError

        async def _list(self, prefix: str) -> Any:
            names = sorted(p for p in self.objects if p.startswith(prefix))
            for i in range(0, len(names), 3):
                page = names[i : i + 3]
                yield await self._call("list", prefix, lambda page=page: asyncio.sleep(0, page))

    async def main() -> None:
        old = Old()
        for i in range(100):
            await old.put(f"k{i:03d}", b"1")
        pages = [p async for p in old.list_pages("k", "k010", 4)]
        assert all(len(p) <= 4 for p in pages)
        assert [n for p in pages for n in p] == [f"k{i:03d}" for i in range(11, 100)]
        with request_delta(old.stats) as spent:
            await old.delete_many([f"k{i:03d}" for i in range(100)])
        assert spent == {"requests.delete_many": 100}
        assert old.objects == {} and 1 < old.most <= 32

    asyncio.run(main())


# -- kvstore.testing helpers -------------------------------------------------------------------


def _square_after_all_arrive(n: int, *, barrier: Any) -> int:
    barrier.wait(timeout=60)
    if n < 0:
        raise ValueError(f"negative: {n}")
    return n * n


def test_run_in_processes_returns_results_in_order_and_reports_failures() -> None:
    calls = [(3,), (-1,), (5,)]
    outcomes = run_in_processes(
        _square_after_all_arrive, calls, barrier=True, timeout=120, return_exceptions=True
    )
    assert outcomes[0] == 9 and outcomes[2] == 25
    failure = outcomes[1]
    assert isinstance(failure, ProcessFailure) and failure.index == 1
    assert "ValueError: negative: -1" in str(failure)  # the child's traceback
    with pytest.raises(ProcessFailure, match="negative: -2"):
        run_in_processes(_square_after_all_arrive, [(-2,)], barrier=True, timeout=120)


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock()
    start = clock()
    assert start % 1000 == 0
    clock.advance(1500)
    assert clock() == start + 1500
    assert FakeClock(now=7)() == 7


def test_a_clocked_store_forgets_the_dates_of_objects_a_bulk_delete_removed() -> None:
    async def main() -> None:
        clock = FakeClock()
        clocked = ClockedBlobStore(memory_blob("clocked"), clock)
        assert clocked.delete_batch == 1000  # the inner store's bulk delete, kept
        await clocked.put("a", b"1")
        await clocked.put("b", b"1")
        clock.advance(60_000)
        await clocked.delete_many(["a", "b"])
        await clocked.put("a", b"2")  # a new object: dated now, not when the old one was
        listing = await clocked.list_dated("")
        assert listing.paths == ("a",) and listing.modified == (clock(),)

    asyncio.run(main())


def test_request_delta_reads_stores_stats_and_reports_only_changes() -> None:
    with kvstore.open(memory_blob(), cache=None) as store:
        store.set("k", "v")
        with request_delta(store) as spent:
            store.get("k")
            store.get("missing")
        assert spent == {"requests.get": 2}
        assert spent.total == 2
        with request_delta(store) as nothing:
            pass
        assert nothing == {} and nothing.total == 0
    with pytest.raises(TypeError), request_delta(object()):
        pass
