"""S15: the GCS transport - kvstore on gcsfs against gcsfs itself and against obstore's GCS
client (Rust ``object_store``), on the GCS stand-in (``backends.GCSEmulator``).

kvstore sends GCS requests through gcsfs, which speaks HTTP with aiohttp directly (no
botocore): the question issue 16 asks of a transport is whether its client CPU per request
is within 1.5x of obstore's on the same objects. Here obstore's ``GCSStore`` reads the
objects kvstore wrote and writes fresh ones through the stand-in's XML API (its ``ETag``
and ``x-goog-generation`` answers are what obstore needs). The stand-in is a Python server
serving one request at a time, so wall times are its own; the client CPU per request
(this process's ``time.process_time()`` over the operation divided by the requests) is
the client's.

* ``S15.mget`` / ``.cpu``: a cold ``mget`` of N values of 1 KiB (fresh store, ``cache=None``)
  against gcsfs ``_cat_file`` gathered at kvstore's default concurrency; target 1.0x.
* ``S15.mget.obstore`` / ``.cpu``: the same against ``obstore.get_async``; target 1.5x.
* ``S15.mset...``: ``mset`` of N fresh keys against gcsfs ``_pipe_file`` / ``obstore.put_async``.

Medians of interleaved repetitions (ABBA); no timed assertions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import kvstore

from . import s14_transports as s14
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
)

ID = "S15"
TITLE = "GCS transport: kvstore on gcsfs vs gcsfs and obstore's GCS client (GCS stand-in)"

BUCKET = "kvbench"
DEFAULT = kvstore.DEFAULT_CONCURRENCY
VALUE_SIZE = 1024
OPS = {"mget": "cold mget", "mset": "mset of fresh keys"}
RAW = {
    ("mget", "gcsfs"): "gcsfs _cat_file",
    ("mget", "obstore"): "obstore.get_async (GCSStore)",
    ("mset", "gcsfs"): "gcsfs _pipe_file",
    ("mset", "obstore"): "obstore.put_async (GCSStore)",
}
TARGETS = {"gcsfs": 1.0, "obstore": 1.5}


def _planned() -> list[Planned]:
    rows: list[Planned] = []
    for op, what in OPS.items():
        for raw, target in TARGETS.items():
            rid = f"S15.{op}" + ("" if raw == "gcsfs" else ".obstore")
            baseline = f"{RAW[op, raw]} gathered at {DEFAULT}, same stand-in"
            on = f"GCS stand-in, gcsfs: {what} of 1 KiB values"
            rows.append(Planned(rid, f"{on}, wall time", target, "<=", "x", baseline))
            rows.append(
                Planned(f"{rid}.cpu", f"{on}, client CPU per request", target, "<=", "x", baseline)
            )
    return rows


PLANNED = _planned()
_BY_ID = {p.id: p for p in PLANNED}


class Bench(s14.Bench):
    """kvstore (on gcsfs, its one GCS transport) and the two raw clients on one stand-in:
    S14's contenders, with GCS's clients."""

    def open(self, transport: str = "gcsfs", concurrency: int = DEFAULT) -> kvstore.AsyncKVStore:
        return kvstore.open_async(
            self.url,
            cache=None,
            storage_options=self.server.storage_options,
            concurrency=concurrency,
        )

    async def raw(self, op: str, client: str) -> Run:
        base = f"{self.prefix}/raw-{client}/{self.fresh()}"
        calls: list[Callable[[], Awaitable[Any]]]
        async with clock() as t:  # the client is made inside, as a fresh kvstore makes its own
            if client == "obstore":
                close = None
                calls = self._obstore_calls(op, base)
            else:
                fs, close = await self._gcsfs()
                if op == "mget":
                    calls = [lambda p=p: fs._cat_file(f"{BUCKET}/{p}") for p in self.paths]
                else:
                    calls = [
                        lambda i=i, v=v: fs._pipe_file(f"{BUCKET}/{base}/{i}", v)
                        for i, v in enumerate(self.values)
                    ]
            got = await gathered(calls, DEFAULT)
        if close is not None:
            await close()
        if op == "mget" and any(len(v) == 0 for v in got):
            raise RuntimeError(f"{client}: empty values read")
        kind = "get" if op == "mget" else "put"
        return Run(t["wall"], t["cpu"], {kind: self.n, "total": self.n})

    def _obstore_calls(self, op: str, base: str) -> list[Callable[[], Awaitable[Any]]]:
        import obstore
        from obstore.store import GCSStore

        store = GCSStore(
            BUCKET,
            base_url=self.server.endpoint_url,
            bearer_token="anonymous",  # the stand-in takes any token
            client_options={"allow_http": True},
        )

        async def get(path: str) -> bytes:
            return bytes(await (await obstore.get_async(store, path)).bytes_async())

        if op == "mget":
            return [lambda p=p: get(p) for p in self.paths]
        return [
            lambda i=i, v=v: obstore.put_async(store, f"{base}/{i}", v)
            for i, v in enumerate(self.values)
        ]

    async def _gcsfs(self) -> tuple[Any, Callable[[], Awaitable[Any]]]:
        import fsspec

        fs = fsspec.filesystem(
            "gcs", asynchronous=True, skip_instance_cache=True, **self.server.storage_options
        )
        await fs._set_session()
        return fs, fs.session.close


async def _compare(ctx: Context, bench: Bench) -> list[Row]:
    reps = ctx.size(2, 3)
    rows: list[Row] = []
    for op in OPS:
        work: dict[str, Callable[[], Awaitable[Run]]] = {
            "kvstore": lambda o=op: bench.kv(o, "gcsfs")
        }
        for client in TARGETS:
            work[client] = lambda o=op, c=client: bench.raw(o, c)
        for call in work.values():  # warm-up: imports, obstore's runtime, code paths
            await call()
        runs: dict[str, list[Run]] = {name: [] for name in work}
        for rep in range(reps):
            for name in list(work) if rep % 2 == 0 else list(work)[::-1]:
                runs[name].append(await work[name]())
        wall = {k: median([r.wall for r in v]) for k, v in runs.items()}
        cpu = {k: median([r.cpu / r.count for r in v]) * 1e3 for k, v in runs.items()}
        requests = dict(runs["kvstore"][-1].requests)
        for client in TARGETS:
            details = {
                "n": bench.n,
                "reps": reps,
                "concurrency": DEFAULT,
                "wall_s_kvstore": wall["kvstore"],
                "wall_s_raw": wall[client],
                "cpu_ms_per_request_kvstore": cpu["kvstore"],
                "cpu_ms_per_request_raw": cpu[client],
            }
            counts = {**requests, "baseline": runs[client][-1].count}
            rid = f"S15.{op}" + ("" if client == "gcsfs" else ".obstore")
            rows.append(
                _BY_ID[rid].row(wall["kvstore"] / wall[client], requests=counts, details=details)
            )
            rows.append(
                _BY_ID[f"{rid}.cpu"].row(
                    cpu["kvstore"] / cpu[client], requests=counts, details=details
                )
            )
        log(
            f"S15.{op} x{bench.n}: wall "
            + ", ".join(f"{k} {v:.2f}s" for k, v in wall.items())
            + "; CPU/request "
            + ", ".join(f"{k} {v:.2f}ms" for k, v in cpu.items())
            + f"; {requests}"
        )
    return rows


def run(ctx: Context) -> list[Row]:
    try:
        import obstore  # noqa: F401
    except ImportError as exc:
        raise Skip("obstore is not installed (pip install obstore; tox -e bench has it)") from exc
    return asyncio.run(_run(ctx))


async def _run(ctx: Context) -> list[Row]:
    try:
        server = ctx.gcs()
    except Skip as exc:
        return [p.skipped(str(exc)) for p in PLANNED]
    bench = Bench(server, ctx.size(300, 1000))
    await bench.setup()
    return await _compare(ctx, bench)
