"""Retention policies and ``store.maintain()`` (kvstore.operations): rules stored in the
bucket (every process sees them; concurrent changes all land), each kind of rule on memory,
local disk and a real S3 server with the object store's clock moved by the test, the report
of what was freed, namespaces, idempotence, bad input, the command line, the service's
client - and processes racing writers and each other on SeaweedFS losing nothing a policy
keeps."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import FakeClock, Target, open_clocked
from http_server import serving

import kvstore
from kvstore.blob.generic import FsspecBlobStore
from kvstore.cli import main as cli_main
from kvstore.cli_operations import duration_seconds
from kvstore.stats import Stats
from kvstore.testing import run_in_processes

BACKENDS = ["memory", "local", "seaweedfs"]
HOUR_MS = 3600 * 1000


@pytest.fixture(params=BACKENDS)
def clocked(
    request: pytest.FixtureRequest, make_target: Callable[[str], Target]
) -> Iterator[tuple[kvstore.KVStore, FakeClock]]:
    clock = FakeClock()
    with open_clocked(make_target(request.param), clock) as store:
        yield store, clock


def test_each_rule_removes_what_it_says_and_keeps_the_rest(
    clocked: tuple[kvstore.KVStore, FakeClock],
) -> None:
    store, clock = clocked
    for i in range(4):
        store.set(f"cache:{i}", f"v{i}")
    store.set("keep", "forever")
    store.append("chat:a", *[f"m{i}" for i in range(12)])
    store.append("chat:b", "only")
    store.append("idle:x", "old", "older")
    for v in range(5):
        store.artifacts.save("report", f"version {v}".encode())
    store.artifacts.save("single", b"one")
    metrics = store.records("metrics", partition="hour")
    start = clock() / 1000
    metrics.extend([({"i": i}, start + i * 3600, None) for i in range(4)])
    store.set_retention("values", "cache:", max_age=3600)
    store.set_retention("logs", "chat:", max_count=5)
    store.set_retention("logs", "idle:", max_age=3600)
    store.set_retention("artifacts", max_versions=2)
    store.set_retention("records", "met", max_age=2 * 3600)
    clock.advance(5 * HOUR_MS)  # everything above is 5 hours old; partitions 0-2 ended
    store.set("cache:0", "rewritten")  # young again: kept
    store.append("idle:y", "fresh")  # a young log under the idle rule: kept
    store.set("cache:9", "new")
    report = store.maintain()
    removed = {(r["kind"], r["prefix"]): r["removed"] for r in report["rules"]}
    assert removed == {
        ("artifacts", ""): 3,
        ("logs", "chat:"): 1,
        ("logs", "idle:"): 1,
        ("records", "met"): 3,
        ("values", "cache:"): 3,
    }
    assert store.keys("cache:") == ["cache:0", "cache:9"] and store.get("keep") == b"forever"
    assert [r.decode() for r in store.range("chat:a")] == [f"m{i}" for i in range(7, 12)]
    assert store.range("chat:b") == [b"only"] and store.length("idle:x") == 0
    assert store.range("idle:y") == [b"fresh"]
    assert store.artifacts.versions("report") == [3, 4] and store.artifacts.versions("single") == [
        0
    ]
    assert [r.data["i"] for r in metrics.query()] == [3]
    assert report["freed"]["objects"] >= 3 and report["freed"]["bytes"] > 0
    assert report["before"]["objects"] - report["after"]["objects"] <= report["freed"]["objects"]
    # idempotent: a second run removes nothing more
    again = store.maintain()
    assert all(r["removed"] == 0 for r in again["rules"]), again["rules"]
    # the dropped records' objects went at once (older than the log safety window): the
    # emptied log keeps one mark, the trimmed one its mark and the kept records' chunk
    assert store.usage("idle:x")["objects"] == 1 and store.usage("chat:a")["objects"] <= 3
    assert store.fsck()["ok"]


def test_a_records_count_rule_drops_whole_partitions_oldest_first(
    clocked: tuple[kvstore.KVStore, FakeClock],
) -> None:
    store, clock = clocked
    start = clock() // 1000 // 3600 * 3600  # the start of an hour
    events = store.records("events", partition="hour")
    events.extend(
        [({"h": h, "i": i}, start + h * 3600 + i, None) for h in range(4) for i in range(3)]
    )
    store.records("other").append({"x": 1})  # another collection: no rule for it
    store.set_retention("records", "events", max_count=5)
    report = store.maintain()
    assert report["rules"][0]["removed"] == 2  # 3 + 3 newest kept: at least 5
    assert sorted({r.data["h"] for r in events.query()}) == [2, 3]
    assert len(store.records("other").query()) == 1
    assert store.maintain()["rules"][0]["removed"] == 0  # 6 left: dropping one would keep 3


def test_the_policy_lives_in_the_bucket_and_changes_by_compare_and_swap(
    make_target: Callable[[str], Target],
) -> None:
    target = make_target("local")
    with target.open() as first, target.open() as second:
        assert first.retention() == []
        first.set_retention("values", "tmp:", max_age=60)
        assert second.retention() == [{"kind": "values", "prefix": "tmp:", "max_age": 60.0}]
        second.set_retention("values", "tmp:", max_age=120)  # same kind and prefix: replaced
        second.set_retention("logs", max_count=3)
        assert first.retention() == [
            {"kind": "logs", "prefix": "", "max_count": 3},
            {"kind": "values", "prefix": "tmp:", "max_age": 120.0},
        ]
        assert first.remove_retention("logs") is True and first.remove_retention("logs") is False
        assert second.retention() == [{"kind": "values", "prefix": "tmp:", "max_age": 120.0}]
        usage = first.usage()
        assert usage["kinds"]["internal"]["objects"] == 1  # the policy: not a user's value
        assert first.keys() == [] and first.fsck()["ok"]


def add_rules(url: str, options: dict[str, Any], me: int, *, barrier: Any) -> int:
    with kvstore.open(url, storage_options=options or None, cache=None) as store:
        barrier.wait(timeout=60)
        for i in range(5):
            store.set_retention("values", f"p{me}-{i}:", max_age=60 + me)
        return me


def test_processes_changing_the_policy_at_once_all_land(
    make_target: Callable[[str], Target],
) -> None:
    target = make_target("seaweedfs")
    run_in_processes(
        add_rules,
        [(target.url, target.storage_options, me) for me in range(4)],
        barrier=True,
        timeout=180,
    )
    with target.open(cache=None) as store:
        rules = store.retention()
    assert sorted(r["prefix"] for r in rules) == sorted(
        f"p{m}-{i}:" for m in range(4) for i in range(5)
    )


def test_a_namespace_has_its_own_policy_and_maintain_walks_them(
    clocked: tuple[kvstore.KVStore, FakeClock],
) -> None:
    store, clock = clocked
    tenant = store.namespace("tenant/1")
    store.set("a", "root")
    tenant.set("a", "tenant")
    tenant.set_retention("values", max_age=60)
    assert store.retention() == []
    clock.advance(HOUR_MS)
    report = store.maintain()
    assert report["rules"] == [
        {"namespace": ["tenant/1"], "kind": "values", "prefix": "", "max_age": 60.0, "removed": 1}
    ]
    assert store.get("a") == b"root" and tenant.get("a") is None
    assert tenant.maintain()["rules"][0]["removed"] == 0  # the namespace's own view


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: s.set_retention("blobs", max_age=1), "kind"),
        (lambda s: s.set_retention("values"), "needs one of max_age"),
        (lambda s: s.set_retention("values", max_count=3), "takes max_age"),
        (lambda s: s.set_retention("artifacts", max_count=3), "takes max_age, max_versions"),
        (lambda s: s.set_retention("values", max_age=0), "max_age"),
        (lambda s: s.set_retention("values", max_age=float("inf")), "max_age"),
        (lambda s: s.set_retention("values", max_age="1d"), "max_age"),
        (lambda s: s.set_retention("logs", max_count=0), "max_count"),
        (lambda s: s.set_retention("logs", max_count=2.5), "max_count"),
        (lambda s: s.set_retention("artifacts", max_versions=True), "max_versions"),
        (lambda s: s.set_retention("values", 3, max_age=1), "prefix"),
        (lambda s: s.remove_retention("nope"), "kind"),
        (lambda s: s.maintain(progress="yes"), "callable"),
    ],
)
def test_bad_rules_are_refused_and_nothing_is_stored(call: Any, match: str) -> None:
    with kvstore.open(f"memory://ret-{uuid.uuid4().hex}") as store:
        with pytest.raises(kvstore.ConfigurationError, match=match):
            call(store)
        assert store.retention() == [] and store.usage()["objects"] == 0


def test_a_damaged_policy_is_corrupt_data_never_ignored(tmp_path: Any) -> None:
    url = str(tmp_path / "s")
    with kvstore.open(url) as store:
        store.set_retention("values", max_age=60)
    policy = next((tmp_path / "s" / "meta").rglob("retention*"))
    with kvstore.open(url) as store:
        store.namespace("x").set("k", "v")
        raw = policy.read_bytes()
        policy.write_bytes(raw[:-3] + bytes([raw[-3] ^ 1]) + raw[-2:])
        with pytest.raises(kvstore.CorruptDataError, match="retention"):
            store.retention()
        with pytest.raises(kvstore.CorruptDataError):
            store.maintain()
        assert store.namespace("x").get("k") == b"v"  # nothing was done


def test_a_store_without_conditional_writes_holds_no_policy(tmp_path: Any) -> None:
    """fsspec's generic backend (no atomic conditional create): a policy, changed by
    compare-and-swap, cannot be kept there - a clear error, nothing written; maintain
    (no policy: purge only) still runs."""
    blob = FsspecBlobStore("file", str(tmp_path / "generic"), {}, stats=Stats())
    with kvstore.open(blob, cache=None) as store:
        store.set("k", "v")
        with pytest.raises(kvstore.UnsupportedOperationError, match="conditional create"):
            store.set_retention("logs", max_count=2)
        assert store.retention() == [] and store.maintain()["rules"] == []
        assert store.get("k") == b"v"


def test_kvstore_retention_and_maintain_commands(tmp_path: Any, capsysbinary: Any) -> None:
    url = str(tmp_path / "s")
    run = lambda *a: cli_main(["--url", url, *a])  # noqa: E731
    assert run("retention", "set", "logs", "--prefix", "chat:", "--max-count", "2") == 0
    assert run("retention", "set", "values", "--max-age", "30d") == 0
    capsysbinary.readouterr()
    assert run("retention", "ls") == 0
    assert capsysbinary.readouterr().out.decode().splitlines() == [
        "logs\tchat:\tmax_count=2",
        "values\t(all)\tmax_age=2.592e+06",
    ]
    assert run("retention", "ls", "--json") == 0
    assert json.loads(capsysbinary.readouterr().out)[0]["max_count"] == 2
    assert run("append", "chat:1", "a", "b", "c", "d") == 0
    capsysbinary.readouterr()
    assert run("maintain") == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert lines[0] == "(this view)\tlogs\tchat:\tremoved 1"
    assert lines[-2].startswith("purged: ") and lines[-1].startswith("freed: ")
    assert run("maintain", "--json") == 0
    assert json.loads(capsysbinary.readouterr().out)["rules"][0]["removed"] == 0
    assert run("range", "chat:1") == 0
    assert capsysbinary.readouterr().out.decode().split() == ["c", "d"]
    assert run("retention", "rm", "logs", "--prefix", "chat:") == 0
    assert run("retention", "rm", "logs", "--prefix", "chat:") == 1
    assert run("retention", "set", "values", "--max-age", "soon") == 2
    assert run("retention", "set", "values", "--max-count", "3") == 2
    assert [duration_seconds(t) for t in ("90", "90m", "1.5h", "2d", "1w", "10S")] == [
        90,
        5400,
        5400,
        172800,
        604800,
        10,
    ]


def test_maintain_through_the_service_replays_progress() -> None:
    def open_store() -> kvstore.AsyncKVStore:
        return kvstore.open_async(f"memory://ret-{uuid.uuid4().hex}")

    with serving(open_store) as base, kvstore.open("kvstore+" + base + "/ns") as store:
        store.append("log", *"abcdef")
        store.set_retention("logs", max_count=2)
        assert store.retention() == [{"kind": "logs", "prefix": "", "max_count": 2}]
        seen: list[tuple[str, int, int]] = []
        report = store.maintain(progress=lambda *a: seen.append(a))
        assert report["rules"][0]["removed"] == 1 and store.range("log") == [b"e", b"f"]
        assert seen[0] == ("rules", 0, 1) and seen[-1] == ("namespaces", 1, 1)
        assert store.remove_retention("logs") is True


# -- racing writers and each other, in processes, on a real S3 server ------------------------------


MAX_AGE = 5.0
"""The race's rule: "old:" values not written for 5 s go."""


def rewrite_values(
    url: str, options: dict[str, Any], keys: list[str], *, barrier: Any
) -> dict[str, tuple[str, float]]:
    """A writer: rewrites each old key (young again: the policy keeps it) while the
    maintainers run, appending each value to a log too; returns what it last wrote to
    each key and when the store acknowledged it."""
    written: dict[str, tuple[str, float]] = {}
    with kvstore.open(url, storage_options=options or None, cache=None) as store:
        barrier.wait(timeout=60)
        for key in keys:
            value = f"rewritten {key} {uuid.uuid4().hex[:6]}"
            store.set(key, value)
            written[key] = (value, time.time())
            store.append("chat:live", value)
    return written


def racer(role: str, url: str, options: dict[str, Any], keys: list[str], *, barrier: Any) -> Any:
    """A writer (``rewrite_values``) or a maintainer: ``(its report, when it ended)``."""
    if role == "write":
        return rewrite_values(url, options, keys, barrier=barrier)
    with kvstore.open(url, storage_options=options or None, cache=None) as store:
        barrier.wait(timeout=60)
        return store.maintain(), time.time()


def test_maintainers_racing_writers_lose_nothing_the_policy_keeps(
    make_target: Callable[[str], Target],
) -> None:
    """Old values, rewritten by two writers while two maintainers apply "delete values
    not written for 5 s": every key not rewritten goes; every rewrite still young when the
    maintainers ended survives with its value (a maintainer that read the old version
    cannot delete the new one); the log the writers append to keeps its last records
    under "keep 5"."""
    target = make_target("seaweedfs")
    keys = [f"old:{i}" for i in range(60)]
    with target.open(cache=None) as store:
        store.mset({k: "original" for k in keys})
        store.set_retention("values", "old:", max_age=MAX_AGE)
        store.set_retention("logs", "chat:", max_count=5)
    time.sleep(MAX_AGE + 1.5)  # every "old:" value is older than the rule's limit now
    rewritten = keys[::2]
    half = len(rewritten) // 2
    where = (target.url, target.storage_options)
    results = run_in_processes(
        racer,
        [
            ("write", *where, rewritten[:half]),
            ("write", *where, rewritten[half:]),
            ("maintain", *where, []),
            ("maintain", *where, []),
        ],
        barrier=True,
        timeout=240,
    )
    written = {**results[0], **results[1]}
    ended = max(results[2][1], results[3][1])
    # young while every maintainer ran (the store dates to the second: 1.5 s of slack)
    kept = [k for k, (_, acked) in written.items() if acked + MAX_AGE - 1.5 > ended]
    assert len(kept) >= len(written) // 2, "the maintainers ran too long to test the race"
    with target.open(cache=None) as store:
        for key in kept:
            assert store.get(key) == written[key][0].encode(), key
        survivors = set(store.keys("old:"))
        assert survivors <= set(written)  # no key that was not rewritten is left
        assert all(store.get(k) == written[k][0].encode() for k in survivors)
        tail = [r.decode() for r in store.range("chat:live")]
        assert len(tail) >= 5 and tail[-1] in {v for v, _ in written.values()}
    removed = [
        r["removed"] for report, _ in results[2:] for r in report["rules"] if r["kind"] == "values"
    ]
    assert sum(removed) >= len(keys) - len(written)  # between them, every old key went
