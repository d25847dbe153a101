"""Raw artifact versions (``save(..., raw=True)``) and their presigned URLs (``url``).

1. Round trips on memory, local disk, S3 (moto) and SeaweedFS: load, open (seek, read in
   verified blocks), info, versions that mix raw and normal; the object is the bytes as
   given (no envelope, no compression); delete removes it.
2. Request counts: a raw save is one PUT and one conditional PUT (+ the LIST of a first
   save); a load is the manifest's GET and the object's GET; open is one ranged GET per
   block; ``url`` makes no request (counted as ``signatures``).
3. Damage: a raw object truncated, extended, swapped for another artifact's, flipped or
   missing is CorruptDataError naming its path (load, open, a block read after a seek);
   fsck reports it, and an orphan raw object.
4. Limits and arguments: above ``limits.RAW_MAX_BYTES`` (bytes, a path, a file) is refused
   before anything is written; ``raw`` and ``expires`` are checked before any request.
5. URLs: fetched with urllib from moto and SeaweedFS (bytes, Content-Type); an expired or
   tampered URL is refused by SeaweedFS (moto enforces neither: not tested there); a
   version not saved raw, local disk, memory:// and the GCS emulator (anonymous: it cannot
   sign) raise UnsupportedOperationError saying why; GCS signs with a service account key.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST

import kvstore
import kvstore.artifacts as artifacts_module
from kvstore.errors import ConfigurationError, CorruptDataError, UnsupportedOperationError
from kvstore.portal import portal
from kvstore.testing import request_delta

Target = Any  # tests/conftest.py's Target
KiB = 1 << 10
BLOCK = 16 * KiB
RAW_BACKENDS = ["memory", "local", "s3", "seaweedfs"]


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Raw objects checked in blocks of 16 KiB (instead of 8 MiB): multi-block is cheap."""
    monkeypatch.setattr(artifacts_module.limits, "RAW_BLOCK", BLOCK)
    return BLOCK


def pattern(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def blob_of(store: kvstore.KVStore) -> Any:
    return store.aio._ctx.blob


def raw_path(store: kvstore.KVStore, name: str, version: int) -> str:
    """The path of a raw version's object, from its manifest."""
    ctx = store.aio._ctx
    directory = ctx.layout.artifact_dir(name)
    found = portal().run(blob_of(store).get(ctx.layout.version(directory, version)))
    assert found is not None
    upload = kvstore.codec.decode(found.data).meta["upload"]
    return str(ctx.layout.raw(directory, upload))


def read_object(store: kvstore.KVStore, path: str) -> bytes | None:
    found = portal().run(blob_of(store).get(path))
    return None if found is None else bytes(found.data)


def write_object(store: kvstore.KVStore, path: str, data: bytes) -> None:
    portal().run(blob_of(store).put(path, data))


def listed(store: kvstore.KVStore, prefix: str) -> list[str]:
    async def collect() -> list[str]:
        return [p async for page in blob_of(store).list_pages(prefix) for p in page]

    return portal().run(collect())


def spend(store: kvstore.KVStore, action: Callable[[], Any]) -> tuple[Any, dict[str, int]]:
    """What ``action()`` returned, and every counter it moved (requests, signatures...)."""
    with request_delta(store, "") as spent:
        result = action()
    return result, {k: n for k, n in spent.items() if k.startswith(("requests.", "signatures"))}


def fetch(url: str) -> tuple[int, str, bytes]:
    """GET a URL directly (no proxy): status, Content-Type, body."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


@pytest.fixture
def store_on(make_target: Callable[[str], Target]) -> Iterator[Callable[..., kvstore.KVStore]]:
    """Open a store (no cache unless given) on a fresh location of a backend."""
    opened: list[kvstore.KVStore] = []

    def open_on(backend: str, **kwargs: Any) -> kvstore.KVStore:
        store = make_target(backend).open(**kwargs)
        opened.append(store)
        return store

    yield open_on
    for store in opened:
        store.close()


# -- 1. round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", RAW_BACKENDS)
def test_raw_round_trips_mixed_with_normal_versions(
    store_on: Callable[..., kvstore.KVStore], backend: str, tmp_path: Path
) -> None:
    store = store_on(backend)
    art = store.artifacts
    big = pattern(3 * BLOCK + 100, seed=1)  # 4 blocks, the last short
    source = tmp_path / "chart.png"
    source.write_bytes(pattern(BLOCK, seed=2))
    assert art.save("chart.png", b"normal v0") == 0
    assert art.save("chart.png", big, raw=True, metadata={"by": "me"}) == 1
    assert art.save("chart.png", "text v2") == 2
    assert art.save("chart.png", source, raw=True) == 3
    assert art.save("chart.png", io.BytesIO(b""), raw=True) == 4  # empty
    assert art.save("chart.png", "héllo", raw=True) == 5

    expected = {
        0: b"normal v0",
        1: big,
        2: b"text v2",
        3: source.read_bytes(),
        4: b"",
        5: "héllo".encode(),
    }
    infos = art.versions_info("chart.png")
    assert [(i.version, i.raw) for i in infos] == [
        (0, False),
        (1, True),
        (2, False),
        (3, True),
        (4, True),
        (5, True),
    ]
    for info in infos:
        loaded = art.load("chart.png", info.version)
        assert loaded is not None and loaded.data == expected[info.version]
        assert loaded.raw is info.raw and art.info("chart.png", info.version) == info
        with art.open("chart.png", info.version) as f:
            assert f.read() == expected[info.version]
    one = art.load("chart.png", 1)
    assert (one.mime_type, one.metadata, one.size) == ("image/png", {"by": "me"}, len(big))
    assert art.load("chart.png", 5).mime_type == "text/plain; charset=utf-8"
    assert art.load("chart.png").text == "héllo"
    with art.open("chart.png", 1) as f:  # blocks read out of order, across their edges
        f.seek(2 * BLOCK - 10)
        assert f.read(20) == big[2 * BLOCK - 10 : 2 * BLOCK + 10]
        f.seek(-5, io.SEEK_END)
        assert f.read() == big[-5:]
        f.seek(0)
        assert f.read(BLOCK + 1) == big[: BLOCK + 1]
    # The object is the data as given: no envelope, no compression (even for text).
    assert read_object(store, raw_path(store, "chart.png", 1)) == big
    assert read_object(store, raw_path(store, "chart.png", 5)) == "héllo".encode()
    # Delete removes raw objects like parts.
    assert art.delete("chart.png") == 6
    assert listed(store, "artpart/") == []
    assert store.fsck()["ok"]


def test_compressible_text_stays_as_given_and_the_manifest_holds_no_data(
    store_on: Callable[..., kvstore.KVStore],
) -> None:
    store = store_on("memory")
    text = "the quick brown fox jumps over the lazy dog\n" * 2000
    store.artifacts.save("log.txt", text, raw=True)
    assert read_object(store, raw_path(store, "log.txt", 0)) == text.encode()
    ctx = store.aio._ctx
    manifest = read_object(store, ctx.layout.version(ctx.layout.artifact_dir("log.txt"), 0))
    assert manifest is not None
    envelope = kvstore.codec.decode(manifest)
    assert envelope.payload == b"" and envelope.meta["raw"]["size"] == len(text)
    assert len(envelope.meta["raw"]["crcs"]) == -(-len(text) // BLOCK)


# -- 2. request counts ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "local", "s3"])
def test_raw_costs(store_on: Callable[..., kvstore.KVStore], backend: str) -> None:
    data = pattern(2 * BLOCK + 1, seed=3)  # 3 blocks
    writer = store_on(backend)
    version, spent = spend(writer, lambda: writer.artifacts.save("n", data, raw=True))
    assert version == 0
    assert spent == {"requests.list": 1, "requests.put": 1, "requests.put_if_absent": 1}
    version, spent = spend(writer, lambda: writer.artifacts.save("n", data, raw=True))
    assert (version, spent) == (1, {"requests.put": 1, "requests.put_if_absent": 1})

    reader = kvstore.open(writer.aio._ctx.blob, cache=kvstore.LocalCache(ttl=60))
    try:
        loaded, spent = spend(reader, lambda: reader.artifacts.load("n", 1))
        assert loaded.data == data
        assert spent == {"requests.get": 2}  # the manifest, the object
        loaded, spent = spend(reader, lambda: reader.artifacts.load("n", 1))
        assert spent == {"requests.get": 1}  # the manifest from the cache; objects are not
        read, spent = spend(reader, lambda: reader.artifacts.open("n", 0).read())
        assert read == data
        assert spent == {"requests.get": 1 + 3}  # the manifest, one ranged GET per block
    finally:
        reader.close()


# -- 3. damage ------------------------------------------------------------------------------


def _corrupt(call: Callable[[], Any], path: str, match: str | None) -> None:
    with pytest.raises(CorruptDataError, match=match) as info:
        call()
    assert path in str(info.value) and info.value.path is not None
    assert info.value.path.endswith(path)


def _read_all(store: kvstore.KVStore, name: str) -> bytes:
    with store.artifacts.open(name) as f:
        return f.read()


@pytest.mark.parametrize("backend", [*FAST, "s3"])
def test_damaged_raw_objects_are_corrupt_data(
    store_on: Callable[..., kvstore.KVStore], backend: str
) -> None:
    store = store_on(backend)
    data = pattern(2 * BLOCK + 10, seed=4)
    for name in ("truncated", "extended", "swapped", "flipped", "missing"):
        store.artifacts.save(name, data, raw=True)
    store.artifacts.save("other", pattern(len(data), seed=5), raw=True)  # same size
    paths = {name: raw_path(store, name, 0) for name in ("truncated", "extended", "swapped")}
    paths |= {name: raw_path(store, name, 0) for name in ("flipped", "missing", "other")}
    write_object(store, paths["truncated"], data[:-1])
    write_object(store, paths["extended"], data + b"!")
    write_object(store, paths["swapped"], read_object(store, paths["other"]) or b"")
    flipped = bytearray(data)
    flipped[BLOCK + 5] ^= 0x01  # in the second block
    write_object(store, paths["flipped"], bytes(flipped))
    portal().run(blob_of(store).delete(paths["missing"]))

    for name, match in [
        ("truncated", "bytes, its manifest says"),
        ("extended", "bytes, its manifest says"),
        ("swapped", "CRC-32"),
        ("flipped", "CRC-32"),
        ("missing", "missing"),
    ]:
        _corrupt(lambda name=name: store.artifacts.load(name), paths[name], match)
        _corrupt(lambda name=name: _read_all(store, name), paths[name], None)
    # A block is checked as it arrives: the first block of the flipped one reads, the
    # second does not; a seek to the end of the truncated or extended one finds it too.
    with store.artifacts.open("flipped") as f:
        assert f.read(BLOCK) == data[:BLOCK]
        _corrupt(lambda: f.read(10), paths["flipped"], "block 1 does not match")
    for name in ("truncated", "extended"):
        with store.artifacts.open(name) as f:
            f.seek(2 * BLOCK)
            _corrupt(lambda f=f: f.read(), paths[name], "than its manifest says")

    report = store.fsck()
    found = sorted((d["kind"], d["path"]) for d in report["damage"])
    assert found == sorted(
        [("mismatch", paths[n]) for n in ("truncated", "extended", "swapped", "flipped")]
        + [("missing", paths["missing"])]
    )
    assert store.artifacts.load("other").data == pattern(len(data), seed=5)


def test_fsck_reports_an_orphan_raw_object(store_on: Callable[..., kvstore.KVStore]) -> None:
    store = store_on("memory")
    store.artifacts.save("kept", b"data", raw=True)
    layout = store.aio._ctx.layout
    orphan = layout.raw(layout.artifact_dir("kept"), "e" * 24)  # a save that crashed
    write_object(store, orphan, b"left behind")
    report = store.fsck()
    assert report["objects"] == 2  # the manifest and its raw object (an orphan is not read)
    assert [(d["kind"], d["path"]) for d in report["damage"]] == [("orphan", orphan)]
    assert report["ok"]  # orphans are reported, not damage to repair


def test_a_failed_raw_claim_leaves_nothing_behind(
    store_on: Callable[..., kvstore.KVStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_on("memory")
    store.artifacts.save("n", b"v0", raw=True)
    blob = blob_of(store)
    original = blob._put_if_absent

    async def refused(path: str, data: bytes) -> str | None:
        raise PermissionError("no")

    monkeypatch.setattr(blob, "_put_if_absent", refused)
    with pytest.raises(kvstore.BackendError):
        store.artifacts.save("n", b"v1", raw=True)
    monkeypatch.setattr(blob, "_put_if_absent", original)
    deadline = time.monotonic() + 5
    while len(listed(store, "artpart/")) > 1 and time.monotonic() < deadline:
        time.sleep(0.01)  # the object is discarded in the background
    assert listed(store, "artpart/") == [raw_path(store, "n", 0)]
    assert store.artifacts.versions("n") == [0] and store.artifacts.load("n").data == b"v0"


# -- 4. limits and arguments ----------------------------------------------------------------


def test_raw_above_the_limit_is_refused_before_any_write(
    store_on: Callable[..., kvstore.KVStore], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(artifacts_module.limits, "RAW_MAX_BYTES", 1000)
    store = store_on("local")
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(1001))
    for data in (bytes(1001), "x" * 1001, big, io.BytesIO(bytes(1001))):
        with (
            request_delta(store) as spent,
            pytest.raises(ConfigurationError, match="RAW_MAX_BYTES") as info,
        ):
            store.artifacts.save("n", data, raw=True)
        assert "without raw=True" in str(info.value)
        assert spent == {}
    assert listed(store, "") == []
    exact = tmp_path / "exact.bin"
    exact.write_bytes(bytes(1000))
    assert store.artifacts.save("n", exact, raw=True) == 0
    assert store.artifacts.save("n", bytes(1001)) == 1  # not raw: no limit
    with pytest.raises(ConfigurationError, match="raw must be True or False"):
        store.artifacts.save("n", b"x", raw=1)  # type: ignore[arg-type]


# -- 5. URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["s3", "seaweedfs"])
def test_url_serves_the_raw_bytes(store_on: Callable[..., kvstore.KVStore], backend: str) -> None:
    store = store_on(backend)
    image = pattern(3 * BLOCK, seed=6)
    store.artifacts.save("plot.png", image, raw=True)
    store.artifacts.save("notes.md", "# notes\n", mime_type="text/markdown", raw=True)
    url, spent = spend(store, lambda: store.artifacts.url("plot.png", 0, expires=60))
    assert spent == {"requests.get": 1, "signatures": 1}  # the manifest; signing is local
    assert fetch(url) == (200, "image/png", image)
    latest = store.artifacts.url("notes.md", expires=datetime.timedelta(minutes=5))
    assert fetch(latest) == (200, "text/markdown", b"# notes\n")
    assert store.artifacts.url("plot.png", 7) is None
    assert store.artifacts.url("never saved") is None

    store.artifacts.save("plot.png", image)  # version 1, not raw
    with pytest.raises(UnsupportedOperationError, match=r"save it with raw=True"):
        store.artifacts.url("plot.png")
    for bad in (0, -1, True, "60", float("nan"), datetime.timedelta(days=7, seconds=1)):
        with pytest.raises(ConfigurationError, match="expires"):
            store.artifacts.url("plot.png", 0, expires=bad)
    assert store.artifacts.delete("plot.png", 0) == 1
    status, _, body = fetch(url)  # its object went with the version
    assert status in (403, 404) and body != image  # (moto: 403, SeaweedFS: 404)
    assert store.artifacts.url("plot.png", 0) is None


def test_seaweedfs_refuses_an_expired_or_tampered_url(
    store_on: Callable[..., kvstore.KVStore],
) -> None:
    """SeaweedFS checks a URL's signature and expiry; moto checks neither (so they are
    only tested here)."""
    store = store_on("seaweedfs")
    store.artifacts.save("a.bin", b"secret", raw=True)
    url = store.artifacts.url("a.bin", expires=1)
    assert fetch(url)[0] == 200
    tampered = url.replace("X-Amz-Expires=1", "X-Amz-Expires=9")
    status, _, body = fetch(tampered)
    assert status == 403 and b"SignatureDoesNotMatch" in body
    time.sleep(2.2)
    status, _, body = fetch(url)
    assert status == 403 and b"expired" in body


@pytest.mark.parametrize("backend", FAST)
def test_url_needs_a_server(store_on: Callable[..., kvstore.KVStore], backend: str) -> None:
    store = store_on(backend)
    store.artifacts.save("a.bin", b"x", raw=True)
    with (
        request_delta(store) as spent,
        pytest.raises(UnsupportedOperationError, match="no server to serve a URL") as info,
    ):
        store.artifacts.url("a.bin")
    assert "s3:// or gs://" in str(info.value)
    assert spent == {}  # refused before any request
    with pytest.raises(ConfigurationError, match="version"):
        store.artifacts.url("a.bin", -1)  # the arguments first


def test_url_on_gcs_needs_a_key_that_can_sign(store_on: Callable[..., kvstore.KVStore]) -> None:
    store = store_on("gcs")
    store.artifacts.save("a.bin", b"x", raw=True)
    assert store.artifacts.load("a.bin").data == b"x"
    with pytest.raises(UnsupportedOperationError, match="no private key") as info:
        store.artifacts.url("a.bin")
    assert "anonymous" in str(info.value) and "service account" in str(info.value)


def test_gcs_signs_with_a_service_account_key() -> None:
    """With a service account's key, GCS URLs are V4-signed locally (no request is made:
    the key is made up, so a request could not be authorised)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from kvstore.blob import open_blob_store
    from kvstore.stats import Stats

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "1",
        "private_key": pem,
        "client_email": "signer@p.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    stats = Stats()
    blob = open_blob_store("gs://bucket/root", {"token": account, "project": "p"}, stats=stats)

    async def sign() -> str:
        try:
            return await blob.sign_url("art/x~/raw", 90, content_type="image/png")
        finally:
            await blob.close()

    url = asyncio.run(sign())
    assert url.startswith("https://storage.googleapis.com/bucket/root/art/x~/raw?")
    for part in ("X-Goog-Algorithm=GOOG4-RSA-SHA256", "X-Goog-Expires=90", "X-Goog-Signature="):
        assert part in url
    assert "response-content-type=image%2Fpng" in url and "signer%40p.iam" in url
    assert stats.get("signatures") == 1 and stats.snapshot()["requests"] == 0
