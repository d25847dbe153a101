"""Concurrency claims, proven with several processes (not threads).

``set(nx=True)`` is a conditional create in the object store, so of N processes racing on
one key exactly one wins - on local disk (os.link), S3 (If-None-Match) and GCS
(ifGenerationMatch=0). The same holds when the key holds an *expired* value: then the
winner is decided by a compare-and-swap on the expired object's version.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import RACES, SHARED

import kvstore
from kvstore.testing import run_in_processes

PROCESSES = 8
ROUNDS = 6


def _racer(
    url: str, storage_options: dict[str, Any], me: int, prefix: str, *, barrier: Any
) -> list[tuple[int, bool]]:
    """One racing process: each round, wait for all, then try to claim the round's key."""
    claimed = []
    with kvstore.open(url, cache=None, storage_options=storage_options or None) as store:
        store.get("warm-up")  # connect before the race, not during it
        for round_no in range(ROUNDS):
            barrier.wait(timeout=60)
            won = store.set(f"{prefix}-{round_no}", f"process-{me}", nx=True)
            claimed.append((round_no, bool(won)))
    return claimed


def _race(url: str, storage_options: dict[str, Any], prefix: str) -> dict[int, list[int]]:
    claims = run_in_processes(
        _racer,
        [(url, storage_options, me, prefix) for me in range(PROCESSES)],
        barrier=True,
        timeout=240,
    )
    winners: dict[int, list[int]] = {r: [] for r in range(ROUNDS)}
    for me, claimed in enumerate(claims):
        assert [r for r, _ in claimed] == list(range(ROUNDS)), f"process {me}: {claimed}"
        for round_no, won in claimed:
            if won:
                winners[round_no].append(me)
    return winners


@pytest.mark.slow
@pytest.mark.parametrize("backend", SHARED)
def test_exactly_one_process_wins_set_nx(make_target: Any, backend: str) -> None:
    target = make_target(backend)
    winners = _race(target.url, target.storage_options, "fresh")
    with target.open() as store:
        for round_no, who in winners.items():
            assert len(who) == 1, f"round {round_no}: winners {who}"
            assert store.get(f"fresh-{round_no}") == f"process-{who[0]}".encode()


@pytest.mark.slow
@pytest.mark.parametrize("backend", RACES)
def test_exactly_one_process_wins_set_nx_over_an_expired_value(
    make_target: Any, backend: str
) -> None:
    target = make_target(backend)
    with target.open() as store:
        for round_no in range(ROUNDS):
            store.set(f"stale-{round_no}", "expired", pxat=1)  # expired long ago
            assert store.get(f"stale-{round_no}") is None
    winners = _race(target.url, target.storage_options, "stale")
    with target.open() as store:
        for round_no, who in winners.items():
            assert len(who) == 1, f"round {round_no}: winners {who}"
            assert store.get(f"stale-{round_no}") == f"process-{who[0]}".encode()


# -- compare-and-swap: read-modify-writes racing plain writes -------------------------------

WRITES = 40


def _overwriter_or_expirer(
    url: str, storage_options: dict[str, Any], me: int, *, barrier: Any
) -> list[str]:
    """Process 0 overwrites the key with ``seq:i`` and reads it back; the others keep
    changing its expiry (``expire`` and ``persist``: each a read, then a compare-and-swap
    of the same value with a new expiry). Returns what process 0 read back."""
    seen: list[str] = []
    with kvstore.open(url, cache=None, storage_options=storage_options or None) as store:
        store.get("warm-up")
        barrier.wait(timeout=60)
        if me == 0:
            for i in range(WRITES):
                store.set("counter", f"seq:{i:04d}")
                seen.append(store.get("counter").decode())
            store.set("done", "1")
        else:
            while store.get("done") is None:
                store.expire("counter", 3600)
                store.persist("counter")
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("backend", RACES)
def test_a_read_modify_write_never_puts_back_a_value_that_was_overwritten(
    make_target: Any, backend: str
) -> None:
    """If a compare-and-swap were a plain write, an expirer that read ``seq:i`` would put
    it back over ``seq:i+1``: the writer would read an older value than it wrote."""
    target = make_target(backend)
    with target.open() as store:
        store.set("counter", "seq:start")
    results = run_in_processes(
        _overwriter_or_expirer,
        [(target.url, target.storage_options, me) for me in range(4)],
        barrier=True,
        timeout=240,
    )
    seen = results[0]
    assert seen == [f"seq:{i:04d}" for i in range(WRITES)], seen
    with target.open() as store:
        assert store.get("counter") == f"seq:{WRITES - 1:04d}".encode()
