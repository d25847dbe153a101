"""The contract kit (kvstore.testing) run on every backend and cache kvstore ships.

A new backend or cache joins by adding a subclass here (or in its own test module).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Target

import kvstore
from kvstore.blob import BlobStore, open_blob_store
from kvstore.blob.generic import FsspecBlobStore
from kvstore.blob.s3 import S3BlobStore
from kvstore.cache import Cache, LocalCache, NoCache
from kvstore.errors import BackendError
from kvstore.stats import Stats
from kvstore.testing import BlobStoreContract, CacheContract, request_delta
from kvstore.testing.blob_contract import listing

pytestmark = pytest.mark.timeout(120)


def opener(target: Target) -> Callable[[], BlobStore]:
    return lambda: open_blob_store(target.url, target.storage_options or None, stats=Stats())


# -- blob stores -----------------------------------------------------------------------------


class TestMemoryBlobStore(BlobStoreContract):
    dated_listing_resolution_ms = 20

    @pytest.fixture
    def open_store(self, make_target: Callable[[str], Target]) -> Callable[[], BlobStore]:
        return opener(make_target("memory"))


class TestLocalBlobStore(BlobStoreContract):
    dated_listing_resolution_ms = 20  # file mtimes: the kernel's coarse clock

    @pytest.fixture
    def open_store(self, make_target: Callable[[str], Target]) -> Callable[[], BlobStore]:
        return opener(make_target("local"))


class TestS3BlobStore(BlobStoreContract):
    """Against the moto server the tests start (serialised: see backends/s3.py), on the
    default transport (obstore)."""

    backend = "s3"
    #: Requests to list 25 keys in pages of 5: obstore asks S3 for 1000 keys per request
    #: and cuts the answer; s3fs asks for 5 (MaxKeys).
    page_requests = 1

    @pytest.fixture
    def open_store(self, make_target: Callable[[str], Target]) -> Callable[[], BlobStore]:
        return opener(make_target(self.backend))

    def test_delete_many_is_one_request_per_1000_keys(
        self, open_store: Callable[[], BlobStore]
    ) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            assert store.delete_batch == 1000
            for n, requests in ((1, 1), (10, 1), (1000, 1), (1001, 2), (1500, 2), (2001, 3)):
                paths = [f"kv/{i:05d}~" for i in range(n)]
                await asyncio.gather(*(store.put(p, b"1") for p in (paths[0], paths[-1])))
                with request_delta(store.stats) as spent:
                    await store.delete_many(paths)
                assert spent == {"requests.delete_many": requests}, n
                assert await listing(store, "kv/") == []

        self.run(open_store, body)

    def test_listing_from_a_position_is_one_request_per_page(
        self, open_store: Callable[[], BlobStore]
    ) -> None:
        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            names = [f"kv/{i:03d}~" for i in range(30)]
            await asyncio.gather(*(store.put(n, b"1") for n in names))
            for after, size, requests in ((names[4], 5, self.page_requests), (names[27], None, 1)):
                with request_delta(store.stats) as spent:
                    pages = await listing(store, "kv/", after, size)
                assert [n for page in pages for n in page] == names[names.index(after) + 1 :]
                assert spent == {"requests.list": requests}, (after, size)

        self.run(open_store, body)


# SeaweedFS (4.48) is no S3 in two corners: it lists a directory's entries by name, a
# subdirectory by its bare name ("kv/a/b~" before "kv/a-b~", which S3 and GCS list first:
# "-" < "/"); and a StartAfter of "kv/a" skips the directory "kv/a/" (even with an object
# "kv/a" stored), while "kv/a/b~" skips "kv/a-b~". Neither arises from kvstore's layout:
# object names end in "~", so none is also a directory, and keys are cut into segments at
# fixed lengths. The contract's own names and positions hit both.
_SEAWEED_ORDER = pytest.mark.xfail(
    reason="SeaweedFS lists directories by bare name and skips one named by StartAfter",
    strict=True,
)


class TestSeaweedFSBlobStore(TestS3BlobStore):
    """The S3 contract against SeaweedFS, a real S3 server."""

    backend = "seaweedfs"

    @_SEAWEED_ORDER
    def test_list_pages_from_a_position(self, open_store: Callable[[], BlobStore]) -> None:
        super().test_list_pages_from_a_position(open_store)

    @_SEAWEED_ORDER
    def test_list_pages_by_page_size(self, open_store: Callable[[], BlobStore]) -> None:
        super().test_list_pages_by_page_size(open_store)


class TestS3fsSeaweedFSBlobStore(TestSeaweedFSBlobStore):
    """The S3 contract on the s3fs transport (by choice, or for s3fs-only options),
    against SeaweedFS."""

    backend = "seaweedfs+s3fs"
    page_requests = 5

    def test_a_key_s3_refused_to_delete_raises_naming_it(
        self, open_store: Callable[[], BlobStore]
    ) -> None:
        """DeleteObjects answers 200 and lists the keys it refused: never ignored."""

        async def body(opener: Callable[[], BlobStore]) -> None:
            store = opener()
            assert type(store) is S3BlobStore
            real = store._s3
            refuse: list[tuple[int, str]] = []  # (index of the key in the request, code)

            async def answer(method: str, **kwargs: Any) -> Any:
                resp = await real(method, **kwargs)
                if method == "delete_objects" and refuse:
                    keys = [o["Key"] for o in kwargs["Delete"]["Objects"]]
                    errors = [{"Key": keys[i], "Code": c, "Message": "no"} for i, c in refuse]
                    resp = {**resp, "Errors": errors}
                return resp

            store._s3 = answer  # type: ignore[method-assign]
            paths = ["kv/a~", "kv/b~", "kv/c~", "kv/d~"]
            refuse[:] = [(2, "AccessDenied"), (3, "AccessDenied")]
            with pytest.raises(BackendError, match=r"'kv/c~': AccessDenied.*1 more") as info:
                await store.delete_many(paths)
            assert info.value.operation == "delete_many"
            refuse[:] = [(1, "NoSuchKey")]  # a missing key is not a failure
            await store.delete_many(paths)
            store.retry = kvstore.RetryPolicy(attempts=2, base_delay=0)
            refuse[:] = [(0, "InternalError")]  # transient: the request is sent again
            with (
                request_delta(store.stats, prefix="") as spent,
                pytest.raises(BackendError, match="InternalError"),
            ):
                await store.delete_many(paths)
            assert spent["requests.delete_many"] == 2 and spent["retries"] == 1

        self.run(open_store, body)


class TestGCSBlobStore(BlobStoreContract):
    """Against the GCS emulator the tests start (preconditions enforced: backends/gcs.py)."""

    @pytest.fixture
    def open_store(self, make_target: Callable[[str], Target]) -> Callable[[], BlobStore]:
        return opener(make_target("gcs"))

    def test_an_empty_object(self, open_store: Callable[[], BlobStore]) -> None:
        pytest.skip(
            "the GCS emulator answers an empty upload with a 500, which gcsfs retries for "
            "~30 s (a stand-in's bug: real GCS stores empty objects, and kvstore never "
            "writes one - every object is an envelope)"
        )


class TestFsspecBlobStore(BlobStoreContract):
    """The generic fsspec backend (here on the local filesystem): no atomic conditional
    operation, so those tests skip and the capability test checks they are refused. Its
    ``put`` on a local filesystem truncates, then writes (see kvstore/blob/generic.py)."""

    put_is_atomic_for_readers = False

    @pytest.fixture
    def open_store(self, tmp_path: Path) -> Callable[[], BlobStore]:
        return lambda: FsspecBlobStore("file", str(tmp_path / "generic"), {}, stats=Stats())


# -- caches ----------------------------------------------------------------------------------


class TestLocalCache(CacheContract):
    @pytest.fixture
    def open_cache(self) -> Callable[[], Cache]:
        return lambda: LocalCache(ttl=30)


class TestNoCache(CacheContract):
    stores_entries = False

    @pytest.fixture
    def open_cache(self) -> Callable[[], Cache]:
        return NoCache


class TestRedisCache(CacheContract):
    """Against the redis-server the tests start (one per session; keys unique per test)."""

    @pytest.fixture
    def open_cache(self, redis_server: Any) -> Callable[[], Cache]:
        return lambda: kvstore.RedisCache(redis_server.url)
