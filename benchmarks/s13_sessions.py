"""S13: agent sessions (``store.sessions``) on a real S3 server (SeaweedFS on loopback):
loading a session, listing a user's sessions, 8 processes appending to one session,
deleting a user - each against a named baseline measured in the same run (issue 15).

Every store talks HTTP to one SeaweedFS server. Request counts come from the store's own
counters (``store.stats()``, by kind); the GETs of event objects are told apart from the
head's and the state's by a pass-through wrapper of the blob store (``_Tally``), which
counts nothing else and changes no request. A "new store" is a new ``AsyncKVStore`` with
its own S3 client and an empty ``LocalCache``; before it is measured it makes one GET of
a missing key (not counted), so its client exists and a connection is open.

* **S13.a** load a session of 10 / 200 / 5,000 events (``sessions.get``, every event).
  *Cold*: the first get of a new store; *warm*: the second get of the same store, at once
  (the in-process cache); *later*: a third get 1.5 s after (in the last repetition): the
  in-process cache serves mutable objects - the head, the state, a log's plan - for 1 s
  (``LocalCache``'s ttl, its coherence across processes), immutable ones - chunks and
  segments - for an hour, so the next turn of a conversation pays the "later" figure. Each
  session was written by one process appending its events one at a time (``append_event``,
  a state delta on each), then closing - so its log is settled (segments cover the chunks;
  README "Settled"). Requests for the events log (the LIST pages and the GETs of event
  objects) and for the whole get (+ the head, the app state and the user state: three
  GETs, concurrent with each other). Baselines, same run: the **floor** - the same events
  (timestamps, data, deltas) as ONE msgpack object written by ``store.set`` and read by
  one ``get``; and **settling off** - the same events appended with
  ``kvstore.logs.limits.SETTLE = False`` (one chunk per event and nothing covering them:
  what kvstore cost before settling), read with it off too (a read of 16 chunks or more
  would otherwise settle the log in the background, and the next repetition would read a
  settled log). The two sessions are written at once by two processes (SETTLE is per
  process). Wall time: medians of interleaved repetitions (settled / settling off /
  floor), each on a new store. The chunks a settle covers are deleted only once 10 minutes
  old (``limits.MIN_AGE_MS``), and only by a later settle or compaction: a log read within
  minutes of its writing still lists every chunk - for 5,000 events, six LIST pages.
* **S13.b** list 5,000 sessions of one user (``sessions.list(app, user, limit=100)``, page
  by page with the cursor) on a new store (cold: every head is a GET), then again on the
  same store (warm) - with the in-process cache as ``kvstore.open`` makes it (heads live 1
  s in it: a pass that takes longer finds them gone), and with one that keeps them
  (``LocalCache(ttl=600)``; a Redis cache keeps entries ``cache_ttl``, 60 s). Baseline: a
  bare listing of the same prefix with the blob store, 100 names a page
  (``blob.list_pages(prefix, page_size=100)``) - the floor, one LIST per page. Medians of
  interleaved repetitions.
* **S13.c** 8 processes (``kvstore.testing.run_in_processes``, spawned, released by a
  barrier), each appending N events with a state delta to ONE session - each process its
  own session-scope key, ``user:`` key and ``app:`` key - through its own ``kvstore.open``
  (the default in-process cache). Throughput (events/s from the first process's start to
  the last one's end), requests per event (summed over the processes' stats, including
  what their ``close()`` still settles), and a check that nothing was lost: every event
  present once, each process's in its order, the head folded over all of them (``list``
  shows the head alone), and every writer's last value in all three scopes - a loss fails
  the scenario. Baselines in the same processes: 8 distinct sessions, each of its own user
  in its own app (no object shared: no contention), and 8 sessions of one user in one app
  (the heads apart, the user and app state shared). Repetitions interleaved; each process
  opens a store per run and closes it (so a run's background settles land in its counts).
* **S13.d** delete a user with 100 sessions, each with 10 events and one artifact saved
  under ``sessions.artifact_name(...)``: requests by kind and time of ``delete_user``, on a
  new store; baseline: the same sessions of another user, built the same way, deleted one
  by one with ``sessions.delete`` (sequentially, as a loop over the blocking API does).
  Both are verified: no head, event object or live artifact of the user is left.

Quick mode (``--quick``): S13.a 10 / 200 / 1,000 events, S13.b 1,000 sessions, S13.c 8 x 10
events once, S13.d 20 sessions once; fewer repetitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgpack

import kvstore
from kvstore.blob import WrapperBlobStore, open_blob_store
from kvstore.blob.base import Blob
from kvstore.cache.local import DEFAULT_TTL as LOCAL_TTL
from kvstore.logs import limits
from kvstore.stats import Stats
from kvstore.testing import run_in_processes

from . import data
from .harness import Context, Planned, Row, gathered, log, median, requests_delta

ID = "S13"
TITLE = "agent sessions on SeaweedFS: load, list, 8 appenders on one session, delete a user"

BUCKET = "kvbench"
APP = "support-bot"
LIST_APP = "list-bot"  # S13.b's sessions: no app state (the others' app:model)
FULL_SIZES = (10, 200, 5000)
LATER_S = LOCAL_TTL + 0.5  # "later": the in-process cache's mutable entries have expired
LOG_TARGET = 3  # cold: requests for the events log of 10 and 200 events (issue 15)
PROCESSES = 8
LIST_LIMIT = 100
FLOOR = "the same events as ONE object: store.set of a msgpack blob, one get"
OFF = "the same events appended with kvstore.logs.limits.SETTLE = False"
BARE = "bare LIST of the heads' prefix, 100 names a page (blob.list_pages)"
DISTINCT = "the same 8 processes on 8 distinct sessions (own user, own app)"
ONE_BY_ONE = "the same sessions deleted one by one with sessions.delete"


def _size_label(n: int) -> str:
    return f"{n:,}"


def _a_rows(n: int) -> list[Planned]:
    label = _size_label(n)
    return [
        Planned(
            f"S13.a.{n}.log",
            f"cold get of a {label}-event session: requests for the events log",
            LOG_TARGET if n <= 200 else None,
            "<=",
            "requests",
            "LIST + 1 GET per 1,024 events (README: settled logs)",
        ),
        Planned(
            f"S13.a.{n}.total",
            f"cold get of a {label}-event session: requests in all "
            "(head + app state + user state + events)",
            None,
            "<=",
            "requests",
            FLOOR,
        ),
        Planned(
            f"S13.a.{n}.warm",
            f"warm get of a {label}-event session (same store, in-process cache): requests",
            0,
            "<=",
            "requests",
            "",
        ),
        Planned(
            f"S13.a.{n}.later",
            f"get of the same {label}-event session {LATER_S:g} s later (same store): requests",
            None,
            "<=",
            "requests",
            f"the in-process cache keeps heads and state {LOCAL_TTL:g} s, segments 1 h",
        ),
        Planned(
            f"S13.a.{n}.off",
            f"cold get of a {label}-event session written with settling off: "
            "requests for the events log",
            None,
            "<=",
            "requests",
            OFF,
        ),
        Planned(
            f"S13.a.{n}.wall",
            f"cold get of a {label}-event session: wall time vs the floor (one object)",
            None,
            "<=",
            "x",
            FLOOR,
        ),
    ]


PLANNED = [
    *(row for n in FULL_SIZES for row in _a_rows(n)),
    Planned(
        "S13.b.cold",
        "list 5,000 sessions of one user, limit=100, new store: requests per page",
        None,
        "<=",
        "requests/page",
        BARE,
    ),
    Planned(
        "S13.b.warm",
        "list 5,000 sessions of one user again, same store (in-process cache, as opened): "
        "requests per page",
        None,
        "<=",
        "requests/page",
        BARE,
    ),
    Planned(
        "S13.b.warm.kept",
        "list 5,000 sessions of one user again, same store, heads kept (LocalCache(ttl=600)): "
        "requests per page",
        None,
        "<=",
        "requests/page",
        BARE,
    ),
    Planned(
        "S13.b.wall",
        "list 5,000 sessions of one user, new store: total time vs bare LIST pages",
        None,
        "<=",
        "x",
        BARE,
    ),
    Planned(
        "S13.b.wall.warm",
        "list 5,000 sessions of one user again, heads kept: total time vs bare LIST pages",
        None,
        "<=",
        "x",
        BARE,
    ),
    Planned(
        "S13.c",
        "8 processes x N events with deltas on ONE session: events/s",
        None,
        ">=",
        "events/s",
        DISTINCT,
    ),
    Planned(
        "S13.c.wall",
        "8 processes x N events on ONE session: total wall time vs 8 distinct sessions",
        None,
        "<=",
        "x",
        DISTINCT,
    ),
    Planned(
        "S13.c.requests",
        "8 processes x N events on ONE session: object requests per event",
        None,
        "<=",
        "requests/event",
        DISTINCT,
    ),
    Planned(
        "S13.c.shared",
        "8 processes x N events on 8 sessions of ONE user and app: object requests per event",
        None,
        "<=",
        "requests/event",
        DISTINCT,
    ),
    Planned(
        "S13.c.lost",
        "8 processes x N events on ONE session: events and state updates lost",
        0,
        "==",
        "lost",
        "verified: every event once, in order; the last value of every key in all scopes",
    ),
    Planned(
        "S13.d",
        "delete_user: a user with 100 sessions (10 events + 1 artifact each): requests",
        None,
        "<=",
        "requests",
        ONE_BY_ONE,
    ),
    Planned(
        "S13.d.loop",
        "the same 100 sessions deleted one by one with sessions.delete: requests",
        None,
        "<=",
        "requests",
        "",
    ),
    Planned(
        "S13.d.wall",
        "delete_user of 100 sessions: wall time vs one by one",
        None,
        "<=",
        "x",
        ONE_BY_ONE,
    ),
]
_BY_ID = {p.id: p for p in PLANNED}


# -- shared helpers ------------------------------------------------------------------------


class _Tally(WrapperBlobStore):
    """Passes every request through; counts the GETs of objects below ``area`` (the
    sessions' event logs) - the store's stats count every request by kind already."""

    area = ""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.area_gets = 0

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        if self.area and path.startswith(self.area):
            self.area_gets += 1
        return await self.inner._get(path, head)


def _new_store(
    url: str, options: dict[str, Any], area: str = "", cache: Any = None
) -> kvstore.AsyncKVStore:
    """A new store: its own S3 client, an empty in-process cache (by default as
    ``kvstore.open`` makes one), the tally in front."""
    blob = _Tally(open_blob_store(url, options, stats=Stats()))
    blob.area = area
    return kvstore.open_async(blob, cache=cache or kvstore.LocalCache())


def _tally(store: kvstore.AsyncKVStore) -> _Tally:
    blob = store._ctx.blob
    assert isinstance(blob, _Tally)
    return blob


async def _warm_up(store: kvstore.AsyncKVStore) -> None:
    """One GET of a missing key: the S3 client made and a connection open (not counted)."""
    assert await store.get("s13:warm-up") is None


@contextlib.contextmanager
def _settling(on: bool) -> Iterator[None]:
    before = limits.SETTLE
    limits.SETTLE = on
    try:
        yield
    finally:
        limits.SETTLE = before


def _add(into: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    for kind, count in more.items():
        into[kind] = into.get(kind, 0) + count
    return into


def _event(message: dict[str, Any]) -> dict[str, Any]:
    """An agent event from a chat message (benchmarks.data)."""
    return {"author": message["role"], "id": message["id"], "content": message["content"]}


def _delta(i: int) -> dict[str, Any]:
    """The state delta of event ``i``: a session key on every event, a user key on every
    tenth (a swap of the user's state more when written; free when read)."""
    delta: dict[str, Any] = {"turn": i}
    if i % 10 == 0:
        delta["user:last_turn"] = i
    return delta


def _reader(settle: bool, n: int) -> str:
    """The user of S13.a's session of ``n`` events (its own: ``user:`` deltas)."""
    return f"reader-{'on' if settle else 'off'}-{n}"


def _objects(names: list[str]) -> dict[str, int]:
    """A log directory's objects by kind: chunks (c), segments (s), marks (m)."""
    kinds: dict[str, int] = {}
    for name in names:
        kind = name.rsplit("/", 2)[-2]
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


# -- S13.a: building the sessions (in two processes: SETTLE is per process) -----------------


def _build_sessions(
    url: str, options: dict[str, Any], settle: bool, sizes: list[int], tag: str, barrier: Any
) -> dict[str, Any]:
    """Sessions of ``sizes`` events each, appended one at a time by one store per session
    (all at once), with ``limits.SETTLE = settle``; each store closed at the end (its last
    settle done). Returns per size: requests by kind (close included) and seconds."""
    limits.SETTLE = settle
    barrier.wait()

    async def one(n: int) -> dict[str, Any]:
        sid = f"{tag}-{'settled' if settle else 'off'}-{n}"
        messages = list(data.messages(n, seed=n))
        started = time.perf_counter()
        async with kvstore.open_async(
            url, cache=kvstore.LocalCache(), storage_options=options
        ) as store:
            await store.set(f"s13:probe:{os.getpid()}:{n}", "x", nx=True)  # the probe, once
            before = store.stats()
            user = _reader(settle, n)
            state = {"topic": "billing", "user:name": "Alice", "app:model": "m1"}
            await store.sessions.create(APP, user, sid, state=state, title=f"{n} events")
            for i, message in enumerate(messages):
                await store.sessions.append_event(APP, user, sid, _event(message), _delta(i))
        return {
            "n": n,
            "requests": requests_delta(before, store.stats()),
            "seconds": time.perf_counter() - started,
        }

    async def main() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(one(n) for n in sizes)))

    return {"settle": settle, "built": asyncio.run(main())}


# -- S13.c: the appending processes ----------------------------------------------------------


def _appender(
    url: str,
    options: dict[str, Any],
    plan: list[tuple[str, int, str, str, str]],
    w: int,
    n: int,
    barrier: Any,
) -> list[dict[str, Any]]:
    """For each (variant, rep, app, user, session) of ``plan`` in turn: open a store (the
    default in-process cache), read the session, wait for the other processes, append
    ``n`` events with a delta touching this process's own key in each scope, close."""
    out: list[dict[str, Any]] = []
    for variant, rep, app, user, sid in plan:
        store = kvstore.open(url, storage_options=options)
        try:
            # a connection; the precondition probe (once per process)
            store.set(f"s13:probe:{os.getpid()}:{variant}:{rep}", "x", nx=True)
            assert store.sessions.get(app, user, sid) is not None
            barrier.wait(timeout=600)
            before = store.stats()
            started, cpu = time.time(), time.process_time()
            for i in range(n):
                store.sessions.append_event(
                    app,
                    user,
                    sid,
                    {"author": f"agent-{w}", "w": w, "i": i, "content": f"step {i} of {w}"},
                    state_delta={f"w{w}": i, f"user:w{w}": i, f"app:w{w}": i},
                )
            ended, cpu = time.time(), time.process_time() - cpu
        finally:
            store.close()  # finishes this run's settles: counted below
        out.append(
            {
                "variant": variant,
                "rep": rep,
                "start": started,
                "end": ended,
                "cpu": cpu,
                "before": before,
                "after": store.stats(),
            }
        )
    return out


# -- the scenario ----------------------------------------------------------------------------


def run(ctx: Context) -> list[Row]:
    server = ctx.seaweedfs()
    tag = uuid.uuid4().hex[:8]
    url = server.url_for(BUCKET, f"s13-{tag}")
    options = server.storage_options
    rows: list[Row] = []
    rows += _load(ctx, url, options, tag)
    rows += asyncio.run(_list(ctx, url, options))
    rows += _append(ctx, url, options, tag)
    rows += asyncio.run(_delete(ctx, url, options))
    return rows


# -- S13.a -----------------------------------------------------------------------------------


def _load(ctx: Context, url: str, options: dict[str, Any], tag: str) -> list[Row]:
    sizes = list(ctx.size((10, 200, 1000), FULL_SIZES))
    reps = ctx.size((3, 3, 2), (5, 5, 3))
    started = time.perf_counter()
    built = run_in_processes(
        _build_sessions,
        [(url, options, True, sizes, tag), (url, options, False, sizes, tag)],
        barrier=True,
        timeout=3600,
    )
    writes = {(b["settle"], one["n"]): one for b in built for one in b["built"]}
    log(
        f"S13.a built {len(sizes)} sessions twice (settling on / off) in "
        f"{time.perf_counter() - started:.0f} s: "
        + ", ".join(
            f"{n}: {writes[True, n]['requests']['total'] / n:.2f} / "
            f"{writes[False, n]['requests']['total'] / n:.2f} requests/append"
            for n in sizes
        )
    )
    rows: list[Row] = []
    for slot, (n, r) in enumerate(zip(sizes, reps, strict=True)):
        rows += asyncio.run(_load_one(url, options, tag, slot, n, r, writes))
    return rows


async def _load_one(
    url: str,
    options: dict[str, Any],
    tag: str,
    slot: int,
    n: int,
    reps: int,
    writes: dict[tuple[bool, int], dict[str, Any]],
) -> list[Row]:
    sids = {"settled": f"{tag}-settled-{n}", "off": f"{tag}-off-{n}"}
    users = {"settled": _reader(True, n), "off": _reader(False, n)}
    expected = [_event(m) for m in data.messages(n, seed=n)]
    floor_key = f"s13:floor:{n}"
    async with _new_store(url, options) as setup:
        layout = setup._ctx.layout
        area = layout.session_events_area(APP)
        first = await setup.sessions.get(APP, users["settled"], sids["settled"])
        assert first is not None
        stored = [[e.timestamp, e.data, e.state_delta] for e in first.events]
        await setup.set(floor_key, msgpack.packb(stored))
        objects: dict[str, dict[str, int]] = {}
        for name, sid in sids.items():
            names: list[str] = []
            directory = layout.session_events_area(APP, users[name], sid)
            async for page in setup._ctx.blob.list_pages(directory):
                names.extend(page)
            objects[name] = _objects(names)

    def check(session: Any, which: str) -> None:
        assert session is not None, which
        assert [e.seq for e in session.events] == list(range(n)), (which, n)
        assert [e.data for e in session.events] == expected, f"{which}: events differ"
        assert session.state == {
            "topic": "billing",
            "turn": n - 1,
            "user:name": "Alice",
            "user:last_turn": (n - 1) // 10 * 10,
            "app:model": "m1",
        }, (which, session.state)

    seen: dict[str, list[dict[str, Any]]] = {"settled": [], "off": [], "floor": []}

    def reader(which: str) -> Callable[[bool], Awaitable[float]]:
        async def read(later: bool) -> float:
            got: list[Any] = []
            run: dict[str, Any] = {}
            async with _new_store(url, options, area) as store:
                await _warm_up(store)
                for phase in ("cold", "warm", "later") if later else ("cold", "warm"):
                    if phase == "later":  # past the in-process cache's TTL of mutable entries
                        await asyncio.sleep(LATER_S)
                    before, area_before = store.stats(), _tally(store).area_gets
                    wall, cpu = time.perf_counter(), time.process_time()
                    if which == "floor":
                        got.append(msgpack.unpackb(await store.get(floor_key)))
                    else:
                        with _settling(which == "settled"):
                            got.append(await store.sessions.get(APP, users[which], sids[which]))
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    req = requests_delta(before, store.stats())
                    run[phase] = {
                        "wall": wall,
                        "cpu": cpu,
                        "req": req,
                        "log": req.get("list", 0) + _tally(store).area_gets - area_before,
                    }
            for value in got:
                if which == "floor":
                    assert value == stored, "the floor's object reads back different"
                else:
                    check(value, which)
            seen[which].append(run)
            return float(run["cold"]["wall"])

        return read

    contenders = {w: reader(w) for w in seen}
    for read in contenders.values():  # warm-up: imports, first allocations
        await read(False)
    for runs in seen.values():
        runs.clear()
    for rep in range(reps):
        for which in list(contenders) if rep % 2 == 0 else list(contenders)[::-1]:
            await contenders[which](rep == reps - 1)

    def summary(which: str, phase: str) -> dict[str, Any]:
        runs = [r[phase] for r in seen[which] if phase in r]
        reqs = [r["req"] for r in runs]
        return {
            "wall_ms": median([r["wall"] for r in runs]) * 1e3,
            "cpu_ms": median([r["cpu"] for r in runs]) * 1e3,
            "req": reqs[-1],
            "log": runs[-1]["log"],
            "same": all(q == reqs[0] for q in reqs) and len({r["log"] for r in runs}) == 1,
        }

    kv, off, floor = (summary(w, "cold") for w in ("settled", "off", "floor"))
    kv_warm, off_warm, floor_warm = (summary(w, "warm") for w in ("settled", "off", "floor"))
    kv_later, off_later, floor_later = (summary(w, "later") for w in ("settled", "off", "floor"))
    log(
        f"S13.a {n} events cold: settled {kv['log']} log / {kv['req']['total']} in all "
        f"({kv['wall_ms']:.0f} ms), settling off {off['log']} / {off['req']['total']} "
        f"({off['wall_ms']:.0f} ms), floor {floor['req']['total']} ({floor['wall_ms']:.1f} "
        f"ms); warm {kv_warm['req']['total']} ({kv_warm['wall_ms']:.1f} ms); log objects "
        f"settled {objects['settled']}, off {objects['off']}"
    )
    write_on, write_off = writes[True, n], writes[False, n]
    details = {
        "events": n,
        "reps": reps,
        "log_objects_settled": ",".join(f"{k}={v}" for k, v in sorted(objects["settled"].items())),
        "log_objects_off": ",".join(f"{k}={v}" for k, v in sorted(objects["off"].items())),
        "cold_ms": kv["wall_ms"],
        "cold_ms_off": off["wall_ms"],
        "cold_ms_floor": floor["wall_ms"],
        "warm_ms": kv_warm["wall_ms"],
        "warm_ms_off": off_warm["wall_ms"],
        "warm_ms_floor": floor_warm["wall_ms"],
        "cold_cpu_ms": kv["cpu_ms"],
        "cold_cpu_ms_off": off["cpu_ms"],
        "cold_cpu_ms_floor": floor["cpu_ms"],
        "requests_same_every_rep": kv["same"] and off["same"] and floor["same"],
        "write_requests_per_append": write_on["requests"]["total"] / n,
        "write_requests_per_append_off": write_off["requests"]["total"] / n,
        "write_s": write_on["seconds"],
        "write_s_off": write_off["seconds"],
    }
    requests = {
        "settled": kv["req"],
        "settled_log": kv["log"],
        "off": off["req"],
        "floor": floor["req"],
    }
    planned = _a_rows(FULL_SIZES[slot])  # ids as planned; names with the size run
    names = [p.name + ("" if n == FULL_SIZES[slot] else " (quick)") for p in _a_rows(n)]

    def row(i: int, value: float | int, **kwargs: Any) -> Row:
        return planned[i].row(value, name=names[i], **kwargs)

    return [
        row(0, kv["log"], requests=requests, details=details),
        row(1, kv["req"]["total"], requests=requests, details=details),
        row(
            2,
            kv_warm["req"]["total"],
            requests={
                "settled": kv_warm["req"],
                "off": off_warm["req"],
                "floor": floor_warm["req"],
            },
            details=details,
        ),
        row(
            3,
            kv_later["req"]["total"],
            requests={
                "settled": kv_later["req"],
                "settled_log": kv_later["log"],
                "off": off_later["req"],
                "floor": floor_later["req"],
            },
            details=details,
        ),
        row(4, off["log"], requests=requests, details=details),
        row(5, kv["wall_ms"] / floor["wall_ms"], requests=requests, details=details),
    ]


# -- S13.b -----------------------------------------------------------------------------------


async def _list(ctx: Context, url: str, options: dict[str, Any]) -> list[Row]:
    count = ctx.size(1000, 5000)
    reps = ctx.size(2, 2)
    user = "lister"
    ids = [f"s{i:05d}" for i in range(count)]
    started = time.perf_counter()
    async with _new_store(url, options) as setup:
        await gathered(
            [
                lambda sid=sid: setup.sessions.create(
                    LIST_APP, user, sid, state={"n": int(sid[1:])}, title=f"chat {sid}"
                )
                for sid in ids
            ],
            64,
        )
        prefix = setup._ctx.layout.session_heads(LIST_APP, user)
    log(f"S13.b created {count} sessions in {time.perf_counter() - started:.0f} s")

    def check(got: list[Any]) -> None:
        assert [s.id for s in got] == ids, "the pages do not hold every session once, in order"
        for s in got:
            assert s.state == {"n": int(s.id[1:])} and s.title == f"chat {s.id}", s

    # default: the in-process cache as kvstore.open makes it (mutable entries live 1 s);
    # kept: a cache that keeps the heads (LocalCache(ttl=600), as a Redis cache would for
    # cache_ttl) - the warm pass then shows what a list costs with every head cached.
    seen: dict[str, list[dict[str, Any]]] = {
        "default_cold": [],
        "default_warm": [],
        "kept_cold": [],
        "kept_warm": [],
        "bare": [],
    }

    def sessions(kind: str) -> Callable[[], Awaitable[float]]:
        async def passes() -> float:
            cache = kvstore.LocalCache() if kind == "default" else kvstore.LocalCache(ttl=600)
            async with _new_store(url, options, cache=cache) as store:
                await _warm_up(store)
                for phase in ("cold", "warm"):
                    got: list[Any] = []
                    pages: list[dict[str, int]] = []
                    cursor = None
                    wall = time.perf_counter()
                    while True:
                        before = store.stats()
                        page = await store.sessions.list(
                            LIST_APP, user, limit=LIST_LIMIT, cursor=cursor
                        )
                        pages.append(requests_delta(before, store.stats()))
                        got.extend(page.sessions)
                        cursor = page.cursor
                        if cursor is None:
                            break
                    wall = time.perf_counter() - wall
                    check(got)
                    seen[f"{kind}_{phase}"].append({"wall": wall, "pages": pages})
            return float(seen[f"{kind}_cold"][-1]["wall"])

        return passes

    async def bare() -> float:
        async with _new_store(url, options) as store:
            await _warm_up(store)
            before = store.stats()
            names: list[str] = []
            pages = 0
            wall = time.perf_counter()
            async for page in store._ctx.blob.list_pages(prefix, page_size=LIST_LIMIT):
                names.extend(page)
                pages += 1
            wall = time.perf_counter() - wall
            assert len(names) == count, (len(names), count)
            seen["bare"].append(
                {"wall": wall, "pages": [requests_delta(before, store.stats())], "n": pages}
            )
        return wall

    contenders = {"default": sessions("default"), "kept": sessions("kept"), "bare": bare}
    for rep in range(reps):
        for name in list(contenders) if rep % 2 == 0 else list(contenders)[::-1]:
            await contenders[name]()

    def summed(phase: str) -> tuple[dict[str, int], list[int]]:
        """Requests of the last repetition's pass, by kind, and per list() call."""
        pages = seen[phase][-1]["pages"]
        total: dict[str, int] = {}
        for page in pages:
            _add(total, page)
        return total, [p["total"] for p in pages]

    cold, per_cold = summed("default_cold")
    warm, per_warm = summed("default_warm")
    kept_cold, _ = summed("kept_cold")
    kept, per_kept = summed("kept_warm")
    bare_req, _ = summed("bare")
    full_pages = -(-count // LIST_LIMIT)  # pages holding sessions
    walls = {k: median([r["wall"] for r in v]) for k, v in seen.items()}
    log(
        f"S13.b {count} sessions, {len(per_cold)} list() calls ({full_pages} pages of "
        f"sessions): cold {cold} in {walls['default_cold']:.1f} s, warm {warm} in "
        f"{walls['default_warm']:.1f} s; heads kept: cold {kept_cold} in "
        f"{walls['kept_cold']:.1f} s, warm {kept} in {walls['kept_warm']:.2f} s; bare LIST "
        f"{bare_req} in {walls['bare']:.2f} s"
    )
    details = {
        "sessions": count,
        "list_calls": len(per_cold),
        "pages_with_sessions": full_pages,
        "reps": reps,
        **{f"{k}_s": v for k, v in walls.items()},
        "bare_pages": seen["bare"][-1]["n"],
        "cold_requests_per_call": "/".join(str(n) for n in per_cold),
        "warm_requests_per_call": "/".join(str(n) for n in per_warm),
        "kept_warm_requests_per_call": "/".join(str(n) for n in per_kept),
    }
    requests = {
        "cold": cold,
        "warm": warm,
        "kept_warm": kept,
        "bare": bare_req,
        "pages": full_pages,
    }

    def named(planned: Planned) -> str:
        name = planned.name.replace("5,000", f"{count:,}")
        return name if count == 5000 else name + " (quick)"

    def row(id_: str, value: float) -> Row:
        planned = _BY_ID[id_]
        return planned.row(value, name=named(planned), requests=requests, details=details)

    return [
        row("S13.b.cold", cold["total"] / full_pages),
        row("S13.b.warm", warm["total"] / full_pages),
        row("S13.b.warm.kept", kept["total"] / full_pages),
        row("S13.b.wall", walls["default_cold"] / walls["bare"]),
        row("S13.b.wall.warm", walls["kept_warm"] / walls["bare"]),
    ]


# -- S13.c -----------------------------------------------------------------------------------

VARIANTS = ("one", "distinct", "shared")


def _sessions_of(variant: str, rep: int, tag: str) -> list[tuple[str, str, str]]:
    """(app, user, session) of each process's appends in a run."""
    if variant == "one":
        return [(f"c-one-{tag}-{rep}", "u", "hot")] * PROCESSES
    if variant == "distinct":
        return [(f"c-own-{tag}-{rep}-{w}", f"u{w}", "own") for w in range(PROCESSES)]
    return [(f"c-shared-{tag}-{rep}", "u", f"s{w}") for w in range(PROCESSES)]


def _append(ctx: Context, url: str, options: dict[str, Any], tag: str) -> list[Row]:
    n = ctx.size(10, 40)
    reps = ctx.size(1, 3)
    order = [VARIANTS if rep % 2 == 0 else VARIANTS[::-1] for rep in range(reps)]
    plan: list[list[tuple[str, int, str, str, str]]] = [[] for _ in range(PROCESSES)]
    with contextlib.closing(kvstore.open(url, cache=None, storage_options=options)) as setup:
        for rep, variants in enumerate(order):
            for variant in variants:
                targets = _sessions_of(variant, rep, tag)
                for app, user, sid in dict.fromkeys(targets):
                    setup.sessions.create(app, user, sid)
                for w, (app, user, sid) in enumerate(targets):
                    plan[w].append((variant, rep, app, user, sid))
    started = time.perf_counter()
    results = run_in_processes(
        _appender,
        [(url, options, plan[w], w, n) for w in range(PROCESSES)],
        barrier=True,
        timeout=3600,
    )
    log(f"S13.c {PROCESSES} processes spawned and run in {time.perf_counter() - started:.0f} s")
    lost = _verify_appends(url, options, reps, tag, n)

    runs: dict[str, list[list[dict[str, Any]]]] = {v: [] for v in VARIANTS}
    for variant in VARIANTS:
        for rep in range(reps):
            runs[variant].append(
                [r for proc in results for r in proc if (r["variant"], r["rep"]) == (variant, rep)]
            )
    total = PROCESSES * n

    def span(results: list[dict[str, Any]]) -> float:
        return max(r["end"] for r in results) - min(r["start"] for r in results)

    summary: dict[str, dict[str, Any]] = {}
    for variant, per_rep in runs.items():
        requests: dict[str, int] = {}
        conflicts: dict[str, int] = {}
        for procs in per_rep:
            for r in procs:
                _add(requests, requests_delta(r["before"], r["after"]))
                for name in ("swap_conflicts", "log.append_conflicts", "log.claim_conflicts"):
                    got = int(r["after"].get(name, 0)) - int(r["before"].get(name, 0))
                    if got:
                        conflicts[name] = conflicts.get(name, 0) + got
        wall = median([span(p) for p in per_rep])
        summary[variant] = {
            "wall": wall,
            "rate": total / wall,
            "requests": requests,
            "per_event": requests["total"] / (total * reps),
            "conflicts": conflicts,
            "cpu_ms": sum(r["cpu"] for p in per_rep for r in p) / (total * reps) * 1e3,
        }
        log(
            f"S13.c {variant}: {PROCESSES}x{n} events in {wall:.2f} s ({total / wall:.0f}/s), "
            f"{summary[variant]['per_event']:.2f} requests/event {requests}, conflicts "
            f"{conflicts}, client CPU {summary[variant]['cpu_ms']:.1f} ms/event"
        )
    one, distinct, shared = (summary[v] for v in VARIANTS)
    details: dict[str, Any] = {"processes": PROCESSES, "events_per_process": n, "reps": reps}
    for variant, s in summary.items():
        details[f"wall_s_{variant}"] = s["wall"]
        details[f"events_per_s_{variant}"] = s["rate"]
        details[f"requests_per_event_{variant}"] = s["per_event"]
        details[f"cpu_ms_per_event_{variant}"] = s["cpu_ms"]
        for name, count in s["conflicts"].items():
            details[f"{name}_per_event_{variant}"] = count / (total * reps)
    requests = {
        "events": total * reps,
        "one_session": one["requests"],
        "distinct": distinct["requests"],
        "shared_scopes": shared["requests"],
    }
    c = [_BY_ID[i] for i in ("S13.c", "S13.c.wall", "S13.c.requests", "S13.c.shared", "S13.c.lost")]
    name = f"{PROCESSES} processes x {n} events"

    def named(planned: Planned) -> str:
        return planned.name.replace("8 processes x N events", name)

    return [
        c[0].row(one["rate"], name=named(c[0]), requests=requests, details=details),
        c[1].row(
            one["wall"] / distinct["wall"], name=named(c[1]), requests=requests, details=details
        ),
        c[2].row(one["per_event"], name=named(c[2]), requests=requests, details=details),
        c[3].row(shared["per_event"], name=named(c[3]), requests=requests, details=details),
        c[4].row(lost["events_lost"] + lost["updates_lost"], name=named(c[4]), requests=lost),
    ]


def _verify_appends(
    url: str, options: dict[str, Any], reps: int, tag: str, n: int
) -> dict[str, int]:
    """Every run's sessions, read back by a new store. Lost events (a process's event
    missing), lost state updates (a writer's key not holding its last value in the merged
    state or in the head), and anything else wrong (an event doubled or out of its
    process's order, the head not folded over every event) raise AssertionError: the
    scenario fails. Returns what was checked, and the losses (then 0)."""
    out = {"events_lost": 0, "updates_lost": 0, "events_checked": 0, "updates_checked": 0}
    with contextlib.closing(kvstore.open(url, cache=None, storage_options=options)) as store:
        for rep in range(reps):
            for variant in VARIANTS:
                writers: dict[tuple[str, str, str], list[int]] = {}
                for w, target in enumerate(_sessions_of(variant, rep, tag)):
                    writers.setdefault(target, []).append(w)
                for (app, user, sid), ws in writers.items():
                    got = store.sessions.get(app, user, sid)
                    assert got is not None, (variant, rep, sid)
                    listed = store.sessions.list(app, user, limit=1000).sessions
                    head = next(s for s in listed if s.id == sid)  # the head alone
                    problems: list[str] = []
                    if [e.seq for e in got.events] != list(range(len(ws) * n)):
                        problems.append(f"{len(got.events)} events, not {len(ws) * n} in order")
                    for w in ws:
                        mine = [e.data["i"] for e in got.events if e.data["w"] == w]
                        lost = len(set(range(n)) - set(mine))
                        out["events_lost"] += lost
                        if mine != list(range(n)):
                            problems.append(f"process {w}: {lost} events lost, or out of order")
                        for key in (f"w{w}", f"user:w{w}", f"app:w{w}"):
                            out["updates_checked"] += 1
                            if got.state.get(key) != n - 1 or head.state.get(key) != n - 1:
                                out["updates_lost"] += 1
                                problems.append(
                                    f"{key} = {got.state.get(key)!r} (head "
                                    f"{head.state.get(key)!r}), not {n - 1}"
                                )
                    if head.last_seq != len(ws) * n - 1:
                        problems.append(f"the head folded {head.last_seq + 1} events")
                    out["events_checked"] += len(got.events)
                    if problems:
                        raise AssertionError(
                            f"S13.c {variant} run {rep}, session {app}/{user}/{sid}: "
                            + "; ".join(problems)
                        )
    return out


# -- S13.d -----------------------------------------------------------------------------------


async def _delete(ctx: Context, url: str, options: dict[str, Any]) -> list[Row]:
    count = ctx.size(20, 100)
    events = 10
    reps = ctx.size(1, 2)
    notes = data.sized_json(2048, seed=13)
    messages = [_event(m) for m in data.messages(events, seed=13)]

    async def populate(user: str) -> list[str]:
        ids = [f"chat-{i:03d}" for i in range(count)]
        async with kvstore.open_async(
            url, cache=kvstore.LocalCache(), storage_options=options
        ) as store:

            async def one(sid: str) -> None:
                await store.sessions.create(APP, user, sid, state={"user:plan": "pro"})
                for i, message in enumerate(messages):
                    await store.sessions.append_event(APP, user, sid, message, {"turn": i})
                name = store.sessions.artifact_name(APP, user, sid, "notes.json")
                await store.artifacts.save(name, notes)

            await gathered([lambda sid=sid: one(sid) for sid in ids], 16)
        return ids

    async def left(store: kvstore.AsyncKVStore, user: str) -> dict[str, int]:
        """What is left of ``user``: heads, event objects, user state, live artifacts, and
        every object below the user's artifact names (deleted versions leave some)."""
        layout, blob = store._ctx.layout, store._ctx.blob
        out: dict[str, int] = {}
        for kind, prefix in (
            ("heads", layout.session_heads(APP, user)),
            ("event_objects", layout.session_events_area(APP, user)),
            ("user_state", layout.user_state(APP, user)),
            ("artifact_objects", layout.artifact_prefix(f"sessions/{APP}/{user}/")),
        ):
            out[kind] = 0
            async for page in blob.list_pages(prefix):
                out[kind] += len(page)
        out["live_artifacts"] = len(await store.artifacts.list(f"sessions/{APP}/{user}/"))
        return out

    seen: dict[str, list[dict[str, Any]]] = {"delete_user": [], "one_by_one": []}
    started = time.perf_counter()
    for rep in range(reps):
        users = {"delete_user": f"gone-{rep}", "one_by_one": f"looped-{rep}"}
        built = {way: await populate(user) for way, user in users.items()}
        async with _new_store(url, options) as probe:
            for way, user in users.items():
                found = await left(probe, user)
                assert found["heads"] == count and found["live_artifacts"] == count, found
                assert found["event_objects"] >= count * events, found
                seen[way].append({"before": found})
        for way in list(users) if rep % 2 == 0 else list(users)[::-1]:
            user = users[way]
            async with _new_store(url, options) as store:
                await _warm_up(store)
                before = store.stats()
                wall = time.perf_counter()
                if way == "delete_user":
                    deleted = await store.sessions.delete_user(APP, user)
                    assert deleted == count, (deleted, count)
                else:
                    for sid in built[way]:
                        assert await store.sessions.delete(APP, user, sid)
                wall = time.perf_counter() - wall
                req = requests_delta(before, store.stats())
            async with _new_store(url, options) as probe:
                after = await left(probe, user)
                for sid in built[way][:3]:
                    assert await probe.sessions.get(APP, user, sid) is None
                assert (await probe.sessions.list(APP, user)).sessions == []
            assert after["heads"] == after["event_objects"] == after["live_artifacts"] == 0, after
            assert after["user_state"] == (0 if way == "delete_user" else 1), after
            seen[way][-1].update({"wall": wall, "req": req, "after": after})
    log(f"S13.d built and deleted {reps} x 2 users in {time.perf_counter() - started:.0f} s")
    bulk, loop = (seen[w] for w in ("delete_user", "one_by_one"))
    walls = {w: median([r["wall"] for r in runs]) for w, runs in seen.items()}
    log(
        f"S13.d {count} sessions: delete_user {bulk[-1]['req']} in {walls['delete_user']:.2f} s; "
        f"one by one {loop[-1]['req']} in {walls['one_by_one']:.2f} s; left after "
        f"delete_user {bulk[-1]['after']}, after the loop {loop[-1]['after']}"
    )
    details: dict[str, Any] = {
        "sessions": count,
        "events_per_session": events,
        "reps": reps,
        "wall_s_delete_user": walls["delete_user"],
        "wall_s_one_by_one": walls["one_by_one"],
        "requests_same_every_rep": all(r["req"] == bulk[0]["req"] for r in bulk)
        and all(r["req"] == loop[0]["req"] for r in loop),
    }
    for way, runs in seen.items():
        for kind, found in runs[-1]["before"].items():
            details[f"before_{kind}_{way}"] = found
        for kind, found in runs[-1]["after"].items():
            details[f"left_{kind}_{way}"] = found
    requests = {"delete_user": bulk[-1]["req"], "one_by_one": loop[-1]["req"]}
    d = [_BY_ID[i] for i in ("S13.d", "S13.d.loop", "S13.d.wall")]

    def named(planned: Planned) -> str:
        name = planned.name.replace("100", str(count))
        return name if count == 100 else name + " (quick)"

    return [
        d[0].row(bulk[-1]["req"]["total"], name=named(d[0]), requests=requests, details=details),
        d[1].row(loop[-1]["req"]["total"], name=named(d[1]), requests=requests, details=details),
        d[2].row(
            walls["delete_user"] / walls["one_by_one"],
            name=named(d[2]),
            requests=requests,
            details=details,
        ),
    ]
