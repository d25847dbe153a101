"""``store.usage()`` and ``kvstore du``: what a store holds, per kind and namespace, from
listings alone - equal to a brute-force recount (every object read and weighed, told apart
by a classifier written here from the layout table) on memory, local disk and a real S3
server; no GET or HEAD; a prefix; the command line's table and JSON; bad input."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Target

import kvstore
from kvstore.blob import BlobStore, open_blob_store
from kvstore.cli import main as cli_main
from kvstore.stats import Stats
from kvstore.testing import request_delta

BACKENDS = ["memory", "local", "seaweedfs"]
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def _populate(store: kvstore.KVStore) -> dict[str, int]:
    """Something of every kind, in the view and in nested namespaces; returns the items
    of each kind written in the view itself."""
    for i in range(12):
        store.set(f"user:{i}", f"value {i}".encode() * (i + 1))
    store.set("temp", b"t", px=1)  # expires: still stored (and counted) until purged
    for i in range(3):
        store.append(f"chat:{i}", *[f"message {j}" for j in range(5)])
    store.append("chat:0", "more")
    store.compact("chat:0")
    store.trim("chat:1", 3)
    kvstore.Redis(store=store).rpush("queue", "a", "b", "c")
    store.artifacts.save("report.txt", b"r" * 5000)
    store.artifacts.save("report.txt", b"s" * 7000)
    store.artifacts.save("big.bin", bytes(range(256)) * 40_000, mime_type="x/y")  # parts
    store.artifacts.save("raw.bin", b"raw bytes", raw=True)
    store.sessions.create("app", "u1", "s1", state={"x": 1, "user:name": "a", "app:v": 2})
    store.sessions.append_event("app", "u1", "s1", {"author": "user", "text": "hi"})
    store.sessions.create("app", "u2", "s2")
    metrics = store.records("metrics", partition="hour")
    metrics.extend([({"v": i}, T0 + i * 1800, {"h": "a"}) for i in range(5)])
    tenant = store.namespace("tenant/1")
    tenant.set("k", "v")
    tenant.append("log", "x")
    tenant.namespace("inner").artifacts.save("a", b"a")
    return {"values": 13, "logs": 3, "lists": 1, "artifacts": 3, "sessions": 2, "records": 1}


_AREAS = {
    "kv": "values",
    "log": "logs",
    "list": "lists",
    "art": "artifacts",
    "artpart": "artifacts",
    "ses": "sessions",
    "rec": "records",
}


def _classify(path: str) -> tuple[tuple[str, ...], str]:
    """The layout table read by hand: ``ns/{enc}~/`` segments are namespaces (told by
    their raw encoded names here), then the area."""
    parts = path.split("/")
    names: list[str] = []
    while len(parts) > 2 and parts[0] == "ns":
        names.append(parts[1])
        parts = parts[2:]
    if parts[0] == ".kvstore" and not names:
        return (), "internal"
    return tuple(names), _AREAS.get(parts[0], "foreign")


async def _recount(blob: BlobStore) -> dict[tuple[tuple[str, ...], str], list[int]]:
    """Every object read whole and weighed, grouped by (namespace names, kind)."""
    found: dict[tuple[tuple[str, ...], str], list[int]] = {}
    paths = [p async for page in blob.list_pages("") for p in page]
    blobs = await blob.get_many(paths)
    for path, got in zip(paths, blobs, strict=True):
        assert got is not None, path
        tally = found.setdefault(_classify(path), [0, 0])
        tally[0] += 1
        tally[1] += len(got.data)
    return found


def _as_recount(report: dict[str, Any]) -> dict[tuple[tuple[str, ...], str], list[int]]:
    from kvstore.keys import encode_name

    out = {}
    for space in report["namespaces"]:
        raw = tuple(encode_name(n, "namespace") for n in space["namespace"])
        for kind, tally in space["kinds"].items():
            out[(raw, kind)] = [tally["objects"], tally["bytes"]]
    return out


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, make_target: Callable[[str], Target]) -> Target:
    return make_target(request.param)


@pytest.fixture
def store(target: Target) -> Iterator[kvstore.KVStore]:
    with target.open(cache=kvstore.LocalCache()) as s:
        yield s


def test_usage_equals_a_brute_force_recount(target: Target, store: kvstore.KVStore) -> None:
    items = _populate(store)
    blob = target.blob_store()
    asyncio.run(blob.put("elsewhere/not-kvstore", b"foreign bytes"))
    asyncio.run(blob.put("ns/tenant%2F1~/other/junk", b"not kvstore's"))  # foreign in a ns
    with request_delta(store) as spent:
        report = store.usage()
    recount = asyncio.run(_recount(target.blob_store()))
    assert _as_recount(report) == recount
    assert report["objects"] == sum(n for n, _ in recount.values())
    assert report["bytes"] == sum(b for _, b in recount.values())
    kinds = report["kinds"]
    assert {k: kinds[k]["items"] for k in items} == {
        **items,
        # the tenant's "k", and the list's head: a value naming its records' incarnation
        "values": items["values"] + 2,
        "logs": items["logs"] + 1,  # the tenant's "log"
        "artifacts": items["artifacts"] + 1,  # the inner namespace's "a"
    }
    view = report["namespaces"][0]
    assert view["namespace"] == []
    assert {k: view["kinds"][k]["items"] for k in items} == {**items, "values": items["values"] + 1}
    assert [ns["namespace"] for ns in report["namespaces"][1:]] == [
        ["tenant/1"],
        ["tenant/1", "inner"],
    ]
    assert kinds["foreign"]["objects"] == 2 and kinds["foreign"]["items"] == 0
    # listings only: no GET, no HEAD - one LIST per 1000 objects (one here)
    assert dict(spent) == {"requests.list": 1}, dict(spent)


def test_usage_counts_items_and_a_prefix_selects_keys_and_names(store: kvstore.KVStore) -> None:
    """What a store reached through the service answers too (tests/test_remote_contract.py)."""
    assert store.usage() == {
        "prefix": None,
        "objects": 0,
        "bytes": 0,
        "kinds": {},
        "namespaces": [],
    }
    for i in range(3):
        store.set(f"a:{i}", "x" * 100)
    store.set("b", "y")
    store.append("a:log", "r1", "r2")
    store.artifacts.save("a.txt", b"data")
    store.artifacts.save("b.txt", b"data")
    store.namespace("a-space").set("a:0", "z")
    whole = store.usage()
    assert {k: t["items"] for k, t in whole["kinds"].items()} == {
        "values": 5,
        "logs": 1,
        "artifacts": 2,
    }
    assert [ns["namespace"] for ns in whole["namespaces"]] == [[], ["a-space"]]
    picked = store.usage("a")
    assert picked["prefix"] == "a"
    assert {k: t["items"] for k, t in picked["kinds"].items()} == {
        "values": 3,
        "logs": 1,
        "artifacts": 1,
    }
    assert [ns["namespace"] for ns in picked["namespaces"]] == [[]]  # no nested namespace
    assert picked["bytes"] < whole["bytes"]
    assert store.usage("nothing")["objects"] == 0
    assert store.namespace("a-space").usage()["kinds"]["values"]["items"] == 1
    for bad in (3, b"a", ["a"]):
        with pytest.raises(kvstore.ConfigurationError, match="prefix"):
            store.usage(bad)  # type: ignore[arg-type]


def test_usage_of_an_artifact_counts_its_parts_once(store: kvstore.KVStore) -> None:
    """A large artifact is a manifest and parts: one item, every object weighed."""
    data = os.urandom(12_000_000)  # incompressible, several parts
    store.artifacts.save("video", data)
    found = store.usage()["kinds"]["artifacts"]
    assert found["items"] == 1 and found["objects"] > 2
    assert found["bytes"] > len(data)  # stored whole (random bytes do not compress)


def test_kvstore_du_prints_a_table_and_json(tmp_path: Any, capsysbinary: Any) -> None:
    url = str(tmp_path / "store")
    with kvstore.open(url) as store:
        _populate(store)
    with kvstore.open(url) as store:  # after close: its background work is done
        report = store.usage()
    assert cli_main(["--url", url, "du", "--json"]) == 0
    assert json.loads(capsysbinary.readouterr().out) == report
    assert cli_main(["--url", url, "du"]) == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert lines[0].split() == ["NAMESPACE", "KIND", "ITEMS", "OBJECTS", "BYTES", "SIZE"]
    total = lines[-1].split()
    assert total[:4] == ["total", "all", str(report["objects"]), str(report["bytes"])]
    rows = Counter(line.split()[1] for line in lines[1:-1] if line.startswith("total"))
    assert set(rows) == set(report["kinds"])
    assert any(line.startswith('"tenant/1", "inner"') for line in lines)
    assert cli_main(["--url", url, "du", "--prefix", "user:"]) == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert lines[1].split()[:4] == ["values", "12", "12", lines[1].split()[3]]


def test_a_listing_without_sizes_is_a_backend_error() -> None:
    """An S3 or GCS answer that names an object without a size (a store that lies) is a
    clear error, never a size of 0."""
    from kvstore.blob import gcs, s3

    assert s3._size({"Key": "k", "Size": 12}, "s3://b") == 12
    assert gcs._size({"name": "k", "size": "12"}, "gs://b") == 12
    for bad in ({"Key": "k"}, {"Key": "k", "Size": -1}, {"Key": "k", "Size": "12"}):
        with pytest.raises(kvstore.BackendError, match=r"list s3://b failed.*'k' without a size"):
            s3._size(bad, "s3://b")
    for bad in ({"name": "k"}, {"name": "k", "size": "twelve"}, {"name": "k", "size": "-3"}):
        with pytest.raises(kvstore.BackendError, match=r"list gs://b failed.*'k' without a size"):
            gcs._size(bad, "gs://b")


def test_usage_through_a_bare_blob_store_object() -> None:
    """A store opened on a BlobStore instance (a wrapper, a custom backend) has usage too."""
    blob = open_blob_store(f"memory://usage-{uuid.uuid4().hex}", stats=Stats())
    with kvstore.open(blob) as store:
        store.set("a", "b")
        assert store.usage()["kinds"]["values"]["objects"] == 1
