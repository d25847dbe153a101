"""Versioned artifacts (``store.artifacts``): the spec, tested.

1. The contract on every backend (memory, local, S3, GCS), without and with the local cache:
   versions 0, 1, 2... that are never reused, load/versions/list/delete, mime types,
   metadata kept apart from internal fields, Artifact fields, namespaces, the async face.
2. Large artifacts: streamed saves from file objects and paths, the ``open()`` reader
   (read/seek/tell/readinto/copyfileobj/zipfile, async), compression only when it pays, and
   memory bounded by a few parts whatever the artifact's size (tracemalloc).
3. Concurrent savers in several processes on local disk and S3: every save gets a version of
   its own, nothing lost or overwritten; a client never reads older than its own save.
4. Request counts from ``store.stats()``, as the spec's cost table states them.
5. A flipped byte, a missing part, parts in the wrong order: CorruptDataError naming the
   object, and the store keeps working.
6. Bad arguments and a failing object store: clear errors, nothing half-written visible.
7. The ``kvstore artifact`` command.

Multi-part artifacts are made cheap by monkeypatching ``kvstore.artifacts.PART_SIZE`` small
(the ``small_parts`` fixture).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import gc
import hashlib
import io
import itertools
import json
import mimetypes
import multiprocessing as mp
import queue
import random
import shutil
import sys
import threading
import tracemalloc
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST, FAST_AND_S3, RACES, FakeClock, open_clocked
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kvstore
import kvstore.artifacts as artifacts_module
from kvstore import codec
from kvstore.cli import main as cli_main
from kvstore.errors import (
    BackendError,
    CorruptDataError,
    InvalidKeyError,
    InvalidValueError,
)
from kvstore.keys import encode_name
from kvstore.portal import portal
from kvstore.testing import request_delta

Target = Any  # tests/conftest.py's Target: .backend, .url, .storage_options, .open()
CACHES = (None, "local")
KiB = 1 << 10
MiB = 1 << 20
SMALL_PART = 64 * KiB
TEXT_MIME = "text/plain; charset=utf-8"
BINARY_MIME = "application/octet-stream"


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> int:
    """Multi-part artifacts from 64 KiB on (instead of 8 MiB)."""
    monkeypatch.setattr(artifacts_module.limits, "PART_SIZE", SMALL_PART)
    return SMALL_PART


def pattern(size: int, seed: int = 0) -> bytes:
    """Incompressible, reproducible bytes."""
    return random.Random(seed).randbytes(size)


def text_like(size: int) -> bytes:
    """Very compressible bytes."""
    line = b"the quick brown fox jumps over the lazy dog 0123456789\n"
    return (line * (size // len(line) + 1))[:size]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def spend(store: Any, action: Callable[[], Any]) -> tuple[Any, dict[str, int]]:
    """(what ``action()`` returned, the object-store requests it made)."""
    with request_delta(store) as spent:
        result = action()
    return result, spent


def long_lived(cache: str | None) -> kvstore.LocalCache | None:
    """A local cache whose entries outlive a slow step on a loaded machine (the default
    entry TTL is 1 s), for tests that assert a repeated read costs no request."""
    return kvstore.LocalCache(ttl=60) if cache else None


def blob_of(store: kvstore.KVStore) -> Any:
    return store.aio._ctx.blob


def objects(store: kvstore.KVStore, prefix: str) -> dict[str, int]:
    """path -> size of every object below ``prefix`` (relative to the store's root)."""
    blob = blob_of(store)

    async def collect() -> dict[str, int]:
        paths = [p async for page in blob.list_pages(prefix) for p in page]
        found = await blob.get_many(paths)
        return {p: len(b.data) for p, b in zip(paths, found, strict=True) if b is not None}

    return portal().run(collect())


def manifest_path(store: kvstore.KVStore, name: str, version: int) -> str:
    layout = store.aio._ctx.layout
    return layout.version(layout.artifact_dir(name), version)


def part_paths(store: kvstore.KVStore, name: str) -> list[str]:
    layout = store.aio._ctx.layout
    uploads = layout.part(layout.artifact_dir(name), "", 0).rsplit("/", 2)[0] + "/"
    return sorted(objects(store, uploads))


def read_object(store: kvstore.KVStore, path: str) -> bytes:
    found = portal().run(blob_of(store).get(path))
    assert found is not None, path
    return bytes(found.data)


def write_object(store: kvstore.KVStore, path: str, data: bytes) -> None:
    portal().run(blob_of(store).put(path, data))


def remove_object(store: kvstore.KVStore, path: str) -> None:
    portal().run(blob_of(store).delete(path))


def flip(store: kvstore.KVStore, path: str, offset: int = -6) -> None:
    """Flip one bit of a stored object (by default in its payload, before the body CRC)."""
    data = bytearray(read_object(store, path))
    data[offset] ^= 0x10
    write_object(store, path, bytes(data))


def read_exactly(f: Any, n: int) -> bytes:
    """``n`` bytes (fewer only at EOF): a raw stream may return short reads."""
    out = bytearray()
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def read_in_sizes(f: Any, sizes: Iterator[int]) -> bytes:
    out = bytearray()
    while chunk := f.read(next(sizes)):
        out += chunk
    return bytes(out)


def same(a: Any, b: Any) -> bool:
    """Equal *and* of the same types all the way down (True is not 1, 1.0 is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class GeneratedFile(io.RawIOBase):
    """``size`` reproducible bytes made on demand (never held whole), hashed as they are read.

    ``max_read`` caps what one read returns (a pipe or socket gives short reads).
    """

    BLOCK = 64 * KiB

    def __init__(self, size: int, seed: int = 0, max_read: int | None = None) -> None:
        self.size = size
        self.pos = 0
        self.max_read = max_read
        self.digest = hashlib.sha256()
        self._base = random.Random(seed).randbytes(self.BLOCK)

    def readable(self) -> bool:
        return True

    def _block(self, index: int) -> bytes:
        return index.to_bytes(8, "little") + self._base[8:]

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self.size - self.pos, self.max_read or len(view))
        written = 0
        while written < n:
            index, offset = divmod(self.pos + written, self.BLOCK)
            piece = self._block(index)[offset : offset + n - written]
            view[written : written + len(piece)] = piece
            written += len(piece)
        self.digest.update(view[:n])
        self.pos += n
        return n


def generated(size: int, seed: int = 0) -> bytes:
    return GeneratedFile(size, seed).read()


class ReadOnly:
    """The least a "binary file object" can be: an object with ``read(n)``."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)


# -- 1. the contract on every backend ---------------------------------------------------------


def test_save_numbers_versions_and_load_reads_each(store: kvstore.KVStore) -> None:
    arts = store.artifacts
    assert arts.load("report") is None
    assert arts.load("report", 0) is None
    assert arts.versions("report") == []
    assert arts.list() == []
    for i in range(3):
        assert arts.save("report", f"draft {i}".encode()) == i
    assert arts.versions("report") == [0, 1, 2]
    latest = arts.load("report")
    assert latest is not None
    assert (latest.name, latest.version, latest.data) == ("report", 2, b"draft 2")
    for i in range(3):
        a = arts.load("report", i)
        assert a is not None
        assert (a.name, a.version, a.data) == ("report", i, f"draft {i}".encode())
        assert type(a.data) is bytes
        assert arts.load("report", version=i) == a
    assert arts.load("report", 3) is None
    assert arts.load("report", 10**6) is None
    assert arts.load("other") is None
    assert arts.versions("other") == []
    # each name numbers on its own
    assert arts.save("other", b"x") == 0
    assert arts.list() == ["other", "report"]
    # bytes-like inputs
    assert arts.save("other", bytearray(b"bytearray")) == 1
    assert arts.save("other", memoryview(b"..memoryview..")[2:-2]) == 2
    assert [arts.load("other", v).data for v in (1, 2)] == [b"bytearray", b"memoryview"]


NAMES = [
    "reports/2024/q1.pdf",
    "reports/2024/q2.pdf",
    "reports/summary",
    "..",
    ".",
    "../escape",
    "a/../b",
    "/leading",
    "trailing/",
    "back\\slash",
    "nul\x00inside",
    "ünïcødé 名前.txt",
    "🙂",
    "with space",
    "a~b",
    "a0",
    "a%41",
    "x" * 300,
    "x" * 250 + "/" + "y" * 250,
]


def test_list_names_sorted_with_prefixes(store: kvstore.KVStore) -> None:
    arts = store.artifacts
    for name in NAMES:
        assert arts.save(name, name) == 0
    assert arts.list() == sorted(NAMES)
    assert arts.list("") == sorted(NAMES)
    assert arts.list("reports/") == [
        "reports/2024/q1.pdf",
        "reports/2024/q2.pdf",
        "reports/summary",
    ]
    assert arts.list("reports/2024/q1") == ["reports/2024/q1.pdf"]
    assert arts.list("rep") == arts.list("reports/")
    assert arts.list("a") == sorted(["a/../b", "a~b", "a0", "a%41"])
    assert arts.list(".") == sorted([".", "..", "../escape"])
    assert arts.list("..") == ["..", "../escape"]
    assert arts.list("x" * 260) == ["x" * 300]
    assert arts.list("x" * 250 + "/") == ["x" * 250 + "/" + "y" * 250]
    assert arts.list("ü") == ["ünïcødé 名前.txt"]
    assert arts.list("zzz") == []
    assert arts.list("reports/2024/q1.pdf/") == []
    for name in NAMES:
        a = arts.load(name, 0)
        assert a is not None and a.name == name and a.text == name, name
    assert arts.versions(NAMES[-1]) == [0]
    assert arts.load("x" * 300).text == "x" * 300
    # a name is listed while it has a live version, and not after
    arts.save("reports/summary", "v1")
    assert arts.delete("reports/summary", 0) == 1
    assert "reports/summary" in arts.list("reports/")
    assert arts.delete("reports/summary") == 1
    assert arts.list("reports/") == ["reports/2024/q1.pdf", "reports/2024/q2.pdf"]
    assert "reports/summary" not in arts.list()


def test_longest_name(store: kvstore.KVStore) -> None:
    longest = "n" * 1024
    if store.url.startswith(("s3://", "gs://")):
        # the object name (prefix + escaped name + version) must fit 1024 bytes there
        with pytest.raises(InvalidKeyError):
            store.artifacts.save(longest, b"x")
    else:
        assert store.artifacts.save(longest, b"x") == 0
        assert store.artifacts.load(longest).data == b"x"
    assert store.artifacts.list() == ([] if store.url.startswith(("s3://", "gs://")) else [longest])
    with pytest.raises(InvalidKeyError):
        store.artifacts.save("n" * 1025, b"x")


def test_delete_one_all_and_versions_never_reused(store: kvstore.KVStore, target: Target) -> None:
    arts = store.artifacts
    assert arts.delete("doc") == 0
    assert arts.delete("doc", 0) == 0
    for i in range(4):
        assert arts.save("doc", f"v{i}") == i
    assert arts.delete("doc", 1) == 1
    assert arts.delete("doc", 1) == 0  # already gone
    assert arts.delete("doc", 9) == 0  # never was
    assert arts.versions("doc") == [0, 2, 3]
    assert arts.load("doc", 1) is None
    assert arts.load("doc", 2).text == "v2"
    # deleting the latest: load() falls back to the newest live version ...
    assert arts.delete("doc", 3) == 1
    assert arts.load("doc").version == 2
    assert arts.versions("doc") == [0, 2]
    # ... but its number is not reused
    assert arts.save("doc", "v4") == 4
    assert arts.versions("doc") == [0, 2, 4]
    assert arts.load("doc").text == "v4"
    # delete all: the count of live versions removed
    assert arts.delete("doc") == 3
    assert arts.versions("doc") == []
    assert arts.load("doc") is None
    assert arts.load("doc", 0) is None
    assert arts.list() == []
    assert arts.delete("doc") == 0
    # numbering continues after the highest version ever saved, here ...
    assert arts.save("doc", "v5") == 5
    # ... and in a store that knows nothing of this name yet (another process)
    arts.delete("doc")
    with target.open() as fresh:
        assert fresh.artifacts.load("doc") is None
        assert fresh.artifacts.versions("doc") == []
        assert fresh.artifacts.save("doc", "v6") == 6
    assert arts.load("doc").text == "v6"
    assert arts.save("doc", "v7") == 7
    assert arts.versions("doc") == [6, 7]


def test_mime_types(store: kvstore.KVStore) -> None:
    arts = store.artifacts
    arts.save("text", "grüße ✓")
    arts.save("bytes", b"\x00\x01")
    arts.save("explicit", b"{}", mime_type="application/json")
    arts.save("explicit-text", "# Title", mime_type="text/markdown")
    arts.save("file", io.BytesIO(b"from a file"))
    text = arts.load("text")
    assert text.data == "grüße ✓".encode()
    assert text.text == "grüße ✓"
    assert text.mime_type == TEXT_MIME
    assert text.size == len("grüße ✓".encode())
    assert arts.load("bytes").mime_type == BINARY_MIME
    assert arts.load("explicit").mime_type == "application/json"
    explicit_text = arts.load("explicit-text")
    assert (explicit_text.mime_type, explicit_text.data) == ("text/markdown", b"# Title")
    assert arts.load("file").mime_type == BINARY_MIME
    assert arts.load("file").data == b"from a file"
    # a str is data, never a path
    arts.save("path-like-str", "/etc/passwd")
    assert arts.load("path-like-str").data == b"/etc/passwd"


RICH_METADATA: dict[str, Any] = {
    "author": "Zoë 名前 🙂",
    "": "empty key",
    "nested": {"list": [1, "two", 3.5, None, True, {"deep": [b"\x00\xff", []]}], "empty": {}},
    "ints": [0, -1, 2**63 - 1, -(2**63), 2**64 - 1],
    "floats": [0.1, -2.5e300, 1e-300, float("inf")],
    "flags": [True, False],
    "nothing": None,
    "raw": b"\x00bytes\xff",
    "tuple": (1, 2),
}


def test_metadata_round_trips(store: kvstore.KVStore) -> None:
    arts = store.artifacts
    arts.save("doc", b"data", metadata=RICH_METADATA)
    got = arts.load("doc").metadata
    expected = {**RICH_METADATA, "tuple": [1, 2]}  # tuples come back as lists
    assert same(got, expected), got
    assert arts.load("doc", 0).metadata == expected
    with arts.open("doc") as f:
        assert same(f.metadata, expected)
    # no metadata, and empty metadata, are {}
    arts.save("plain", b"x")
    arts.save("empty", b"x", metadata={})
    assert arts.load("plain").metadata == {}
    assert arts.load("empty").metadata == {}


INTERNAL_LOOKING = {
    "sha256": "not a hash",
    "size": -1,
    "parts": [{"bogus": True}, 99],
    "mime": "x/y",
    "mime_type": "x/y",
    "metadata": {"inner": 1},
    "created_at": "yesterday",
    "upload": "../../etc",
    "payload": b"nope",
    "data": 17,
    "version": "v",
    "name": "other",
    "format": 999,
}


def test_user_metadata_kept_apart_from_internal_fields(
    store: kvstore.KVStore, small_parts: int
) -> None:
    arts = store.artifacts
    small = b"small data"
    large = pattern(2 * small_parts + 100, seed=2)
    arts.save("small", small, metadata=INTERNAL_LOOKING)
    arts.save("large", large, mime_type="application/x-bin", metadata=INTERNAL_LOOKING)
    for name, data, mime in [("small", small, BINARY_MIME), ("large", large, "application/x-bin")]:
        a = arts.load(name)
        assert a.data == data
        assert same(a.metadata, INTERNAL_LOOKING), a.metadata
        assert (a.name, a.version, a.size, a.sha256) == (name, 0, len(data), sha(data))
        assert a.mime_type == mime
        assert isinstance(a.created_at, datetime.datetime)
        with arts.open(name) as f:
            assert f.read() == data
            assert (f.size, f.sha256, f.mime_type) == (len(data), sha(data), mime)
            assert same(f.metadata, INTERNAL_LOOKING)


def test_artifact_fields(store: kvstore.KVStore) -> None:
    before = datetime.datetime.now(datetime.timezone.utc)
    data = "naïve café\n".encode()
    store.artifacts.save("note", data, mime_type="text/plain; charset=utf-8", metadata={"k": 1})
    a = store.artifacts.load("note")
    assert dataclasses.is_dataclass(a)
    assert (a.name, a.version, a.data, a.mime_type) == ("note", 0, data, TEXT_MIME)
    assert a.metadata == {"k": 1}
    assert a.size == len(data) == 13
    assert a.sha256 == hashlib.sha256(data).hexdigest()
    assert a.text == "naïve café\n"
    created = a.created_at
    assert isinstance(created, datetime.datetime)
    assert created.tzinfo is not None
    assert created.utcoffset() == datetime.timedelta(0)
    # close to now (generous: the machine is shared; this is no timing assertion)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert before - datetime.timedelta(minutes=5) <= created <= now + datetime.timedelta(minutes=5)
    # stored, not computed at load time
    assert store.artifacts.load("note", 0).created_at == created
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.data = b"changed"  # type: ignore[misc]
    binary = store.artifacts.save("binary", b"\xff\xfe")
    with pytest.raises(UnicodeDecodeError):
        _ = store.artifacts.load("binary", binary).text


def test_namespaces_isolate_artifacts(store: kvstore.KVStore) -> None:
    a = store.namespace("tenant-a")
    b = store.namespace("tenant-b")
    nested = a.namespace("tenant-b")
    views = {"root": store, "a": a, "b": b, "nested": nested}
    for label, view in views.items():
        assert view.artifacts.save("report", label) == 0
    for label, view in views.items():
        assert view.artifacts.load("report").text == label
        assert view.artifacts.versions("report") == [0]
        assert view.artifacts.list() == ["report"]
    assert a.artifacts.save("only-a", "x") == 0
    assert a.artifacts.save("report", "a1") == 1
    assert store.artifacts.list() == ["report"]
    assert b.artifacts.load("only-a") is None
    assert store.artifacts.versions("report") == [0]
    assert a.artifacts.delete("report") == 2
    assert [v.artifacts.load("report").text for v in (store, b, nested)] == ["root", "b", "nested"]
    # artifacts live apart from values and logs of the same name
    store.set("report", "value")
    store.append("report", "record")
    assert store.artifacts.load("report").text == "root"
    assert store.artifacts.delete("report") == 1
    assert store.get("report") == b"value"
    assert store.range("report") == [b"record"]


def test_multipart_round_trip_from_bytes_file_and_path(
    store: kvstore.KVStore, small_parts: int, tmp_path: Path
) -> None:
    arts = store.artifacts
    data = pattern(3 * small_parts + 777, seed=3)
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    with path.open("rb") as f:
        versions = [
            arts.save("big", data),
            arts.save("big", f),
            arts.save("big", path),
            arts.save("big", GeneratedFile(len(data), seed=3)),
        ]
    assert versions == [0, 1, 2, 3]
    streamed = generated(len(data), seed=3)
    for version, expected in zip(versions, [data, data, data, streamed], strict=True):
        a = arts.load("big", version)
        assert a.data == expected, version
        assert (a.size, a.sha256) == (len(expected), sha(expected))
        with arts.open("big", version) as f:
            assert read_in_sizes(f, itertools.cycle([4093, small_parts + 1])) == expected
    assert len(part_paths(store, "big")) == 4 * 4  # 4 versions x 4 parts


def test_async_face(target: Target, small_parts: int) -> None:
    big = pattern(2 * small_parts + 5, seed=4)
    tasks = 16 if target.backend in ("memory", "local") else 6

    async def main() -> None:
        async with target.open_async(cache="local") as astore:
            arts = astore.artifacts
            assert await arts.load("a") is None
            assert await arts.save("a", b"one") == 0
            assert await arts.save("a", "two", mime_type="text/x", metadata={"k": [1]}) == 1
            assert await arts.save("a", big) == 2
            a = await arts.load("a", 1)
            assert (a.data, a.mime_type, a.metadata, a.version) == (b"two", "text/x", {"k": [1]}, 1)
            assert (await arts.load("a")).data == big
            assert await arts.versions("a") == [0, 1, 2]
            assert await arts.list() == ["a"]
            assert await arts.list("b") == []
            reader = await arts.open("a", 0)
            async with reader:
                assert await reader.read() == b"one"
            assert await arts.open("a", 7) is None
            assert await arts.delete("a", 0) == 1
            assert await arts.delete("a") == 2
            assert await arts.list() == []
            assert await arts.save("a", b"three") == 3
            # many saves of one name from concurrent tasks: one version each
            got = await asyncio.gather(*(arts.save("b", f"task {i}") for i in range(tasks)))
            assert sorted(got) == list(range(tasks))
            for i, v in enumerate(got):
                assert (await arts.load("b", v)).text == f"task {i}"
            ns = astore.namespace("n")
            assert await ns.artifacts.list() == []

    asyncio.run(main())
    with target.open() as store:  # the blocking face sees what the async one wrote
        assert store.artifacts.load("a").data == b"three"
        assert store.artifacts.versions("b") == list(range(tasks))


# -- metadata, more broadly (hypothesis) ------------------------------------------------------

META_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=10),
    st.binary(max_size=10),
)
META_VALUES = st.recursive(
    META_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
METADATA = st.dictionaries(st.text(max_size=8), META_VALUES, max_size=6)


@pytest.mark.parametrize("backend", FAST)
def test_metadata_property(make_target: Callable[[str], Target], backend: str) -> None:
    with make_target(backend).open(cache=None) as store:

        @settings(
            max_examples=60 if backend == "memory" else 25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(metadata=METADATA, data=st.one_of(st.binary(max_size=64), st.text(max_size=20)))
        def run(metadata: dict[str, Any], data: bytes | str) -> None:
            name = uuid.uuid4().hex
            assert store.artifacts.save(name, data, metadata=metadata) == 0
            a = store.artifacts.load(name)
            assert same(a.metadata, metadata), (a.metadata, metadata)
            raw = data.encode() if isinstance(data, str) else data
            assert a.data == raw
            assert a.mime_type == (TEXT_MIME if isinstance(data, str) else BINARY_MIME)

        run()


# -- clock, decode_responses, listings of more than a page ------------------------------------


def test_created_at_comes_from_the_store_clock(make_target: Any) -> None:
    clock = FakeClock()
    with open_clocked(make_target("memory"), clock) as store:
        store.artifacts.save("n", b"x")
        clock.advance(90_500)
        store.artifacts.save("n", b"y")
        first, second = store.artifacts.load("n", 0), store.artifacts.load("n", 1)
        start = datetime.datetime.fromtimestamp((clock.now - 90_500) / 1000, datetime.timezone.utc)
        assert first.created_at == start
        assert second.created_at - first.created_at == datetime.timedelta(seconds=90.5)
        with store.artifacts.open("n", 1) as f:
            assert f.created_at == second.created_at


def test_decode_responses_leaves_artifacts_bytes(make_target: Any) -> None:
    with make_target("memory").open(decode_responses=True) as store:
        store.artifacts.save("n", "text")
        a = store.artifacts.load("n")
        assert type(a.data) is bytes and a.text == "text"
        with store.artifacts.open("n") as f:
            assert f.read() == b"text"


def test_versions_and_names_past_one_listing_page(make_target: Any) -> None:
    """More than 1000 versions of a name, and more than 1000 names: several LIST pages."""
    with make_target("memory").open(cache=None) as store:
        for _ in range(1003):
            store.artifacts.save("many", b"v")
        store.artifacts.delete("many", 500)
        assert store.artifacts.versions("many") == [v for v in range(1003) if v != 500]
        assert store.artifacts.load("many").version == 1002
        assert store.artifacts.save("many", b"v") == 1003
        names = [f"n{i:04d}" for i in range(1003)]
        for name in names:
            store.artifacts.save(name, b"x")
        store.artifacts.delete("n0000")
        assert store.artifacts.list("n") == names[1:]
        assert store.artifacts.list() == sorted(["many", *names[1:]])
        assert store.artifacts.list("n10") == names[1000:]


def test_list_pages_through_s3(make_target: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """list() follows S3's continuation tokens. (Pages of 5 keys instead of 1000: 1003
    names cost ~14 s on moto; S3 pagination of 1003 keys is tested in test_blob.py. On the
    s3fs transport, whose requests can be rewritten here.)"""
    names = [f"n{i:02d}" for i in range(20)]
    with make_target("s3fs").open(cache=None) as store:
        blob = blob_of(store)
        original = blob._s3

        async def small_pages(method: str, **kwargs: Any) -> Any:
            if method == "list_objects_v2":
                kwargs["MaxKeys"] = 5
            return await original(method, **kwargs)

        monkeypatch.setattr(blob, "_s3", small_pages)
        for name in names:
            store.artifacts.save(name, b"x")
        store.artifacts.save("n00", b"y")
        store.artifacts.delete("n00", 0)  # a tombstone, and a live version after it
        store.artifacts.delete("n01")
        objects_listed = len(objects(store, "art/"))
        assert objects_listed == 20 + 1 + 2
        with request_delta(store) as spent:
            assert store.artifacts.list() == [n for n in names if n != "n01"]
        assert spent == {"requests.list": -(-objects_listed // 5)}
        assert store.artifacts.list("n1") == names[10:]
        assert store.artifacts.versions("n00") == [1]


def test_list_more_than_1000_names_on_s3(make_target: Any) -> None:
    """1001 names on S3 (moto's real 1000-key pages): list() returns all of them, sorted,
    from two LIST pages. The names are real manifests, copied with one PUT each."""
    names = sorted(f"agent-{i:04d}/report.md" for i in range(1001))
    with make_target("s3").open(cache=None) as store:
        store.artifacts.save(names[0], "the report")
        blob = blob_of(store)

        async def copy_all() -> None:
            manifest = await blob.get(f"art/{encode_name(names[0])}/{0:020d}")
            gate = asyncio.Semaphore(16)

            async def copy(name: str) -> None:
                path = f"art/{encode_name(name)}/{0:020d}"
                async with gate:  # each copy bound to its own path, as a save would write it
                    await blob.put(path, codec.rebind(manifest.data, path))

            await asyncio.gather(*map(copy, names[1:]))

        portal().run(copy_all())  # on the store's own loop (its S3 session lives there)
        listed, cost = spend(store, store.artifacts.list)
        assert listed == names
        assert cost == {"requests.list": 2}
        assert store.artifacts.list("agent-100") == names[1000:]
        assert store.artifacts.load(names[-1]).text == "the report"


# -- 2. large artifacts: streaming, the reader, compression, the memory bound -----------------


@pytest.mark.parametrize("backend", FAST)
def test_sizes_around_the_part_size(
    make_target: Callable[[str], Target], backend: str, small_parts: int
) -> None:
    with make_target(backend).open(cache=None) as store:
        arts = store.artifacts
        sizes = [0, 1, small_parts - 1, small_parts, small_parts + 1, 2 * small_parts]
        sizes += [2 * small_parts + 1]
        for size in sizes:
            data = pattern(size, seed=size)
            for source in (data, io.BytesIO(data), ReadOnly(data)):
                v = arts.save(f"s{size}", source)
                a = arts.load(f"s{size}", v)
                assert a.data == data, (size, type(source))
                assert (a.size, a.sha256) == (size, sha(data))
                with arts.open(f"s{size}", v) as f:
                    assert f.size == size
                    assert f.read() == data
        # data up to PART_SIZE is inline: no part objects; beyond it, parts
        for size in sizes:
            parts = part_paths(store, f"s{size}")
            if size <= small_parts:
                assert parts == [], size
            else:
                assert len(parts) == 3 * -(-size // small_parts), (size, parts)


def test_stream_with_short_reads_and_no_seek(make_target: Any, small_parts: int) -> None:
    with make_target("memory").open(cache=None) as store:
        size = 3 * small_parts + 11
        source = GeneratedFile(size, seed=5, max_read=1000)
        assert store.artifacts.save("piped", source) == 0
        a = store.artifacts.load("piped")
        assert a.size == size
        assert a.sha256 == source.digest.hexdigest()
        assert a.data == generated(size, seed=5)
        short = GeneratedFile(500, seed=6, max_read=7)
        store.artifacts.save("short", short)
        assert store.artifacts.load("short").data == generated(500, seed=6)


def test_save_from_path_guesses_the_mime_type(make_target: Any, tmp_path: Path) -> None:
    files = {
        "photo.png": b"\x89PNG\r\n\x1a\n" + pattern(300),
        "data.json": b'{"a": 1}',
        "notes.txt": b"hello\n",
        "blob.unknown-suffix-xyz": b"\x00\x01",
        "noext": b"plain",
    }
    with make_target("local").open() as store:
        for filename, content in files.items():
            path = tmp_path / filename
            path.write_bytes(content)
            store.artifacts.save(filename, path)
            a = store.artifacts.load(filename)
            assert a.data == content
            guessed = mimetypes.guess_type(filename)[0] or BINARY_MIME
            assert a.mime_type == guessed, filename
        assert store.artifacts.load("photo.png").mime_type == "image/png"
        path = tmp_path / "photo.png"
        store.artifacts.save("photo.png", path, mime_type="application/x-custom")
        assert store.artifacts.load("photo.png").mime_type == "application/x-custom"
        # a missing file fails and saves nothing
        with pytest.raises((OSError, kvstore.KVStoreError)):
            store.artifacts.save("missing", tmp_path / "does-not-exist.bin")
        assert store.artifacts.versions("missing") == []


@pytest.mark.parametrize("backend", FAST_AND_S3)
def test_reader_reads_seeks_and_tells(
    make_target: Callable[[str], Target], backend: str, small_parts: int
) -> None:
    part = small_parts
    data = pattern(3 * part + 12345, seed=7)
    with make_target(backend).open() as store:
        v = store.artifacts.save("big", data, mime_type="application/x-test", metadata={"m": 1})
        f = store.artifacts.open("big")
        assert isinstance(f, io.RawIOBase)
        with f:
            assert f.readable() and f.seekable() and not f.writable()
            assert (f.name, f.version, f.size) == ("big", v, len(data))
            assert (f.mime_type, f.metadata, f.sha256) == (
                "application/x-test",
                {"m": 1},
                sha(data),
            )
            assert f.created_at == store.artifacts.load("big").created_at
            assert f.tell() == 0
            odd = itertools.cycle([1, 7, 4093, part + 1, 3, 65521, 2 * part])
            assert read_in_sizes(f, odd) == data
            assert f.tell() == len(data)
            assert f.read(10) == b""
            assert f.read() == b""
            # seek / tell from each whence
            assert f.seek(part - 5) == part - 5
            assert f.tell() == part - 5
            assert read_exactly(f, 10) == data[part - 5 : part + 5]
            assert f.seek(-100, io.SEEK_END) == len(data) - 100
            assert f.read() == data[-100:]
            assert f.seek(2 * part) == 2 * part
            assert f.seek(-10, io.SEEK_CUR) == 2 * part - 10
            assert read_exactly(f, 20) == data[2 * part - 10 : 2 * part + 10]
            assert f.seek(0) == 0
            assert f.read(0) == b""
            # overlapping reads to the end are no reason to doubt valid data
            assert read_exactly(f, 100) == data[:100]
            f.seek(50)
            assert f.read() == data[50:]
            f.seek(0)
            # readinto across a part boundary, into a bytearray and a memoryview
            f.seek(2 * part - 2500)
            buf = bytearray(5000)
            filled = 0
            while filled < len(buf):
                n = f.readinto(memoryview(buf)[filled:])
                assert n
                filled += n
            assert buf == data[2 * part - 2500 : 2 * part + 2500]
            # backwards, and past the end
            f.seek(3 * part)
            assert read_exactly(f, 3) == data[3 * part : 3 * part + 3]
            f.seek(1)
            assert read_exactly(f, 3) == data[1:4]
            assert f.seek(len(data) + 100) == len(data) + 100
            assert f.read() == b""
            with pytest.raises((ValueError, OSError)):
                f.seek(-1)
            # readall after a seek
            f.seek(12345)
            assert f.read() == data[12345:]
            # a buffered wrapper works too
            f.seek(0)
            assert io.BufferedReader(f, buffer_size=10_000).read() == data
        assert f.closed
        with pytest.raises(ValueError):
            f.read(1)
        assert store.artifacts.open("missing") is None
        assert store.artifacts.open("big", v + 1) is None
        with store.artifacts.open("big", v) as again:  # open by version
            assert again.read() == data


def test_reader_with_copyfileobj_and_zipfile(
    make_target: Any, small_parts: int, tmp_path: Path
) -> None:
    members = {
        f"dir/file{i}.bin": pattern(small_parts // 2 + i * 1000, seed=10 + i) for i in range(5)
    }
    members["notes.txt"] = text_like(3 * small_parts)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for i, (name, content) in enumerate(members.items()):
            z.writestr(name, content, zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED)
    blob = archive.getvalue()
    assert len(blob) > 2 * small_parts
    with make_target("local").open() as store:
        store.artifacts.save("bundle.zip", blob, mime_type="application/zip")
        with store.artifacts.open("bundle.zip") as f, zipfile.ZipFile(f) as z:
            assert z.testzip() is None
            assert sorted(z.namelist()) == sorted(members)
            for name, content in members.items():
                assert z.read(name) == content
        out = tmp_path / "copy.zip"
        with store.artifacts.open("bundle.zip") as f, out.open("wb") as dst:
            shutil.copyfileobj(f, dst, 10_007)
        assert out.read_bytes() == blob
        # a path in, a file out
        src = tmp_path / "src.bin"
        src.write_bytes(pattern(2 * small_parts + 3, seed=11))
        store.artifacts.save("from-path", src)
        with store.artifacts.open("from-path") as f, (tmp_path / "dst.bin").open("wb") as dst:
            shutil.copyfileobj(f, dst)
        assert (tmp_path / "dst.bin").read_bytes() == src.read_bytes()


@pytest.mark.parametrize("backend", FAST)
def test_async_reader(make_target: Callable[[str], Target], backend: str, small_parts: int) -> None:
    data = pattern(3 * small_parts + 99, seed=12)
    target = make_target(backend)

    async def main() -> None:
        async with target.open_async() as astore:
            arts = astore.artifacts
            v = await arts.save("big", GeneratedFile(len(data), seed=12))
            assert v == 0
            expected = generated(len(data), seed=12)
            assert await arts.open("missing") is None
            reader = await arts.open("big")
            async with reader:
                assert (reader.name, reader.version, reader.size) == ("big", 0, len(data))
                assert reader.sha256 == sha(expected)
                assert reader.tell() == 0
                got = bytearray()
                while chunk := await reader.read(50_001):
                    got += chunk
                assert got == expected
                assert reader.tell() == len(expected)
                assert await reader.seek(small_parts + 3) == small_parts + 3
                assert reader.tell() == small_parts + 3
                piece = bytearray()
                while len(piece) < 10 and (chunk := await reader.read(10 - len(piece))):
                    piece += chunk
                assert piece == expected[small_parts + 3 : small_parts + 13]
                assert await reader.seek(-5, io.SEEK_END) == len(expected) - 5
                assert await reader.read() == expected[-5:]
                await reader.seek(0)
                assert await reader.read() == expected
            reader = await arts.open("big", 0)
            assert await reader.read(3) == expected[:3]
            await reader.close()

    asyncio.run(main())


def test_compression_only_when_it_pays(make_target: Any, small_parts: int) -> None:
    compressible = text_like(40 * KiB)
    noise = pattern(40 * KiB, seed=13)
    with make_target("memory").open(cache=None) as store:
        arts = store.artifacts

        def stored(name: str) -> int:
            return sum(objects(store, f"art/{encode_name(name)}/").values()) + sum(
                objects(store, f"artpart/{encode_name(name)}/").values()
            )

        arts.save("text", compressible, mime_type="text/plain")
        assert stored("text") < len(compressible) // 4
        arts.save("noise", noise)
        assert stored("noise") < len(noise) + 2 * KiB  # not inflated by a useless zstd frame
        media = ["image/png", "image/jpeg", "application/zip", "application/gzip"]
        for i, mime in enumerate([*media, "audio/mpeg", "video/mp4"]):
            arts.save(f"media{i}", compressible, mime_type=mime)
            assert stored(f"media{i}") >= len(compressible), mime
            assert arts.load(f"media{i}").data == compressible
        # parts are compressed each on its own
        big = text_like(4 * small_parts)
        arts.save("big-text", big)
        assert stored("big-text") < len(big) // 4
        assert arts.load("big-text").data == big


def _measure(action: Callable[[], Any]) -> tuple[Any, int]:
    """(result, peak bytes allocated by Python while ``action`` ran, in any thread)."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak - base


def _stream_back(store: kvstore.KVStore, name: str) -> tuple[int, str]:
    with store.artifacts.open(name) as f:
        digest, total = hashlib.sha256(), 0
        while chunk := f.read(MiB):
            digest.update(chunk)
            total += len(chunk)
    return total, digest.hexdigest()


@pytest.mark.parametrize(("backend", "size"), [("local", 64 * MiB), ("s3", 24 * MiB)])
def test_memory_is_bounded_whatever_the_size(
    make_target: Callable[[str], Target],
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    size: int,
) -> None:
    """A streamed artifact much larger than the bound is saved and read back with Python
    allocations (bytes objects included) staying below a bound set by the part size."""
    monkeypatch.setattr(artifacts_module.limits, "PART_SIZE", MiB)
    bound = 16 * MiB
    target = make_target(backend)
    options = {"fsync": False} if backend == "local" else target.storage_options
    with kvstore.open(target.url, cache=None, storage_options=options) as store:
        store.artifacts.save("warm-up", b"x")  # connections, thread pools: not the artifact
        source = GeneratedFile(size, seed=14)
        version, peak_save = _measure(lambda: store.artifacts.save("huge", source))
        assert version == 0
        assert source.pos == size
        assert peak_save < bound, f"save of {size >> 20} MiB peaked at {peak_save / MiB:.1f} MiB"
        (total, digest), peak_read = _measure(lambda: _stream_back(store, "huge"))
        assert (total, digest) == (size, source.digest.hexdigest())
        assert peak_read < bound, f"read of {size >> 20} MiB peaked at {peak_read / MiB:.1f} MiB"
        with store.artifacts.open("huge") as f:
            assert f.sha256 == source.digest.hexdigest()
        assert len(part_paths(store, "huge")) == size // MiB


# -- 3. concurrent savers, shared caches ------------------------------------------------------


# fork where the platform has it: spawn re-imports kvstore, s3fs and this module in each of
# the 8 children, which dominated this file's run time on a 2-core machine. The parent's
# threads are idle kvstore loop/worker threads; each child opens its own store and loop.
START_METHOD = "fork" if "fork" in mp.get_all_start_methods() else "spawn"


def _content(me: int, i: int, size: int) -> bytes:
    tag = f"saver {me} save {i};".encode()
    return (tag * (size // len(tag) + 1))[: max(size, len(tag))]


def _saver(
    url: str,
    storage_options: dict[str, Any],
    me: int,
    count: int,
    size: int,
    part_size: int | None,
    barrier: Any,
    results: Any,
) -> None:
    """One saver process: wait for all, then save ``count`` versions of "shared"."""
    try:
        if part_size is not None:
            artifacts_module.limits.PART_SIZE = part_size
        with kvstore.open(url, cache=None, storage_options=storage_options or None) as store:
            store.artifacts.versions("warm-up")  # connect before the race, not during it
            barrier.wait(timeout=60)
            for i in range(count):
                version = store.artifacts.save(
                    "shared", _content(me, i, size), metadata={"saver": me, "i": i}
                )
                results.put((me, i, version))
    except BaseException as exc:  # report, never hang the parent
        results.put(("error", me, repr(exc)))


def _run_savers(
    target: Target, processes: int, count: int, size: int = 0, part_size: int | None = None
) -> list[tuple[int, int, int]]:
    ctx = mp.get_context(START_METHOD)
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_saver,
            args=(target.url, target.storage_options, me, count, size, part_size, barrier, results),
        )
        for me in range(processes)
    ]
    for p in procs:
        p.start()
    saved = []
    try:
        for _ in range(processes * count):
            me, i, version = results.get(timeout=240)
            assert me != "error", f"saver {i} failed: {version}"
            saved.append((me, i, version))
    except queue.Empty:  # pragma: no cover - a hung saver
        pytest.fail("saver processes did not report in time")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():  # pragma: no cover
                p.kill()
    return saved


def _check_saved(target: Target, saved: list[tuple[int, int, int]], size: int) -> None:
    versions = sorted(v for _, _, v in saved)
    assert versions == list(range(len(saved))), "a version was lost or handed out twice"

    async def main() -> None:
        async with target.open_async(cache=None) as astore:
            assert await astore.artifacts.versions("shared") == versions
            gate = asyncio.Semaphore(16)

            async def check(me: int, i: int, version: int) -> None:
                async with gate:
                    a = await astore.artifacts.load("shared", version)
                assert a is not None, version
                assert a.data == _content(me, i, size), f"version {version} holds another save"
                assert a.metadata == {"saver": me, "i": i}

            await asyncio.gather(*(check(*s) for s in saved))
            latest = await astore.artifacts.load("shared")
            assert latest is not None and latest.version == len(saved) - 1

    asyncio.run(main())


@pytest.mark.slow
@pytest.mark.parametrize("backend", RACES)
def test_concurrent_savers_each_get_their_own_version(
    make_target: Callable[[str], Target], backend: str
) -> None:
    target = make_target(backend)
    saved = _run_savers(target, processes=8, count=20)
    assert len(saved) == 160
    for me in range(8):  # each saver's own versions increase
        mine = [v for m, _, v in sorted(saved) if m == me]
        assert mine == sorted(mine)
    _check_saved(target, saved, 0)


@pytest.mark.slow
@pytest.mark.parametrize("backend", RACES)
def test_concurrent_multipart_savers(make_target: Callable[[str], Target], backend: str) -> None:
    target = make_target(backend)
    part = 16 * KiB
    size = 3 * part + 100
    saved = _run_savers(target, processes=4, count=4, size=size, part_size=part)
    _check_saved(target, saved, size)
    with target.open() as store:  # each save uploaded its parts once: no re-upload on conflict
        assert len(part_paths(store, "shared")) == 16 * 4


def test_losing_a_claim_does_not_reupload_parts(make_target: Any, small_parts: int) -> None:
    target = make_target("memory")
    data = pattern(3 * small_parts + 1, seed=15)
    with target.open(cache=None) as a, target.open(cache=None) as b:
        assert a.artifacts.save("n", b"first") == 0  # a now believes 0 is the latest
        assert b.artifacts.save("n", b"other") == 1
        assert b.artifacts.save("n", b"other") == 2
        version, spent = spend(a, lambda: a.artifacts.save("n", data))
        assert version == 3
        writes = spent.get("requests.put", 0) + spent.get("requests.put_if_absent", 0)
        assert writes <= 4 + 3, spent  # 4 parts once, then claims of 1, 2 (lost) and 3
        assert len(part_paths(a, "n")) == 4
        assert a.artifacts.load("n").data == data
        assert b.artifacts.load("n", 3).data == data


@pytest.mark.parametrize("backend", FAST_AND_S3)
def test_a_client_never_reads_older_than_its_own_save(
    make_target: Callable[[str], Target], backend: str
) -> None:
    """Two clients with caches of their own (as two processes): a's cached pointer goes
    stale while b saves, yet a never reads a version older than the one it saved."""
    target = make_target(backend)
    with target.open(cache=long_lived("local")) as a, target.open(cache=long_lived("local")) as b:
        assert a.artifacts.save("n", "a0") == 0
        assert a.artifacts.load("n").text == "a0"  # a caches a pointer to 0
        for i in range(1, 4):
            assert b.artifacts.save("n", f"b{i}") == i
        assert a.artifacts.save("n", "a4") == 4
        latest = a.artifacts.load("n")
        assert (latest.version, latest.text) == (4, "a4")
        assert b.artifacts.load("n").version >= 3
        assert b.artifacts.save("n", "b5") == 5
        assert b.artifacts.load("n").text == "b5"


def test_shared_redis_cache(make_target: Any, redis_server: Any) -> None:
    """Versions are cached in Redis for every client; a delete is seen by the others."""
    target = make_target("local")
    with target.open(cache=redis_server.url) as a, target.open(cache=redis_server.url) as b:
        a.artifacts.save("n", b"zero")
        a.artifacts.save("n", b"one")
        assert a.artifacts.load("n", 0).data == b"zero"
        b.exists("warm-up")  # b's first use of the shared cache reads the store's id
        loaded, spent = spend(b, lambda: b.artifacts.load("n", 0))
        assert loaded.data == b"zero"
        assert spent == {}, "a version another client loaded is in the shared cache"
        assert b.artifacts.delete("n", 0) == 1
        assert a.artifacts.load("n", 0) is None
        assert a.artifacts.versions("n") == [1]


def test_damaged_cache_entry_is_not_an_error(make_target: Any, redis_server: Any) -> None:
    """The object store holds a good version; a damaged copy of it in Redis is a cache
    miss (as for values), not a CorruptDataError about an object that is fine."""
    target = make_target("local")
    with target.open(cache=redis_server.url) as store:
        store.artifacts.save("n", text_like(3000))
        assert store.artifacts.load("n", 0).data == text_like(3000)  # now cached
        key = f"{{{store.aio._ctx.cache_prefix}{manifest_path(store, 'n', 0)}}}:d"
        client = redis_server.client()
        try:
            cached = client.get(key)
            assert cached is not None, "the manifest was not cached where expected"
            damaged = bytearray(cached)
            damaged[-6] ^= 0x10
            client.set(key, bytes(damaged), keepttl=True)
        finally:
            client.close()
        assert store.artifacts.load("n", 0).data == text_like(3000)
        assert store.artifacts.load("n").data == text_like(3000)


def test_threads_saving_through_one_blocking_store(make_target: Any) -> None:
    with make_target("local").open() as store:
        saved: list[tuple[int, int, int]] = []
        errors: list[BaseException] = []

        def saver(me: int) -> None:
            try:
                for i in range(10):
                    saved.append((me, i, store.artifacts.save("n", f"{me}:{i}")))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=saver, args=(me,)) for me in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sorted(v for _, _, v in saved) == list(range(80))
        for me, i, v in saved:
            assert store.artifacts.load("n", v).text == f"{me}:{i}"


# -- 4. request counts ------------------------------------------------------------------------


# The cache's part in the counts does not depend on the backend: S3 runs without it.
COST_CASES = [
    pytest.param(backend, cache, id=f"{backend}-cache={cache}")
    for backend, cache in [
        ("memory", None),
        ("memory", "local"),
        ("local", None),
        ("local", "local"),
        ("s3", None),
    ]
]


@pytest.mark.parametrize(("backend", "cache"), COST_CASES)
def test_save_costs(make_target: Callable[[str], Target], backend: str, cache: str | None) -> None:
    target = make_target(backend)
    with target.open(cache=cache) as store:
        version, first = spend(store, lambda: store.artifacts.save("n", b"first"))
        assert version == 0
        assert first == {"requests.list": 1, "requests.put_if_absent": 1}
        for i in range(1, 6):
            version, spent = spend(store, lambda: store.artifacts.save("n", b"again"))
            assert version == i
            assert spent == {"requests.put_if_absent": 1}, spent


@pytest.mark.parametrize(("backend", "cache"), COST_CASES)
def test_load_costs(make_target: Callable[[str], Target], backend: str, cache: str | None) -> None:
    target = make_target(backend)
    with target.open(cache=None) as writer:
        for i in range(4):
            writer.artifacts.save("n", f"v{i}")
        writer.artifacts.delete("n", 3)  # a tombstone in the listing
    with target.open(cache=long_lived(cache)) as store:
        latest, spent = spend(store, lambda: store.artifacts.load("n"))
        assert latest.text == "v2"
        assert spent == {"requests.list": 1, "requests.get": 1}
        one, spent = spend(store, lambda: store.artifacts.load("n", 1))
        assert one.text == "v1"
        assert spent == {"requests.get": 1}
        again, spent = spend(store, lambda: store.artifacts.load("n", 1))
        assert again == one
        assert spent == ({} if cache else {"requests.get": 1})
        missing, spent = spend(store, lambda: store.artifacts.load("n", 3))
        assert missing is None
        assert spent.get("requests.list", 0) == 0 and spent.get("requests.get", 0) <= 1
        versions, spent = spend(store, lambda: store.artifacts.versions("n"))
        assert versions == [0, 1, 2]
        assert spent == {"requests.list": 1}


@pytest.mark.parametrize("backend", FAST)
def test_latest_from_a_cached_pointer(make_target: Callable[[str], Target], backend: str) -> None:
    """With a cache, the latest version is found without a LIST once a pointer is cached;
    the pointer never hides a newer version this process saved."""
    with make_target(backend).open(cache=long_lived("local")) as store:
        store.artifacts.save("n", "v0")
        store.artifacts.save("n", "v1")
        latest, spent = spend(store, lambda: store.artifacts.load("n"))
        assert latest.text == "v1"
        assert spent.get("requests.list", 0) <= 1
        assert spent.get("requests.get", 0) <= 1
        for _ in range(3):
            latest, spent = spend(store, lambda: store.artifacts.load("n"))
            assert latest.text == "v1"
            assert spent == {}
        _, spent = spend(store, lambda: store.artifacts.save("n", "v2"))
        assert spent == {"requests.put_if_absent": 1}
        latest, spent = spend(store, lambda: store.artifacts.load("n"))
        assert latest.text == "v2"
        assert spent.get("requests.list", 0) <= 1
        assert spent.get("requests.get", 0) <= 1
        latest, spent = spend(store, lambda: store.artifacts.load("n"))
        assert (latest.text, spent) == ("v2", {})
        assert store.artifacts.delete("n", 2) == 1
        assert store.artifacts.load("n").text == "v1"


def test_multipart_costs(make_target: Any, small_parts: int) -> None:
    target = make_target("memory")
    data = pattern(3 * small_parts + 10, seed=16)  # 4 parts
    with target.open(cache=None) as store:
        store.artifacts.save("n", b"small")
        version, spent = spend(store, lambda: store.artifacts.save("n", data))
        assert version == 1
        assert spent.get("requests.list", 0) == 0
        assert spent.get("requests.get", 0) == 0
        writes = spent.get("requests.put", 0) + spent.get("requests.put_if_absent", 0)
        assert writes == 4 + 1, spent
    with target.open(cache=None) as store:
        loaded, spent = spend(store, lambda: store.artifacts.load("n", 1))
        assert loaded.data == data
        assert spent == {"requests.get": 1 + 4}
        read, spent = spend(store, lambda: store.artifacts.open("n", 1).read())
        assert read == data
        assert spent == {"requests.get": 1 + 4}


# -- 5. corruption ----------------------------------------------------------------------------


def _assert_corrupt(call: Callable[[], Any], path: str) -> CorruptDataError:
    with pytest.raises(CorruptDataError) as info:
        call()
    assert path in str(info.value), str(info.value)
    assert info.value.path is not None and info.value.path.endswith(path)
    return info.value


def _open_and_read(store: kvstore.KVStore, name: str, version: int | None = None) -> bytes:
    f = store.artifacts.open(name, version)
    assert f is not None
    with f:
        return f.read()


@pytest.mark.parametrize("backend", FAST)
def test_flipped_byte_in_an_inline_version(
    make_target: Callable[[str], Target], backend: str
) -> None:
    target = make_target(backend)
    with target.open(cache=None) as store:
        store.artifacts.save("doc", text_like(5000), metadata={"k": "v"})
        store.artifacts.save("doc", b"tiny")
        store.artifacts.save("fine", b"fine")
        for version in (0, 1):
            path = manifest_path(store, "doc", version)
            flip(store, path)
            error = _assert_corrupt(lambda v=version: store.artifacts.load("doc", v), path)
            assert "doc" in str(error)
            _assert_corrupt(lambda v=version: _open_and_read(store, "doc", v), path)
        _assert_corrupt(lambda: store.artifacts.load("doc"), manifest_path(store, "doc", 1))
        # the store keeps working
        assert store.artifacts.load("fine").data == b"fine"
        assert store.artifacts.versions("doc") == [0, 1]
        assert "doc" in store.artifacts.list()
        assert store.artifacts.save("doc", b"repaired") == 2
        assert store.artifacts.load("doc").data == b"repaired"
        # deleting a damaged version is the repair
        assert store.artifacts.delete("doc", 0) == 1
        assert store.artifacts.versions("doc") == [1, 2]
        assert store.artifacts.delete("doc") == 2
        assert store.artifacts.versions("doc") == []
        assert store.artifacts.list() == ["fine"]


def test_flipped_header_byte(make_target: Any) -> None:
    with make_target("local").open(cache=None) as store:
        store.artifacts.save("doc", b"data")
        path = manifest_path(store, "doc", 0)
        flip(store, path, offset=9)
        _assert_corrupt(lambda: store.artifacts.load("doc", 0), path)
        _assert_corrupt(lambda: store.artifacts.load("doc"), path)


def test_corrupt_version_is_not_cached(make_target: Any) -> None:
    target = make_target("local")
    with target.open(cache=None) as writer:
        writer.artifacts.save("doc", b"data")
        flip(writer, manifest_path(writer, "doc", 0))
    with target.open(cache="local") as store:
        for _ in range(2):
            with request_delta(store) as spent, pytest.raises(CorruptDataError):
                store.artifacts.load("doc", 0)
            assert spent == {"requests.get": 1}


@pytest.mark.parametrize("backend", FAST_AND_S3)
def test_flipped_byte_in_a_part(
    make_target: Callable[[str], Target], backend: str, small_parts: int
) -> None:
    target = make_target(backend)
    data = pattern(4 * small_parts, seed=17)
    with target.open(cache=None) as store:
        store.artifacts.save("big", data)
        store.artifacts.save("other", data)
        parts = part_paths(store, "big")
        assert len(parts) == 4
        flip(store, parts[2])
        _assert_corrupt(lambda: store.artifacts.load("big"), parts[2])
        _assert_corrupt(lambda: _open_and_read(store, "big"), parts[2])
        # the good parts before it still read; the damaged one never returns garbage
        with store.artifacts.open("big") as f:
            assert read_exactly(f, 2 * small_parts) == data[: 2 * small_parts]
            _assert_corrupt(lambda: read_exactly(f, 10), parts[2])
        flip(store, part_paths(store, "other")[0], offset=9)  # a part's header
        _assert_corrupt(lambda: store.artifacts.load("other"), part_paths(store, "other")[0])
        assert store.artifacts.save("fine", b"fine") == 0
        assert store.artifacts.load("fine").data == b"fine"
        assert store.artifacts.delete("big") == 1
        assert store.artifacts.load("big") is None


@pytest.mark.parametrize("backend", FAST)
def test_missing_part(make_target: Callable[[str], Target], backend: str, small_parts: int) -> None:
    data = pattern(3 * small_parts + 1, seed=18)
    with make_target(backend).open(cache=None) as store:
        store.artifacts.save("big", data)
        parts = part_paths(store, "big")
        remove_object(store, parts[1])
        _assert_corrupt(lambda: store.artifacts.load("big"), parts[1])
        _assert_corrupt(lambda: _open_and_read(store, "big"), parts[1])
        assert store.artifacts.versions("big") == [0]
        assert store.artifacts.save("big", b"small") == 1
        assert store.artifacts.load("big").data == b"small"


@pytest.mark.parametrize("backend", FAST)
def test_valid_objects_with_the_wrong_content_fail_the_sha256(
    make_target: Callable[[str], Target], backend: str, small_parts: int
) -> None:
    """Objects that pass their CRC but hold other data (parts swapped, an inline payload
    rewritten as a valid envelope): only the sha256 of the whole can tell, and it does."""
    data = pattern(4 * small_parts, seed=19)
    with make_target(backend).open(cache=None) as store:
        store.artifacts.save("big", data)
        p0, p1 = part_paths(store, "big")[:2]
        first, second = read_object(store, p0), read_object(store, p1)
        write_object(store, p0, second)
        write_object(store, p1, first)
        with pytest.raises(CorruptDataError):
            store.artifacts.load("big")
        with pytest.raises(CorruptDataError):
            _open_and_read(store, "big")

        store.artifacts.save("small", b"the real data")
        path = manifest_path(store, "small", 0)
        envelope = codec.decode(read_object(store, path))
        assert envelope.payload == b"the real data"  # the layout: inline data is the payload
        write_object(store, path, codec.encode(b"the fake data", meta=envelope.meta))
        _assert_corrupt(lambda: store.artifacts.load("small"), path)
        _assert_corrupt(lambda: _open_and_read(store, "small"), path)


# -- 6. bad arguments, a failing object store -------------------------------------------------

BAD_NAMES = ["", None, 5, 1.5, object(), b"\xff", "\ud800", "k" * 1025, ("a",)]
BAD_VERSIONS = [-1, -(2**63), True, False, "1", 1.5, b"1", [0]]


@pytest.fixture(params=FAST)
def small_store(
    request: pytest.FixtureRequest, make_target: Callable[[str], Target]
) -> Iterator[kvstore.KVStore]:
    with make_target(request.param).open(cache="local") as store:
        store.artifacts.save("keep", b"kept", metadata={"k": 1})
        yield store


def _unchanged(store: kvstore.KVStore) -> None:
    assert store.artifacts.list() == ["keep"]
    assert store.artifacts.versions("keep") == [0]
    assert store.artifacts.load("keep").data == b"kept"
    assert part_paths(store, "keep") == []
    assert sorted(objects(store, "art/")) == [manifest_path(store, "keep", 0)]
    assert objects(store, "artpart/") == {}


def test_bad_names(small_store: kvstore.KVStore) -> None:
    arts = small_store.artifacts
    for bad in BAD_NAMES:
        for call in (
            lambda b=bad: arts.save(b, b"x"),
            lambda b=bad: arts.load(b),
            lambda b=bad: arts.load(b, 0),
            lambda b=bad: arts.versions(b),
            lambda b=bad: arts.delete(b),
            lambda b=bad: arts.delete(b, 0),
            lambda b=bad: arts.open(b),
        ):
            with pytest.raises(InvalidKeyError) as info:
                call()
            assert isinstance(info.value, ValueError)
    for bad in (None, 5, b"\xff", "k" * 1025):
        with pytest.raises(InvalidKeyError):
            arts.list(bad)  # type: ignore[arg-type]
    _unchanged(small_store)


def test_bad_versions(small_store: kvstore.KVStore) -> None:
    arts = small_store.artifacts
    for bad in BAD_VERSIONS:
        for call in (
            lambda b=bad: arts.load("keep", b),
            lambda b=bad: arts.load("keep", version=b),
            lambda b=bad: arts.open("keep", b),
            lambda b=bad: arts.delete("keep", b),
        ):
            with pytest.raises(ValueError):
                call()
    _unchanged(small_store)


def test_bad_data(small_store: kvstore.KVStore) -> None:
    arts = small_store.artifacts
    for bad in [1, 0, 1.5, None, True, {"a": 1}, [b"x"], (b"x",), object(), io.StringIO("text")]:
        with pytest.raises(InvalidValueError) as info:
            arts.save("new", bad)  # type: ignore[arg-type]
        assert isinstance(info.value, TypeError)
        with pytest.raises(TypeError):
            arts.save("keep", bad)  # type: ignore[arg-type]
    assert arts.versions("new") == []
    _unchanged(small_store)


def test_bad_metadata_and_mime(small_store: kvstore.KVStore) -> None:
    arts = small_store.artifacts
    bad_metadata: list[Any] = [
        "not a dict",
        [("a", 1)],
        5,
        {1: "int key"},
        {b"k": "bytes key"},
        {None: 1},
        {"a": object()},
        {"a": {1, 2}},
        {"a": frozenset()},
        {"a": {"nested": object()}},
        {"a": [1, object()]},
        {"a": datetime.datetime.now(datetime.timezone.utc)},
        {"a": 2**64},
        {"a": -(2**63) - 1},
    ]
    for bad in bad_metadata:
        with pytest.raises(TypeError):
            arts.save("new", b"x", metadata=bad)
        with pytest.raises(TypeError):
            arts.save("keep", b"x", metadata=bad)
    for bad_mime in (5, b"text/plain", ["text/plain"]):
        with pytest.raises((TypeError, ValueError)):
            arts.save("new", b"x", mime_type=bad_mime)  # type: ignore[arg-type]
    assert arts.versions("new") == []
    _unchanged(small_store)


def _fail_once(
    store: kvstore.KVStore,
    monkeypatch: pytest.MonkeyPatch,
    primitive: str,
    error: Callable[[], BaseException],
    where: str | Callable[[str], bool] = "",
    land: bool = False,
) -> dict[str, int]:
    """Make the blob store's next ``primitive`` call on a path containing ``where`` (or for
    which ``where(path)`` holds) fail - after applying it, if ``land``."""
    blob = blob_of(store)
    original = getattr(blob, primitive)
    state = {"armed": 1, "fired": 0}
    matches = where if callable(where) else lambda path: where in path

    async def failing(path: str, *args: Any) -> Any:
        if state["armed"] and matches(path):
            state["armed"] = 0
            state["fired"] += 1
            if land:
                await original(path, *args)
            raise error()
        return await original(path, *args)

    monkeypatch.setattr(blob, primitive, failing)
    return state


def _retrying(target: Target) -> kvstore.KVStore:
    return target.open(cache=None, retry=kvstore.RetryPolicy(attempts=3, base_delay=0.001))


@pytest.mark.parametrize("backend", FAST)
def test_failed_claim_leaves_nothing_visible(
    make_target: Callable[[str], Target],
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    small_parts: int,
) -> None:
    target = make_target(backend)
    big = pattern(2 * small_parts + 1, seed=20)
    with _retrying(target) as store:
        store.artifacts.save("n", b"v0")
        for data in (b"small", big):
            state = _fail_once(store, monkeypatch, "_put_if_absent", lambda: PermissionError("no"))
            with pytest.raises(BackendError) as info:
                store.artifacts.save("n", data)
            assert state["fired"] == 1
            assert isinstance(info.value.cause, PermissionError)
            assert store.artifacts.versions("n") == [0]
            assert store.artifacts.load("n").data == b"v0"
    with target.open(cache=None) as fresh:
        assert fresh.artifacts.versions("n") == [0]
        assert fresh.artifacts.load("n").data == b"v0"
        assert fresh.artifacts.save("n", big) == 1
        assert fresh.artifacts.load("n").data == big


@pytest.mark.parametrize("backend", FAST)
def test_failed_part_upload_leaves_nothing_visible(
    make_target: Callable[[str], Target],
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    small_parts: int,
) -> None:
    big = pattern(3 * small_parts + 1, seed=21)
    with _retrying(make_target(backend)) as store:
        for primitive in ("_put", "_put_if_absent"):
            _fail_once(store, monkeypatch, primitive, lambda: PermissionError("no"), "artpart/")
        with pytest.raises(BackendError):
            store.artifacts.save("n", big)
        assert store.artifacts.versions("n") == []
        assert store.artifacts.list() == []
        assert store.artifacts.load("n") is None
        monkeypatch.undo()
        monkeypatch.setattr(artifacts_module.limits, "PART_SIZE", small_parts)
        assert store.artifacts.save("n", big) == 0
        assert store.artifacts.load("n").data == big


@pytest.mark.parametrize("land", [True, False], ids=["landed", "lost"])
@pytest.mark.parametrize("size", ["small", "multipart"])
def test_retried_claim_saves_once(
    make_target: Any, monkeypatch: pytest.MonkeyPatch, small_parts: int, land: bool, size: str
) -> None:
    """The claim's reply is lost (a connection reset) after it landed, or before: the retry
    makes exactly one version either way, never two of one save."""
    data = b"once" if size == "small" else pattern(2 * small_parts + 1, seed=22)
    with _retrying(make_target("memory")) as store:
        store.artifacts.save("n", b"v0")
        state = _fail_once(
            store,
            monkeypatch,
            "_put_if_absent",
            lambda: ConnectionResetError(104, "Connection reset by peer (injected)"),
            "art/",
            land=land,
        )
        assert store.artifacts.save("n", data) == 1
        assert state["fired"] == 1
        assert store.stats().get("retries", 0) >= 1
        assert store.artifacts.versions("n") == [0, 1]
        assert store.artifacts.load("n").data == data
        assert store.artifacts.save("n", b"next") == 2


@pytest.mark.parametrize("backend", FAST)
def test_failed_delete_leaves_no_half_deleted_version(
    make_target: Callable[[str], Target], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delete that fails part-way (its second write) must not leave a version that
    versions()/list() no longer show but load() still returns - one that no later
    delete(name) would remove."""
    with _retrying(make_target(backend)) as store:
        store.artifacts.save("n", b"v0")
        store.artifacts.save("n", b"v1")
        manifest = manifest_path(store, "n", 1)
        _fail_once(store, monkeypatch, "_put", lambda: PermissionError("no"), manifest.__eq__)
        with pytest.raises(BackendError):
            store.artifacts.delete("n", 1)
        monkeypatch.undo()
        listed = 1 in store.artifacts.versions("n")
        assert store.artifacts.delete("n") >= 1  # the caller's retry: delete everything
        assert store.artifacts.load("n", 1) is None, f"listed before the retry: {listed}"
        assert store.artifacts.versions("n") == []
        assert store.artifacts.load("n") is None
        assert store.artifacts.list() == []


class FailingStream(GeneratedFile):
    """A source that breaks (a network drive, a pipe) after ``fail_at`` bytes."""

    def __init__(self, size: int, fail_at: int) -> None:
        super().__init__(size)
        self.fail_at = fail_at

    def readinto(self, buffer: Any) -> int:
        if self.pos >= self.fail_at:
            raise OSError("source went away (injected)")
        return super().readinto(memoryview(buffer)[: self.fail_at - self.pos])


@pytest.mark.parametrize("fail_at", [10, 5 * SMALL_PART // 2])
def test_failing_source_saves_nothing(make_target: Any, small_parts: int, fail_at: int) -> None:
    with make_target("local").open() as store:
        store.artifacts.save("n", b"v0")
        with pytest.raises(OSError, match="injected"):
            store.artifacts.save("n", FailingStream(4 * small_parts, fail_at))
        assert store.artifacts.versions("n") == [0]
        assert store.artifacts.load("n").data == b"v0"
        assert store.artifacts.save("n", b"v1") == 1


def test_failing_reads_raise_backend_error(
    make_target: Any, monkeypatch: pytest.MonkeyPatch, small_parts: int
) -> None:
    with _retrying(make_target("memory")) as store:
        store.artifacts.save("n", pattern(2 * small_parts + 1, seed=23))
        _fail_once(store, monkeypatch, "_get", lambda: PermissionError("denied"))
        with pytest.raises(BackendError) as info:
            store.artifacts.load("n", 0)
        assert info.value.operation == "get"
        _fail_once(store, monkeypatch, "_get", lambda: PermissionError("denied"), "artpart/")
        with pytest.raises(BackendError):
            _open_and_read(store, "n")
        assert store.artifacts.load("n", 0).size == 2 * small_parts + 1


# -- 7. the command line ----------------------------------------------------------------------


class CLI:
    """Runs ``kvstore.cli.main`` against one store directory, capturing bytes."""

    def __init__(self, capsys: pytest.CaptureFixture[bytes], root: Path) -> None:
        self.capsys = capsys
        self.url = str(root)

    def __call__(self, *args: str) -> tuple[int, bytes, str]:
        self.capsys.readouterr()
        status = cli_main(["--url", self.url, "--cache", "none", *args])
        captured = self.capsys.readouterr()
        return status, captured.out, captured.err.decode()


@pytest.fixture
def cli(capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path) -> CLI:
    return CLI(capsysbinary, tmp_path / "store")


def test_cli_save_load_round_trip(cli: CLI, tmp_path: Path) -> None:
    payload = b"\x00\xff binary\nwith newlines\n\n"
    src = tmp_path / "in.bin"
    src.write_bytes(payload)
    assert cli("artifact", "save", "report", str(src)) == (0, b"0\n", "")
    assert cli("artifact", "save", "report", str(src)) == (0, b"1\n", "")
    status, out, err = cli("artifact", "load", "report")
    assert (status, out, err) == (0, payload, "")  # raw bytes: no newline added
    dst = tmp_path / "out.bin"
    status, out, _ = cli("artifact", "load", "report", "--version", "0", "-o", str(dst))
    assert status == 0
    assert out == b""
    assert dst.read_bytes() == payload
    with kvstore.open(cli.url, cache=None) as store:
        assert store.artifacts.load("report").data == payload


def test_cli_save_from_stdin_with_mime_and_meta(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"\x89PNG\r\n\x1a\n" + pattern(1000)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(payload)))
    meta = {"author": "Zoë", "n": [1, 2], "ok": True}
    status, out, _ = cli(
        "artifact", "save", "img", "-", "--mime", "image/png", "--meta", json.dumps(meta)
    )
    assert (status, out) == (0, b"0\n")
    with kvstore.open(cli.url, cache=None) as store:
        a = store.artifacts.load("img")
        assert (a.data, a.mime_type, a.metadata) == (payload, "image/png", meta)
    assert cli("artifact", "load", "img")[1] == payload


def test_cli_versions_ls_rm(cli: CLI, tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_bytes(b"x")
    for name in ("reports/a", "reports/a", "reports/a", "reports/b", "other"):
        assert cli("artifact", "save", name, str(src))[0] == 0
    assert cli("artifact", "versions", "reports/a")[:2] == (0, b"0\n1\n2\n")
    assert cli("artifact", "ls")[:2] == (0, b"other\nreports/a\nreports/b\n")
    assert cli("artifact", "ls", "reports/")[:2] == (0, b"reports/a\nreports/b\n")
    assert cli("artifact", "rm", "reports/a", "--version", "1")[:2] == (0, b"1\n")
    assert cli("artifact", "versions", "reports/a")[1] == b"0\n2\n"
    assert cli("artifact", "rm", "reports/a")[1] == b"2\n"
    assert cli("artifact", "ls", "reports/")[1] == b"reports/b\n"
    assert cli("artifact", "versions", "reports/a")[1] == b""


def test_cli_info(cli: CLI, tmp_path: Path) -> None:
    src = tmp_path / "chart.png"
    src.write_bytes(b"\x89PNG\r\n\x1a\n")
    cli("artifact", "save", "chart", str(src), "--meta", '{"dpi": 300}')
    status, out, _ = cli("artifact", "info", "chart")
    assert status == 0
    info = json.loads(out)
    assert info["name"] == "chart" and info["version"] == 0
    assert (info["size"], info["sha256"]) == (8, sha(b"\x89PNG\r\n\x1a\n"))
    assert (info["mime_type"], info["metadata"]) == ("image/png", {"dpi": 300})
    assert datetime.datetime.fromisoformat(info["created_at"]).utcoffset() == datetime.timedelta(0)
    assert cli("artifact", "info", "chart", "--version", "1")[:2] == (1, b"")


def test_cli_missing_and_bad_input(cli: CLI, tmp_path: Path) -> None:
    status, out, _ = cli("artifact", "load", "nobody")
    assert (status, out) == (1, b"")
    status, out, _ = cli("artifact", "load", "nobody", "-o", str(tmp_path / "never"))
    assert (status, out) == (1, b"")
    assert not (tmp_path / "never").exists()
    src = tmp_path / "f.bin"
    src.write_bytes(b"x")
    for args in (
        ("artifact", "save", "n", str(src), "--meta", "{not json"),
        ("artifact", "save", "n", str(src), "--meta", "[1, 2]"),
        ("artifact", "save", "n", str(tmp_path / "missing.bin")),
        ("artifact", "load", "n", "--version", "-1"),
        ("artifact", "save", "", str(src)),
    ):
        status, out, err = cli(*args)
        assert status == 2, args
        assert out == b""
        assert err.startswith("kvstore: error: "), err
        assert len(err.splitlines()) == 1, err
        assert "Traceback" not in err
    with kvstore.open(cli.url, cache=None) as store:
        assert store.artifacts.list() == []
