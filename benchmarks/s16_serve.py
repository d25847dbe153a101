"""S16: ``kvstore serve`` under ``redis-benchmark``, against redis-server and a floor.

One ``redis-benchmark`` (Debian's redis-tools: ``apt-get install redis-tools``; the
scenario is skipped, saying so, without it) drives, in turn and alternating the order:

* **redis-server** (the one the tests use) - the issue's baseline;
* **the floor** (:mod:`benchmarks.resp_floor`): a bare asyncio RESP server answering from
  a dict - what any Python asyncio server pays per request for the loop, the parsing and
  the socket, before doing anything;
* **kvstore serve** on a local directory with the in-process cache (the embedded default),
  started as ``python -m kvstore serve`` (:class:`kvstore.testing.servers.KVStoreServer`)
  on the loop it picks (uvloop when installed: ``kvstore[server]``), and again with
  ``--loop asyncio``; for GET, the floor on uvloop too.

Rows (50 clients; ``-P 16`` is 16 commands per round trip):

* S16.get / S16.get.P16: a cache-hit GET (one key, written first): requests/s of
  redis-server over kvstore's (the issue's targets: 2x, 4x pipelined); ``.floor``: the
  floor's ratio to redis-server; ``.over_floor``: kvstore's cost over the floor;
  ``.asyncio`` and ``.floor_uvloop``: kvstore on asyncio's loop, the floor on uvloop's.
* S16.set / S16.incr: SET and INCR on 10,000 keys (``-r``), each acknowledged after the
  store's write (a file written, fsynced and renamed, its directory fsynced);
  redis-server's rate over kvstore's, with the p99s in the details. No target:
  redis-server acknowledges from memory. ``.fsync``: against a redis-server that fsyncs
  every write too (``appendfsync always``) - the same durability, on the same disk.
* S16.set.latency: SET at one client on SeaweedFS (a real S3 server), redis-benchmark's
  p50, against obstore's own PUT of the same size to the same bucket, p50 of sequential
  PUTs, in alternating rounds (the issue's target: 1.2x). The difference is the round
  trip to the server and its work around the same one PUT.
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

from .harness import ROOT, Context, Planned, Row, Skip, log, median, obstore_client, percentile

ID = "S16"
TITLE = "kvstore serve under redis-benchmark: GET/SET/INCR against redis-server and a floor"

REDIS = "redis-server on loopback, same redis-benchmark run"
FLOOR = "bare asyncio RESP server answering from a dict (benchmarks/resp_floor.py)"
PUT = "obstore's own S3 PUT of the same size, same SeaweedFS bucket"
FSYNC = "redis-server with appendonly yes, appendfsync always (each write fsynced), same disk"
CLIENTS = 50


def _planned(id_: str, name: str, target: float | None, baseline: str) -> Planned:
    return Planned(id_, name, target, "<=", "x", baseline)


GET = "cache-hit GET, 50 clients"
PLANNED = [
    _planned("S16.get", f"{GET}: redis-server rps / kvstore rps", 2, REDIS),
    _planned("S16.get.floor", f"{GET}: redis-server rps / floor rps", None, REDIS),
    _planned("S16.get.over_floor", f"{GET}: floor rps / kvstore rps", None, FLOOR),
    _planned("S16.get.P16", f"{GET}, -P 16: redis-server rps / kvstore rps", 4, REDIS),
    _planned("S16.get.P16.floor", f"{GET}, -P 16: redis-server rps / floor rps", None, REDIS),
    _planned("S16.get.P16.over_floor", f"{GET}, -P 16: floor rps / kvstore rps", None, FLOOR),
    _planned("S16.get.asyncio", f"{GET}: redis-server rps / kvstore --loop asyncio", None, REDIS),
    _planned(
        "S16.get.P16.asyncio",
        f"{GET}, -P 16: redis-server rps / kvstore --loop asyncio",
        None,
        REDIS,
    ),
    _planned("S16.get.floor_uvloop", f"{GET}: redis-server rps / floor on uvloop", None, REDIS),
    _planned(
        "S16.get.P16.floor_uvloop", f"{GET}, -P 16: redis-server rps / floor on uvloop", None, REDIS
    ),
]
for _test in ("SET", "INCR"):
    for _suffix, _how in (("", ""), (".P16", ", -P 16")):
        PLANNED.append(
            _planned(
                f"S16.{_test.lower()}{_suffix}",
                f"{_test} on 10k keys, local disk, 50 clients{_how}: "
                "redis-server rps / kvstore rps",
                None,
                REDIS,
            )
        )
for _test in ("SET", "INCR"):
    PLANNED.append(
        _planned(
            f"S16.{_test.lower()}.fsync",
            f"{_test} on 10k keys, local disk, 50 clients: durable redis-server rps / kvstore rps",
            None,
            FSYNC,
        )
    )
PLANNED.append(
    _planned("S16.set.latency", "SET, one client, SeaweedFS: p50 latency / S3 PUT p50", 1.2, PUT)
)


def _binary() -> str:
    found = shutil.which("redis-benchmark")
    if found is None:
        raise Skip("redis-benchmark not found (apt-get install redis-tools)")
    return found


def bench(
    port: int,
    test: str,
    n: int,
    clients: int = CLIENTS,
    pipeline: int = 1,
    keys: int = 0,
    size: int = 3,
) -> dict[str, float]:
    """One redis-benchmark run of ``test`` (get, set, incr): requests/s, p50 and p99 ms."""
    cmd = [_binary(), "-h", "127.0.0.1", "-p", str(port), "-t", test, "-n", str(n)]
    cmd += ["-c", str(clients), "-P", str(pipeline), "-d", str(size), "--csv"]
    if keys:
        cmd += ["-r", str(keys)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    if len(rows) != 1:
        raise RuntimeError(f"redis-benchmark printed {done.stdout!r} {done.stderr[-300:]!r}")
    row = rows[0]
    return {
        "rps": float(row["rps"]),
        "p50_ms": float(row["p50_latency_ms"]),
        "p99_ms": float(row["p99_latency_ms"]),
    }


class FloorServer:
    """:mod:`benchmarks.resp_floor` in a subprocess on a free port (``loop``: asyncio's
    or uvloop's)."""

    def __init__(self, loop: str = "asyncio") -> None:
        self.loop = loop

    def __enter__(self) -> FloorServer:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        cmd = [sys.executable, "-m", "benchmarks.resp_floor", str(self.port)]
        self.proc = subprocess.Popen(cmd + (["uvloop"] if self.loop == "uvloop" else []), cwd=ROOT)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the floor server did not start") from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _event_loop(port: int) -> str:
    """The event loop a ``kvstore serve`` runs on (INFO's ``kvstore_event_loop``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        text = b""
        while b"kvstore_event_loop:" not in text or not text.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            text += chunk
    for line in text.decode().splitlines():
        if line.startswith("kvstore_event_loop:"):
            return line.split(":", 1)[1]
    raise RuntimeError(f"no kvstore_event_loop in INFO: {text[:200]!r}")


def _set_key(port: int, key: bytes, value: bytes) -> None:
    """SET over a plain socket (the warm key GET reads)."""
    command = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(command)
        assert sock.recv(64).startswith(b"+OK")


def _compare(
    servers: dict[str, int], test: str, n: dict[str, int], reps: int, **options: Any
) -> dict[str, dict[str, float]]:
    """Each server ``reps`` times, alternating the order; medians of rps, p50, p99."""
    names = list(servers)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            runs[name].append(bench(servers[name], test, n[name], **options))
    return {
        name: {k: median([r[k] for r in got]) for k in ("rps", "p50_ms", "p99_ms")}
        for name, got in runs.items()
    }


def _details(got: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"{name}.{k}": v for name, figures in got.items() for k, v in figures.items()}


def run(ctx: Context) -> list[Row]:
    from kvstore.testing.servers import KVStoreServer, RedisServer

    _binary()
    reps = ctx.size(1, 3)
    rows: list[Row] = []
    by_id = {p.id: p for p in PLANNED}
    redis = ctx.redis()
    with (
        FloorServer() as floor,
        FloorServer("uvloop") as floor_uvloop,
        KVStoreServer(str(ctx.tmp / "s16"), cache="local") as kv,
        KVStoreServer(str(ctx.tmp / "s16a"), extra_args=["--loop", "asyncio"]) as kva,
        RedisServer(persistence=True) as durable,
    ):
        servers = {
            "redis": redis.port,
            "floor": floor.port,
            "floor_uvloop": floor_uvloop.port,
            "kvstore": kv.port,  # on the loop `kvstore serve` picks: uvloop when installed
            "kvstore_asyncio": kva.port,
        }
        for port in servers.values():
            _set_key(port, b"key:__rand_int__", b"xxx")
        loop = _event_loop(kv.port)
        for pipeline, suffix in ((1, ""), (16, ".P16")):
            n = {"redis": ctx.size(100_000, 400_000)}
            n["floor"] = n["floor_uvloop"] = ctx.size(50_000, 200_000)
            n["kvstore"] = n["kvstore_asyncio"] = ctx.size(20_000, 100_000) * (
                2 if pipeline > 1 else 1
            )
            log(f"GET, -P {pipeline}")
            got = _compare(servers, "get", n, reps, pipeline=pipeline)
            rps = {name: got[name]["rps"] for name in got}
            details = {**_details(got), "kvstore.loop": loop}
            rows.append(
                by_id[f"S16.get{suffix}"].row(rps["redis"] / rps["kvstore"], details=details)
            )
            rows.append(by_id[f"S16.get{suffix}.floor"].row(rps["redis"] / rps["floor"]))
            rows.append(by_id[f"S16.get{suffix}.over_floor"].row(rps["floor"] / rps["kvstore"]))
            for name in ("asyncio", "floor_uvloop"):
                contender = name if name.startswith("floor") else f"kvstore_{name}"
                ratio = rps["redis"] / rps[contender]
                rows.append(by_id[f"S16.get{suffix}.{name}"].row(ratio))
        writers = {"redis": redis.port, "redis_fsync": durable.port, "kvstore": kv.port}
        for test in ("set", "incr"):
            for pipeline, suffix in ((1, ""), (16, ".P16")):
                n = {"redis": ctx.size(100_000, 400_000), "kvstore": ctx.size(3_000, 10_000)}
                n["redis_fsync"] = n["kvstore"] * 4
                log(f"{test.upper()} on 10k keys, -P {pipeline}")
                got = _compare(writers, test, n, reps, pipeline=pipeline, keys=10_000)
                ratio = got["redis"]["rps"] / got["kvstore"]["rps"]
                rows.append(by_id[f"S16.{test}{suffix}"].row(ratio, details=_details(got)))
                if pipeline == 1:
                    ratio = got["redis_fsync"]["rps"] / got["kvstore"]["rps"]
                    rows.append(by_id[f"S16.{test}.fsync"].row(ratio))
    rows.append(_set_latency(ctx, by_id["S16.set.latency"]))
    return rows


def _set_latency(ctx: Context, planned: Planned) -> Row:
    """SET p50 through ``kvstore serve`` (redis-benchmark, one client) and obstore's PUT
    p50, in alternating rounds (the machine's drift hits both alike); the median of the
    rounds' ratios."""
    from kvstore.testing.servers import KVStoreServer

    try:
        server = ctx.seaweedfs()
    except Skip as exc:
        return planned.skipped(str(exc))
    prefix = f"s16-{uuid.uuid4().hex[:8]}"
    rounds, n = ctx.size(3, 7), ctx.size(200, 400)
    size = 100
    payload = b"x" * size
    obs = obstore_client(server, "kvbench", f"{prefix}-raw")
    url = server.url_for("kvbench", prefix)

    async def puts() -> list[float]:
        import obstore

        took = []
        for i in range(n):
            started = time.perf_counter()
            await obstore.put_async(obs, f"k{i}", payload)
            took.append((time.perf_counter() - started) * 1000)
        return took

    sets: list[dict[str, float]] = []
    put_p50: list[float] = []
    put_p99: list[float] = []
    with KVStoreServer(url, cache="local", storage_options=server.storage_options) as kv:
        _set_key(kv.port, b"warm", b"up")  # connect, sign, probe the server once
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(puts())  # the same for obstore's connection
            for r in range(rounds):
                log(f"SET latency on SeaweedFS, round {r + 1}/{rounds}")
                sets.append(bench(kv.port, "set", n, clients=1, keys=100_000, size=size))
                took = loop.run_until_complete(puts())
                put_p50.append(percentile(took, 50))
                put_p99.append(percentile(took, 99))
        finally:
            loop.close()
    ratios = [s["p50_ms"] / p for s, p in zip(sets, put_p50, strict=True)]
    return planned.row(
        median(ratios),
        details={
            "kvstore.set.p50_ms": median([s["p50_ms"] for s in sets]),
            "kvstore.set.p99_ms": median([s["p99_ms"] for s in sets]),
            "put.p50_ms": median(put_p50),
            "put.p99_ms": median(put_p99),
            "p99_ratio": median([s["p99_ms"] for s in sets]) / median(put_p99),
            "rounds": rounds,
        },
    )
