"""Traces: the spans of agent runs (a model call, a tool call, a step), on a collection of
records.

``AsyncTraces(store)`` (``Traces`` blocking) keeps each finished span as one record of the
collection ``traces`` (partitioned by hour unless told otherwise), at its start time,
labelled with its ``trace``, ``span`` name and ``status`` so queries select on them. A span
has every guarantee of a record (durable and atomic on return, any number of writers) and
a query reads only the partitions of its time range (:mod:`kvstore.records`): give the
range a trace ran in when it is known - without one, ``trace()`` reads every partition.
Built on the store's public API only (works through ``kvstore+http://`` too).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..api import AsyncKVStore
from ..errors import CorruptDataError, InvalidValueError
from ..records import AsyncRecords, Record
from ..records.model import to_ms
from ..sync import KVStore, _blocking, _Face
from . import _json
from .metrics import percentile

STATUSES = ("ok", "error")


@dataclass(frozen=True)
class Span:
    """One finished span: ``trace_id``, ``span_id``, ``name``, ``start`` and ``end`` (Unix
    seconds, ms precision), ``parent_id`` (None for a trace's root), ``status`` ("ok" or
    "error") and ``attributes`` (JSON-like values and bytes)."""

    trace_id: str
    span_id: str
    name: str
    start: float
    end: float
    parent_id: str | None = None
    status: str = "ok"
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """``end - start`` in seconds (to the millisecond, as they are kept)."""
        return (round(self.end * 1000) - round(self.start * 1000)) / 1000


def _text(what: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 256:
        raise InvalidValueError(f"a span's {what} is a str of 1 to 256 chars, not {value!r}")
    return value


def _span(record: Record, where: str) -> Span:
    data, labels = record.data, record.labels
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("id"), str)
        or type(data.get("end")) is not int
        or not isinstance(data.get("parent"), (str, type(None)))
        or not isinstance(data.get("attributes"), dict)
        or not isinstance(labels.get("trace"), str)
        or not isinstance(labels.get("span"), str)
        or labels.get("status") not in STATUSES
    ):
        raise CorruptDataError(
            f"{where}: record {record.seq} of partition {record.partition} is no span"
        )
    return Span(
        labels["trace"],
        data["id"],
        labels["span"],
        record.timestamp,
        data["end"] / 1000,
        data["parent"],
        labels["status"],
        data["attributes"],
    )


class AsyncTraces:
    """The spans of traces (see the module docstring)."""

    def __init__(self, store: AsyncKVStore, name: str = "traces", partition: str = "hour"):
        self.records: AsyncRecords = store.records(name, partition)
        self._where = f"traces {name!r}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self.records!r}>"

    async def record(
        self,
        trace_id: str,
        name: str,
        start: Any,
        end: Any,
        *,
        span_id: str | None = None,
        parent_id: str | None = None,
        status: str = "ok",
        attributes: dict[str, Any] | None = None,
    ) -> Span:
        """Add one finished span (``start``/``end``: Unix seconds or datetimes, ``end >=
        start``; ``span_id`` default: 16 random hex digits). Durable on return."""
        (span,) = await self.record_many(
            [
                Span(
                    trace_id,
                    secrets.token_hex(8) if span_id is None else span_id,
                    name,
                    to_ms(start, "start") / 1000,
                    to_ms(end, "end") / 1000,
                    parent_id,
                    status,
                    {} if attributes is None else attributes,
                )
            ]
        )
        return span

    async def record_many(self, spans: Iterable[Span]) -> list[Span]:
        """Add finished spans (:class:`Span` objects): one record append per partition."""
        if isinstance(spans, (str, bytes, dict)) or not isinstance(spans, Iterable):
            raise InvalidValueError("record_many takes a list of Span objects")
        rows = []
        for span in spans:
            if not isinstance(span, Span):
                raise InvalidValueError(f"record_many takes Span objects, not {span!r}")
            start, end = to_ms(span.start, "start"), to_ms(span.end, "end")
            if end < start:
                raise InvalidValueError(f"span {span.name!r} ends before it starts")
            if span.status not in STATUSES:
                raise InvalidValueError(f"a span's status is 'ok' or 'error', not {span.status!r}")
            if span.parent_id is not None:
                _text("parent_id", span.parent_id)
            if not isinstance(span.attributes, dict):
                raise InvalidValueError("a span's attributes are a dict")
            _json.dumps(span.attributes)  # JSON-like values and bytes, as every helper's
            labels = {
                "trace": _text("trace_id", span.trace_id),
                "span": _text("name", span.name),
                "status": span.status,
            }
            data = {
                "id": _text("span_id", span.span_id),
                "end": end,
                "parent": span.parent_id,
                "attributes": span.attributes,
            }
            rows.append((data, start / 1000, labels))
        return [_span(r, self._where) for r in await self.records.extend(rows)]

    async def trace(self, trace_id: str, start: Any = None, end: Any = None) -> list[Span]:
        """The spans of one trace that started in ``[start, end)``, by start time."""
        found = await self.records.query(start, end, labels={"trace": _text("trace_id", trace_id)})
        return [_span(r, self._where) for r in found]

    async def spans(
        self,
        start: Any = None,
        end: Any = None,
        *,
        name: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[Span]:
        """The spans that started in ``[start, end)`` (of one ``name``, one ``status``, if
        given), oldest first, at most ``limit``."""
        labels = {}
        if name is not None:
            labels["span"] = _text("name", name)
        if status is not None:
            if status not in STATUSES:
                raise InvalidValueError(f"a span's status is 'ok' or 'error', not {status!r}")
            labels["status"] = status
        found = await self.records.query(start, end, labels=labels, limit=limit)
        return [_span(r, self._where) for r in found]

    async def summary(self, start: Any = None, end: Any = None) -> dict[str, dict[str, Any]]:
        """Per span name: ``count``, ``errors``, and the ``mean``, ``p50``, ``p99`` and
        ``max`` durations (seconds) of the spans that started in ``[start, end)``."""
        by_name: dict[str, list[Span]] = {}
        for span in await self.spans(start, end):
            by_name.setdefault(span.name, []).append(span)
        out = {}
        for name, spans in sorted(by_name.items()):
            durations = sorted(s.duration for s in spans)
            out[name] = {
                "count": len(spans),
                "errors": sum(s.status == "error" for s in spans),
                "mean": math.fsum(durations) / len(durations),
                "p50": percentile(durations, 50),
                "p99": percentile(durations, 99),
                "max": durations[-1],
            }
        return out


class Traces(_Face[AsyncTraces]):
    """The spans of traces, blocking: ``Traces(store)``. See :mod:`kvstore.kinds.traces`."""

    def __init__(self, store: KVStore, name: str = "traces", partition: str = "hour"):
        super().__init__(AsyncTraces(store.aio, name, partition))

    record = _blocking(AsyncTraces.record)
    record_many = _blocking(AsyncTraces.record_many)
    trace = _blocking(AsyncTraces.trace)
    spans = _blocking(AsyncTraces.spans)
    summary = _blocking(AsyncTraces.summary)

    def __repr__(self) -> str:
        return repr(self._core).replace("AsyncTraces", "Traces", 1)
