"""Probe: which ``concurrency`` should kvstore default to? Cold ``mget`` on a real S3 server.

``python -m benchmarks.concurrency_probe [--load 2] [--keys 1000] [--levels 16,...,1024]``

Starts SeaweedFS (``backends.SeaweedFS``: a real S3 server, on loopback), writes ``--keys``
values of 1 KiB, then for each concurrency level opens a fresh store (no cache, new
connections: every read is a cold ``mget`` of all the keys) and records, per read:

* wall time and client CPU time (``time.process_time``: every thread of this process);
* the server's CPU time (``weed``'s utime + stime from ``/proc``);
* kvstore's counters (``stats()`` deltas: ``requests.get``, ``retries``, ``errors``);
* the HTTP requests the client actually sent: ``AioEndpoint._send`` is wrapped to count
  every attempt, so retries made inside botocore and s3fs - which kvstore's counters
  cannot see, as they happen within one kvstore request - show up as ``http - keys``;
  failed attempts are counted by exception class (e.g. ``ConnectTimeoutError``);
* the longest stall of kvstore's event loop during the read (a timer's lateness);
* whether the ``mget`` raised, and what.

Levels run in alternating order on each repetition, so drift hits all alike. ``--load N``
starts N busy-loop processes for the run (each also stops itself after ``--load-seconds``)
to reproduce a loaded client; they are killed when the probe ends. ``--connect-timeout``
lowers botocore's connect timeout (s3fs sets 5 s), the other way to approach the point where
a stalled event loop makes connects time out.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .harness import ROOT, log

LEVELS = (16, 32, 64, 128, 256, 512, 1024)
VALUE_SIZE = 1024
BUCKET = "kvprobe"


# --------------------------------------------------------------------- HTTP attempts
class HttpCounter:
    """Counts aiobotocore HTTP sends (every attempt, retries included) in this process."""

    def __init__(self) -> None:
        self.sent = 0
        self.failed: collections.Counter[str] = collections.Counter()

    def snapshot(self) -> tuple[int, collections.Counter[str]]:
        return self.sent, collections.Counter(self.failed)

    @contextlib.contextmanager
    def installed(self) -> Iterator[HttpCounter]:
        from aiobotocore.endpoint import AioEndpoint

        original = AioEndpoint._send
        counter = self

        async def _send(endpoint: Any, request: Any) -> Any:
            counter.sent += 1
            try:
                return await original(endpoint, request)
            except Exception as exc:
                counter.failed[type(exc).__name__] += 1
                raise

        AioEndpoint._send = _send
        try:
            yield self
        finally:
            AioEndpoint._send = original


class LoopLag:
    """The longest stall of kvstore's event loop (the blocking face's portal) while in use:
    a callback due every ``interval`` seconds records how late it ran. A connect whose
    completion waits behind a stall longer than botocore's ``connect_timeout`` times out."""

    def __init__(self, interval: float = 0.01) -> None:
        from kvstore.portal import portal

        self.loop = portal()._loop
        self.interval = interval
        self.worst = 0.0
        self._due: float | None = None
        self._handle: Any = None

    def _tick(self) -> None:
        now = self.loop.time()
        if self._due is not None:
            self.worst = max(self.worst, now - self._due)
        self._due = now + self.interval
        self._handle = self.loop.call_later(self.interval, self._tick)

    def __enter__(self) -> LoopLag:
        self.loop.call_soon_threadsafe(self._tick)
        return self

    def __exit__(self, *exc: object) -> None:
        done = threading.Event()

        def cancel() -> None:
            if self._handle is not None:
                self._handle.cancel()
            done.set()

        self.loop.call_soon_threadsafe(cancel)
        done.wait(10)


# --------------------------------------------------------------------- load
@contextlib.contextmanager
def busy_loops(count: int, seconds: float) -> Iterator[list[int]]:
    """``count`` processes spinning one core each; each exits by itself after ``seconds``."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], start_new_session=True) for _ in range(count)
    ]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of ``pid`` (its threads included), or nan without /proc."""
    if pid is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------- the probe
def write_keys(url: str, options: dict[str, Any], count: int) -> list[str]:
    import kvstore

    keys = [f"k{i:06d}" for i in range(count)]
    value = os.urandom(VALUE_SIZE // 2).hex().encode()  # 1 KiB, incompressible enough
    with kvstore.open(url, storage_options=options, cache=None, concurrency=64) as store:
        for start in range(0, count, 1000):
            store.mset({k: value for k in keys[start : start + 1000]})
    return keys


def cold_mget(
    url: str,
    options: dict[str, Any],
    keys: list[str],
    concurrency: int,
    http: HttpCounter,
    server_pid: int | None,
) -> dict[str, Any]:
    import kvstore

    sent0, failed0 = http.snapshot()
    server0 = cpu_seconds(server_pid)
    store = kvstore.open(url, storage_options=options, cache=None, concurrency=concurrency)
    raised = ""
    try:
        before = store.stats()
        cpu0, t0 = time.process_time(), time.perf_counter()
        with LoopLag() as lag:
            try:
                got = store.mget(keys)
                if sum(v is not None for v in got) != len(keys):
                    raised = f"{sum(v is None for v in got)} values missing"
            except Exception as exc:
                raised = f"{type(exc).__name__}: {str(exc)[:120]}"
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        after = store.stats()
    finally:
        store.close()
    sent1, failed1 = http.snapshot()
    failed = failed1 - failed0

    def delta(name: str) -> int:
        return int(after.get(name, 0)) - int(before.get(name, 0))

    return {
        "concurrency": concurrency,
        "keys": len(keys),
        "wall_s": wall,
        "cpu_s": cpu,
        "server_cpu_s": cpu_seconds(server_pid) - server0,
        "loop_stall_s": lag.worst,
        "get": delta("requests.get"),
        "retries": delta("retries"),
        "errors": delta("errors"),
        "http": sent1 - sent0,
        "http_failed": dict(failed),
        "raised": raised,
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from backends import SeaweedFS

    results: list[dict[str, Any]] = []
    http = HttpCounter()
    with SeaweedFS(buckets=(BUCKET,)) as server, http.installed():
        options = dict(server.storage_options)
        if args.connect_timeout:  # s3fs's default is 5 s
            options["config_kwargs"] = {"connect_timeout": args.connect_timeout}
        plans = [(args.keys, list(args.levels))]
        if args.big:
            plans.append((args.big, list(args.big_levels)))
        for count, levels in plans:
            url = server.url_for(BUCKET, f"probe-{count}-{uuid.uuid4().hex[:6]}")
            started = time.perf_counter()
            keys = write_keys(url, options, count)
            log(f"wrote {count} keys of {VALUE_SIZE} B in {time.perf_counter() - started:.1f} s")
            cold_mget(url, options, keys[:100], 16, http, server.pid)  # warm code paths
            with (
                busy_loops(args.load, args.load_seconds) if args.load else contextlib.nullcontext()
            ):
                for rep in range(args.reps):
                    for c in levels if rep % 2 == 0 else levels[::-1]:
                        row = cold_mget(url, options, keys, c, http, server.pid)
                        row["rep"], row["load"] = rep, args.load
                        results.append(row)
                        log(
                            f"{count} keys c={c:<5} {row['wall_s'] * 1e3:7.0f} ms  "
                            f"stall={row['loop_stall_s']:.2f}s "
                            f"http={row['http']} get={row['get']} errors={row['errors']} "
                            f"{row['http_failed'] or ''} {row['raised']}"
                        )
    return results


def table(results: Sequence[dict[str, Any]]) -> str:
    """One line per (keys, concurrency): medians and [min-max] of the repetitions."""
    groups: dict[tuple[int, int], list[dict[str, Any]]] = collections.defaultdict(list)
    for row in results:
        groups[(row["keys"], row["concurrency"])].append(row)
    head = (
        "| keys | concurrency | wall ms, median [min-max] | client CPU s | server CPU s "
        "| worst loop stall s "
        "| GET (kvstore) | HTTP sent | extra HTTP | errors | failed attempts | raised |"
    )
    lines = [head, "|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|"]
    for (keys, c), rows in sorted(groups.items()):
        walls = [r["wall_s"] * 1e3 for r in rows]
        failed: collections.Counter[str] = collections.Counter()
        for r in rows:
            failed.update(r["http_failed"])
        extra = [r["http"] - r["keys"] for r in rows]
        raised = sum(1 for r in rows if r["raised"])
        lines.append(
            f"| {keys} | {c} | {statistics.median(walls):.0f} [{min(walls):.0f}-{max(walls):.0f}] "
            f"| {statistics.median(r['cpu_s'] for r in rows):.2f} "
            f"| {statistics.median(r['server_cpu_s'] for r in rows):.2f} "
            f"| {max(r['loop_stall_s'] for r in rows):.2f} "
            f"| {'/'.join(str(r['get']) for r in rows)} "
            f"| {'/'.join(str(r['http']) for r in rows)} "
            f"| {'/'.join(str(e) for e in extra)} "
            f"| {'/'.join(str(r['errors']) for r in rows)} "
            f"| {', '.join(f'{k} x{v}' for k, v in sorted(failed.items())) or '-'} "
            f"| {f'{raised}/{len(rows)}' if raised else '-'} |"
        )
    return "\n".join(lines)


def _levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.concurrency_probe",
        description="Cold mget against SeaweedFS at several concurrency levels.",
    )
    parser.add_argument("--keys", type=int, default=1000, help="keys per mget (%(default)s)")
    parser.add_argument("--levels", type=_levels, default=list(LEVELS), help="comma-separated")
    parser.add_argument("--reps", type=int, default=3, help="reads per level (%(default)s)")
    parser.add_argument("--big", type=int, default=0, help="also a BIG-key mget (e.g. 10000)")
    parser.add_argument("--big-levels", type=_levels, default=[128, 1024], help="for --big")
    parser.add_argument("--load", type=int, default=0, help="busy-loop processes during reads")
    parser.add_argument(
        "--load-seconds", type=float, default=900, help="each busy loop's own deadline"
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=0,
        help="botocore connect_timeout in seconds (default: s3fs's, 5 s)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    load_before = os.getloadavg()
    results = run(args)
    load_after = os.getloadavg()
    print(
        f"cpus {os.cpu_count()}; busy loops {args.load}; "
        f"connect_timeout {args.connect_timeout or 'default (5 s)'}; 1-min load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
