"""Stress harness for append logs: compaction and trim racing writers and readers, in
several processes, for as long as you like. Not part of the default suite (pytest only
collects ``test_*.py``); run it by hand:

    PYTHONPATH=. python tests/stress_logs.py --backend local --variant compactor --duration 120
    PYTHONPATH=. python tests/stress_logs.py --backend s3 --variant auto-trim --duration 180
    PYTHONPATH=. python tests/stress_logs.py --backend s3 --variant all --skew 3600

``--backend s3`` is SeaweedFS, a real S3 server that enforces conditional writes atomically
(the place to prove a race); ``--backend moto`` is moto (whose requests backends/ serialises).

Processes (``spawn``), all on one log:

* **writers** (``--writers`` processes x ``--lanes`` threads): each lane appends records
  ``b"{lane}:{seq}"`` (1 to 4 per append; lanes of one process share chunks by group commit)
  and publishes, in shared memory, how many it has *attempted* (before the call) and how
  many were *acknowledged* (after it returned). ``--pause`` adds think time; with none,
  one process appending back to back can win every claim, and an append that lost 1000
  claims in a row (KVStoreError, nothing written) is counted and appended again.
* a **compactor** calling ``compact()`` in a loop (variants ``compactor``, ``trim``, ``all``),
  and/or ``AUTO_COMPACT = True`` in every writer (``auto``, ``auto-trim``, ``all``).
* a **trimmer** (``trim``, ``auto-trim``, ``all``): reads the first ``n`` records, publishes
  "may be trimmed up to" per lane, calls ``trim(key, n)``, then "trimmed up to"; it keeps
  what it cut, so the whole history is known at the end.
* **readers** calling ``range(0, -1)``, ``range(-50, -1)`` and ``length()`` in a loop, no cache.

Time: the log protocol's two timing constants are scaled down by ``--speed`` (default 100:
MIN_AGE_MS 10 min -> 6 s; TAIL_REFRESH_MS 60 s -> 0.6 s), so the rule under test is the
real one: their ratio, 10, with chunks aged by the object store's clock (file mtimes, S3
``LastModified``). What the scaling makes 100x harsher than production is the request
latency relative to both (a 50 ms request counts as 5 s); each process reports its slowest
operation in scaled time so a failure can be told apart from a broken timing assumption (a
stall longer than MIN_AGE_MS - TAIL_REFRESH_MS = 540 s scaled).

Clock skew (``--skew SECONDS``): each process's own clock (what AsyncKVStore is given) is
then the real time plus an offset - writers alternately behind and ahead by ``SECONDS``, the
compactor ahead, the trimmer behind, every other reader ahead - while the object store keeps
its real clock. No process's clock may change the outcome.

Invariants checked on every read (and the first violation stops the run with details):

1. no record twice in one result; each lane's sequence numbers in a result are contiguous
   and ascending (no gap: never record k+1 without k, each writer's order kept);
2. nothing that was never attempted; nothing trimmed before the read began;
3. ``range(0, -1)`` holds every record acknowledged before the read began, unless a trim
   that may cover it had started before the read ended;
4. every result is a window ``[first, tail)`` of one growing history: with the reader's
   previous result it overlaps in a suffix of the earlier one (and, without trims, a full
   read extends the previous full read: the prefix property);
5. ``length()`` within the bounds given by acknowledged/attempted/trimmed counts, and
   non-decreasing without trims.

At the end: trimmed records + the final log = every acknowledged record, each exactly once,
in each writer's order; ``length()`` agrees; without trims each ``append``'s return value is
its last record's position (RPUSH); after waiting MIN_AGE a last compaction leaves the log
unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

KEY = "session:stress"
MIN_AGE_MS = 600_000  # the library's defaults (kvstore.logs.limits), scaled by --speed
TAIL_REFRESH_MS = 60_000
VARIANTS = {
    # name: (compactor process, AUTO_COMPACT in writers, trimmer process)
    "compactor": (True, False, False),
    "auto": (False, True, False),
    "trim": (True, False, True),
    "auto-trim": (False, True, True),
    "all": (True, True, True),
}


class SkewedClock:
    """Milliseconds since the epoch, ``offset_ms`` off the real time: a client whose
    machine's clock is wrong."""

    def __init__(self, offset_ms: int) -> None:
        self.offset_ms = offset_ms

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms


def clock_offset_s(role: str, me: int, skew: float) -> float:
    """A process's clock offset under ``--skew``: see the module docstring."""
    if role == "compactor":
        return skew
    if role == "trimmer":
        return -skew
    if role == "writer":
        return skew if me % 2 else -skew
    return skew if me % 2 else 0.0


# -- process plumbing --------------------------------------------------------------------


class Shared:
    """Shared memory of one run (passed to every child)."""

    def __init__(self, ctx: Any, lanes: int) -> None:
        self.attempted = ctx.Array("q", lanes, lock=False)
        self.acked = ctx.Array("q", lanes, lock=False)
        self.trim_intent = ctx.Array("q", lanes, lock=False)
        self.trim_done = ctx.Array("q", lanes, lock=False)
        self.stop = ctx.Event()
        self.results = ctx.Queue()


def _setup(cfg: dict[str, Any], offset_s: float = 0.0) -> Any:
    """A blocking store with the scaled time constants, AUTO_COMPACT/SEGMENT_RECORDS as
    asked, reading a clock ``offset_s`` off the real time."""
    import kvstore
    import kvstore.logs as logs_module
    from kvstore.blob import open_blob_store
    from kvstore.stats import Stats

    logs_module.limits.AUTO_COMPACT = bool(cfg.get("auto_compact"))
    logs_module.limits.MIN_AGE_MS = int(MIN_AGE_MS / cfg["speed"])
    logs_module.limits.TAIL_REFRESH_MS = int(TAIL_REFRESH_MS / cfg["speed"])
    if cfg.get("segment_records"):
        logs_module.limits.SEGMENT_RECORDS = cfg["segment_records"]
    clock = SkewedClock(int(offset_s * 1000))
    stats = Stats()
    blob = open_blob_store(cfg["url"], cfg["storage_options"] or None, stats=stats)
    core = kvstore.AsyncKVStore(blob, kvstore.NoCache(), stats=stats, clock=clock)
    return kvstore.KVStore(core)


def _limits(restore: dict[str, Any] | None = None) -> dict[str, Any]:
    """The log limits ``_setup`` changes: read them, or put them back."""
    import kvstore.logs as logs_module

    names = ("AUTO_COMPACT", "MIN_AGE_MS", "TAIL_REFRESH_MS", "SEGMENT_RECORDS")
    if restore is not None:
        for name, value in restore.items():
            setattr(logs_module.limits, name, value)
    return {name: getattr(logs_module.limits, name) for name in names}


def listing(store: Any, key: str = KEY) -> list[str]:
    """The names of the log's objects (``c/...``, ``s/...``, ``m/...``), in order."""
    from kvstore.portal import portal

    aio = store.aio
    directory = aio._ctx.layout.log_dir(key)

    async def collect() -> list[str]:
        return [
            p[len(directory) :] async for page in aio._ctx.blob.list_pages(directory) for p in page
        ]

    return portal().run(collect())


SLOWEST_REQUEST: dict[str, float] = {}  # operation -> seconds, in this process


def _time_requests() -> None:
    """Record the slowest object-store request of each kind: the design's timing rule is
    about them (a writer's tail is at most TAIL_REFRESH_MS + a few requests old when its
    create lands), not about how long an append waited for its turn."""
    from kvstore.blob.base import BlobStore

    if getattr(BlobStore._call, "timed", False):
        return
    call = BlobStore._call

    async def timed(self: Any, operation: str, path: str, attempt: Any, **kw: Any) -> Any:
        started = time.monotonic()
        try:
            return await call(self, operation, path, attempt, **kw)
        finally:
            took = time.monotonic() - started
            if took > SLOWEST_REQUEST.get(operation, 0.0):
                SLOWEST_REQUEST[operation] = took

    timed.timed = True  # type: ignore[attr-defined]
    BlobStore._call = timed  # type: ignore[method-assign]


class Failure(AssertionError):
    pass


def _child(role: str, cfg: dict[str, Any], shared: Shared, me: int, body: Any) -> None:
    """Run ``body(store)``; report its result, or the failure, on the results queue."""
    random.seed(os.getpid() ^ time.time_ns())
    _time_requests()  # in the children only: never in a process that goes on (pytest)
    store = None
    try:
        store = _setup(cfg, clock_offset_s(role, me, cfg["skew"]))
        store.length(KEY)  # connect before the race
        result = body(store)
        started = time.monotonic()
        store.close()  # cancels automatic compactions still running: must be quick
        result["close_s"] = time.monotonic() - started
        result["left_running"] = sum(not t.done() for t in store.aio._ctx.resources.background)
        result["stats"] = {k: v for k, v in store.stats().items() if k != "cache"}
        result["slowest_request_s"] = dict(SLOWEST_REQUEST)
        shared.results.put((role, me, "ok", result))
    except BaseException as exc:
        shared.stop.set()
        detail: dict[str, Any] = {"error": repr(exc), "traceback": traceback.format_exc()}
        if store is not None:
            with contextlib.suppress(Exception):
                detail["listing"] = listing(store)
            with contextlib.suppress(Exception):
                detail["stats"] = {k: v for k, v in store.stats().items() if k != "cache"}
        shared.results.put((role, me, "fail", detail))


def _deadline(cfg: dict[str, Any], shared: Shared) -> bool:
    return shared.stop.is_set() or time.time() >= cfg["deadline"]


# -- writers ------------------------------------------------------------------------------


def writer_main(cfg: dict[str, Any], shared: Shared, proc: int) -> None:
    from kvstore import KVStoreError

    def body(store: Any) -> dict[str, Any]:
        lanes = [proc * cfg["lanes"] + lane for lane in range(cfg["lanes"])]
        returns: dict[int, list[tuple[int, int, int]]] = {lane: [] for lane in lanes}
        slowest = [0.0]
        latencies: list[float] = []
        slow: list[dict[str, Any]] = []
        starved = [0]
        errors: list[str] = []

        def run(lane: int) -> None:
            try:
                seq = 0
                while not _deadline(cfg, shared):
                    k = 1 if random.random() < 0.8 else random.randint(2, 4)
                    records = [f"{lane}:{seq + j}" for j in range(k)]
                    shared.attempted[lane] = seq + k
                    started = time.monotonic()
                    before = store.stats()
                    while True:
                        try:
                            returned = store.append(KEY, *records)
                            break
                        except KVStoreError as exc:
                            # Liveness, not safety: another process appending back to back
                            # can win every claim. Nothing was written (no create landed:
                            # the servers here lose no responses), so the same
                            # records are appended again; a duplicate would be caught.
                            if "could not claim the tail" not in str(exc):
                                raise
                            starved[0] += 1
                    took = time.monotonic() - started
                    if took > cfg["slow_s"]:
                        after = store.stats()
                        slow.append(
                            {
                                "lane": lane,
                                "s": round(took, 2),
                                "at_s": round(started - cfg["t0"], 1),
                                **{
                                    k: after.get(k, 0) - before.get(k, 0)
                                    for k in (
                                        "log.claim_conflicts",
                                        "requests.list",
                                        "requests.get",
                                    )
                                },
                            }
                        )
                    slowest[0] = max(slowest[0], took)
                    latencies.append(took)
                    shared.acked[lane] = seq + k
                    returns[lane].append((seq, k, returned))
                    seq += k
                    if cfg["pause"]:
                        time.sleep(random.uniform(0, 2 * cfg["pause"]))
            except BaseException:
                errors.append(traceback.format_exc())
                shared.stop.set()

        threads = [threading.Thread(target=run, args=(lane,)) for lane in lanes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise Failure("writer failed:\n" + "\n".join(errors))
        return {
            "returns": returns,
            "appended": {lane: int(shared.acked[lane]) for lane in lanes},
            "slowest_append_s": slowest[0],
            "latencies": sorted(latencies),
            "slow": slow,
            "starved": starved[0],
        }

    _child("writer", cfg, shared, proc, body)


# -- compactor and trimmer ------------------------------------------------------------------


def compactor_main(cfg: dict[str, Any], shared: Shared, me: int) -> None:
    def body(store: Any) -> dict[str, Any]:
        removed = runs = 0
        slowest = 0.0
        while not _deadline(cfg, shared):
            started = time.monotonic()
            removed += store.compact(KEY)
            slowest = max(slowest, time.monotonic() - started)
            runs += 1
            time.sleep(random.uniform(0, 2 * cfg["compact_pause"]))
        return {"removed": removed, "runs": runs, "slowest_compact_s": slowest}

    _child("compactor", cfg, shared, me, body)


def trimmer_main(cfg: dict[str, Any], shared: Shared, me: int) -> None:
    def body(store: Any) -> dict[str, Any]:
        cuts: list[list[str]] = []
        while not _deadline(cfg, shared):
            time.sleep(random.uniform(0, 2 * cfg["trim_pause"]))
            length = store.length(KEY)
            cut = length - random.randint(cfg["keep"] // 2, cfg["keep"])
            if cut <= 0:
                continue
            # Only this process trims, so the first `cut` records stay the same between
            # this read and the trim: they are exactly what the trim removes.
            first = store.range(KEY, 0, cut - 1)
            if len(first) != cut:
                raise Failure(f"range(0, {cut - 1}) returned {len(first)} records")
            top: dict[int, int] = {}
            for record in first:
                lane, seq = map(int, record.split(b":"))
                top[lane] = max(top.get(lane, -1), seq)
            for lane, seq in top.items():
                shared.trim_intent[lane] = max(shared.trim_intent[lane], seq + 1)
            left = store.trim(KEY, cut)
            for lane, seq in top.items():
                shared.trim_done[lane] = max(shared.trim_done[lane], seq + 1)
            cuts.append([r.decode() for r in first])
            if left < length - cut:
                raise Failure(f"trim({cut}) of {length} left {left}")
        return {"cuts": cuts}

    _child("trimmer", cfg, shared, me, body)


# -- readers --------------------------------------------------------------------------------


def _parse(records: list[bytes]) -> list[tuple[int, int]]:
    return [tuple(map(int, r.split(b":"))) for r in records]  # type: ignore[misc]


def check_read(
    kind: str,
    records: list[bytes],
    acked_before: list[int],
    done_before: list[int],
    intent_after: list[int],
    attempted_after: list[int],
) -> None:
    """Invariants 1-3 for one result."""
    parsed = _parse(records)
    if len(set(records)) != len(records):
        seen: set[bytes] = set()
        twice = [r for r in records if r in seen or seen.add(r)]  # type: ignore[func-returns-value]
        raise Failure(f"{kind}: records twice: {twice[:10]}")
    by_lane: dict[int, list[int]] = {}
    for lane, seq in parsed:
        by_lane.setdefault(lane, []).append(seq)
    for lane, seqs in by_lane.items():
        for a, b in itertools.pairwise(seqs):
            if b != a + 1:
                raise Failure(f"{kind}: lane {lane} has {b} right after {a} (gap or disorder)")
        if seqs[-1] >= attempted_after[lane]:
            raise Failure(f"{kind}: lane {lane} record {seqs[-1]} was never attempted")
        if seqs[0] < done_before[lane]:
            raise Failure(f"{kind}: lane {lane} record {seqs[0]} was trimmed before the read")
    if kind == "full":
        for lane, acked in enumerate(acked_before):
            must_from = intent_after[lane]
            if acked <= must_from:
                continue
            seqs = by_lane.get(lane)
            if not seqs or seqs[0] > must_from or seqs[-1] < acked - 1:
                got = f"{seqs[0]}..{seqs[-1]}" if seqs else "nothing"
                raise Failure(
                    f"full read: lane {lane} acknowledged [{must_from}, {acked}) before the "
                    f"read, not trimmed; the read holds {got}"
                )


def check_windows(a_kind: str, a: list[bytes], b_kind: str, b: list[bytes], trims: bool) -> None:
    """Invariant 4: ``a`` then ``b`` (b began after a ended) are windows of one history,
    both ending at the tail of their time."""
    if not a:
        return
    where = {r: i for i, r in enumerate(b)}
    common = [i for i, r in enumerate(a) if r in where]
    if not common:
        if not trims and b_kind == "full":
            raise Failure(f"{a_kind} then a full read: no record in common, nothing trimmed")
        # Everything in `a` precedes `b`: per lane, a's records are older.
        last_a: dict[int, int] = {}
        for lane, seq in _parse(a):
            last_a[lane] = seq
        for lane, seq in _parse(b):
            if lane in last_a and seq <= last_a[lane]:
                raise Failure(
                    f"{a_kind} then {b_kind}: disjoint windows out of order (lane {lane})"
                )
        return
    c0 = common[0]
    if common != list(range(c0, len(a))):
        raise Failure(
            f"{a_kind} ({len(a)}) then {b_kind} ({len(b)}): the records in common are not a "
            f"suffix of the earlier read (first common at {c0}, {len(common)} in common)"
        )
    at = where[a[c0]]
    if b[at : at + len(a) - c0] != a[c0:]:
        raise Failure(f"{a_kind} then {b_kind}: the common part differs in order")
    inside = c0 == 0 and a_kind == "last50" and b_kind == "full"
    if at != 0 and not inside:
        raise Failure(
            f"{a_kind} ({len(a)}) then {b_kind} ({len(b)}): the later read starts {at} records "
            "before the earlier read's records"
        )
    if not trims and a_kind == "full" and b_kind == "full" and c0 != 0:
        raise Failure("full then full: the later read lost a prefix, and nothing was trimmed")


def reader_main(cfg: dict[str, Any], shared: Shared, me: int) -> None:
    trims = cfg["trimmer"]

    def body(store: Any) -> dict[str, Any]:
        counts = {"full": 0, "last50": 0, "length": 0, "records_read": 0}
        previous: tuple[str, list[bytes]] | None = None
        last_length = 0
        slowest = 0.0
        while not _deadline(cfg, shared):
            op = random.choices(["full", "last50", "length"], [cfg["full_weight"], 4, 2])[0]
            acked_before = list(shared.acked)
            done_before = list(shared.trim_done)
            started = time.monotonic()
            if op == "length":
                result: Any = store.length(KEY)
            elif op == "full":
                result = store.range(KEY, 0, -1)
            else:
                result = store.range(KEY, -50, -1)
            slowest = max(slowest, time.monotonic() - started)
            intent_after = list(shared.trim_intent)
            attempted_after = list(shared.attempted)
            counts[op] += 1
            if op == "length":
                low = sum(acked_before) - sum(intent_after)
                high = sum(attempted_after) - sum(done_before)
                if not low <= result <= high:
                    raise Failure(f"length() = {result}, outside [{low}, {high}]")
                if not trims and result < last_length:
                    raise Failure(f"length() went down: {last_length} -> {result}")
                last_length = result
                continue
            counts["records_read"] += len(result)
            check_read(op, result, acked_before, done_before, intent_after, attempted_after)
            if op == "last50":
                low = min(50, sum(acked_before) - sum(intent_after))
                if len(result) < low:
                    raise Failure(
                        f"range(-50, -1) returned {len(result)} records, at least {low} held"
                    )
            if op == "full" and not trims:
                if len(result) < last_length:
                    raise Failure(f"full read of {len(result)} after length() = {last_length}")
                last_length = len(result)
            if previous is not None:
                check_windows(previous[0], previous[1], op, result, trims)
            previous = (op, result)
            if cfg["read_pause"]:
                time.sleep(random.uniform(0, 2 * cfg["read_pause"]))
        counts["slowest_read_s"] = slowest  # type: ignore[assignment]
        return counts

    _child("reader", cfg, shared, me, body)


# -- the run --------------------------------------------------------------------------------


def run(args: argparse.Namespace, url: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    compactor, auto, trimmer = VARIANTS[args.variant]
    lanes = args.writers * args.lanes
    shared = Shared(ctx, lanes)
    cfg = {
        "url": url,
        "storage_options": storage_options,
        "speed": args.speed,
        "skew": args.skew,
        "deadline": time.time() + args.duration + 5,  # + start-up of the children
        "lanes": args.lanes,
        "auto_compact": auto,
        "trimmer": trimmer,
        "segment_records": args.segment_records,
        "pause": args.pause,
        "compact_pause": args.compact_pause,
        "trim_pause": args.trim_pause,
        "read_pause": args.read_pause,
        "keep": args.keep,
        "full_weight": args.full_weight,
        "slow_s": args.slow,
        "t0": time.monotonic(),
    }
    procs = [ctx.Process(target=writer_main, args=(cfg, shared, p)) for p in range(args.writers)]
    procs += [ctx.Process(target=reader_main, args=(cfg, shared, r)) for r in range(args.readers)]
    if compactor:
        procs.append(ctx.Process(target=compactor_main, args=(cfg, shared, 0)))
    if trimmer:
        procs.append(ctx.Process(target=trimmer_main, args=(cfg, shared, 0)))
    started = time.monotonic()
    for p in procs:
        p.start()
    reports: list[tuple[str, int, str, dict[str, Any]]] = []
    try:
        while len(reports) < len(procs):
            try:
                reports.append(shared.results.get(timeout=args.duration + 300))
            except Exception:
                raise SystemExit("a child did not report in time") from None
    finally:
        shared.stop.set()
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    elapsed = time.monotonic() - started
    failures = [r for r in reports if r[2] != "ok"]
    summary: dict[str, Any] = {
        "variant": args.variant,
        "backend": args.backend,
        "duration_s": round(elapsed, 1),
        "speed": args.speed,
        "clock_offsets_s": {
            "writers": [clock_offset_s("writer", p, args.skew) for p in range(args.writers)],
            "readers": [clock_offset_s("reader", r, args.skew) for r in range(args.readers)],
            "compactor": clock_offset_s("compactor", 0, args.skew),
            "trimmer": clock_offset_s("trimmer", 0, args.skew),
        },
        "processes": {
            "writers": args.writers,
            "lanes_per_writer": args.lanes,
            "readers": args.readers,
            "compactor": compactor,
            "auto_compact": auto,
            "trimmer": trimmer,
        },
    }
    if failures:
        summary["failures"] = failures
        return summary
    summary.update(verify(cfg, reports, trimmer))
    return summary


def verify(
    cfg: dict[str, Any], reports: list[tuple[str, int, str, dict[str, Any]]], trims: bool
) -> dict[str, Any]:
    """The end: nothing lost, nothing doubled, order kept; then one more compaction."""
    writers = [r[3] for r in reports if r[0] == "writer"]
    readers = [r[3] for r in reports if r[0] == "reader"]
    compactors = [r[3] for r in reports if r[0] == "compactor"]
    trimmers = [r[3] for r in reports if r[0] == "trimmer"]
    appended: dict[int, int] = {}
    for w in writers:
        appended.update({int(k): v for k, v in w["appended"].items()})
    saved = _limits()
    store = _setup({**cfg, "auto_compact": False})
    try:
        final = store.range(KEY, 0, -1)
        length = store.length(KEY)
        if length != len(final):
            raise Failure(f"length() {length} but range(0, -1) holds {len(final)}")
        cut = [c.encode() for t in trimmers for cuts in t["cuts"] for c in cuts]
        history = cut + final
        if len(set(history)) != len(history):
            raise Failure("the history (trimmed + final) holds a record twice")
        by_lane: dict[int, list[int]] = {}
        for lane, seq in _parse(history):
            by_lane.setdefault(lane, []).append(seq)
        for lane, count in appended.items():
            if by_lane.get(lane, []) != list(range(count)):
                got = by_lane.get(lane, [])
                raise Failure(
                    f"lane {lane}: appended {count}, history holds {len(got)}: {got[:10]}"
                )
        if set(by_lane) - set(appended):
            raise Failure("records of unknown lanes")
        positions_checked = 0
        if not trims:
            for w in writers:
                for lane, returns in w["returns"].items():
                    for seq, k, returned in returns:
                        for j in range(k):
                            if history[returned - k + j] != f"{lane}:{seq + j}".encode():
                                raise Failure(
                                    f"append of {lane}:{seq}.. returned {returned}, "
                                    f"but the record is elsewhere"
                                )
                        positions_checked += 1
        names_before = listing(store)
        # Let every chunk grow old (by the object store's clock, which may date to the
        # second), then compact once more: nothing may change.
        time.sleep(MIN_AGE_MS / cfg["speed"] / 1000 + 2.5)
        removed = store.compact(KEY)
        after = store.range(KEY, 0, -1)
        if after != final:
            raise Failure("the last compaction changed the log")
        names_after = listing(store)
    finally:
        store.close()
        _limits(saved)  # run() may be called in a process that goes on (pytest)

    def kinds(names: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in names:
            out[n[:1]] = out.get(n[:1], 0) + 1
        return out

    stats_sum: dict[str, int] = {}
    for role, rep in [(r[0], r[3]) for r in reports]:
        for k, v in rep["stats"].items():
            if k.startswith("log.") or (
                role in ("writer", "compactor") and (k.startswith("requests") or k == "retries")
            ):
                key = f"{role}:{k}"
                stats_sum[key] = stats_sum.get(key, 0) + int(v)
    return {
        "ok": True,
        "records_appended": sum(appended.values()),
        "appends": sum(len(r) for w in writers for r in w["returns"].values()),
        "records_trimmed": len(cut),
        "trims": sum(len(t["cuts"]) for t in trimmers),
        "final_length": len(final),
        "append_positions_checked": positions_checked,
        "reads": {
            k: sum(r[k] for r in readers) for k in ("full", "last50", "length", "records_read")
        },
        "compactor": {
            "runs": sum(c["runs"] for c in compactors),
            "objects_removed": sum(c["removed"] for c in compactors),
        },
        "slowest_s": {
            "append": max(w["slowest_append_s"] for w in writers),
            "read": max(r["slowest_read_s"] for r in readers),
            "compact": max((c["slowest_compact_s"] for c in compactors), default=0.0),
        },
        "slow_appends": [s for w in writers for s in w["slow"]][:20],
        "appends_that_lost_1000_claims": sum(w["starved"] for w in writers),
        "append_latency_s": _percentiles(sorted(x for w in writers for x in w["latencies"])),
        "slowest_request_s": _slowest_requests(reports),
        "slowest_close_s": round(max(r[3]["close_s"] for r in reports), 3),
        "compactions_left_running_after_close": sum(r[3]["left_running"] for r in reports),
        "slowest_append_scaled_s": round(
            max(w["slowest_append_s"] for w in writers) * cfg["speed"], 1
        ),
        "listing_before_last_compaction": kinds(names_before),
        "last_compaction_removed": removed,
        "listing_after": kinds(names_after),
        "stats": stats_sum,
    }


def _slowest_requests(reports: list[tuple[str, int, str, dict[str, Any]]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for _role, _me, _status, rep in reports:
        for op, took in rep.get("slowest_request_s", {}).items():
            out[op] = round(max(out.get(op, 0.0), took), 3)
    return out


def _percentiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    pick = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999}
    out = {k: round(xs[min(len(xs) - 1, int(q * len(xs)))], 4) for k, q in pick.items()}
    out["max"] = round(xs[-1], 4)
    out["over_1s"] = sum(1 for x in xs if x > 1)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["local", "s3", "moto"], default="local")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="compactor")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of racing")
    parser.add_argument("--writers", type=int, default=3, help="writer processes")
    parser.add_argument("--lanes", type=int, default=2, help="appending threads per writer")
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument(
        "--speed", type=float, default=100.0, help="MIN_AGE_MS and TAIL_REFRESH_MS / speed"
    )
    parser.add_argument(
        "--skew", type=float, default=0.0, help="seconds the processes' clocks are off"
    )
    parser.add_argument("--segment-records", type=int, default=0, help="SEGMENT_RECORDS override")
    parser.add_argument("--pause", type=float, default=0.0, help="mean seconds between appends")
    parser.add_argument("--compact-pause", type=float, default=0.1)
    parser.add_argument("--trim-pause", type=float, default=1.0)
    parser.add_argument("--read-pause", type=float, default=0.0)
    parser.add_argument("--keep", type=int, default=400, help="trimmer keeps about this many")
    parser.add_argument("--full-weight", type=float, default=4.0, help="share of full reads")
    parser.add_argument("--slow", type=float, default=1.0, help="report appends slower than this")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import kvstore

    print(f"kvstore from {kvstore.__file__}", flush=True)
    if args.backend == "local":
        tmp = Path(tempfile.mkdtemp(prefix="kvstore-stress-"))
        try:
            summary = run(args, str(tmp / "store"), {})
        finally:
            if not os.environ.get("KEEP_STRESS_DATA"):
                shutil.rmtree(tmp, ignore_errors=True)
    else:
        from backends import MotoS3Server, SeaweedFS

        launcher = SeaweedFS if args.backend == "s3" else MotoS3Server
        with launcher() as server:
            url = server.url_for("kvstore-test", f"stress-{uuid.uuid4().hex[:8]}")
            summary = run(args, url, server.storage_options)
    text = json.dumps(summary, indent=1, default=str)
    print(text, flush=True)
    if args.json:
        args.json.write_text(text)
    return 0 if summary.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
