"""S19: the HTTP service (``kvstore serve --http``) against the library, same store, same
machine (issue 19).

The service runs as a subprocess on a local directory with the in-process cache (as
``kvstore serve --http`` runs by default); the client is httpx over keep-alive loopback
connections. The library baseline opens the same directory in the benchmark's process.

Load comes from ``wrk`` (``apt-get install wrk``; the scenario is skipped, saying so,
without it): a Python client would measure itself (httpx's async client tops out near 200
requests/s here). The **floor** is a bare ASGI app on uvicorn answering a constant - what
any Python ASGI service pays for uvicorn, HTTP parsing and the socket.

* **S19.get** a cache-hit GET of a 100-byte value, one connection (``wrk -c1``): mean
  latency through the service / ``store.get`` in the library (the in-process cache).
* **S19.put** a PUT of a 100-byte value to local disk (fsynced), one connection: the
  service's mean latency / ``store.set``'s.
* **S19.c50** a cache-hit GET at 50 connections (``wrk -c50``): library rps (50 asyncio
  tasks on ``AsyncKVStore.get``) / service rps; **S19.c50.rps** the service's rps, with
  the floor's in the details (**S19.c50.floor**: floor rps / service rps).
* **S19.client.*** the service's Python client (``kvstore.open("kvstore+http://...")``,
  kvstore.remote), one call at a time from the benchmark's process: a cache-hit ``get``
  against the library's (**.get**) and against a plain httpx GET of the REST route from
  the same process (**.rest**: what the client's call adds - the portal hop, msgpack, the
  signature check); ``set`` to local disk against the library's (**.set**); a cache-hit
  ``mget`` of 1,000 keys - one request - against the library's (**.mget**). The client's
  own CPU per call (this process; the service runs in another) is in the details.
* **S19.big** one artifact of 1 GiB (quick: 128 MiB) streamed up (a generator body, httpx)
  and down: the server's peak resident memory (VmHWM) growth, MiB, and MB/s each way.
  Bounded memory means a few 8 MiB parts, whatever the size.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .harness import ROOT, Context, Planned, Row, Skip, log, median

ID = "S19"
TITLE = "the HTTP service against the library: GET, PUT, 50 clients, a 1 GiB artifact"

LIB = "the library on the same store (same directory, in-process cache), same machine"
FLOOR = "a bare ASGI app on uvicorn answering a constant, same wrk run"
REST = "httpx.Client GET of /v1/values/{key} from the same process, same service"
GET1, PUT1, GET50 = (
    "cache-hit GET, 1 connection",
    "PUT 100 B, local disk, 1 connection",
    ("cache-hit GET, 50 connections"),
)
PLANNED = [
    Planned("S19.get", f"{GET1}: service us / library us", None, "<=", "x", LIB),
    Planned("S19.put", f"{PUT1}: service us / library us", None, "<=", "x", LIB),
    Planned("S19.c50", f"{GET50}: library rps / service rps", None, "<=", "x", LIB),
    Planned("S19.c50.rps", f"{GET50}: service requests/s", None, ">=", "rps", LIB),
    Planned("S19.c50.floor", f"{GET50}: floor rps / service rps", None, "<=", "x", FLOOR),
    Planned("S19.client.get", "client get (cache hit): us / library us", None, "<=", "x", LIB),
    Planned("S19.client.rest", "client get: us / httpx REST GET us", None, "<=", "x", REST),
    Planned("S19.client.set", "client set, local disk: us / library us", None, "<=", "x", LIB),
    Planned("S19.client.mget", "client mget 1000 (hits): us / library us", None, "<=", "x", LIB),
    Planned("S19.big.rss", "artifact up and down: server peak RSS growth", 256, "<=", "MiB", "-"),
    Planned("S19.big.up", "artifact upload through the service", None, ">=", "MB/s", "-"),
    Planned("S19.big.down", "artifact download through the service", None, ">=", "MB/s", "-"),
]
VALUE = b"v" * 100


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Service:
    """``python -m kvstore serve --http`` on ``directory``, on a free port."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        cmd = [sys.executable, "-m", "kvstore", "--url", str(directory), "serve", "--http"]
        cmd += ["--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Service:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the HTTP service did not start")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)

    def peak_rss_mib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        found = re.search(r"VmHWM:\s+(\d+) kB", status)
        if found is None:
            raise Skip("no /proc/PID/status VmHWM here")
        return int(found[1]) / 1024

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        return 0.0 if found is None else int(found[1]) / 1024


FLOOR_APP = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    await send({"type": "http.response.body", "body": b"v" * 100})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""

PUT_LUA = """wrk.method = "PUT"
wrk.body = string.rep("v", 100)
"""


def _wrk(url: str, connections: int, seconds: int, script: Path | None = None) -> dict[str, float]:
    """One wrk run: requests/s and mean latency (us)."""
    binary = shutil.which("wrk")
    if binary is None:
        raise Skip("wrk not found (apt-get install wrk)")
    cmd = [binary, f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=120, check=True)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    mean = re.search(r"Latency\s+([\d.]+)(us|ms|s)", out.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    if rps is None or mean is None or errors is not None:
        raise RuntimeError(f"wrk: {out.stdout[-500:]!r}")
    scale = {"us": 1.0, "ms": 1e3, "s": 1e6}[mean[2]]
    return {"rps": float(rps[1]), "mean_us": float(mean[1]) * scale}


def _per_call_us(fn: Any, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


async def _library_rps(directory: Path, clients: int, each: int) -> float:
    import kvstore

    async with kvstore.open_async(str(directory)) as store:
        await store.get("hot")

        async def client() -> None:
            for _ in range(each):
                await store.get("hot")

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return clients * each / (time.perf_counter() - started)


def run(ctx: Context) -> list[Row]:
    try:
        import fastapi  # noqa: F401
        import httpx
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise Skip(f"needs kvstore[server] and httpx ({exc.name})") from None
    if shutil.which("wrk") is None:
        raise Skip("wrk not found (apt-get install wrk)")
    import kvstore

    by_id = {p.id: p for p in PLANNED}
    rows: list[Row] = []
    directory = ctx.tmp / "s19"
    reps = ctx.size(1, 3)
    seconds = ctx.size(3, 8)
    put_lua = ctx.tmp / "put.lua"
    put_lua.write_text(PUT_LUA)
    floor_port = _free_port()
    floor = subprocess.Popen([sys.executable, "-c", FLOOR_APP, str(floor_port)])
    try:
        with Service(directory) as service, kvstore.open(str(directory)) as lib:
            client = httpx.Client(base_url=service.url, timeout=120)
            assert client.put("/v1/values/hot", content=VALUE).status_code == 204
            lib.set("hot", VALUE)
            lib.get("hot")
            _wait_for(f"http://127.0.0.1:{floor_port}/")
            get_url = service.url + "/v1/values/hot"
            floor_url = f"http://127.0.0.1:{floor_port}/"
            got: dict[str, list[float]] = {}
            for rep in range(reps):
                runs = {
                    "svc.get.c1": lambda: _wrk(get_url, 1, seconds)["mean_us"],
                    "lib.get": lambda: _per_call_us(lambda: lib.get("hot"), 20_000),
                    "svc.put.c1": lambda: _wrk(service.url + "/v1/values/w", 1, seconds, put_lua)[
                        "mean_us"
                    ],
                    "lib.put": lambda: _per_call_us(lambda: lib.set("w", VALUE), 300),
                    "svc.get.c50": lambda: _wrk(get_url, 50, seconds)["rps"],
                    "floor.get.c50": lambda: _wrk(floor_url, 50, seconds)["rps"],
                    "lib.get.c50": lambda: asyncio.run(_library_rps(directory, 50, 2000)),
                }
                order = list(runs) if rep % 2 == 0 else list(runs)[::-1]
                for name in order:
                    got.setdefault(name, []).append(runs[name]())
            m = {k: median(v) for k, v in got.items()}
            log(f"medians: { {k: round(v, 1) for k, v in m.items()} }")
            details = {k: v for k, v in m.items()}
            rows.append(by_id["S19.get"].row(m["svc.get.c1"] / m["lib.get"], details=details))
            rows.append(by_id["S19.put"].row(m["svc.put.c1"] / m["lib.put"], details=details))
            rows.append(by_id["S19.c50"].row(m["lib.get.c50"] / m["svc.get.c50"], details=details))
            rows.append(by_id["S19.c50.rps"].row(m["svc.get.c50"], details=details))
            rows.append(
                by_id["S19.c50.floor"].row(m["floor.get.c50"] / m["svc.get.c50"], details=details)
            )
            rows.extend(_client(ctx, service, client, lib, m, by_id))
            rows.extend(_big(ctx, service, client, by_id))
            client.close()
    finally:
        floor.terminate()
        floor.wait(10)
    return rows


def _timed(fn: Any, n: int) -> tuple[float, float]:
    """(wall us, this process's CPU us) per call of ``fn``, over ``n`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6


def _client(
    ctx: Context,
    service: Service,
    http: Any,
    lib: Any,
    lib_medians: dict[str, float],
    by_id: dict[str, Planned],
) -> list[Row]:
    import kvstore

    keys = [f"m{i:04d}" for i in range(1000)]
    lib.mset(dict.fromkeys(keys, VALUE))
    got: dict[str, list[float]] = {}
    calls = [0]  # mget calls through the client

    with kvstore.open("kvstore+" + service.url) as remote:

        def mget() -> None:
            calls[0] += 1
            remote.mget(keys)

        mget()  # into the service's cache
        remote.get("hot")
        lib.mget(keys)
        runs = {
            "client.get": lambda: _timed(lambda: remote.get("hot"), ctx.size(500, 3000)),
            "rest.get": lambda: _timed(lambda: http.get("/v1/values/hot"), ctx.size(500, 3000)),
            "client.set": lambda: _timed(lambda: remote.set("w", VALUE), ctx.size(50, 300)),
            "lib.set": lambda: _timed(lambda: lib.set("w", VALUE), ctx.size(50, 300)),
            "client.mget": lambda: _timed(mget, ctx.size(10, 50)),
            "lib.mget": lambda: _timed(lambda: lib.mget(keys), ctx.size(50, 300)),
        }
        for rep in range(ctx.size(1, 3)):
            order = list(runs) if rep % 2 == 0 else list(runs)[::-1]
            for name in order:
                wall, cpu = runs[name]()
                got.setdefault(name, []).append(wall)
                got.setdefault(name + ".cpu", []).append(cpu)
        requests = remote.stats()["requests.mget"]
    m = {k: median(v) for k, v in got.items()}
    log(f"client medians: { {k: round(v, 1) for k, v in m.items()} }")
    details: dict[str, Any] = {k: round(v, 1) for k, v in m.items()}
    details["lib.get"] = round(lib_medians["lib.get"], 2)
    details["client.mget.requests_per_call"] = requests / calls[0]
    return [
        by_id["S19.client.get"].row(m["client.get"] / lib_medians["lib.get"], details=details),
        by_id["S19.client.rest"].row(m["client.get"] / m["rest.get"], details=details),
        by_id["S19.client.set"].row(m["client.set"] / m["lib.set"], details=details),
        by_id["S19.client.mget"].row(m["client.mget"] / m["lib.mget"], details=details),
    ]


def _wait_for(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer") from None
            time.sleep(0.1)


def _big(ctx: Context, service: Service, client: Any, by_id: dict[str, Planned]) -> list[Row]:
    """One artifact streamed up and down through the service: peak RSS growth, MB/s."""
    size = ctx.size(128, 1024) << 20
    block = os.urandom(1 << 20)
    before = service.peak_rss_mib()

    def chunks() -> Any:
        for _ in range(size >> 20):
            yield block

    started = time.perf_counter()
    saved = client.put("/v1/artifacts/big.bin", content=chunks())
    up = time.perf_counter() - started
    assert saved.status_code == 201, saved.text
    received = 0
    started = time.perf_counter()
    with client.stream("GET", "/v1/artifacts/big.bin") as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received += len(chunk)
    down = time.perf_counter() - started
    assert received == size
    grown = service.peak_rss_mib() - before
    log(
        f"{size >> 20} MiB: up {size / up / 1e6:.0f} MB/s, down {size / down / 1e6:.0f} MB/s, "
        f"peak RSS +{grown:.0f} MiB (from {before:.0f})"
    )
    big = {"size.mib": size >> 20, "rss.before.mib": before, "up.s": up, "down.s": down}
    return [
        by_id["S19.big.rss"].row(grown, details=big),
        by_id["S19.big.up"].row(size / up / 1e6, details=big),
        by_id["S19.big.down"].row(size / down / 1e6, details=big),
    ]


if __name__ == "__main__":  # python -m benchmarks.s19_http [--quick]
    from .runner import table

    context = Context(quick="--quick" in sys.argv[1:], latency_ms=0)
    try:
        print(table(run(context)))
    finally:
        context.close()
