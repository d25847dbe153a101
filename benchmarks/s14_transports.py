"""S14: S3 transports - kvstore on obstore (the default) and on s3fs, each against the raw
client it sends its requests with, on a real S3 server (SeaweedFS) and on moto.

Every contender talks HTTP to the same server on loopback and starts cold: a fresh kvstore
store (``cache=None``) or a fresh raw client per repetition, so connections, the client
and (on s3fs) its botocore session are made inside the timed operation - kvstore makes
them on first use, so the raw clients' timings include making them too. Closing is not
timed. For each server:

* ``S14.<srv>.mget``: a cold ``mget`` of N values of 1 KiB, against ``obstore.get_async``
  gathered at kvstore's default concurrency on the same objects; ``.cpu``: client CPU
  per GET (this process's ``time.process_time()`` over the operation - kvstore, asyncio,
  obstore's Rust threads, botocore/aiohttp; not the server's - divided by the requests).
* ``S14.<srv>.mget.s3fs``: the same with ``storage_options["transport"] = "s3fs"``,
  against s3fs ``_cat_file`` gathered at the same concurrency (botocore's connection pool
  raised to it, as kvstore does; everything else s3fs's defaults).
* ``S14.<srv>.mset`` / ``.mset.s3fs``: ``mset`` of N fresh keys, against
  ``obstore.put_async`` / s3fs ``_pipe_file`` of N fresh paths, gathered.

Targets: 1.5x the raw obstore figure (issue 16), 1.0x s3fs (kvstore on s3fs must not cost
more than s3fs itself). ``requests`` are kvstore's ``stats()`` deltas per operation; a raw
client's count is N. moto serialises requests (~6 ms each), so its N is smaller.

``S14.conc``: the cost of the default concurrency on a loaded client. With 2 busy-loop
processes (``concurrency_probe.busy_loops``), cold ``mget`` of N on SeaweedFS at the default
concurrency against ``concurrency=32`` (ratio of wall times), with kvstore's ``errors`` and
``retries`` (must stay 0); on the s3fs transport also the HTTP attempts botocore actually
sent (``concurrency_probe.HttpCounter``) less the keys read (must be 0: no connect
timeouts retried behind an event loop stalled by a wave of requests).

Medians of interleaved repetitions (ABBA); no timed assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import kvstore

from . import data
from .harness import (
    Context,
    Planned,
    Row,
    Run,
    Skip,
    clock,
    gathered,
    log,
    median,
    obstore_client,
    requests_delta,
)

ID = "S14"
TITLE = "S3 transports: kvstore on obstore and on s3fs vs the raw clients (SeaweedFS, moto)"

BUCKET = "kvbench"
DEFAULT = kvstore.DEFAULT_CONCURRENCY
LOW = 32  # the other concurrency of S14.conc
LOAD = 2  # busy-loop processes during S14.conc
VALUE_SIZE = 1024

SERVERS = {"seaweedfs": "SeaweedFS", "moto": "moto"}
OPS = {"mget": "cold mget", "mset": "mset of fresh keys"}
RAW = {
    ("mget", "obstore"): "obstore.get_async",
    ("mget", "s3fs"): "s3fs _cat_file",
    ("mset", "obstore"): "obstore.put_async",
    ("mset", "s3fs"): "s3fs _pipe_file",
}


def _planned() -> list[Planned]:
    rows: list[Planned] = []
    for srv, server in SERVERS.items():
        for op, what in OPS.items():
            for transport, target in (("obstore", 1.5), ("s3fs", 1.0)):
                suffix = "" if transport == "obstore" else ".s3fs"
                baseline = f"{RAW[op, transport]} gathered at {DEFAULT}, same server"
                on = f"{server}, {transport}: {what} of 1 KiB values"
                rows.append(
                    Planned(
                        f"S14.{srv}.{op}{suffix}", f"{on}, wall time", target, "<=", "x", baseline
                    )
                )
                rows.append(
                    Planned(
                        f"S14.{srv}.{op}{suffix}.cpu",
                        f"{on}, client CPU per request",
                        target,
                        "<=",
                        "x",
                        baseline,
                    )
                )
    loaded = f"SeaweedFS, {LOAD} busy loops: cold mget at the default concurrency ({DEFAULT})"
    rows += [
        Planned(
            "S14.conc",
            f"{loaded}, obstore: wall time vs concurrency={LOW}",
            None,
            "<=",
            "x",
            f"the same mget at concurrency={LOW}",
        ),
        Planned(
            "S14.conc.errors",
            f"{loaded} and at {LOW}, obstore: kvstore errors + retries",
            0,
            "==",
            "",
            "",
        ),
        Planned(
            "S14.conc.s3fs",
            f"{loaded}, s3fs: HTTP attempts sent - keys",
            0,
            "==",
            "requests",
            "",
        ),
    ]
    return rows


PLANNED = _planned()
_BY_ID = {p.id: p for p in PLANNED}


# --------------------------------------------------------------------- helpers
def _obstore_available() -> None:
    try:
        import obstore  # noqa: F401
    except ImportError as exc:
        raise Skip("obstore is not installed (pip install obstore; tox -e bench has it)") from exc


def _raw_obstore(server: Any) -> Any:
    return obstore_client(server, BUCKET)


async def _raw_s3fs(server: Any) -> Any:
    """A fresh s3fs filesystem (its own botocore session and client), pool sized like
    kvstore's (botocore's default of 10 connections would cap the gather at 10)."""
    import fsspec

    fs = fsspec.filesystem(
        "s3",
        asynchronous=True,
        skip_instance_cache=True,
        config_kwargs={"max_pool_connections": DEFAULT},
        **server.storage_options,
    )
    await fs.set_session()
    return fs


@contextlib.asynccontextmanager
async def _loop_stall(interval: float = 0.01) -> AsyncIterator[list[float]]:
    """The longest lateness of a timer in this event loop while inside (seconds)."""
    loop = asyncio.get_running_loop()
    worst = [0.0]

    async def tick() -> None:
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            worst[0] = max(worst[0], loop.time() - due)

    task = asyncio.create_task(tick())
    try:
        yield worst
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --------------------------------------------------------------------- contenders
class Bench:
    """The contenders on one server: kvstore on each transport and the raw clients."""

    def __init__(self, server: Any, n: int) -> None:
        self.server = server
        self.n = n
        self.prefix = f"s14-{uuid.uuid4().hex[:8]}"
        self.url = server.url_for(BUCKET, self.prefix)
        self.items = {f"doc:{i:05d}": data.sized_json(VALUE_SIZE, seed=i) for i in range(n)}
        self.keys = list(self.items)
        self.values = list(self.items.values())
        self.paths: list[str] = []
        self._fresh = 0
        self.http: Any = None  # a concurrency_probe.HttpCounter, where installed

    def options(self, transport: str) -> dict[str, Any]:
        options = dict(self.server.storage_options)
        if transport == "s3fs":
            options["transport"] = "s3fs"
        return options

    def open(self, transport: str, concurrency: int = DEFAULT) -> kvstore.AsyncKVStore:
        store = kvstore.open_async(
            self.url, cache=None, storage_options=self.options(transport), concurrency=concurrency
        )
        if store._ctx.blob.transport != transport:
            raise RuntimeError(f"kvstore chose {store._ctx.blob.transport}, not {transport}")
        return store

    async def setup(self) -> None:
        """The values every mget reads, written once (by kvstore: its layout, its bytes)."""
        store = self.open("obstore")
        try:
            await store.mset(self.items)
            layout = store._ctx.layout
            self.paths = [f"{self.prefix}/{layout.value(k)}" for k in self.keys]
        finally:
            await store.close()

    def fresh(self) -> str:
        """A tag no earlier write used: mset targets keys that do not exist yet."""
        self._fresh += 1
        return f"w{self._fresh}"

    async def kv(self, op: str, transport: str, concurrency: int = DEFAULT) -> Run:
        store = self.open(transport, concurrency)
        mapping = {}
        if op == "mset":
            tag = self.fresh()
            mapping = {f"{tag}:{i:05d}": v for i, v in enumerate(self.values)}
        got: list[Any] = []
        sent = self.sent_so_far()
        try:
            before = store.stats()
            async with clock() as t:
                if op == "mget":
                    got = await store.mget(self.keys)
                else:
                    await store.mset(mapping)
            after = store.stats()
            sent = self.sent_so_far() - sent
        finally:
            await store.close()
        if op == "mget" and sum(v is not None for v in got) != self.n:
            raise RuntimeError(f"mget on {transport}: {got.count(None)} values missing")
        requests = requests_delta(before, after)
        for name in ("errors", "retries"):  # kvstore's own counters, not requests
            requests[name] = int(after.get(name, 0)) - int(before.get(name, 0))
        if transport == "s3fs" and self.http is not None:
            requests["http"] = sent  # what botocore sent, its own retries included
        return Run(t["wall"], t["cpu"], requests)

    @contextlib.contextmanager
    def counting_http(self) -> Iterator[Any]:
        """Count aiobotocore's HTTP sends (s3fs, and kvstore on s3fs) while inside."""
        from .concurrency_probe import HttpCounter

        with HttpCounter().installed() as self.http:
            try:
                yield self.http
            finally:
                self.http = None

    def sent_so_far(self) -> int:
        return self.http.sent if self.http is not None else 0

    async def raw(self, op: str, transport: str) -> Run:
        if transport == "obstore":
            return await self._raw_obstore(op)
        return await self._raw_s3fs(op)

    async def _raw_obstore(self, op: str) -> Run:
        import obstore

        base = f"{self.prefix}/raw-obstore/{self.fresh()}"

        async def get(store: Any, path: str) -> bytes:
            return bytes(await (await obstore.get_async(store, path)).bytes_async())

        async with clock() as t:
            obs = _raw_obstore(self.server)  # a fresh client: cold, as a fresh kvstore
            if op == "mget":
                calls = [lambda p=p: get(obs, p) for p in self.paths]
            else:
                calls = [
                    lambda i=i, v=v: obstore.put_async(obs, f"{base}/{i}", v)
                    for i, v in enumerate(self.values)
                ]
            await gathered(calls, DEFAULT)
        return self._counted(op, t)

    async def _raw_s3fs(self, op: str) -> Run:
        base = f"{BUCKET}/{self.prefix}/raw-s3fs/{self.fresh()}"
        sent = self.sent_so_far()
        async with clock() as t:
            fs = await _raw_s3fs(self.server)  # its own session and client, as kvstore's
            if op == "mget":
                # max_concurrency=1: one GetObject per key. By default (10) _cat_file
                # first sends a HeadObject for the size, two requests per key.
                calls = [
                    lambda p=p: fs._cat_file(f"{BUCKET}/{p}", max_concurrency=1) for p in self.paths
                ]
            else:
                calls = [
                    lambda i=i, v=v: fs._pipe_file(f"{base}/{i}", v)
                    for i, v in enumerate(self.values)
                ]
            await gathered(calls, DEFAULT)
        sent = self.sent_so_far() - sent
        await fs._s3.close()
        return self._counted(op, t, sent if self.http is not None else self.n)

    def _counted(self, op: str, t: dict[str, float], sent: int | None = None) -> Run:
        """A raw client's run: N requests (obstore), or the HTTP requests counted (s3fs)."""
        kind = "get" if op == "mget" else "put"
        return Run(t["wall"], t["cpu"], {kind: self.n, "total": self.n if sent is None else sent})


# --------------------------------------------------------------------- S14.<srv>.*
async def _transports(ctx: Context, srv: str, bench: Bench) -> list[Row]:
    reps = ctx.size(2, 3)
    n = bench.n
    rows: list[Row] = []
    for op in OPS:
        work: dict[str, Callable[[], Awaitable[Run]]] = {}
        for transport in ("obstore", "s3fs"):
            work[f"kv-{transport}"] = lambda o=op, t=transport: bench.kv(o, t)
            work[f"raw-{transport}"] = lambda o=op, t=transport: bench.raw(o, t)
        with bench.counting_http():
            for call in work.values():  # warm-up: imports, obstore's runtime, code paths
                await call()
            runs: dict[str, list[Run]] = {name: [] for name in work}
            for rep in range(reps):
                for name in list(work) if rep % 2 == 0 else list(work)[::-1]:
                    runs[name].append(await work[name]())
        wall = {k: median([r.wall for r in v]) for k, v in runs.items()}
        cpu = {k: median([r.cpu / r.count for r in v]) * 1e3 for k, v in runs.items()}
        for transport in ("obstore", "s3fs"):
            kv, raw = f"kv-{transport}", f"raw-{transport}"
            kv_requests = runs[kv][-1].requests
            problems = sum(r.requests["errors"] + r.requests["retries"] for r in runs[kv])
            details = {
                "n": n,
                "reps": reps,
                "concurrency": DEFAULT,
                "wall_s_kvstore": wall[kv],
                "wall_s_raw": wall[raw],
                "cpu_ms_per_request_kvstore": cpu[kv],
                "cpu_ms_per_request_raw": cpu[raw],
                "errors_and_retries": problems,
            }
            requests = {k: v for k, v in kv_requests.items() if k not in ("errors", "retries")}
            requests["baseline"] = runs[raw][-1].count
            suffix = "" if transport == "obstore" else ".s3fs"
            rid = f"S14.{srv}.{op}{suffix}"
            rows.append(_BY_ID[rid].row(wall[kv] / wall[raw], requests=requests, details=details))
            rows.append(
                _BY_ID[f"{rid}.cpu"].row(cpu[kv] / cpu[raw], requests=requests, details=details)
            )
            log(
                f"{rid} x{n}: wall kv {wall[kv]:.2f}s raw {wall[raw]:.2f}s; "
                f"CPU/request kv {cpu[kv]:.2f}ms raw {cpu[raw]:.2f}ms; {kv_requests}"
            )
    return rows


# --------------------------------------------------------------------- S14.conc
async def _loaded(bench: Bench, transport: str, concurrency: int) -> dict[str, Any]:
    """One cold mget under load: wall, kvstore counters, HTTP attempts (s3fs), loop stall."""
    sent = bench.sent_so_far()
    raised = ""
    async with _loop_stall() as stall:
        try:
            run = await bench.kv("mget", transport, concurrency)
        except Exception as exc:  # reported, not fatal: this row is about failures
            raised = f"{type(exc).__name__}: {str(exc)[:120]}"
            run = Run(float("nan"), float("nan"), {"total": 0, "errors": 0, "retries": 0})
    return {
        "wall": run.wall,
        "get": run.requests.get("get", 0),
        "errors": run.requests["errors"],
        "retries": run.requests["retries"],
        "raised": raised,
        "http": bench.sent_so_far() - sent if bench.http is not None else None,
        "stall": stall[0],
    }


async def _concurrency(ctx: Context, bench: Bench) -> list[Row]:
    from .concurrency_probe import busy_loops

    reps = ctx.size(2, 3)
    s3fs_reps = 1  # ~5-10 s per read under load; the figure is a count, not a time
    levels = [DEFAULT, LOW]
    await bench.kv("mget", "obstore", LOW)  # warm code paths before the load starts
    obs: dict[int, list[dict[str, Any]]] = {c: [] for c in levels}
    s3fs: dict[int, list[dict[str, Any]]] = {c: [] for c in levels}
    with busy_loops(LOAD, 300):
        await asyncio.sleep(0.5)  # let the busy loops get going
        for rep in range(reps):
            for c in levels if rep % 2 == 0 else levels[::-1]:
                obs[c].append(await _loaded(bench, "obstore", c))
                log(f"S14.conc obstore c={c}: {obs[c][-1]}")
        with bench.counting_http():
            for rep in range(s3fs_reps):
                for c in levels if rep % 2 == 0 else levels[::-1]:
                    s3fs[c].append(await _loaded(bench, "s3fs", c))
                    log(f"S14.conc s3fs c={c}: {s3fs[c][-1]}")

    def med(runs: list[dict[str, Any]], key: str) -> float:
        return median([r[key] for r in runs])

    everything = [r for c in levels for r in obs[c]]
    problems = sum(r["errors"] + r["retries"] + bool(r["raised"]) for r in everything)
    raised = [r["raised"] for r in [*everything, *s3fs[DEFAULT], *s3fs[LOW]] if r["raised"]]
    details = {
        "keys": bench.n,
        "reps": reps,
        "busy_loops": LOAD,
        "wall_s_default": med(obs[DEFAULT], "wall"),
        f"wall_s_{LOW}": med(obs[LOW], "wall"),
        "worst_loop_stall_s_default": max(r["stall"] for r in obs[DEFAULT]),
        f"worst_loop_stall_s_{LOW}": max(r["stall"] for r in obs[LOW]),
    }
    if raised:
        details["raised"] = "; ".join(raised)[:300]
    counts = {
        "get": obs[DEFAULT][-1]["get"],
        "errors": sum(r["errors"] for r in everything),
        "retries": sum(r["retries"] for r in everything),
    }
    rows = [
        _BY_ID["S14.conc"].row(
            details["wall_s_default"] / details[f"wall_s_{LOW}"], requests=counts, details=details
        ),
        _BY_ID["S14.conc.errors"].row(problems, requests=counts, details=details),
    ]
    s3fs_all = [*s3fs[DEFAULT], *s3fs[LOW]]
    extra = {c: sum(r["http"] - bench.n for r in s3fs[c]) for c in levels}
    s3fs_details = {
        "keys": bench.n,
        "reps": s3fs_reps,
        "busy_loops": LOAD,
        "extra_http_at_32": extra[LOW],
        "wall_s_default": med(s3fs[DEFAULT], "wall"),
        f"wall_s_{LOW}": med(s3fs[LOW], "wall"),
        "worst_loop_stall_s_default": max(r["stall"] for r in s3fs[DEFAULT]),
        f"worst_loop_stall_s_{LOW}": max(r["stall"] for r in s3fs[LOW]),
        "errors": sum(r["errors"] for r in s3fs_all),
        "retries": sum(r["retries"] for r in s3fs_all),
        "raised": sum(bool(r["raised"]) for r in s3fs_all),
    }
    s3fs_counts = {
        "http": "/".join(str(r["http"]) for r in s3fs[DEFAULT]),
        "get": "/".join(str(r["get"]) for r in s3fs[DEFAULT]),
    }
    rows.append(
        _BY_ID["S14.conc.s3fs"].row(extra[DEFAULT], requests=s3fs_counts, details=s3fs_details)
    )
    log(f"S14.conc: obstore {details}; s3fs {s3fs_details}")
    return rows


# --------------------------------------------------------------------- run
def run(ctx: Context) -> list[Row]:
    _obstore_available()
    return asyncio.run(_run(ctx))


async def _run(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    sizes = {"seaweedfs": ctx.size(300, 1000), "moto": ctx.size(100, 200)}
    starters = {"seaweedfs": ctx.seaweedfs, "moto": ctx.s3}
    seaweedfs: Bench | None = None
    why = ""
    for srv, start in starters.items():
        try:
            server = start()
        except Skip as exc:
            rows += [p.skipped(str(exc)) for p in PLANNED if p.id.startswith(f"S14.{srv}.")]
            why = why or str(exc)
            continue
        bench = Bench(server, sizes[srv])
        await bench.setup()
        rows += await _transports(ctx, srv, bench)
        if srv == "seaweedfs":
            seaweedfs = bench
    conc = [p for p in PLANNED if p.id.startswith("S14.conc")]
    if seaweedfs is None:
        rows += [p.skipped(why) for p in conc]
    else:
        rows += await _concurrency(ctx, seaweedfs)
    return rows
