"""S21: maintenance (``store.maintain()``, issue 20) of a store of 100,000 objects on a real
S3 server (SeaweedFS on loopback); quick mode: 10,000.

The store: N small values (``keep:`` 90%, ``old:`` 10%), all older than the retention rule
``values old: max_age=2 s`` by the time maintenance runs, and a rule for ``keep:`` that
keeps everything (``max_age`` a year): maintenance lists everything, decides on every
``keep:`` value from the listing, and deletes the ``old:`` ones. The **baseline** is one
sized listing of the same store (``store.usage()``: what any tool that looks at every
object pays at least), in the same run.

* **S21.maintain** ``maintain(purge_expired=False)`` wall / usage wall (one listing):
  maintain lists twice (before and after) and dates the rules' prefixes once more, then
  deletes.
* **S21.requests_per_removed** its requests, less three listings' worth, per value removed
  (a ranged GET and a conditional DELETE; the listings are shared by all).
* **S21.removed_per_s** values removed per second of it.
* **S21.expired** then ``maintain()`` (finding expired values: a ranged GET of every
  value) on the same store, nothing left to remove: its wall / one listing's wall.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import kvstore

from .harness import Context, Planned, Row, log

ID = "S21"
TITLE = "maintenance of 100k objects: retention rules applied, against one listing"
LISTING = "one sized listing of the same store (store.usage(), same run)"
PLANNED = [
    Planned("S21.maintain", "maintain wall / one listing's wall", None, "<=", "x", LISTING),
    Planned("S21.requests_per_removed", "requests per value removed", 2.5, "<=", "req", "-"),
    Planned("S21.removed_per_s", "values removed per second", None, ">=", "/s", "-"),
    Planned(
        "S21.expired", "maintain() with expired values / one listing", None, "<=", "x", LISTING
    ),
]


def run(ctx: Context) -> list[Row]:
    server = ctx.seaweedfs()
    total = ctx.size(10_000, 100_000)
    old = total // 10
    url = server.url_for("kvbench", f"s21-{uuid.uuid4().hex[:8]}")
    options = server.storage_options
    by_id = {p.id: p for p in PLANNED}
    started = time.perf_counter()
    with kvstore.open(url, cache=None, storage_options=options) as store:
        batch = 5000
        names = [f"old:{i:06d}" for i in range(old)] + [f"keep:{i:06d}" for i in range(total - old)]
        for at in range(0, total, batch):
            store.mset({k: f"value {k}" for k in names[at : at + batch]})
        store.set_retention("values", "old:", max_age=2)
        store.set_retention("values", "keep:", max_age=365 * 86400)
    log(f"wrote {total:,} values in {time.perf_counter() - started:.0f} s")
    time.sleep(3)  # every "old:" value is older than its rule now

    with kvstore.open(url, cache=None, storage_options=options) as store:
        store.get("warm-up")
        before = store.stats()["requests"]
        t = time.perf_counter()
        found = store.usage()
        listing_wall = time.perf_counter() - t
        listing_requests = store.stats()["requests"] - before
    assert found["objects"] == total + 1, found["objects"]  # + the policy

    with kvstore.open(url, cache=None, storage_options=options) as store:
        store.get("warm-up")
        before_stats = store.stats()
        t = time.perf_counter()
        report = store.maintain(purge_expired=False)
        wall = time.perf_counter() - t
        after_stats = store.stats()
        t = time.perf_counter()
        expired_report = store.maintain()
        expired_wall = time.perf_counter() - t
        expired_requests = store.stats()["requests"] - after_stats["requests"]
    assert sum(r["removed"] for r in expired_report["rules"]) == 0
    removed = sum(r["removed"] for r in report["rules"])
    assert removed == old, report["rules"]
    spent = after_stats["requests"] - before_stats["requests"]
    per_removed = (spent - 3 * listing_requests) / removed
    details: dict[str, Any] = {
        "objects": total,
        "removed": removed,
        "listing.wall_s": round(listing_wall, 3),
        "listing.requests": listing_requests,
        "maintain.wall_s": round(wall, 3),
        "maintain.requests": spent,
        "maintain.by_kind": {
            k: after_stats.get(k, 0) - before_stats.get(k, 0)
            for k in sorted(after_stats)
            if k.startswith("requests.") and after_stats.get(k, 0) != before_stats.get(k, 0)
        },
        "freed": report["freed"],
        "expired.wall_s": round(expired_wall, 3),
        "expired.requests": expired_requests,
    }
    log(f"S21 details: {details}")
    return [
        by_id["S21.maintain"].row(wall / listing_wall, details=details),
        by_id["S21.requests_per_removed"].row(per_removed, details=details),
        by_id["S21.removed_per_s"].row(removed / wall, details=details),
        by_id["S21.expired"].row(expired_wall / listing_wall, details=details),
    ]
