"""S20: records (``store.records(name)``) on a real S3 server (SeaweedFS on loopback): a
time-range query over a year of hourly partitions, against the same records in one log
(issue 20).

A year of metrics: one record a minute (five random floats and a host label, ~80 bytes
packed) in hourly partitions - 8,760 partitions, 525,600 records; quick mode: 30
days. The **baseline** is the same records, in the same order, in ONE log
(``store.extend``) - what a program without partitions writes - queried by reading the
log whole and keeping the day (the only way a log can answer "by time"). Both are
written once by one store, then read by new stores (no cache, nothing known in the
process), so each query is cold.

* **S20.day** one day (24 partitions) of a year: wall time of ``query(start, end)`` /
  the baseline's read of its log, with requests and bytes read of each in the details.
* **S20.day.requests** the query's requests (a LIST from the first partition, then a LIST
  and a GET per partition).
* **S20.week.ratio** the same for a week (168 partitions): baseline / query wall time.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import kvstore

from .harness import Context, Planned, Row, Skip, log, median

ID = "S20"
TITLE = "records: a day and a week out of a year of hourly partitions, against one log"
FLAT = "the same records in one log, read whole and filtered (same store, same run)"
PLANNED = [
    Planned("S20.day", "a day of a year: query wall / one-log read wall", None, "<=", "x", FLAT),
    Planned("S20.day.requests", "a day of a year: the query's requests", None, "<=", "req", "-"),
    Planned(
        "S20.week.ratio", "a week of a year: one-log read wall / query wall", None, ">=", "x", FLAT
    ),
]
T0 = 1_735_689_600  # 2025-01-01T00:00:00Z
HOUR = 3600


def _records(days: int) -> list[tuple[Any, ...]]:
    """A reading a minute: five floats (as a metrics agent sends them, ~60 bytes packed
    and compressing as measurements do - not as a counter's digits would) and a host."""
    rng = random.Random(20)
    return [
        (
            {"cpu": rng.random(), "mem": rng.random(), "load": [rng.random() for _ in range(3)]},
            T0 + m * 60,
            {"host": f"h{m % 4}"},
        )
        for m in range(days * 24 * 60)
    ]


def run(ctx: Context) -> list[Row]:
    server = ctx.seaweedfs()
    days = ctx.size(30, 365)
    prefix = f"s20-{uuid.uuid4().hex[:8]}"
    url = server.url_for("kvbench", prefix)
    options = server.storage_options
    by_id = {p.id: p for p in PLANNED}
    rows = _records(days)
    started = time.perf_counter()
    with kvstore.open(url, cache=None, storage_options=options) as writer:
        metrics = writer.records("metrics", partition="hour")
        for at in range(0, len(rows), 24 * 60 * 10):  # ten days at a time
            metrics.extend(rows[at : at + 24 * 60 * 10])
        flat = [kvstore_record(r) for r in rows]
        for at in range(0, len(flat), 10_000):
            writer.extend("flat-metrics", flat[at : at + 10_000])
        writer.settle("flat-metrics")
    log(f"wrote {len(rows):,} records twice in {time.perf_counter() - started:.0f} s")

    def day_query(first_day: int, length_days: int) -> dict[str, Any]:
        with kvstore.open(url, cache=None, storage_options=options) as store:
            r = store.records("metrics", partition="hour")
            r.query(limit=0)  # the span: once per process, not part of the query
            before = store.stats()
            t = time.perf_counter()
            start = T0 + first_day * 86400
            found = r.query(start, start + length_days * 86400)
            wall = time.perf_counter() - t
            after = store.stats()
        assert len(found) == length_days * 24 * 60, len(found)
        return {"wall": wall, **_delta(before, after)}

    def flat_read(first_day: int, length_days: int) -> dict[str, Any]:
        import msgpack

        with kvstore.open(url, cache=None, storage_options=options) as store:
            store.get("warm-up")  # the client and a connection, not part of the read
            before = store.stats()
            t = time.perf_counter()
            start, end = (
                (T0 + first_day * 86400) * 1000,
                (T0 + (first_day + length_days) * 86400) * 1000,
            )
            kept = [
                raw for raw in store.range("flat-metrics") if start <= msgpack.unpackb(raw)[0] < end
            ]
            wall = time.perf_counter() - t
            after = store.stats()
        assert len(kept) == length_days * 24 * 60, len(kept)
        return {"wall": wall, **_delta(before, after)}

    middle = days // 2
    reps = ctx.size(2, 3)
    got: dict[str, list[dict[str, Any]]] = {"day": [], "flat.day": [], "week": [], "flat.week": []}
    for rep in range(reps):
        runs = {
            "day": lambda: day_query(middle, 1),
            "flat.day": lambda: flat_read(middle, 1),
            "week": lambda: day_query(middle, 7),
            "flat.week": lambda: flat_read(middle, 7),
        }
        for name in runs if rep % 2 == 0 else list(runs)[::-1]:
            got[name].append(runs[name]())
    m = {k: median([x["wall"] for x in v]) for k, v in got.items()}
    details: dict[str, Any] = {
        "days": days,
        "records": len(rows),
        **{f"{k}.wall_s": round(v, 3) for k, v in m.items()},
        **{f"{k}.requests": got[k][-1]["requests"] for k in got},
        **{f"{k}.bytes_read": got[k][-1]["bytes_read"] for k in got},
    }
    log(f"S20 details: {details}")
    return [
        by_id["S20.day"].row(m["day"] / m["flat.day"], details=details),
        by_id["S20.day.requests"].row(got["day"][-1]["requests"], details=details),
        by_id["S20.week.ratio"].row(m["flat.week"] / m["week"], details=details),
    ]


def kvstore_record(row: tuple[Any, ...]) -> bytes:
    """A record as the one-log baseline stores it: ``[ms, labels, data]`` (as records do)."""
    import msgpack

    data, ts, labels = row
    packed: bytes = msgpack.packb([ts * 1000, labels, data], use_bin_type=True)
    return packed


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        "requests": int(after.get("requests", 0)) - int(before.get("requests", 0)),
        "bytes_read": int(after.get("bytes_read", 0)) - int(before.get("bytes_read", 0)),
        "lists": int(after.get("requests.list", 0)) - int(before.get("requests.list", 0)),
        "gets": int(after.get("requests.get", 0)) - int(before.get("requests.get", 0)),
    }


__all__ = ["ID", "PLANNED", "TITLE", "Skip", "run"]
