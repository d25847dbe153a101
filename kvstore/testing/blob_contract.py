"""The contract every :class:`kvstore.blob.BlobStore` keeps, as tests a backend inherits.

A backend gets the whole suite by subclassing and providing one fixture::

    class TestMyBlobStore(BlobStoreContract):
        @pytest.fixture
        def open_store(self, tmp_path):
            return lambda: MyBlobStore(str(tmp_path), stats=Stats())

``open_store`` returns a callable that opens a store on *one fresh, empty location* (each
test gets its own); called more than once, it opens more stores on the same location (the
concurrency test races several). It is called inside the event loop that uses the store.

Each test runs on a fresh event loop (``asyncio.run``) and closes the stores it opened.
Tags are opaque: only a tag the store returned is ever passed back (a made-up string may
be refused as a bad request, as GCS refuses a non-numeric generation).

Tests of a conditional operation skip, with the reason, when the backend declares the
capability False (``atomic_create``, ``atomic_conditional_put``,
``atomic_conditional_delete``); :meth:`test_capability_flags_are_honoured` then checks that
the operation is refused rather than pretended.

The race here is among tasks of one process. That conditional create is atomic across
processes and machines is a property of the server; kvstore proves it with
:func:`kvstore.testing.run_in_processes` (tests/test_concurrency.py) against real servers.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ..blob.base import Blob, BlobStore
from ..errors import UnsupportedOperationError
from .counting import request_delta

StoreBody = Callable[[Callable[[], BlobStore]], Awaitable[None]]

#: Paths as kvstore.keys encodes them (escapes, ``~``, punctuation, a 240-character
#: segment), sorted.
ESCAPED_PATHS = sorted(
    [
        "kv/a%2Fb~",
        "kv/%25x~",
        "kv/a%20b%3F~",
        "kv/%C3%A9t%C3%A9~",
        "kv/x=y+z,w@v-_~",
        "kv/%2E.hidden~",
        "kv/%7E~",
        "kv/" + "s" * 240 + "/" + "t" * 100 + "~",
    ]
)


async def listing(
    store: BlobStore, prefix: str, start_after: str | None = None, page_size: int | None = None
) -> list[list[str]]:
    """Every page of ``store.list_pages(prefix, start_after, page_size)``."""
    return [page async for page in store.list_pages(prefix, start_after, page_size)]


async def first(store: BlobStore, prefix: str, start_after: str, n: int) -> list[str]:
    """The first ``n`` paths after ``start_after``, read as a caller does: pages of ``n``
    until it has them, no further."""
    found: list[str] = []
    async for page in store.list_pages(prefix, start_after, page_size=n):
        found += page
        if len(found) >= n:
            break
    return found[:n]


def _skip_unless(store: BlobStore, capability: str) -> None:
    if not getattr(store, capability):
        pytest.skip(f"{type(store).__name__} declares {capability} = False")


class BlobStoreContract:
    """Tests every BlobStore must pass. Subclass it (name the subclass ``Test...``) and
    override the :meth:`open_store` fixture; tune the class attributes if needed."""

    #: Stores racing to create one object (each its own BlobStore on the location).
    creators: int = 8
    #: Size of the "large object" (above S3's 5 MiB multipart threshold by default).
    large_object_bytes: int = 6 * 2**20 + 123
    #: False for a backend whose ``put`` readers may see half-written (the generic fsspec
    #: backend on some filesystems): the base contract's first guarantee, declared broken.
    put_is_atomic_for_readers: bool = True
    #: How finely the store dates objects in a dated listing, in ms (S3 and HTTP ``Date``
    #: headers: whole seconds).
    dated_listing_resolution_ms: int = 1000
    #: Paths given to one ``delete_many`` in the bulk test (a few of them exist): above
    #: 1000, S3's most per request. A backend that sends one request per path may lower it.
    bulk_delete_paths: int = 1001

    @pytest.fixture
    def open_store(self) -> Callable[[], BlobStore]:
        """Override: a callable that opens a BlobStore on a fresh, empty location."""
        raise NotImplementedError("a BlobStoreContract subclass provides open_store")

    def run(self, open_store: Callable[[], BlobStore], body: StoreBody) -> None:
        """Run ``body(opener)`` on a fresh loop; every store it opened is closed after."""
        opened: list[BlobStore] = []

        def opener() -> BlobStore:
            store = open_store()
            opened.append(store)
            return store

        async def main() -> None:
            try:
                await asyncio.wait_for(body(opener), 120)
            finally:
                for store in opened:
                    await store.close()

        asyncio.run(main())

    # -- plain reads and writes --------------------------------------------------------------

    def test_put_then_get_returns_the_bytes_and_the_tag(
        self, open_store: Callable[[], BlobStore]
    ) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            data = bytes(range(256)) * 4
            tag = await store.put("kv/a~", data)
            assert isinstance(tag, str)
            assert await store.get("kv/a~") == Blob(data, tag)

        self.run(open_store, body)

    def test_an_empty_object(self, open_store: Callable[[], BlobStore]) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            tag = await store.put("kv/empty~", b"")
            assert await store.get("kv/empty~") == Blob(b"", tag)
            assert await store.get_head("kv/empty~", 10) == Blob(b"", tag)

        self.run(open_store, body)

    def test_get_of_a_missing_object_is_none(self, open_store: Callable[[], BlobStore]) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            assert await store.get("kv/missing~") is None
            assert await store.get_head("kv/missing~", 16) is None
            await store.put("kv/other~", b"x")
            assert await store.get("kv/other") is None  # a prefix of a name is no object

        self.run(open_store, body)

    def test_get_head_reads_the_first_bytes_and_the_whole_objects_tag(
        self, open_store: Callable[[], BlobStore]
    ) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            data = os.urandom(10_000)
            tag = await store.put("kv/a~", data)
            assert await store.get_head("kv/a~", 100) == Blob(data[:100], tag)
            assert await store.get_head("kv/a~", 1) == Blob(data[:1], tag)
            assert await store.get_head("kv/a~", 20_000) == Blob(data, tag)  # whole, short

        self.run(open_store, body)

    def test_get_range_reads_a_span_and_the_whole_objects_tag(
        self, open_store: Callable[[], BlobStore]
    ) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            data = os.urandom(10_000)
            tag = await store.put("kv/a~", data)
            assert await store.get_range("kv/a~", 0, 100) == Blob(data[:100], tag)
            assert await store.get_range("kv/a~", 4_000, 1) == Blob(data[4_000:4_001], tag)
            assert await store.get_range("kv/a~", 9_990, 100) == Blob(data[9_990:], tag)  # short
            assert await store.get_range("kv/a~", 10_000, 5) == Blob(b"", tag)  # at the end
            assert await store.get_range("kv/a~", 20_000, 5) == Blob(b"", tag)  # past it
            assert await store.get_range("kv/missing~", 0, 5) is None

        self.run(open_store, body)

    def test_put_replaces_atomically_for_readers(self, open_store: Callable[[], BlobStore]) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            first = await store.put("kv/a~", b"A" * 100_000)
            second = await store.put("kv/a~", b"B" * 100_000)
            found = await store.get("kv/a~")
            assert found is not None and found.data == b"B" * 100_000
            if store.atomic_conditional_put:  # a tag names one version of the object
                assert found.tag == second and first != second
            if not self.put_is_atomic_for_readers:
                pytest.skip(f"{type(self).__name__} declares put_is_atomic_for_readers = False")
            versions = [bytes([65 + i % 26]) * 100_000 for i in range(6)]

            async def writer() -> None:
                for version in versions:
                    await store.put("kv/a~", version)

            async def reader() -> list[bytes]:
                seen = []
                for _ in range(4):
                    got = await store.get("kv/a~")
                    assert got is not None
                    seen.append(got.data)
                return seen

            _, *reads = await asyncio.gather(writer(), reader(), reader())
            allowed = {b"B" * 100_000, *versions}
            for read in (r for rs in reads for r in rs):  # never a mix, never partial
                assert read in allowed, f"a read saw {len(read)} bytes of a mix"

        self.run(open_store, body)

    def test_delete_removes_and_a_missing_object_is_not_an_error(
        self, open_store: Callable[[], BlobStore]
    ) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            await store.put("kv/a~", b"1")
            await store.delete("kv/a~")
            assert await store.get("kv/a~") is None
            await store.delete("kv/a~")  # again: missing is fine
            await store.delete("kv/never/was~")

        self.run(open_store, body)

    def test_delete_many_removes_the_named_objects_and_ignores_missing_ones(
        self, open_store: Callable[[], BlobStore]
    ) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            names = [f"kv/{c}~" for c in "abcdef"] + ["kv/a/b~", "log/a~"]
            await asyncio.gather(*(store.put(n, b"1") for n in names))
            with request_delta(store.stats) as spent:
                await store.delete_many([])
            assert spent == {}, "an empty delete_many sent a request"
            doomed = ["kv/b~", "kv/missing~", "kv/a/b~", "kv/e~", "kv/b~", "kv/never/was~"]
            with request_delta(store.stats) as spent:
                await store.delete_many(doomed)
            assert spent == {"requests.delete_many": -(-5 // store.delete_batch)}
            left = [n for page in await listing(store, "") for n in page]
            assert left == sorted(n for n in names if n not in doomed)
            await store.delete_many(doomed)  # again: all missing, no error
            await store.delete_many(tuple(left))
            assert await listing(store, "") == []

        self.run(open_store, body)

    def test_delete_many_above_one_batch(self, open_store: Callable[[], BlobStore]) -> None:
        """More paths than one bulk request takes on S3 (1000): every batch is sent, one
        request per ``delete_batch`` paths."""
        n = self.bulk_delete_paths

        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            paths = [f"kv/{i:05d}~" for i in range(n)]
            present = sorted({paths[i] for i in (0, 1, n // 2, n - 2, n - 1)} | {"kv/z~"})
            await asyncio.gather(*(store.put(p, b"1") for p in present))
            with request_delta(store.stats) as spent:
                await store.delete_many(paths)
            assert spent == {"requests.delete_many": -(-n // store.delete_batch)}
            assert [n for page in await listing(store, "kv/") for n in page] == ["kv/z~"]

        self.run(open_store, body)

    def test_large_object(self, open_store: Callable[[], BlobStore]) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            data = os.urandom(self.large_object_bytes)
            tag = await store.put("art/big~", data)
            assert await store.get("art/big~") == Blob(data, tag)
            assert await store.get_head("art/big~", 64) == Blob(data[:64], tag)

        self.run(open_store, body)

    def test_paths_with_escaped_characters(self, open_store: Callable[[], BlobStore]) -> None:
        """Paths as kvstore.keys encodes them: ``%XX`` escapes, ``~``, ``=+,@-_.`` and
        segments of up to 240 characters must be stored and listed verbatim."""

        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            paths = ESCAPED_PATHS
            for i, path in enumerate(paths):
                await store.put(path, str(i).encode())
            for i, path in enumerate(paths):
                found = await store.get(path)
                assert found is not None and found.data == str(i).encode(), path
            assert [n for page in await listing(store, "kv/") for n in page] == paths
            assert await listing(store, "kv/a%2F") == [["kv/a%2Fb~"]]

        self.run(open_store, body)

    # -- listing -----------------------------------------------------------------------------

    def test_list_pages_by_string_prefix_in_order(
        self, open_store: Callable[[], BlobStore]
    ) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            names = ["kv/b1~", "kv/b/c~", "kv/b/d/e~", "kv/a~", "kv/ba~", "log/b~", "kv/c~"]
            await asyncio.gather(*(store.put(n, n.encode()) for n in names))
            assert await listing(store, "nothing/") == []
            for prefix in ("", "kv/", "kv/b", "kv/b/", "kv/b/d/e~", "log/"):
                pages = await listing(store, prefix)
                assert all(pages), f"an empty page for {prefix!r}"
                found = [n for page in pages for n in page]
                assert found == sorted(n for n in names if n.startswith(prefix)), prefix

        self.run(open_store, body)

    def test_list_pages_from_a_position(self, open_store: Callable[[], BlobStore]) -> None:
        """Only paths strictly after ``start_after``, in order, for positions before,
        between, at (excluded), inside and after the listed paths, across "directory"
        boundaries (``/`` sorts after ``-`` and before ``0``) and with any prefix."""

        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            names = [
                "kv/a-b~", "kv/a/b~", "kv/a/c/d~", "kv/a0~", "kv/b/c~", "kv/b/d/e~",
                "kv/b1~", "kv/ba~", "log/a~",
            ]  # fmt: skip
            await asyncio.gather(*(store.put(n, n.encode()) for n in names))
            positions = [
                "", "a", "kv/", "kv/a", "kv/a-b~", "kv/a/", "kv/a/b", "kv/a/b~", "kv/a/c",
                "kv/a/c/d~", "kv/a/z", "kv/a0", "kv/b/c~", "kv/b/d", "kv/b/zz", "kv/b1~",
                "kv/ba~", "kv/c", "log/a~", "zzz",
            ]  # fmt: skip
            for prefix in ("", "kv/", "kv/a/", "kv/b", "log/"):
                for after in positions:
                    pages = await listing(store, prefix, after)
                    assert all(pages), f"an empty page for {prefix!r} after {after!r}"
                    found = [n for page in pages for n in page]
                    expected = [n for n in sorted(names) if n.startswith(prefix) and n > after]
                    assert found == expected, (prefix, after)

        self.run(open_store, body)

    def test_list_pages_by_page_size(self, open_store: Callable[[], BlobStore]) -> None:
        """Pages of at most ``page_size`` paths; "the next n after X" is one request."""

        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            names = [f"kv/{i:02d}~" for i in range(11)] + ["kv/05/x~", "log/a~"]
            await asyncio.gather(*(store.put(n, b"1") for n in names))
            ordered = sorted(n for n in names if n.startswith("kv/"))
            for size in (1, 2, 5, 1000):
                for after in (None, "kv/05~", "kv/05", "kv/10~"):
                    pages = await listing(store, "kv/", after, size)
                    assert all(0 < len(page) <= size for page in pages), (size, after, pages)
                    rest = [n for n in ordered if after is None or n > after]
                    assert [n for page in pages for n in page] == rest, (size, after)
            for after in ("kv/03~", "kv/03", "kv/05~"):  # an existing path and not
                with request_delta(store.stats) as spent:
                    found = await first(store, "kv/", after, 3)
                assert found == [n for n in ordered if n > after][:3], after
                assert spent == {"requests.list": 1}, after

        self.run(open_store, body)

    def test_list_pages_from_a_position_with_escaped_characters(
        self, open_store: Callable[[], BlobStore]
    ) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            await asyncio.gather(*(store.put(p, b"1") for p in ESCAPED_PATHS))
            for after in [*ESCAPED_PATHS, "kv/a%2F", "kv/%", "kv/%C3%A9", "kv/s"]:
                found = [n for page in await listing(store, "kv/", after, 3) for n in page]
                assert found == [n for n in ESCAPED_PATHS if n > after], after

        self.run(open_store, body)

    def test_list_dated_dates_objects_by_the_stores_clock(
        self, open_store: Callable[[], BlobStore]
    ) -> None:
        """A dated listing names what ``list_pages`` names, in the same order; its dates
        move forward with the store's clock (a write after a listing is dated no earlier
        than that listing's "now", to the store's resolution) and a replaced object is
        dated again. The dates are compared with each other, never with this process's
        clock: the store's clock is the one they are read by."""
        resolution = self.dated_listing_resolution_ms

        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            if not store.dated_listing:
                with pytest.raises(UnsupportedOperationError):
                    await store.list_dated("kv/")
                pytest.skip(f"{type(store).__name__} declares dated_listing = False")
            assert (await store.list_dated("kv/")).paths == ()
            names = ["kv/b~", "kv/a~", "kv/c/d~", "log/x~"]
            await asyncio.gather(*(store.put(n, b"1") for n in names))
            first = await store.list_dated("kv/")
            assert list(first.paths) == [n for page in await listing(store, "kv/") for n in page]
            assert len(first.modified) == len(first.paths)
            ages = first.ages()
            assert all(age >= 0 for age in ages.values()), ages
            await asyncio.sleep((resolution + 200) / 1000)
            await store.put("kv/a~", b"2")
            await store.put("kv/e~", b"1")
            second = await store.list_dated("kv/")
            assert second.paths == ("kv/a~", "kv/b~", "kv/c/d~", "kv/e~")
            when = dict(zip(second.paths, second.modified, strict=True))
            before = dict(zip(first.paths, first.modified, strict=True))
            assert second.now >= first.now
            assert when["kv/e~"] + resolution >= first.now, "a newer object dated earlier"
            assert when["kv/a~"] > before["kv/a~"], "a replaced object kept its old date"
            assert when["kv/b~"] == before["kv/b~"], "an untouched object was re-dated"

        self.run(open_store, body)

    def test_list_sizes_gives_each_objects_size_from_the_listing(
        self, open_store: Callable[[], BlobStore]
    ) -> None:
        """A sized listing names what ``list_pages`` names, in the same order, each with the
        object's size in bytes (a replaced one: its new size), in as
        many requests as ``list_pages`` and no GET or HEAD."""

        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            sizes = {"kv/a~": 2, "kv/b/c~": 1, "kv/d~": 70_000, "kv/%C3%A9~": 5, "log/x~": 3}
            await asyncio.gather(*(store.put(p, os.urandom(n)) for p, n in sizes.items()))
            await store.put("kv/b/c~", b"12345678")
            sizes["kv/b/c~"] = 8
            with request_delta(store.stats) as sized_requests:
                found = [entry async for page in store.list_sizes("kv/") for entry in page]
            assert found == sorted((p, n) for p, n in sizes.items() if p.startswith("kv/"))
            listed = [n for page in await listing(store, "kv/") for n in page]
            assert [p for p, _ in found] == listed
            with request_delta(store.stats) as listed_requests:
                await listing(store, "kv/")
            assert sized_requests == listed_requests, (sized_requests, listed_requests)
            assert [e async for page in store.list_sizes("none/") for e in page] == []

        self.run(open_store, body)

    # -- conditional writes --------------------------------------------------------------------

    def test_put_if_absent_creates_only_once(self, open_store: Callable[[], BlobStore]) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            _skip_unless(store, "atomic_create")
            tag = await store.put_if_absent("kv/a~", b"first")
            assert isinstance(tag, str)
            assert await store.put_if_absent("kv/a~", b"second") is None
            assert await store.get("kv/a~") == Blob(b"first", tag)
            await store.delete("kv/a~")
            assert await store.put_if_absent("kv/a~", b"again") is not None

        self.run(open_store, body)

    def test_put_if_absent_has_exactly_one_winner_among_concurrent_creators(
        self, open_store: Callable[[], BlobStore]
    ) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            stores = [opener() for _ in range(self.creators)]
            _skip_unless(stores[0], "atomic_create")
            for store in stores:  # connect first, so the creates race each other
                assert await store.get("kv/warm-up~") is None
            for round_no in range(3):
                path = f"kv/race-{round_no}~"
                payloads = [
                    f"creator {i} {os.urandom(8).hex()}".encode() for i in range(len(stores))
                ]
                tags = await asyncio.gather(
                    *(s.put_if_absent(path, p) for s, p in zip(stores, payloads, strict=True))
                )
                winners = [i for i, tag in enumerate(tags) if tag is not None]
                assert len(winners) == 1, f"round {round_no}: winners {winners}"
                found = await stores[0].get(path)
                assert found is not None and found.data == payloads[winners[0]]

        self.run(open_store, body)

    def test_put_if_match_replaces_only_the_named_version(
        self, open_store: Callable[[], BlobStore]
    ) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            _skip_unless(store, "atomic_conditional_put")
            old = await store.put("kv/a~", b"v1")
            new = await store.put_if_match("kv/a~", b"v2", old)
            assert isinstance(new, str) and new != old
            assert await store.get("kv/a~") == Blob(b"v2", new)
            assert await store.put_if_match("kv/a~", b"v3", old) is None  # stale tag
            elsewhere = await store.put("kv/b~", b"another object")  # a real tag, not a's
            assert await store.put_if_match("kv/a~", b"v3", elsewhere) is None
            assert await store.get("kv/a~") == Blob(b"v2", new)
            assert await store.put_if_match("kv/missing~", b"x", new) is None
            assert await store.get("kv/missing~") is None
            await store.delete("kv/a~")
            assert await store.put_if_match("kv/a~", b"v4", new) is None  # deleted meanwhile
            assert await store.get("kv/a~") is None

        self.run(open_store, body)

    def test_put_if_match_has_one_winner_per_version(
        self, open_store: Callable[[], BlobStore]
    ) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            stores = [opener() for _ in range(4)]
            _skip_unless(stores[0], "atomic_conditional_put")
            tag = await stores[0].put("kv/a~", b"v0")
            results = await asyncio.gather(
                *(s.put_if_match("kv/a~", f"from {i}".encode(), tag) for i, s in enumerate(stores))
            )
            winners = [i for i, new in enumerate(results) if new is not None]
            assert len(winners) == 1, f"winners {winners}"
            found = await stores[0].get("kv/a~")
            assert found == Blob(f"from {winners[0]}".encode(), results[winners[0]] or "")

        self.run(open_store, body)

    def test_delete_if_match_removes_only_the_named_version(
        self, open_store: Callable[[], BlobStore]
    ) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            _skip_unless(store, "atomic_conditional_delete")
            old = await store.put("kv/a~", b"v1")
            new = await store.put("kv/a~", b"v2")
            assert await store.delete_if_match("kv/a~", old) is False  # replaced since
            elsewhere = await store.put("kv/b~", b"another object")  # a real tag, not a's
            assert await store.delete_if_match("kv/a~", elsewhere) is False
            assert await store.get("kv/a~") == Blob(b"v2", new)
            assert await store.delete_if_match("kv/a~", new) is True
            assert await store.get("kv/a~") is None
            assert await store.delete_if_match("kv/a~", new) is False  # missing
            assert await store.delete_if_match("kv/never~", new) is False

        self.run(open_store, body)

    def test_capability_flags_are_honoured(self, open_store: Callable[[], BlobStore]) -> None:
        """A capability declared False refuses its operation (never a check-then-write);
        one declared True performs it."""

        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            tag = await store.put("kv/a~", b"v1")
            calls: dict[str, Callable[[], Awaitable[Any]]] = {
                "atomic_create": lambda: store.put_if_absent("kv/b~", b"x"),
                "atomic_conditional_put": lambda: store.put_if_match("kv/a~", b"v2", tag),
                "atomic_conditional_delete": lambda: store.delete_if_match("kv/c~", tag),
            }
            for flag, call in calls.items():
                declared = getattr(store, flag)
                assert isinstance(declared, bool), f"{flag} is {declared!r}, not a bool"
                if declared:
                    await call()
                    continue
                with pytest.raises(UnsupportedOperationError) as info:
                    await call()
                assert "atomic" in str(info.value)
            if not store.atomic_create:
                assert await store.get("kv/b~") is None  # refused, not half done
            if not store.atomic_conditional_put:
                assert await store.get("kv/a~") == Blob(b"v1", tag)

        self.run(open_store, body)

    # -- counting ------------------------------------------------------------------------------

    def test_stats_count_each_request_once(self, open_store: Callable[[], BlobStore]) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            with request_delta(store.stats, prefix="") as spent:
                await store.put("kv/a~", b"12345")
                await store.get("kv/a~")
                await store.get_head("kv/a~", 2)
                await store.get("kv/missing~")
                await store.delete("kv/a~")
                assert await listing(store, "kv/") == []
            assert {k: v for k, v in spent.items() if k.startswith("requests.")} == {
                "requests.put": 1,
                "requests.get": 3,
                "requests.delete": 1,
                "requests.list": 1,
            }
            assert spent["requests"] == 6
            assert spent["bytes_written"] == 5
            assert spent["bytes_read"] == 5 + 2
            if store.atomic_create:
                await store.require("atomic_create")  # a server probe, if any, first
                with request_delta(store.stats) as spent:
                    await store.put_if_absent("kv/b~", b"1")
                    await store.put_if_absent("kv/b~", b"2")
                assert spent == {"requests.put_if_absent": 2}

        self.run(open_store, body)
