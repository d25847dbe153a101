"""A version's info without its data (``artifacts.info``, ``artifacts.versions_info``).

1. Info is what ``load`` returns, minus the data: inline, multi-part, the latest, every
   version; on memory, local disk and S3, without and with the in-process cache.
2. Costs, counted: one ranged GET of 4 KiB per version (two for metadata beyond it), no
   data; one LIST for ``versions_info`` and for the latest; nothing from the cache.
3. Deleted versions (a finished delete, a half-finished one) are None and not listed; a
   delete invalidates cached info.
4. Damage: a flipped bit in the metadata or its checksum, a truncated or misplaced manifest
   is CorruptDataError naming the object; a flip in the data is ``load``'s to find.
5. Manifests written before the metadata checksum (codec ``meta_crc=False``) are read whole.

(A damaged cache entry of a version's info is a repaired miss: tests/test_cache_damage.py.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import FAST, FAST_AND_S3

import kvstore
import kvstore.artifacts as artifacts_module
from kvstore import codec
from kvstore.artifacts import ArtifactInfo
from kvstore.blob import Blob, BlobStore, WrapperBlobStore
from kvstore.errors import CorruptDataError
from kvstore.portal import portal
from kvstore.testing import request_delta

Target = Any  # tests/conftest.py's Target
KiB = 1 << 10
MiB = 1 << 20
HEAD = artifacts_module.limits.INFO_HEAD


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(artifacts_module.limits, "PART_SIZE", 16 * KiB)
    return 16 * KiB


def pattern(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def cache_of(kind: str | None) -> kvstore.LocalCache | None:
    """A local cache whose entries outlive a slow step on a loaded machine."""
    return kvstore.LocalCache(ttl=60) if kind else None


def info_of(artifact: kvstore.Artifact) -> ArtifactInfo:
    fields = {f.name: getattr(artifact, f.name) for f in dataclasses.fields(ArtifactInfo)}
    return ArtifactInfo(**fields)


@dataclasses.dataclass
class Spent:
    requests: dict[str, int]
    bytes_read: int


def spend(store: kvstore.KVStore, action: Callable[[], Any]) -> tuple[Any, Spent]:
    with request_delta(store, "") as spent:
        result = action()
    requests = {k: n for k, n in spent.items() if k.startswith("requests.")}
    return result, Spent(requests, spent.get("bytes_read", 0))


def manifest_path(store: kvstore.KVStore, name: str, version: int) -> str:
    layout = store.aio._ctx.layout
    return layout.version(layout.artifact_dir(name), version)


def blob(store: kvstore.KVStore) -> Any:
    return store.aio._ctx.blob


def read_object(store: kvstore.KVStore, path: str) -> bytes:
    found = portal().run(blob(store).get(path))
    assert found is not None, path
    return bytes(found.data)


def write_object(store: kvstore.KVStore, path: str, data: bytes) -> None:
    portal().run(blob(store).put(path, data))


def flip(store: kvstore.KVStore, path: str, offset: int) -> None:
    data = bytearray(read_object(store, path))
    data[offset] ^= 0x10
    write_object(store, path, bytes(data))


def rewrite_without_meta_crc(store: kvstore.KVStore, path: str) -> None:
    """Make a manifest as kvstore wrote it before the metadata checksum existed."""
    env = codec.decode(read_object(store, path), bound=path)
    old = codec.encode(env.payload, meta=env.meta, nonce=env.nonce)
    assert not old[5] & codec.FLAG_META_CRC
    write_object(store, path, old)


def assert_corrupt(call: Callable[[], Any], path: str) -> CorruptDataError:
    with pytest.raises(CorruptDataError) as info:
        call()
    assert not isinstance(info.value, codec.NoMetaChecksum)
    assert path in str(info.value), str(info.value)
    assert info.value.path is not None and info.value.path.endswith(path)
    return info.value


# The cache's part does not depend on the backend: S3 runs without it.
BACKEND_CACHE = [
    ("memory", None),
    ("memory", "local"),
    ("local", None),
    ("local", "local"),
    ("s3", None),
]
IDS = [f"{backend}-cache={cache}" for backend, cache in BACKEND_CACHE]


@pytest.fixture(params=FAST_AND_S3)
def target(request: pytest.FixtureRequest, make_target: Callable[[str], Target]) -> Target:
    return make_target(request.param)


@pytest.fixture(params=BACKEND_CACHE, ids=IDS)
def store(
    request: pytest.FixtureRequest, make_target: Callable[[str], Target]
) -> Iterator[kvstore.KVStore]:
    backend, cache = request.param
    with make_target(backend).open(cache=cache_of(cache)) as s:
        yield s


# -- 1. info is load minus the data -----------------------------------------------------------


def test_info_is_what_load_returns_without_the_data(
    store: kvstore.KVStore, small_parts: int
) -> None:
    arts = store.artifacts
    assert arts.info("doc") is None
    assert arts.info("doc", 0) is None
    assert arts.versions_info("doc") == []
    arts.save("doc", "tiny")
    arts.save("doc", pattern(10 * KiB, 1), metadata={"k": [1, "two", b"3"], "n": None})
    arts.save("doc", pattern(3 * small_parts + 7, 2), mime_type="image/png")  # 4 parts
    arts.save("doc", "x" * 300_000, metadata={"big": "m" * (20 * KiB)})  # compressed parts
    loaded = [arts.load("doc", v) for v in range(4)]
    infos = [info_of(a) for a in loaded]
    for version, expected in enumerate(infos):
        got = arts.info("doc", version)
        assert type(got) is ArtifactInfo
        assert got == expected, version
    assert arts.info("doc") == infos[-1]
    assert arts.versions_info("doc") == infos
    assert arts.info("doc", 4) is None
    assert arts.info("other") is None
    for again in range(2):  # the same from the cache (or not), after the reads above
        assert arts.versions_info("doc") == infos, again


def test_info_of_a_fresh_store_and_through_the_async_face(target: Target) -> None:
    with target.open() as writer:
        writer.artifacts.save("a", b"zero", metadata={"i": 0})
        writer.artifacts.save("a", pattern(9 * KiB), metadata={"i": 1})
        expected = [info_of(writer.artifacts.load("a", v)) for v in (0, 1)]

    async def main() -> None:
        async with target.open_async(cache="local") as astore:
            arts = astore.artifacts
            assert await arts.info("a") == expected[1]
            assert await arts.info("a", 0) == expected[0]
            assert await arts.versions_info("a") == expected
            assert await arts.versions_info("none") == []

    asyncio.run(main())


# -- 2. costs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", FAST_AND_S3)
def test_info_costs_one_ranged_read_and_no_data(
    make_target: Callable[[str], Target], backend: str
) -> None:
    target = make_target(backend)
    big = pattern(8 * MiB, 3)  # the largest inline artifact
    with target.open() as writer:
        writer.artifacts.save("big", big, metadata={"k": "v"})
        for i in range(10):
            writer.artifacts.save("many", pattern(64 * KiB, i), metadata={"i": i})
    with target.open() as store:
        info, spent = spend(store, lambda: store.artifacts.info("big", 0))
        assert (info.size, info.metadata) == (len(big), {"k": "v"})
        assert spent.requests == {"requests.get": 1}
        assert spent.bytes_read <= 8 * KiB
        infos, spent = spend(store, lambda: store.artifacts.versions_info("many"))
        assert [i.metadata["i"] for i in infos] == list(range(10))
        assert spent.requests == {"requests.list": 1, "requests.get": 10}
        assert spent.bytes_read <= 10 * HEAD  # the data is 640 KiB
        latest, spent = spend(store, lambda: store.artifacts.info("many"))
        assert latest == infos[-1]
        assert spent.requests == {"requests.list": 1, "requests.get": 1}


def test_large_metadata_costs_a_second_read_of_exactly_the_rest(make_target: Any) -> None:
    target = make_target("memory")
    metadata = {"notes": "n" * (200 * KiB), "k": 1}
    with target.open() as store:
        store.artifacts.save("doc", pattern(1 * MiB), metadata=metadata)
        path = manifest_path(store, "doc", 0)
        span = codec.meta_span(read_object(store, path))
        assert span > HEAD
        info, spent = spend(store, lambda: store.artifacts.info("doc", 0))
        assert info.metadata == metadata
        assert spent.requests == {"requests.get": 2}
        assert spent.bytes_read == HEAD + span


@pytest.mark.parametrize("backend", FAST)
def test_info_from_the_cache(make_target: Callable[[str], Target], backend: str) -> None:
    target = make_target(backend)
    with target.open() as writer:
        for i in range(4):
            writer.artifacts.save("n", pattern(16 * KiB, i), metadata={"i": i})
        writer.artifacts.save("small", b"fits the first read")
    with target.open(cache=cache_of("local")) as store:
        infos, spent = spend(store, lambda: store.artifacts.versions_info("n"))
        assert spent.requests == {"requests.list": 1, "requests.get": 4}
        again, spent = spend(store, lambda: store.artifacts.versions_info("n"))
        assert (again, spent.requests) == (infos, {"requests.list": 1})
        one, spent = spend(store, lambda: store.artifacts.info("n", 2))
        assert (one, spent.requests) == (infos[2], {})
        latest, spent = spend(store, lambda: store.artifacts.info("n"))
        assert (latest, spent.requests) == (infos[3], {"requests.list": 1})
        latest, spent = spend(store, lambda: store.artifacts.info("n"))  # the cached pointer
        assert (latest, spent.requests) == (infos[3], {})
        # a manifest that fits the first read is verified whole and cached: load is free
        small, spent = spend(store, lambda: store.artifacts.info("small", 0))
        assert spent.requests == {"requests.get": 1}
        loaded, spent = spend(store, lambda: store.artifacts.load("small", 0))
        assert (info_of(loaded), loaded.data, spent.requests) == (small, b"fits the first read", {})
    with target.open(cache=cache_of("local")) as store:  # a manifest cached by load
        loaded = store.artifacts.load("n", 1)
        one, spent = spend(store, lambda: store.artifacts.info("n", 1))
        assert (one, spent.requests) == (info_of(loaded), {})


class InFlight(WrapperBlobStore):
    """Counts the reads in flight at once (each takes a little while)."""

    def __init__(self, inner: BlobStore) -> None:
        super().__init__(inner)
        self.now = self.most = 0

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0.002)
            return await self.inner._get(path, head)
        finally:
            self.now -= 1


def test_versions_info_reads_concurrently_within_the_bound(make_target: Any) -> None:
    target = make_target("memory")
    with target.open() as writer:
        for i in range(12):
            writer.artifacts.save("n", pattern(8 * KiB, i))
    blob_store = InFlight(target.blob_store())
    with kvstore.open(blob_store, cache=None, concurrency=3) as store:
        assert [i.version for i in store.artifacts.versions_info("n")] == list(range(12))
    assert blob_store.most == 3


# -- 3. deleted versions --------------------------------------------------------------------


@pytest.mark.parametrize(("backend", "cache"), BACKEND_CACHE, ids=IDS)
def test_deleted_versions_have_no_info(
    make_target: Callable[[str], Target], backend: str, cache: str | None
) -> None:
    with make_target(backend).open(cache=cache_of(cache)) as store:
        arts = store.artifacts
        for i in range(4):
            arts.save("n", pattern(8 * KiB, i), metadata={"i": i})
        before = arts.versions_info("n")  # cached, with a cache
        assert [i.version for i in before] == [0, 1, 2, 3]
        assert arts.info("n", 3) == before[3]
        assert arts.delete("n", 1) == 1
        assert arts.delete("n", 3) == 1
        assert arts.info("n", 1) is None
        assert arts.info("n", 3) is None
        assert arts.info("n") == before[2]
        assert arts.versions_info("n") == [before[0], before[2]]
        # a delete that stopped halfway: a tombstone, and no marker in the listing
        path = manifest_path(store, "n", 2)
        write_object(store, path, artifacts_module.manifest.tombstone(path))
        ctx = store.aio._ctx
        portal().run(ctx.invalidate([path, ctx.layout.version_info_key(path)]))  # as delete
        assert arts.versions("n") == [0, 2]
        assert arts.info("n", 2) is None
        assert arts.versions_info("n") == [before[0]]
        assert arts.info("n") == before[0]
        assert arts.delete("n") == 1  # finishes the half-done one, deletes 0
        assert arts.versions_info("n") == []
        assert arts.info("n") is None


# -- 4. damage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", FAST_AND_S3)
def test_damaged_metadata_is_corrupt_data(
    make_target: Callable[[str], Target], backend: str
) -> None:
    with make_target(backend).open() as store:
        arts = store.artifacts
        for i in range(3):
            arts.save("doc", pattern(32 * KiB, i), metadata={"author": "agent", "i": i})
        arts.save("fine", b"fine")
        path = manifest_path(store, "doc", 1)
        span = codec.meta_span(read_object(store, path))
        flip(store, path, span - 8)  # in the metadata
        assert_corrupt(lambda: arts.info("doc", 1), path)
        assert_corrupt(lambda: arts.versions_info("doc"), path)
        damage = store.fsck()["damage"]  # fsck reads manifests whole: it finds it too
        assert [(d["kind"], d["path"]) for d in damage] == [("corrupt", path)]
        flip(store, path, span - 8)  # repaired
        flip(store, path, span - 2)  # in the metadata's checksum
        error = assert_corrupt(lambda: arts.info("doc", 1), path)
        assert "metadata checksum" in str(error) and "doc" in str(error)
        flip(store, path, span - 2)
        flip(store, path, 9)  # in the header
        assert_corrupt(lambda: arts.info("doc", 1), path)
        flip(store, path, 9)
        assert arts.info("doc", 1).metadata == {"author": "agent", "i": 1}
        flip(store, path, span + 100)  # in the data: load's business, not info's
        assert arts.info("doc", 1).metadata == {"author": "agent", "i": 1}
        assert_corrupt(lambda: arts.load("doc", 1), path)
        assert arts.info("fine") is not None  # the store keeps working
        latest = manifest_path(store, "doc", 2)
        flip(store, latest, span - 8)
        assert_corrupt(lambda: arts.info("doc"), latest)


def test_truncated_and_misplaced_manifests(make_target: Any) -> None:
    with make_target("memory").open() as store:
        arts = store.artifacts
        arts.save("a", pattern(16 * KiB, 1), metadata={"m": "x" * (8 * KiB)})
        arts.save("b", b"b0")
        a0, b0 = manifest_path(store, "a", 0), manifest_path(store, "b", 0)
        data = read_object(store, a0)
        span = codec.meta_span(data)
        for cut in (10, HEAD - 1, HEAD + 1, span - 1):  # whole or not, before the meta's end
            write_object(store, a0, data[:cut])
            assert_corrupt(lambda: arts.info("a", 0), a0)
        write_object(store, b0, data)  # a's manifest copied onto b's version 0
        error = assert_corrupt(lambda: arts.info("b", 0), b0)
        assert "misplaced" in str(error) and a0 in str(error)


# -- 5. manifests written before the metadata checksum --------------------------------------


@pytest.mark.parametrize("backend", FAST_AND_S3)
def test_old_manifests_are_read_whole(make_target: Callable[[str], Target], backend: str) -> None:
    target = make_target(backend)
    with target.open() as store:
        arts = store.artifacts
        arts.save("old", b"small", metadata={"i": 0})  # fits the first read
        arts.save("old", pattern(64 * KiB), metadata={"i": 1})  # does not
        arts.save("old", b"deleted")
        arts.delete("old", 2)
        expected = [info_of(arts.load("old", v)) for v in (0, 1)]
        for version in (0, 1, 2):
            rewrite_without_meta_crc(store, manifest_path(store, "old", version))
    with target.open() as store:
        arts = store.artifacts
        small, spent = spend(store, lambda: arts.info("old", 0))
        assert (small, spent.requests) == (expected[0], {"requests.get": 1})
        large, spent = spend(store, lambda: arts.info("old", 1))
        assert (large, spent.requests) == (expected[1], {"requests.get": 2})  # head, whole
        assert arts.info("old", 2) is None  # an old tombstone
        assert arts.versions_info("old") == expected
        assert arts.info("old") == expected[1]
        assert [info_of(arts.load("old", v)) for v in (0, 1)] == expected
        path = manifest_path(store, "old", 1)
        flip(store, path, 40)  # old manifests are verified whole
        assert_corrupt(lambda: arts.info("old", 1), path)
