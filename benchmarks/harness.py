"""What every scenario shares: result rows, the run context (mode, servers), timing helpers."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `backends` lives beside the package, not installed
    sys.path.insert(0, str(ROOT))


class Skip(Exception):
    """A scenario cannot run here (a missing feature or service); its rows say why."""


@dataclass
class Row:
    """One figure of a scenario, as written to results.json.

    ``value`` is compared with ``target`` by ``direction`` ("<=", ">=", "=="); ``ok`` is
    that comparison (False when the row was skipped or failed).
    """

    id: str
    name: str
    value: float | int | None
    target: float | int | None
    direction: str
    unit: str
    baseline: str
    requests: Any = None
    details: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        if self.value is None or self.skipped or self.error:
            return False
        if self.target is None:
            return True
        if self.direction == "<=":
            return bool(self.value <= self.target)
        if self.direction == ">=":
            return bool(self.value >= self.target)
        if self.direction == "==":
            return bool(self.value == self.target)
        raise ValueError(f"unknown direction {self.direction!r}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "value": _round(self.value),
            "target": self.target,
            "direction": self.direction,
            "unit": self.unit,
            "baseline": self.baseline,
            "requests": self.requests,
            "ok": self.ok,
        }
        if self.skipped:
            out["skipped"] = self.skipped
        if self.error:
            out["error"] = self.error
        if self.details:
            out["details"] = {k: _round(v) for k, v in self.details.items()}
        return out


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.4g}")
    return value


@dataclass(frozen=True)
class Planned:
    """A row a scenario will produce: listed up front so a skipped scenario still shows it."""

    id: str
    name: str
    target: float | int | None
    direction: str
    unit: str
    baseline: str

    def row(self, value: float | int | None, **kwargs: Any) -> Row:
        name = kwargs.pop("name", self.name)
        return Row(
            self.id, name, value, self.target, self.direction, self.unit, self.baseline, **kwargs
        )

    def skipped(self, reason: str) -> Row:
        return Row(
            self.id,
            self.name,
            None,
            self.target,
            self.direction,
            self.unit,
            self.baseline,
            skipped=reason,
        )


class Context:
    """The run: mode and sizes, servers started on demand (and stopped at the end)."""

    def __init__(self, *, quick: bool, latency_ms: float, s3: bool = True) -> None:
        self.quick = quick
        self.latency = latency_ms / 1000
        self.latency_ms = latency_ms
        self.s3_enabled = s3
        self._redis: Any = None
        self._s3: Any = None
        self._seaweedfs: Any = None
        self._gcs: Any = None
        self._stack = contextlib.ExitStack()
        self.tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="kvbench-")))

    def size(self, quick: T, full: T) -> T:
        return quick if self.quick else full

    def redis(self) -> Any:
        """A redis-server of our own on a free loopback port (shared by S1-S5)."""
        if self._redis is None:
            from backends import RedisServer

            self._redis = self._stack.enter_context(RedisServer())
        return self._redis

    def s3(self) -> Any:
        """A moto S3 server in its own process (real s3fs HTTP), or Skip."""
        if not self.s3_enabled:
            raise Skip("S3 rows disabled (--no-s3)")
        if self._s3 is None:
            try:
                from backends import MotoS3Server

                self._s3 = self._stack.enter_context(MotoS3Server(buckets=("kvbench",)))
            except Exception as exc:
                raise Skip(f"moto S3 server unavailable: {exc}") from exc
        return self._s3

    def seaweedfs(self) -> Any:
        """A SeaweedFS server (a real S3 server) of our own, or Skip."""
        if not self.s3_enabled:
            raise Skip("S3 rows disabled (--no-s3)")
        if self._seaweedfs is None:
            try:
                from backends import SeaweedFS

                self._seaweedfs = self._stack.enter_context(SeaweedFS(buckets=("kvbench",)))
            except Exception as exc:
                raise Skip(f"SeaweedFS unavailable: {exc}") from exc
        return self._seaweedfs

    def gcs(self) -> Any:
        """The GCS stand-in (``backends.GCSEmulator``) of our own, or Skip."""
        if self._gcs is None:
            try:
                from backends import GCSEmulator

                self._gcs = self._stack.enter_context(GCSEmulator(buckets=("kvbench",)))
            except Exception as exc:
                raise Skip(f"GCS stand-in unavailable: {exc}") from exc
        return self._gcs

    def close(self) -> None:
        self._stack.close()


async def gathered(calls: list[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    """Run the calls with at most ``limit`` in flight (as ``mget`` does); their results."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


class Run:
    """One timed operation: wall seconds, this process's CPU seconds, requests made."""

    def __init__(self, wall: float, cpu: float, requests: dict[str, int]) -> None:
        self.wall, self.cpu, self.requests = wall, cpu, requests

    @property
    def count(self) -> int:
        return self.requests["total"]


@contextlib.asynccontextmanager
async def clock() -> AsyncIterator[dict[str, float]]:
    """Sets ``wall`` and ``cpu`` (this process's CPU seconds, every thread) on exit."""
    got: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield got
    finally:
        got["wall"], got["cpu"] = time.perf_counter() - wall, time.process_time() - cpu


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


async def atimed(fn: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await fn()
    return time.perf_counter() - started


def interleave(reps: int, contenders: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Run each contender ``reps`` times, alternating the order (ABBA...), so slow drift
    on a shared machine hits all of them alike. Each callable returns its own time."""
    names = list(contenders)
    out: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(reps):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            out[name].append(contenders[name]())
    return out


async def ainterleave(
    reps: int, contenders: dict[str, Callable[[], Awaitable[float]]]
) -> dict[str, list[float]]:
    names = list(contenders)
    out: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(reps):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            out[name].append(await contenders[name]())
    return out


def requests_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Object-store requests by kind between two ``store.stats()`` snapshots."""
    out: dict[str, int] = {}
    for key, value in after.items():
        if key.startswith("requests.") and isinstance(value, int):
            delta = value - int(before.get(key, 0))
            if delta:
                out[key[len("requests.") :]] = delta
    out["total"] = sum(out.values())
    return out


@contextlib.contextmanager
def counting(store: Any) -> Iterator[dict[str, int]]:
    """``with counting(store) as req:`` fills ``req`` with the requests made inside."""
    result: dict[str, int] = {}
    before = store.stats()
    try:
        yield result
    finally:
        result.update(requests_delta(before, store.stats()))


def run_async(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def obstore_client(server: Any, bucket: str, prefix: str | None = None) -> Any:
    """obstore's own S3 client (a baseline) for one of ``backends``' S3 servers; Skip
    where obstore is not installed."""
    try:
        from obstore.store import S3Store
    except ImportError as exc:
        raise Skip("obstore is not installed (pip install obstore; tox -e bench has it)") from exc
    return S3Store(
        bucket,
        prefix=prefix,
        endpoint=server.endpoint_url,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        region=server.region,
        client_options={"allow_http": True},
    )
