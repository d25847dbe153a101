"""S17: Google ADK's services on kvstore (``kvstore.integrations.adk``) on a real S3 server
(SeaweedFS on loopback): what ADK's calls cost in requests, round trips and bytes (issue 18).

Every store talks HTTP to one SeaweedFS server. Requests come from the store's counters
(``store.stats()``); round trips from a pass-through wrapper of the blob store
(``_Trips``: the times the number of requests in flight rises from none - requests made
concurrently count once), and bytes sent from the same wrapper (every write's body, a
conditional write the server refused included; the store's ``bytes_written`` counts only
the writes that took effect). A "new store" is a new ``KVStore`` with its own S3 client and
an empty ``LocalCache``, which makes one GET of a missing key before it is measured (not
counted), so its client exists and a connection is open.

* **S17.a** ``get_session`` of a session of 200 events (each with a state delta, written
  one at a time through ``append_event`` by one process, then closed: its log settled),
  on a new store (cold), then again at once (warm). Baselines: the floor - the same
  ``store.sessions.get`` without ADK's conversion (its requests are the same: the cost is
  the core's); and ADK's own ``InMemorySessionService`` with the same events (time only:
  no I/O at all).
* **S17.b** ``list_sessions`` of a user with 100 sessions, new store (cold: every head is
  a GET), then again on the same store (warm: the heads from the in-process cache).
  Baseline: one bare LIST of the heads' prefix (``blob.list_pages``), the floor.
* **S17.c** ``list_artifact_versions`` of an artifact with 10 versions of 256 KiB, new
  store: requests and bytes read. Baseline: what loading each version would read
  (10 x 256 KiB) - what a service that reads a version to describe it pays.
* **S17.d** 8 ``save_artifact`` calls at once, each on its own store (as 8 processes
  would), of different 256 KiB blobs: the versions they get (8 distinct) and the bytes
  sent, against 8 x 256 KiB; then the same with 4 KiB blobs, which ride in their
  manifests (below the service's ``inline_max``), so a save that loses a race for a version
  number sends them again. The blobs are random (incompressible); each store saves one
  small artifact of its own first (not counted): its first conditional write, which
  checks that the server enforces conditional writes.

Quick mode (``--quick``): fewer repetitions.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import kvstore
from kvstore.blob import Blob, WrapperBlobStore, open_blob_store
from kvstore.stats import Stats

from .harness import Context, Planned, Row, Skip, log, median, requests_delta

ID = "S17"
TITLE = "Google ADK's session and artifact services on SeaweedFS: requests, round trips, bytes"

BUCKET = "kvbench"
APP = "adk-bench"
EVENTS = 200
SESSIONS = 100
VERSIONS = 10
BIG = 256 << 10
SMALL = 4 << 10
SAVERS = 8
FLOOR_GET = "store.sessions.get: the same read without ADK's conversion (the core's cost)"
BARE = "one bare LIST of the heads' prefix (blob.list_pages)"
LOAD_ALL = f"loading each version: {VERSIONS} x {BIG >> 10} KiB"
EIGHT = f"{SAVERS} x the blob's size: each byte sent once"

PLANNED = [
    Planned("S17.a.cold", f"get_session of {EVENTS} events, new store: requests", 3, "<=",
            "requests", FLOOR_GET),
    Planned("S17.a.trips", f"get_session of {EVENTS} events, new store: round trips", None,
            "<=", "round trips", FLOOR_GET),
    Planned("S17.a.warm", f"get_session of {EVENTS} events again, same store: requests", None,
            "<=", "requests", ""),
    Planned("S17.a.wall", f"get_session of {EVENTS} events, new store: time vs the core's get",
            None, "<=", "x", FLOOR_GET),
    Planned("S17.b.cold", f"list_sessions of a user with {SESSIONS} sessions, new store: "
            "requests", None, "<=", "requests", BARE),
    Planned("S17.b.warm", f"list_sessions of the same {SESSIONS} sessions again, same store: "
            "requests", None, "<=", "requests", BARE),
    Planned("S17.b.trips", f"list_sessions of {SESSIONS} sessions again, same store: round trips",
            2, "<=", "round trips", BARE),
    Planned("S17.c.requests", f"list_artifact_versions of {VERSIONS} versions, new store: "
            "requests", None, "<=", "requests", LOAD_ALL),
    Planned("S17.c.bytes", f"list_artifact_versions of {VERSIONS} versions of {BIG >> 10} KiB: "
            "bytes read", None, "<=", "bytes", LOAD_ALL),
    Planned("S17.d.versions", f"{SAVERS} concurrent save_artifact of {BIG >> 10} KiB: distinct "
            "versions", SAVERS, "==", "versions", ""),
    Planned("S17.d.bytes", f"{SAVERS} concurrent save_artifact of {BIG >> 10} KiB: bytes sent "
            f"vs {SAVERS} x size", 1.05, "<=", "x", EIGHT),
    Planned("S17.d.small", f"{SAVERS} concurrent save_artifact of {SMALL >> 10} KiB (in the "
            f"manifest): bytes sent vs {SAVERS} x size", None, "<=", "x", EIGHT),
]  # fmt: skip
_BY_ID = {p.id: p for p in PLANNED}


class _Trips(WrapperBlobStore):
    """Passes every request through; counts round trips (see the module docstring)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.in_flight = 0
        self.trips = 0
        self.sent = 0  # bytes of every write attempted (a refused conditional one too)

    def _start(self) -> bool:
        self.in_flight += 1
        if self.in_flight == 1:
            self.trips += 1
            return True
        return False

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        self._start()
        try:
            return await self.inner._get(path, head)
        finally:
            self.in_flight -= 1

    async def _get_range(self, path: str, start: int, size: int) -> Blob | None:
        self._start()
        try:
            return await self.inner._get_range(path, start, size)
        finally:
            self.in_flight -= 1

    async def _put(self, path: str, data: bytes) -> str:
        self.sent += len(data)
        self._start()
        try:
            return await self.inner._put(path, data)
        finally:
            self.in_flight -= 1

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        self.sent += len(data)
        self._start()
        try:
            return await self.inner._put_if_absent(path, data)
        finally:
            self.in_flight -= 1

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        self.sent += len(data)
        self._start()
        try:
            return await self.inner._put_if_match(path, data, tag)
        finally:
            self.in_flight -= 1

    def _list(self, prefix: str) -> AsyncIterator[list[str]]:
        return self._pages(self.inner._list(prefix))

    def _list_after(
        self, prefix: str, start_after: str | None, page_size: int | None
    ) -> AsyncIterator[list[str]]:
        return self._pages(self.inner._list_after(prefix, start_after, page_size))

    async def _pages(self, pages: AsyncIterator[list[str]]) -> AsyncIterator[list[str]]:
        while True:
            started = self._start()
            try:
                page = await anext(pages, None)
            finally:
                self.in_flight -= 1
            if page is None:  # the end, known from the last page: no request
                if started:
                    self.trips -= 1
                return
            yield page


def _new_store(url: str, options: dict[str, Any]) -> tuple[kvstore.KVStore, _Trips]:
    blob = _Trips(open_blob_store(url, options, stats=Stats()))
    store = kvstore.open(blob, cache=kvstore.LocalCache())
    assert store.get("s17:warm-up") is None  # a connection (not counted)
    return store, blob


class _Measure:
    """Requests (by kind), round trips, bytes read and sent, wall time of one call."""

    def __init__(self, store: kvstore.KVStore, trips: _Trips) -> None:
        self.store, self.blob = store, trips

    def __call__(self, call: Any) -> tuple[Any, dict[str, Any]]:
        """``call``: an ADK service's coroutine (run on a loop of its own, as ADK's
        ``Runner.run`` does), or a blocking call of the store (a function)."""
        before, trips = self.store.stats(), self.blob.trips
        wall = time.perf_counter()
        result = call() if callable(call) else asyncio.run(call)
        wall = time.perf_counter() - wall
        after = self.store.stats()
        return result, {
            "req": requests_delta(before, after),
            "trips": self.blob.trips - trips,
            "read": after.get("bytes_read", 0) - before.get("bytes_read", 0),
            "sent": after.get("bytes_written", 0) - before.get("bytes_written", 0),
            "ms": wall * 1e3,
        }


def run(ctx: Context) -> list[Row]:
    try:
        from google.adk.sessions.in_memory_session_service import InMemorySessionService

        from kvstore.integrations.adk import KVStoreArtifactService, KVStoreSessionService
    except ImportError as exc:
        raise Skip(
            f"google-adk is not installed ({exc}): pip install 'kvstore[adk]' "
            "(tox -e frameworks has it)"
        ) from exc
    server = ctx.seaweedfs()
    url = server.url_for(BUCKET, f"s17-{uuid.uuid4().hex[:8]}")
    options = server.storage_options
    reps = ctx.size(3, 7)
    rows: list[Row] = []
    rows += _get(url, options, reps, KVStoreSessionService, InMemorySessionService)
    rows += _list(url, options, reps, KVStoreSessionService)
    rows += _versions(url, options, KVStoreArtifactService)
    rows += _saves(url, options, KVStoreArtifactService)
    return rows


def _events() -> list[Any]:
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions
    from google.genai import types

    return [
        Event(
            invocation_id=f"inv-{i // 2}",
            author="user" if i % 2 == 0 else "agent",
            content=types.Content(
                role="user" if i % 2 == 0 else "model",
                parts=[types.Part(text=f"message {i} " + "lorem ipsum " * 20)],
            ),
            actions=EventActions(state_delta={"turn": i, **({"user:seen": i} if i % 10 else {})}),
        )
        for i in range(EVENTS)
    ]


def _get(url: str, options: dict[str, Any], reps: int, service: Any, in_memory: Any) -> list[Row]:
    events = _events()
    with kvstore.open(url, storage_options=options) as writer:
        adk = service(writer)

        async def build(svc: Any) -> None:
            session = await svc.create_session(app_name=APP, user_id="reader", session_id="big")
            for event in events:
                await svc.append_event(session, event.model_copy(deep=True))

        asyncio.run(build(adk))
    memory = in_memory()
    asyncio.run(build(memory))
    key = {"app_name": APP, "user_id": "reader", "session_id": "big"}
    colds: list[dict[str, Any]] = []
    warms: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    memory_ms: list[float] = []
    for _ in range(reps):
        store, trips = _new_store(url, options)
        with store:
            measure = _Measure(store, trips)
            got, cold = measure(service(store).get_session(**key))
            assert got is not None and len(got.events) == EVENTS, "the session reads back short"
            _, warm = measure(service(store).get_session(**key))
        colds.append(cold)
        warms.append(warm)
        store, trips = _new_store(url, options)
        with store:
            raw, floor = _Measure(store, trips)(
                lambda store=store: store.sessions.get(APP, "reader", "big")
            )
            assert raw is not None and len(raw.events) == EVENTS
        floors.append(floor)
        started = time.perf_counter()
        asyncio.run(memory.get_session(**key))
        memory_ms.append((time.perf_counter() - started) * 1e3)
    cold, warm, floor = colds[-1], warms[-1], floors[-1]
    cold_ms = median([c["ms"] for c in colds])
    floor_ms = median([f["ms"] for f in floors])
    log(
        f"S17.a get_session of {EVENTS} events: cold {cold['req']} in {cold['trips']} round "
        f"trips, {cold_ms:.1f} ms (the core's get {floor_ms:.1f} ms, {floor['req']}); "
        f"warm {warm['req']}; InMemorySessionService {median(memory_ms):.2f} ms"
    )
    details = {
        "cold_ms": cold_ms,
        "floor_ms": floor_ms,
        "warm_ms": median([w["ms"] for w in warms]),
        "in_memory_ms": median(memory_ms),
        "floor_requests": floor["req"]["total"],
        "floor_trips": floor["trips"],
    }
    return [
        _BY_ID["S17.a.cold"].row(cold["req"]["total"], requests=cold["req"], details=details),
        _BY_ID["S17.a.trips"].row(cold["trips"], details={"floor_trips": floor["trips"]}),
        _BY_ID["S17.a.warm"].row(
            warm["req"]["total"], requests=warm["req"], details={"trips": warm["trips"]}
        ),
        _BY_ID["S17.a.wall"].row(cold_ms / floor_ms, details=details),
    ]


def _list(url: str, options: dict[str, Any], reps: int, service: Any) -> list[Row]:
    with kvstore.open(url, storage_options=options) as writer:
        adk = service(writer)

        async def build() -> None:
            gate = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                async with gate:
                    await adk.create_session(app_name=APP, user_id="lister", session_id=f"s{i:03d}")

            await asyncio.gather(*(one(i) for i in range(SESSIONS)))

        asyncio.run(build())
    colds: list[dict[str, Any]] = []
    warms: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    for _ in range(reps):
        store, trips = _new_store(url, options)
        with store:
            measure = _Measure(store, trips)
            listing, cold = measure(service(store).list_sessions(app_name=APP, user_id="lister"))
            assert len(listing.sessions) == SESSIONS
            _, warm = measure(service(store).list_sessions(app_name=APP, user_id="lister"))
            prefix = store.aio._ctx.layout.session_heads(APP, "lister")

            async def names(store: kvstore.KVStore = store, prefix: str = prefix) -> int:
                count = 0
                async for page in store.aio._ctx.blob.list_pages(prefix):
                    count += len(page)
                return count

            found, floor = measure(lambda store=store: store._portal.run(names()))
            assert found == SESSIONS
        colds.append(cold)
        warms.append(warm)
        bare.append(floor)
    cold, warm, floor = colds[-1], warms[-1], bare[-1]
    times = {
        "cold_ms": median([c["ms"] for c in colds]),
        "warm_ms": median([w["ms"] for w in warms]),
        "bare_ms": median([b["ms"] for b in bare]),
        "cold_trips": cold["trips"],
        "bare_requests": floor["req"]["total"],
    }
    log(
        f"S17.b list_sessions of {SESSIONS}: cold {cold['req']} in {cold['trips']} round trips "
        f"({times['cold_ms']:.1f} ms); warm {warm['req']} in {warm['trips']} "
        f"({times['warm_ms']:.1f} ms); bare LIST {floor['req']} ({times['bare_ms']:.1f} ms)"
    )
    return [
        _BY_ID["S17.b.cold"].row(cold["req"]["total"], requests=cold["req"], details=times),
        _BY_ID["S17.b.warm"].row(warm["req"]["total"], requests=warm["req"], details=times),
        _BY_ID["S17.b.trips"].row(warm["trips"], details=times),
    ]


def _part(data: bytes) -> Any:
    from google.genai import types

    return types.Part.from_bytes(data=data, mime_type="application/x-bench")


def _versions(url: str, options: dict[str, Any], service: Any) -> list[Row]:
    where = {"app_name": APP, "user_id": "u", "session_id": "s", "filename": "versions.bin"}
    with kvstore.open(url, storage_options=options) as writer:
        adk = service(writer)

        async def build() -> None:
            for i in range(VERSIONS):
                await adk.save_artifact(
                    **where, artifact=_part(bytes([i]) * BIG), custom_metadata={"i": i}
                )

        asyncio.run(build())
    store, trips = _new_store(url, options)
    with store:
        infos, spent = _Measure(store, trips)(service(store).list_artifact_versions(**where))
    assert [(v.version, v.custom_metadata) for v in infos] == [(i, {"i": i}) for i in range(10)]
    log(
        f"S17.c list_artifact_versions of {VERSIONS}: {spent['req']} in {spent['trips']} round "
        f"trips, {spent['read']:,} bytes read ({spent['ms']:.1f} ms); loading each would read "
        f"{VERSIONS * BIG:,}"
    )
    details = {"trips": spent["trips"], "ms": spent["ms"], "load_all_bytes": VERSIONS * BIG}
    return [
        _BY_ID["S17.c.requests"].row(spent["req"]["total"], requests=spent["req"], details=details),
        _BY_ID["S17.c.bytes"].row(spent["read"], details=details),
    ]


def _race(url: str, options: dict[str, Any], service: Any, size: int, name: str) -> dict[str, Any]:
    opened = [_new_store(url, options) for _ in range(SAVERS)]
    stores, blobs = [s for s, _ in opened], [b for _, b in opened]
    try:
        services = [service(s) for s in stores]
        where = {"app_name": APP, "user_id": "u", "session_id": "s", "filename": name}
        datas = [os.urandom(size) for _ in range(SAVERS)]  # (incompressible)

        async def warm_up() -> None:  # each store's first conditional write probes the
            # server once (kvstore checks it enforces them): not part of the race
            await asyncio.gather(*(
                svc.save_artifact(**{**where, "filename": f"warm-up-{i}"}, artifact=_part(b"w"))
                for i, svc in enumerate(services)
            ))  # fmt: skip

        asyncio.run(warm_up())
        before = [s.stats() for s in stores]
        sent_before = [b.sent for b in blobs]

        async def race() -> list[int]:
            saves = (
                svc.save_artifact(**where, artifact=_part(d))
                for svc, d in zip(services, datas, strict=True)
            )
            return list(await asyncio.gather(*saves))

        started = time.perf_counter()
        versions = asyncio.run(race())
        ms = (time.perf_counter() - started) * 1e3
        spent = [requests_delta(b, s.stats()) for b, s in zip(before, stores, strict=True)]
        others: dict[str, int] = {}
        for b, s in zip(before, stores, strict=True):
            for k, v in s.stats().items():
                if not k.startswith("requests") and v != b.get(k, 0):
                    others[k] = others.get(k, 0) + v - b.get(k, 0)
        sent = sum(b.sent - was for b, was in zip(blobs, sent_before, strict=True))
        conflicts = sum(
            s.stats().get("artifacts.claim_conflicts", 0) - b.get("artifacts.claim_conflicts", 0)
            for b, s in zip(before, stores, strict=True)
        )

        async def check() -> bool:
            for v, d in zip(versions, datas, strict=True):
                got = await services[0].load_artifact(**where, version=v)
                if got is None or got.inline_data is None or got.inline_data.data != d:
                    return False
            return True

        intact = asyncio.run(check())
    finally:
        for s in stores:
            s.close()
    requests: dict[str, int] = {}
    for one in spent:
        for kind, n in one.items():
            requests[kind] = requests.get(kind, 0) + n
    return {
        "versions": versions,
        "sent": sent,
        "ratio": sent / (SAVERS * size),
        "conflicts": conflicts,
        "requests": requests,
        "intact": intact,
        "ms": ms,
        "counters": others,
    }


def _saves(url: str, options: dict[str, Any], service: Any) -> list[Row]:
    big = _race(url, options, service, BIG, "race-big.bin")
    small = _race(url, options, service, SMALL, "race-small.bin")
    for label, r in (("256 KiB", big), ("4 KiB", small)):
        log(
            f"S17.d {SAVERS} x save_artifact of {label} at once: versions {sorted(r['versions'])}, "
            f"{r['conflicts']} lost races, {r['sent']:,} bytes sent = {r['ratio']:.3f} x "
            f"{SAVERS} x size, {r['requests']} ({r['ms']:.0f} ms), loads intact: {r['intact']}"
        )
    assert big["intact"] and small["intact"], "a saved version loads other bytes"
    distinct = len(set(big["versions"]))
    details = {
        "conflicts": big["conflicts"],
        "bytes_sent": big["sent"],
        "eight_x_size": SAVERS * BIG,
        "ms": big["ms"],
    }
    small_details = {
        "conflicts": small["conflicts"],
        "bytes_sent": small["sent"],
        "eight_x_size": SAVERS * SMALL,
    }
    return [
        _BY_ID["S17.d.versions"].row(distinct, requests=big["requests"], details=details),
        _BY_ID["S17.d.bytes"].row(big["ratio"], requests=big["requests"], details=details),
        _BY_ID["S17.d.small"].row(
            small["ratio"], requests=small["requests"], details=small_details
        ),
    ]


if __name__ == "__main__":  # python -m benchmarks.s17_adk [--quick] (without the runner)
    import sys

    from .runner import table

    context = Context(quick="--quick" in sys.argv[1:], latency_ms=0)
    try:
        print(table(run(context)))
    finally:
        context.close()
