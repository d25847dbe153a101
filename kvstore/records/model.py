"""Records, pure: what one record is, how it is stored, and the time partitions.

A record is ``[timestamp in ms, labels, data]`` in msgpack, one log record of its
partition's log. A partition is a span of UTC time named so that names sort as times do
(``2026-12-01T14`` an hour, ``2026-12-01`` a day, ``2026-12`` a month); a record goes to
the partition its own timestamp falls in, whenever it is written.
"""

from __future__ import annotations

import calendar
import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ..errors import ConfigurationError, CorruptDataError, InvalidValueError

SPANS = ("hour", "day", "month")
"""The partition spans a collection may have."""
_FORMATS = {"hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d", "month": "%Y-%m"}
MAX_LABELS = 64
MAX_LABEL_CHARS = 256


@dataclass(frozen=True)
class Record:
    """One record: ``timestamp`` (Unix seconds, ms precision), ``labels`` (str -> str),
    ``data`` (JSON-like values and bytes), and where it lies: its ``partition`` and its
    ``seq`` there (0, 1, 2 ... in the order the partition's records were written)."""

    timestamp: float
    data: Any
    labels: dict[str, str] = field(default_factory=dict)
    partition: str = ""
    seq: int = -1


def check_span(span: object) -> str:
    if span not in SPANS:
        raise ConfigurationError(f"partition must be one of {', '.join(SPANS)}, not {span!r}")
    assert isinstance(span, str)
    return span


END_MS = 253402300800000
"""The first millisecond of the year 10000: times are from 1970 to 9999."""


def to_ms(when: object, what: str = "timestamp") -> int:
    """Milliseconds since the epoch of ``when``: Unix seconds (int or float) or a
    datetime (naive: local time, as ``datetime.timestamp`` reads it); from 1970 to 9999."""
    try:
        if isinstance(when, datetime.datetime):
            ms = round(when.timestamp() * 1000)
        elif isinstance(when, bool) or not isinstance(when, (int, float)):
            raise ConfigurationError(f"{what} must be Unix seconds or a datetime, not {when!r}")
        elif not math.isfinite(when):
            raise ConfigurationError(f"{what} must be a finite number, not {when!r}")
        else:
            ms = round(when * 1000)
    except (ValueError, OverflowError) as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(f"{what} {when!r} is outside the years 1970 to 9999") from None
    if not 0 <= ms < END_MS:
        raise ConfigurationError(f"{what} {when!r} is outside the years 1970 to 9999")
    return ms


def partition_of(ms: int, span: str) -> str:
    """The name of the partition holding the time ``ms``."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return moment.strftime(_FORMATS[span])


def partition_end(name: str, span: str) -> int:
    """The first millisecond after the partition ``name`` (at most :data:`END_MS`: the
    last partition of 9999 ends with the year)."""
    start = datetime.datetime.strptime(name, _FORMATS[span]).replace(tzinfo=datetime.timezone.utc)
    try:
        if span == "hour":
            end = start + datetime.timedelta(hours=1)
        elif span == "day":
            end = start + datetime.timedelta(days=1)
        else:
            days = calendar.monthrange(start.year, start.month)[1]
            end = start + datetime.timedelta(days=days)
    except OverflowError:
        return END_MS
    return min(END_MS, round(end.timestamp() * 1000))


def is_partition(name: str, span: str) -> bool:
    try:
        return partition_of(partition_end(name, span) - 1, span) == name
    except (ValueError, OverflowError):
        return False


def check_labels(labels: object) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InvalidValueError(f"labels must be a dict of str to str, not {type(labels).__name__}")
    if len(labels) > MAX_LABELS:
        raise InvalidValueError(f"a record has at most {MAX_LABELS} labels")
    out: dict[str, str] = {}
    for name, value in labels.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidValueError(f"a label is str to str, not {name!r}: {value!r}")
        if len(name) > MAX_LABEL_CHARS or len(value) > MAX_LABEL_CHARS:
            raise InvalidValueError(f"a label's name and value are at most {MAX_LABEL_CHARS} chars")
        out[name] = value
    return out


def _check_finite(data: Any, depth: int = 0) -> None:
    """InvalidValueError for a NaN or infinite float anywhere in ``data`` (JSON has none:
    the HTTP service and ``kvstore session export`` answer records in JSON)."""
    if isinstance(data, float):
        if not math.isfinite(data):
            raise InvalidValueError(f"record data must be JSON-like values: not {data!r}")
    elif depth < 64 and isinstance(data, (list, tuple)):
        for item in data:
            _check_finite(item, depth + 1)
    elif depth < 64 and isinstance(data, Mapping):
        for item in data.values():
            _check_finite(item, depth + 1)


def encode(ms: int, labels: dict[str, str], data: Any) -> bytes:
    """A record as its partition's log stores it."""
    _check_finite(data)
    try:
        return msgpack.packb([ms, labels, data], use_bin_type=True, strict_types=False)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidValueError(f"record data must be JSON-like values and bytes ({exc})") from None


def decode(raw: bytes, partition: str, seq: int, where: str) -> tuple[int, Record]:
    """A stored record and its time in ms (what queries compare: exact, where the
    record's float seconds times 1000 need not be); CorruptDataError if it is not one."""
    try:
        ms, labels, data = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        if type(ms) is not int or not isinstance(labels, dict):
            raise ValueError("not [ms, labels, data]")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise ValueError("labels are not str to str")
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise CorruptDataError(f"not a record ({exc})", path=where) from None
    return ms, Record(ms / 1000, data, labels, partition, seq)
