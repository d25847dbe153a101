"""Values and expiry arguments, encoded the way redis-py encodes them."""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Sequence
from typing import Any

from .errors import ConfigurationError, InvalidValueError

Value = bytes | bytearray | memoryview | str | int | float


def to_bytes(value: object) -> bytes:
    """bytes as they are, str as UTF-8, int and float as their repr (like redis-py)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidValueError(f"str value is not valid Unicode: {exc.reason}") from None
    if isinstance(value, bool):
        raise InvalidValueError("bool is not a storable value; store 1/0 or 'true'/'false'")
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return repr(value).encode()
    raise InvalidValueError(
        f"value must be bytes, str, int or float, not {type(value).__name__}; "
        "serialise other types first (json.dumps, msgpack, pickle)"
    )


_MAX_MS = 2**62
"""The largest TTL or timestamp accepted, in ms (about 146 million years)."""


def _duration_ms(value: object, unit_ms: int, name: str) -> int:
    if isinstance(value, datetime.timedelta):
        ms = value / datetime.timedelta(milliseconds=1)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be an int, float or timedelta, not {value!r}")
    else:
        ms = value * unit_ms
    if not math.isfinite(ms):
        raise ConfigurationError(f"{name} must be finite, not {value!r}")
    if abs(ms) > _MAX_MS:  # now + ms must fit the envelope's signed 64-bit expiry field
        raise ConfigurationError(f"{name} is out of range: {value!r}")
    return int(ms)


def duration_ms(value: object, unit_ms: int, name: str) -> int:
    """A relative TTL in milliseconds (may be <= 0: expire/pexpire treat that as delete)."""
    return _duration_ms(value, unit_ms, name)


def _timestamp_ms(value: object, unit_ms: int, name: str) -> int:
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    return _duration_ms(value, unit_ms, name)


def expiry_from_args(
    now_ms: int,
    ex: object = None,
    px: object = None,
    exat: object = None,
    pxat: object = None,
) -> int:
    """Absolute expiry (epoch ms, 0 = never) from redis-py's ``set`` arguments."""
    given = [
        (n, v) for n, v in (("ex", ex), ("px", px), ("exat", exat), ("pxat", pxat)) if v is not None
    ]
    if len(given) > 1:
        names = " and ".join(n for n, _ in given)
        raise ConfigurationError(f"{names} are mutually exclusive; give at most one")
    if not given:
        return 0
    name, value = given[0]
    if name in ("ex", "px"):
        ms = _duration_ms(value, 1000 if name == "ex" else 1, name)
        if ms <= 0:
            raise ConfigurationError(f"{name} must be positive, not {value!r}")
        return now_ms + ms
    at = _timestamp_ms(value, 1000 if name == "exat" else 1, name)
    if at <= 0:
        raise ConfigurationError(f"{name} must be a positive timestamp, not {value!r}")
    return at


def flatten(first: Iterable[Any] | str | bytes, rest: Sequence[Any]) -> list[Any]:
    """redis-py accepts mget(["a", "b"]) and mget("a", "b"); so do we."""
    if isinstance(first, (str, bytes, bytearray, memoryview)):
        return [first, *rest]
    try:
        out: list[Any] = list(first)
    except TypeError:  # not a list of keys: one (invalid) key, rejected by key_str
        return [first, *rest]
    for item in rest:
        if isinstance(item, (list, tuple)):
            out.extend(item)
        else:
            out.append(item)
    return out
