"""Metrics: numeric samples over time, on a collection of records.

``AsyncMetrics(store)`` (``Metrics`` blocking) keeps each sample as one record of the
collection ``metrics`` (partitioned by hour unless told otherwise), its metric's name in
the label ``metric`` beside the caller's labels, its value as the record's data. So a
sample has every guarantee of a record (durable and atomic on return; any number of
writers in any number of processes) and a query reads only the partitions its time range
covers (:mod:`kvstore.records`). Built on the store's public API only: it works the same
on a store reached through the HTTP service (``kvstore+http://``).

Costs: ``record`` one record append (a PUT); ``query``/``summary`` one LIST and the
partitions of the range, filtered by label in the client - give a range.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..api import AsyncKVStore
from ..errors import CorruptDataError, InvalidValueError
from ..records import AsyncRecords, Record
from ..records.model import MAX_LABELS
from ..sync import KVStore, _blocking, _Face

METRIC_LABEL = "metric"


@dataclass(frozen=True)
class Sample:
    """One sample: ``metric`` name, ``value``, ``timestamp`` (Unix seconds, ms precision)
    and ``labels`` (without ``metric``)."""

    metric: str
    value: float
    timestamp: float
    labels: dict[str, str] = field(default_factory=dict)


def _metric(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > 256:
        raise InvalidValueError(f"a metric's name is a str of 1 to 256 chars, not {name!r}")
    return name


def _value(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidValueError(f"a metric's value is a number, not {value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidValueError(f"a metric's value is a finite float, not {value!r:.100}")
    return number


def _labels(metric: str, labels: dict[str, str] | None) -> dict[str, str]:
    if labels is not None and not isinstance(labels, Mapping):
        raise InvalidValueError(f"labels are a dict of str to str, not {type(labels).__name__}")
    if labels is not None and len(labels) >= MAX_LABELS:
        raise InvalidValueError(f"a sample has at most {MAX_LABELS - 1} labels (and its metric's)")
    if labels is not None and METRIC_LABEL in labels:
        raise InvalidValueError(f"the label {METRIC_LABEL!r} is the metric's name: use another")
    return {**(labels or {}), METRIC_LABEL: metric}


def _sample(record: Record, where: str) -> Sample:
    labels = dict(record.labels)
    metric = labels.pop(METRIC_LABEL, None)
    data = record.data
    if metric is None or isinstance(data, bool) or not isinstance(data, (int, float)):
        raise CorruptDataError(
            f"{where}: record {record.seq} of partition {record.partition} is no sample"
        )
    try:
        return Sample(metric, _value(data), record.timestamp, labels)
    except InvalidValueError:
        raise CorruptDataError(
            f"{where}: record {record.seq} of partition {record.partition} is no sample"
        ) from None


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of sorted values."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class AsyncMetrics:
    """Numeric samples over time (see the module docstring)."""

    def __init__(self, store: AsyncKVStore, name: str = "metrics", partition: str = "hour"):
        self.records: AsyncRecords = store.records(name, partition)
        self._where = f"metrics {name!r}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self.records!r}>"

    async def record(
        self,
        metric: str,
        value: float,
        *,
        labels: dict[str, str] | None = None,
        timestamp: Any = None,
    ) -> Sample:
        """Add one sample (``timestamp``: Unix seconds or a datetime; default now).
        Durable and atomic on return."""
        (found,) = await self.record_many([(metric, value, labels, timestamp)])
        return found

    async def record_many(self, samples: Iterable[Sequence[Any]]) -> list[Sample]:
        """Add samples, each ``(metric, value)``, ``(metric, value, labels)`` or ``(metric,
        value, labels, timestamp)``: one record append per partition they fall in."""
        if isinstance(samples, (str, bytes, dict)) or not isinstance(samples, Iterable):
            raise InvalidValueError(
                "record_many takes a list of (metric, value, labels, timestamp)"
            )
        rows = []
        for sample in samples:
            if not isinstance(sample, (tuple, list)) or not 2 <= len(sample) <= 4:
                raise InvalidValueError("a sample is (metric, value, labels, timestamp)")
            metric, value, labels, when = (*sample, None, None)[:4]
            name = _metric(metric)
            rows.append((_value(value), when, _labels(name, labels)))
        return [_sample(r, self._where) for r in await self.records.extend(rows)]

    async def query(
        self,
        metric: str,
        start: Any = None,
        end: Any = None,
        *,
        labels: dict[str, str] | None = None,
        limit: int | None = None,
    ) -> list[Sample]:
        """The samples of ``metric`` with ``start <= timestamp < end`` whose labels include
        ``labels``, oldest first, at most ``limit``."""
        wanted = _labels(_metric(metric), labels)
        found = await self.records.query(start, end, labels=wanted, limit=limit)
        return [_sample(r, self._where) for r in found]

    async def summary(
        self,
        metric: str,
        start: Any = None,
        end: Any = None,
        *,
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """``count``, ``sum``, ``min``, ``max``, ``mean``, ``p50``, ``p90``, ``p99``
        (nearest rank), ``first`` and ``last`` of the samples ``query`` finds (count 0 and
        None for the rest when there are none)."""
        samples = await self.query(metric, start, end, labels=labels)
        values = sorted(s.value for s in samples)
        if not values:
            keys = ("sum", "min", "max", "mean", "p50", "p90", "p99", "first", "last")
            return {"count": 0, **dict.fromkeys(keys)}
        return {
            "count": len(values),
            "sum": math.fsum(values),
            "min": values[0],
            "max": values[-1],
            "mean": math.fsum(values) / len(values),
            "p50": percentile(values, 50),
            "p90": percentile(values, 90),
            "p99": percentile(values, 99),
            "first": samples[0].timestamp,
            "last": samples[-1].timestamp,
        }


class Metrics(_Face[AsyncMetrics]):
    """Numeric samples over time, blocking: ``Metrics(store)``. See :mod:`kvstore.kinds.metrics`."""

    def __init__(self, store: KVStore, name: str = "metrics", partition: str = "hour"):
        super().__init__(AsyncMetrics(store.aio, name, partition))

    record = _blocking(AsyncMetrics.record)
    record_many = _blocking(AsyncMetrics.record_many)
    query = _blocking(AsyncMetrics.query)
    summary = _blocking(AsyncMetrics.summary)

    def __repr__(self) -> str:
        return repr(self._core).replace("AsyncMetrics", "Metrics", 1)
