"""The blob contract (kvstore.blob.base) on every backend: conditional create, compare-and-
swap, listing by string prefix with pagination, bounded concurrency, and the per-backend
atomicity claims (local temp files + rename, GCS generation preconditions)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import ALL

from kvstore.blob import BlobStore, WrapperBlobStore, open_blob_store
from kvstore.blob.local import LocalBlobStore
from kvstore.stats import Stats

T = TypeVar("T")
Target = Any  # tests/conftest.py's Target


def with_blob(
    target: Target,
    body: Callable[[BlobStore], Awaitable[T]],
    storage_options: dict[str, Any] | None = None,
) -> T:
    """Run ``body(blob)`` on a fresh event loop with a blob store for ``target``."""
    options = {**(target.storage_options or {}), **(storage_options or {})}

    async def main() -> T:
        blob = open_blob_store(target.url, options or None, stats=Stats())
        if target.wrap is not None:  # e.g. memory+latency
            blob = target.wrap(blob)
        try:
            return await body(blob)
        finally:
            await blob.close()

    return asyncio.run(main())


# Paths are already-encoded object names; these use every character the encoding emits.
ODD = "kv/AZaz09_=+,@-.%20%2F%7E%25~"


def test_get_put_and_tags(target: Target) -> None:
    async def body(blob: BlobStore) -> None:
        assert await blob.get("kv/missing~") is None
        tag1 = await blob.put("kv/k~", b"one")
        assert isinstance(tag1, str) and tag1
        found = await blob.get("kv/k~")
        assert found is not None
        assert found.data == b"one"
        assert found.tag == tag1
        tag2 = await blob.put("kv/k~", b"two")
        assert tag2 != tag1
        found = await blob.get("kv/k~")
        assert found is not None and (found.data, found.tag) == (b"two", tag2)
        # odd (but encoded) names are fine
        await blob.put(ODD, b"odd")
        assert (await blob.get(ODD)).data == b"odd"  # type: ignore[union-attr]
        # so are empty objects (kvstore never writes one: an envelope is >= 36 bytes), but
        # the GCS emulator answers an empty upload with HTTP 500, so not there
        if target.backend != "gcs":
            await blob.put("kv/empty~", b"")
            assert (await blob.get("kv/empty~")).data == b""  # type: ignore[union-attr]
        stats = blob.stats.snapshot()
        assert stats["requests.put"] == (3 if target.backend == "gcs" else 4)
        assert stats["requests.get"] == (4 if target.backend == "gcs" else 5)
        assert stats["bytes_written"] == 3 + 3 + 3

    with_blob(target, body)


def test_put_if_absent(target: Target) -> None:
    async def body(blob: BlobStore) -> None:
        tag = await blob.put_if_absent("kv/k~", b"first")
        assert tag is not None
        assert await blob.put_if_absent("kv/k~", b"second") is None
        found = await blob.get("kv/k~")
        assert found is not None and found.data == b"first" and found.tag == tag
        await blob.delete("kv/k~")
        assert await blob.put_if_absent("kv/k~", b"third") is not None
        assert (await blob.get("kv/k~")).data == b"third"  # type: ignore[union-attr]

    with_blob(target, body)


def test_put_if_absent_race(target: Target) -> None:
    """Of many concurrent creators of one name, exactly one wins."""

    async def body(blob: BlobStore) -> None:
        results = await asyncio.gather(
            *(blob.put_if_absent("kv/race~", f"writer {i}".encode()) for i in range(8))
        )
        winners = [i for i, tag in enumerate(results) if tag is not None]
        assert len(winners) == 1
        found = await blob.get("kv/race~")
        assert found is not None and found.data == f"writer {winners[0]}".encode()

    with_blob(target, body)


def test_put_if_match(target: Target) -> None:
    async def body(blob: BlobStore) -> None:
        assert await blob.put_if_match("kv/missing~", b"x", "1") is None
        assert await blob.get("kv/missing~") is None
        old = await blob.put("kv/k~", b"v1")
        new = await blob.put_if_match("kv/k~", b"v2", old)
        assert new is not None and new != old
        assert await blob.put_if_match("kv/k~", b"v3", old) is None  # stale tag
        found = await blob.get("kv/k~")
        assert found is not None and (found.data, found.tag) == (b"v2", new)
        await blob.put("kv/k~", b"v4")  # an unconditional write also moves the tag
        assert await blob.put_if_match("kv/k~", b"v5", new) is None
        assert (await blob.get("kv/k~")).data == b"v4"  # type: ignore[union-attr]

    with_blob(target, body)


def test_compare_and_swap_race(target: Target) -> None:
    """Of many concurrent swaps from one version, exactly one wins."""

    async def body(blob: BlobStore) -> None:
        tag = await blob.put("kv/cas~", b"base")
        results = await asyncio.gather(
            *(blob.put_if_match("kv/cas~", f"swap {i}".encode(), tag) for i in range(6))
        )
        winners = [i for i, new in enumerate(results) if new is not None]
        assert len(winners) == 1
        assert (await blob.get("kv/cas~")).data == f"swap {winners[0]}".encode()  # type: ignore[union-attr]

    with_blob(target, body)


def test_delete_and_delete_if_match(target: Target) -> None:
    async def body(blob: BlobStore) -> None:
        await blob.delete("kv/missing~")  # not an error
        assert await blob.delete_if_match("kv/missing~", "1") is False
        old = await blob.put("kv/k~", b"v1")
        new = await blob.put("kv/k~", b"v2")
        assert await blob.delete_if_match("kv/k~", old) is False
        assert (await blob.get("kv/k~")).data == b"v2"  # type: ignore[union-attr]
        assert await blob.delete_if_match("kv/k~", new) is True
        assert await blob.get("kv/k~") is None
        await blob.put("kv/j~", b"x")
        await blob.delete("kv/j~")
        assert await blob.get("kv/j~") is None
        await blob.delete("kv/j~")

    with_blob(target, body)


async def _listing(blob: BlobStore, prefix: str) -> list[list[str]]:
    return [page async for page in blob.list_pages(prefix)]


def test_list_by_string_prefix(target: Target) -> None:
    names = [
        "kv/a~",
        "kv/ab~",
        "kv/a/b~",
        "kv/a/b/c~",
        "kv/b~",
        "kv/%2E.~",
        ODD,
        "log/a~/0",
        "kvx~",
    ]

    async def body(blob: BlobStore) -> None:
        await asyncio.gather(*(blob.put(n, b"x") for n in names))
        every = [n for page in await _listing(blob, "") for n in page]
        assert every == sorted(names)
        for prefix in ("kv/", "kv/a", "kv/a/", "kv/a/b", "kv/ab", "kv", "log/", "kv/c", "zzz"):
            pages = await _listing(blob, prefix)
            assert all(pages), "no empty pages"
            found = [n for page in pages for n in page]
            assert found == sorted(n for n in names if n.startswith(prefix)), prefix
        assert await _listing(blob, "nothing/") == []

    with_blob(target, body)


@pytest.mark.parametrize("backend", ALL)
def test_list_pagination(make_target: Callable[[str], Target], backend: str) -> None:
    """More than one page (1000 names): every name once, in order, pages of at most 1000."""
    target = make_target(backend)
    count = 1003
    names = [f"kv/{i:05d}~" for i in range(count)]
    extra = {"fsync": False} if backend == "local" else {}

    async def body(blob: BlobStore) -> None:
        gate = asyncio.Semaphore(16)

        async def put(name: str) -> None:
            async with gate:
                await blob.put(name, b"x")

        await asyncio.gather(*(put(n) for n in names))
        await blob.put("other/x", b"x")
        before = blob.stats.get("requests.list")
        pages = await _listing(blob, "kv/")
        assert [len(p) for p in pages] == [1000, count - 1000]
        assert [n for page in pages for n in page] == names
        requests = blob.stats.get("requests.list") - before
        if backend in ("s3", "gcs", "memory"):  # one LIST request per page
            assert requests == 2
        assert [n for p in await _listing(blob, "kv/0100") for n in p] == names[1000:]

    with_blob(target, body, extra)


def test_get_many_in_order_and_bounded(target: Target) -> None:
    async def body(blob: BlobStore) -> None:
        names = [f"kv/{i}~" for i in range(12)]
        await asyncio.gather(*(blob.put(n, n.encode()) for n in names[::2]))
        assert await blob.get_many([]) == []

        class InFlight(WrapperBlobStore):
            """Holds each GET 5 ms and records the most in flight at once."""

            inflight = peak = 0

            async def _get(self, path: str, head: int | None = None) -> Any:
                self.inflight += 1
                self.peak = max(self.peak, self.inflight)
                try:
                    await asyncio.sleep(0.005)
                    return await self.inner._get(path, head)
                finally:
                    self.inflight -= 1

        counting = InFlight(blob)
        found = await counting.get_many([*reversed(names), "kv/missing~"], concurrency=3)
        assert [None if b is None else b.data for b in found] == [
            n.encode() if i % 2 == 0 else None for i, n in reversed(list(enumerate(names)))
        ] + [None]
        assert counting.peak == 3

    with_blob(target, body)


# -- local disk specifics ------------------------------------------------------------------


def _tmp_files(root: Path) -> list[str]:
    tmp = root / ".kvstore" / "tmp"
    return sorted(os.listdir(tmp)) if tmp.exists() else []


def test_local_leaves_no_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "root"

    async def main() -> None:
        blob = LocalBlobStore(str(root), stats=Stats())
        tag = await blob.put("kv/a~", b"1")
        await blob.put("kv/a~", b"2")
        assert await blob.put_if_absent("kv/b~", b"1") is not None
        assert await blob.put_if_absent("kv/b~", b"2") is None  # lost: its temp file too
        assert await blob.put_if_match("kv/a~", b"3", tag) is None
        assert await blob.put_if_match("kv/missing/deep~", b"3", "x") is None
        current = (await blob.get("kv/a~")).tag  # type: ignore[union-attr]
        assert await blob.put_if_match("kv/a~", b"4", current) is not None
        await asyncio.gather(*(blob.put(f"kv/c{i}~", b"x" * 1000) for i in range(20)))
        await blob.delete_if_match("kv/b~", "stale")
        await blob.delete("kv/a~")

    asyncio.run(main())
    assert _tmp_files(root) == []
    data = sorted(
        str(Path(d, f).relative_to(root))
        for d, _, files in os.walk(root)
        for f in files
        if ".kvstore" not in Path(d).relative_to(root).parts
    )
    assert data == sorted(["kv/b~", *(f"kv/c{i}~" for i in range(20))])


def test_local_tag_changes_on_same_size_rewrite(tmp_path: Path) -> None:
    """The tag (inode, mtime, size) must change even for same-size rewrites in quick
    succession, or a compare-and-swap could succeed against a replaced object."""

    async def main() -> None:
        blob = LocalBlobStore(str(tmp_path), stats=Stats(), fsync=False)
        tags = [await blob.put("kv/k~", bytes([i]) * 10) for i in range(50)]
        assert len(set(tags)) == len(tags)

    asyncio.run(main())


def test_local_readers_never_see_partial_objects(tmp_path: Path) -> None:
    size = 2**20
    versions = [bytes([i]) * size for i in range(4)]
    allowed = set(versions)
    root = tmp_path / "root"
    path = "kv/big~"
    stop = threading.Event()
    errors: list[str] = []
    reads = [0, 0]
    writes = [0]

    asyncio.run(LocalBlobStore(str(root), stats=Stats()).put(path, versions[0]))

    def writer() -> None:
        async def loop() -> None:
            blob = LocalBlobStore(str(root), stats=Stats())
            i = 0
            while not stop.is_set():
                i += 1
                await blob.put(path, versions[i % len(versions)])
                writes[0] += 1

        asyncio.run(loop())

    def blob_reader() -> None:
        async def loop() -> None:
            blob = LocalBlobStore(str(root), stats=Stats())
            while not stop.is_set():
                found = await blob.get(path)
                if found is None or found.data not in allowed:
                    errors.append("blob reader saw a partial or missing object")
                reads[0] += 1

        asyncio.run(loop())

    def file_reader() -> None:  # like another process reading the file directly
        while not stop.is_set():
            with open(root / path, "rb") as f:
                if f.read() not in allowed:
                    errors.append("file reader saw a partial object")
            reads[1] += 1

    threads = [threading.Thread(target=fn) for fn in (writer, blob_reader, file_reader)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert writes[0] >= 3 and reads[0] >= 3 and reads[1] >= 3
    assert _tmp_files(root) == []


# -- GCS: the client really sends the preconditions ------------------------------------------


def test_gcs_sends_generation_preconditions(
    make_target: Callable[[str], Target], gcs_server: Any
) -> None:
    """put_if_absent sends ifGenerationMatch=0, put_if_match / delete_if_match send the
    generation read, and a 412 from the server means "condition not met" (None / False)."""
    target = make_target("gcs")
    prefix = target.url.removeprefix("gs://").partition("/")[2]
    name = f"{prefix}/kv/k~"

    async def body(blob: BlobStore) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["created"] = await blob.put_if_absent("kv/k~", b"one")
        out["conflict"] = await blob.put_if_absent("kv/k~", b"two")
        out["swapped"] = await blob.put_if_match("kv/k~", b"three", out["created"])
        out["stale"] = await blob.put_if_match("kv/k~", b"four", out["created"])
        out["stale_delete"] = await blob.delete_if_match("kv/k~", out["created"])
        out["data"] = (await blob.get("kv/k~")).data  # type: ignore[union-attr]
        out["deleted"] = await blob.delete_if_match("kv/k~", out["swapped"])
        return out

    out = with_blob(target, body)
    assert out["created"] is not None and out["swapped"] is not None
    assert out["conflict"] is None
    assert out["stale"] is None
    assert out["stale_delete"] is False
    assert out["data"] == b"three"
    assert out["deleted"] is True

    records = [r for r in gcs_server.preconditions() if r["object"] == name]
    seen = [(r["op"], r["preconditions"], r["status"]) for r in records]
    created, swapped = int(out["created"]), int(out["swapped"])
    assert seen == [
        ("write", {"ifGenerationMatch": 0}, 200),
        ("write", {"ifGenerationMatch": 0}, 412),
        ("write", {"ifGenerationMatch": created}, 200),
        ("write", {"ifGenerationMatch": created}, 412),
        ("delete", {"ifGenerationMatch": created}, 412),
        ("delete", {"ifGenerationMatch": swapped}, 200),
    ]


def test_s3_connection_pool_follows_the_store_concurrency(
    make_target: Callable[[str], Target],
) -> None:
    """botocore's default pool of 10 connections would cap every multi-key call at 10
    requests in flight; the pool follows the store's ``concurrency`` unless the user chose.
    (The s3fs transport: obstore's pool has no such cap.)"""
    import kvstore

    target = make_target("s3fs")

    def pool_size(store: kvstore.KVStore) -> int:
        store.set("k", "v")  # connects
        return int(store.aio._ctx.blob._fs._s3.meta.config.max_pool_connections)

    with target.open(concurrency=300) as store:
        assert pool_size(store) == 300
        assert store.mget([f"k{i}" for i in range(400)]) == [None] * 400
    chosen = dict(target.storage_options)
    chosen["config_kwargs"] = {**chosen.get("config_kwargs", {}), "max_pool_connections": 7}
    with kvstore.open(target.url, storage_options=chosen, concurrency=300, cache=None) as store:
        assert pool_size(store) == 7
        assert store.get("k") == b"v"
