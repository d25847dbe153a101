"""Encryption at rest (kvstore.crypto): with a key ring, no object in the store and no entry
in the Redis cache holds plaintext (the bytes scanned, against the same workload without a
ring, which does show it); rotation to a new key keeps everything readable and ``rekey``
seals every object under it, also with a writer at work; a flipped bit, an object copied
over another's name, a missing or wrong key are clear errors; a damaged cache entry is a
miss; key rings from a mapping, the environment, a file and a callback; the command line and
the service's client."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Target
from http_server import serving

import kvstore
from kvstore.blob import BlobStore
from kvstore.cli import main as cli_main
from kvstore.crypto import EncryptionKeyError, KeyRing, encode_key
from kvstore.crypto.sealing import key_id_of
from kvstore.kinds import Evals, Workflows
from kvstore.layout import Layout
from kvstore.testing import run_in_processes

# Fixed (not generate_key()): the racing processes import this module again and must hold
# the same keys.
K1, K2 = hashlib.sha256(b"test key 1").digest(), hashlib.sha256(b"test key 2").digest()
RING1 = KeyRing({"k1": K1})
RING12 = KeyRing({"k1": K1, "k2": K2}, primary="k2")
T0 = 1_767_225_600


def _workload(store: kvstore.KVStore, marker: str) -> None:
    """Every kind of object, each holding ``marker`` (short: below the compression threshold,
    so without encryption it shows in the bytes)."""
    store.set("value", f"v {marker}")
    store.set("expiring", f"e {marker}", ex=3600)
    store.append("log", f"r1 {marker}", f"r2 {marker}")
    store.artifacts.save("doc", f"a {marker}".encode(), metadata={"note": marker})
    store.artifacts.save("big", os.urandom(9 * 1024 * 1024) + marker.encode())  # parts
    store.sessions.create("app", "user", "s1", state={"k": marker, "user:u": marker})
    store.sessions.append_event("app", "user", "s1", {"author": "user", "text": marker})
    store.records("rec").append({"m": marker}, labels={"l": marker})
    r = kvstore.Redis(store=store)
    r.hset("hash", "f", marker)
    r.rpush("list", marker)
    Workflows(store).suspend("wf", {"m": marker}, reason=marker)
    Evals(store).save_dataset("ds", [marker])
    store.set_retention("values", "x", max_age=60)
    store.namespace("tenant").set("k", marker)
    # read everything back, so the cache holds all of it
    assert store.get("value") == f"v {marker}".encode()
    assert store.range("log") == [f"r1 {marker}".encode(), f"r2 {marker}".encode()]
    assert store.artifacts.load("doc").data == f"a {marker}".encode()  # type: ignore[union-attr]
    assert store.sessions.get("app", "user", "s1").state["k"] == marker  # type: ignore[union-attr]
    assert r.hget("hash", "f") == marker.encode() and r.lrange("list", 0, -1) == [marker.encode()]


async def _objects(blob: BlobStore) -> dict[str, bytes]:
    paths = [p async for page in blob.list_pages("") for p in page]
    found = await blob.get_many(paths)
    return {p: b.data for p, b in zip(paths, found, strict=True) if b is not None}


def _redis_values(server: Any) -> list[bytes]:
    client = server.client()
    try:
        return [
            v
            for key in client.scan_iter(count=1000)
            if client.type(key) == b"string" and (v := client.get(key)) is not None
        ]
    finally:
        client.close()


@pytest.mark.parametrize("backend", ["memory", "local", "seaweedfs"])
def test_no_object_and_no_redis_entry_holds_plaintext(
    backend: str, make_target: Callable[[str], Target], redis_server: Any
) -> None:
    plain_marker, sealed_marker = f"PLAIN-{uuid.uuid4().hex}", f"SEALED-{uuid.uuid4().hex}"
    control, sealed = make_target(backend), make_target(backend)
    with control.open(cache=redis_server.url) as store:
        _workload(store, plain_marker)
    with sealed.open(cache=redis_server.url, encryption=RING1) as store:
        _workload(store, sealed_marker)
        assert store.stats()["cache"]["encrypted"] is True
    shown = asyncio.run(_objects(control.blob_store()))
    hidden = asyncio.run(_objects(sealed.blob_store()))
    # the control shows what a scan finds without a ring; with one, nothing
    assert sum(plain_marker.encode() in data for data in shown.values()) >= 10
    assert [p for p, data in hidden.items() if sealed_marker.encode() in data] == []
    assert all(key_id_of(data) == "k1" for data in hidden.values()), "an object not sealed"
    # names stay plain: the same layout, object for object (upload ids are random)
    assert Counter(Layout().kind_of(p) for p in hidden) == Counter(
        Layout().kind_of(p) for p in shown
    )
    entries = _redis_values(redis_server)
    assert any(plain_marker.encode() in v for v in entries)  # the control's cache
    assert not any(sealed_marker.encode() in v for v in entries)


def test_rotation_keeps_everything_readable_and_rekey_seals_under_the_new_key(
    tmp_path: Path,
) -> None:
    url = str(tmp_path / "s")
    with kvstore.open(url, encryption=RING1) as store:
        _workload(store, "first")
    with kvstore.open(url, encryption=RING12, cache=None) as store:  # k2 now primary
        store.set("later", "under k2")
        assert store.get("value") == b"v first" and store.get("later") == b"under k2"
        seen: list[tuple[str, int, int]] = []
        first = store.rekey(progress=lambda *a: seen.append(a))
        assert first["rewritten"] == first["objects"] - first["current"] > 10
        assert first["current"] >= 1 and first["changed"] == first["plaintext"] == 0
        assert seen[0] == ("objects", 0, first["objects"]) and seen[-1][1] == first["objects"]
        again = store.rekey()
        assert again["rewritten"] == 0 and again["current"] == again["objects"]
    with kvstore.open(url, encryption=KeyRing({"k2": K2}), cache=None) as store:  # k1 retired
        assert store.get("value") == b"v first"
        assert store.artifacts.load("big") is not None and store.fsck()["ok"]
        assert store.sessions.get("app", "user", "s1") is not None
    retired = kvstore.open(url, encryption=RING1, cache=None)
    with retired, pytest.raises(EncryptionKeyError, match="no key 'k2'"):
        retired.get("value")


def write_under_k2(url: str, options: dict[str, Any], me: int, *, barrier: Any) -> list[str]:
    with kvstore.open(url, storage_options=options or None, encryption=RING12, cache=None) as s:
        barrier.wait(timeout=60)
        keys = [f"w{me}-{i}" for i in range(40)]
        for key in keys:
            s.set(key, f"written {key}")
            s.set("shared", f"written {key}")
        return keys


def rekey_once(url: str, options: dict[str, Any], me: int, *, barrier: Any) -> dict[str, int]:
    with kvstore.open(url, storage_options=options or None, encryption=RING12, cache=None) as s:
        barrier.wait(timeout=60)
        return s.rekey()


def run_role(role: str, url: str, options: dict[str, Any], me: int, *, barrier: Any) -> Any:
    return (write_under_k2 if role == "write" else rekey_once)(url, options, me, barrier=barrier)


@pytest.mark.parametrize("backend", ["local", "seaweedfs"])
def test_rekey_racing_a_writer_loses_no_write(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    """A writer process and a rekeying process at once, on local disk and a real S3
    server (compare-and-swap enforced by the server): no write is overwritten."""
    target = make_target(backend)
    options = target.storage_options
    with target.open(encryption=RING1) as store:
        store.mset({f"old-{i}": f"old {i}" for i in range(200)})
        store.set("shared", "old")
    results = run_in_processes(
        run_role,
        [("write", target.url, options, 0), ("rekey", target.url, options, 1)],
        barrier=True,
        timeout=180,
    )
    written = results[0]
    with target.open(encryption=RING12) as store:
        assert all(store.get(k) == f"written {k}".encode() for k in written)
        assert store.get("shared") == f"written {written[-1]}".encode()  # never rolled back
        assert all(store.get(f"old-{i}") == f"old {i}".encode() for i in range(200))
        store.rekey()
    with target.open(encryption=KeyRing({"k2": K2})) as store:
        assert len(store.keys()) == 200 + 1 + len(written)
        assert store.rekey()["current"] == store.rekey()["objects"]  # all under k2 now


def test_a_flipped_bit_or_a_copied_object_is_corrupt_data(tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    with kvstore.open(url, encryption=RING1, cache=None) as store:
        store.set("a", "alpha")
        store.set("b", "beta")
    files = {p.name: p for p in (tmp_path / "s" / "kv").iterdir()}
    raw = bytearray(files["a~"].read_bytes())
    raw[-5] ^= 0x04
    files["a~"].write_bytes(bytes(raw))
    with kvstore.open(url, encryption=RING1, cache=None) as store:
        with pytest.raises(kvstore.CorruptDataError, match=r"fails authentication.*kv/a~"):
            store.get("a")
        files["a~"].write_bytes(files["b~"].read_bytes())  # b's sealed bytes under a's name
        with pytest.raises(kvstore.CorruptDataError, match="not this object's"):
            store.get("a")
        assert store.get("b") == b"beta"
    no_ring = kvstore.open(url, cache=None)  # told why it cannot read
    with no_ring, pytest.raises(kvstore.CorruptDataError, match="encrypted store"):
        no_ring.get("b")
    wrong = kvstore.open(url, encryption=KeyRing({"k9": K2}), cache=None)
    with wrong, pytest.raises(EncryptionKeyError, match="no key 'k1'"):
        wrong.get("b")


def test_a_damaged_redis_entry_is_a_miss(
    make_target: Callable[[str], Target], redis_server: Any
) -> None:
    target = make_target("memory")
    marker = f"M-{uuid.uuid4().hex}"
    with target.open(cache=redis_server.url, encryption=RING1) as store:
        store.set("k", marker)
        assert store.get("k") == marker.encode()  # cached, sealed
        client = redis_server.client()
        try:
            for key in client.scan_iter(count=1000):
                value = client.get(key) if client.type(key) == b"string" else None
                if value is not None and len(value) > 40 and b"KVX" in value:
                    client.set(key, value[:-3] + bytes([value[-3] ^ 1]) + value[-2:], keepttl=True)
        finally:
            client.close()
        assert store.get("k") == marker.encode()  # read from the store, not the damaged entry


def test_plaintext_objects_are_refused_until_rekey_seals_them(tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    with kvstore.open(url) as store:
        store.set("k", "plain")
        store.append("log", "plain record")
    with kvstore.open(url, encryption=RING1, cache=None) as store:
        with pytest.raises(kvstore.CorruptDataError, match="not encrypted"):
            store.get("k")
        assert store.rekey()["plaintext"] == 2  # left alone without seal_plaintext
        found = store.rekey(seal_plaintext=True)
        assert found["rewritten"] == 2 and store.get("k") == b"plain"
        assert store.range("log") == [b"plain record"]


def test_what_an_encrypted_store_refuses(tmp_path: Path) -> None:
    with kvstore.open(str(tmp_path / "s"), encryption=RING1) as store:
        with pytest.raises(kvstore.UnsupportedOperationError, match="encrypted"):
            store.artifacts.save("f", b"data", raw=True)
        store.artifacts.save("f", b"data")
        with pytest.raises(kvstore.UnsupportedOperationError, match="encrypted"):
            store.artifacts.url("f")
        with pytest.raises(kvstore.ConfigurationError, match="KeyRing"):
            kvstore.open(str(tmp_path / "t"), encryption={"k1": K1})  # type: ignore[arg-type]
    with (
        kvstore.open(str(tmp_path / "u")) as plain,
        pytest.raises(kvstore.ConfigurationError, match="not encrypted"),
    ):
        plain.rekey()


def test_key_rings_from_a_mapping_the_environment_a_file_and_a_callback(tmp_path: Path) -> None:
    assert KeyRing({"a": K1}).primary == "a" and KeyRing({"a": encode_key(K1)}).key("a") == K1
    env = {"KVSTORE_KEYS": f"old:{encode_key(K1)},new:{encode_key(K2)}"}
    assert KeyRing.from_env(env).primary == "new"
    assert KeyRing.from_env({**env, "KVSTORE_PRIMARY_KEY": "old"}).primary == "old"
    path = tmp_path / "keys.json"
    path.write_text(
        json.dumps({"primary": "b", "keys": {"a": encode_key(K1), "b": encode_key(K2)}})
    )
    assert KeyRing.from_file(path).ids == ["a", "b"]
    asked: list[str] = []

    def fetch(key_id: str) -> bytes:
        asked.append(key_id)
        if key_id == "gone":
            raise LookupError("the KMS says no")
        return {"p": K1, "q": K2}[key_id]

    ring = KeyRing.from_callback(fetch, primary="p")
    assert asked == ["p"] and ring.key("q") == K2 and ring.key("q") == K2 and asked == ["p", "q"]
    with pytest.raises(EncryptionKeyError, match="the KMS says no"):
        ring.key("gone")
    for bad, match in [
        (lambda: KeyRing({"a": b"short"}), "32 bytes"),
        (lambda: KeyRing({"a b": K1}), "key id"),
        (lambda: KeyRing({"a": K1, "b": K2}), "primary"),
        (lambda: KeyRing({"a": K1}, primary="z"), "not in the ring"),
        (lambda: KeyRing({"a": "!!not base64!!"}), "32 bytes|base64"),
        (lambda: KeyRing.from_env({}), "KVSTORE_KEYS"),
        (lambda: KeyRing.from_env({"KVSTORE_KEYS": "nocolon"}), "id:base64"),
        (lambda: KeyRing.from_file(tmp_path / "missing.json"), "key file"),
        (lambda: KeyRing.from_callback(fetch, primary="gone"), "KMS says no"),
    ]:
        with pytest.raises(kvstore.ConfigurationError, match=match):
            bad()


def test_kvstore_keygen_rekey_and_an_encrypted_cli(
    tmp_path: Path, capsysbinary: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli_main(["keygen", "2026-12"]) == 0
    line = capsysbinary.readouterr().out.decode().strip()
    key_id, _, key = line.partition(":")
    assert key_id == "2026-12" and len(KeyRing({key_id: key}).key(key_id)) == 32
    assert cli_main(["keygen", "k2", "--json"]) == 0
    key_file = tmp_path / "ring.json"
    key_file.write_bytes(capsysbinary.readouterr().out)
    url = str(tmp_path / "s")
    monkeypatch.setenv("KVSTORE_KEYS", line)
    assert cli_main(["--url", url, "set", "k", "secret value"]) == 0
    assert cli_main(["--url", url, "get", "k"]) == 0
    assert capsysbinary.readouterr().out == b"OK\nsecret value\n"
    assert b"secret value" not in b"".join(
        p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file()
    )
    ring = json.loads(key_file.read_text())
    ring["keys"]["2026-12"] = key
    key_file.write_text(json.dumps(ring))  # k2 primary, the env's key still readable
    monkeypatch.delenv("KVSTORE_KEYS")
    assert cli_main(["--url", url, "--key-file", str(key_file), "rekey"]) == 0
    assert capsysbinary.readouterr().out.decode().startswith("1 objects: 1 sealed again")
    assert cli_main(["--url", url, "get", "k"]) == 2  # no ring now: an error line
    assert "encrypted store" in capsysbinary.readouterr().err.decode()


def test_an_encrypted_store_through_the_service(tmp_path: Path) -> None:
    url = str(tmp_path / "s")

    def open_store() -> kvstore.AsyncKVStore:
        return kvstore.open_async(url, encryption=RING12)

    with serving(open_store) as base, kvstore.open("kvstore+" + base) as store:
        store.set("k", "through the service")
        assert store.get("k") == b"through the service"
        assert store.rekey()["current"] >= 1
    with pytest.raises(kvstore.ConfigurationError, match="encryption"):
        kvstore.open("kvstore+http://127.0.0.1:1/x", encryption=RING1)


def test_a_callback_rings_fetch_runs_off_the_event_loop_and_a_failure_is_not_retried_at_once(
    tmp_path: Path,
) -> None:
    """A KMS-style callback may block: a read's fetch runs in a worker thread, never on
    kvstore's loop; a key that cannot be fetched is not asked for again for a few seconds
    (a store of objects under a lost key does not call the KMS once per object)."""
    import threading

    url = str(tmp_path / "s")
    with kvstore.open(url, encryption=KeyRing({"old": K1})) as store:
        store.mset({f"k{i}": f"v{i}" for i in range(5)})
    threads: list[str] = []
    asked: list[str] = []

    def fetch(key_id: str) -> bytes:
        asked.append(key_id)
        threads.append(threading.current_thread().name)
        if key_id == "old":
            return K1
        return K2

    with kvstore.open(
        url, encryption=KeyRing.from_callback(fetch, primary="new"), cache=None
    ) as store:
        assert store.get("k0") == b"v0" and store.get("k1") == b"v1"
        assert asked == ["new", "old"]  # each key fetched once, then held
        loop_thread = threads[1]
        assert "kvstore" not in loop_thread.lower() and loop_thread != "MainThread", threads
    lost: list[str] = []

    def lost_kms(key_id: str) -> bytes:
        lost.append(key_id)
        if key_id == "new":
            return K2
        raise TimeoutError("the KMS did not answer")

    ring = KeyRing.from_callback(lost_kms, primary="new")
    with kvstore.open(url, encryption=ring, cache=None) as store:
        for i in range(5):
            with pytest.raises(EncryptionKeyError, match="KMS did not answer"):
                store.get(f"k{i}")
    assert lost == ["new", "old"]  # asked once for the lost key, not once per object
