"""Concurrency claims, proven with several processes (not threads).

``set(nx=True)`` is a conditional create in the object store, so of N processes racing on
one key exactly one wins - on local disk (os.link), S3 (If-None-Match) and GCS
(ifGenerationMatch=0). The same holds when the key holds an *expired* value: then the
winner is decided by a compare-and-swap on the expired object's version.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from typing import Any

import pytest
from conftest import FILES, SHARED

import kvstore

PROCESSES = 8
ROUNDS = 6


def _racer(
    url: str,
    storage_options: dict[str, Any],
    me: int,
    barrier: Any,
    results: Any,
    prefix: str,
) -> None:
    """One racing process: each round, wait for all, then try to claim the round's key."""
    try:
        with kvstore.open(url, cache=None, storage_options=storage_options or None) as store:
            store.get("warm-up")  # connect before the race, not during it
            for round_no in range(ROUNDS):
                barrier.wait(timeout=60)
                won = store.set(f"{prefix}-{round_no}", f"process-{me}", nx=True)
                results.put((round_no, me, won))
    except BaseException as exc:  # report, never hang the parent
        results.put(("error", me, repr(exc)))


def _race(url: str, storage_options: dict[str, Any], prefix: str) -> dict[int, list[int]]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_racer, args=(url, storage_options, i, barrier, results, prefix))
        for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    winners: dict[int, list[int]] = {r: [] for r in range(ROUNDS)}
    try:
        for _ in range(PROCESSES * ROUNDS):
            round_no, me, won = results.get(timeout=120)
            assert round_no != "error", f"process {me} failed: {won}"
            if won:
                winners[round_no].append(me)
    except queue.Empty:  # pragma: no cover - a hung racer
        pytest.fail("racing processes did not report in time")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():  # pragma: no cover
                p.kill()
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
@pytest.mark.parametrize("backend", FILES)
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
