"""The text the typed helpers store in values and log records: JSON, readable with
``kvstore get`` and on a store opened with ``decode_responses=True`` alike. Bytes travel as
``{"$bytes": base64}``; a dict of the caller's whose one key starts with ``$`` is wrapped
as ``{"$dict": {...}}`` so it never reads back as bytes. Values nest at most
:data:`MAX_DEPTH` deep, so whatever :func:`dumps` takes, :func:`loads` reads back."""

from __future__ import annotations

import base64
import contextlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import CorruptDataError, InvalidValueError, ResponseDecodeError

if TYPE_CHECKING:
    from ..api import AsyncKVStore

MAX_DEPTH = 100
"""How deep lists and dicts may nest in a value the helpers store."""


def _tagged(value: Any, depth: int = 0) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (dict, list, tuple)) and depth >= MAX_DEPTH:
        raise InvalidValueError(f"values nest at most {MAX_DEPTH} lists and dicts deep here")
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise InvalidValueError("dict keys must be str here (JSON)")
        inner = {k: _tagged(v, depth + 1) for k, v in value.items()}
        if len(inner) == 1 and next(iter(inner)).startswith("$"):
            return {"$dict": inner}
        return inner
    if isinstance(value, (list, tuple)):
        return [_tagged(v, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidValueError(f"JSON holds finite numbers only, not {value!r}")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise InvalidValueError(f"JSON-like values and bytes only, not {type(value).__name__}")


def _untagged(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == "$bytes":
                return base64.b64decode(inner, validate=True)
            if key == "$dict":
                if (
                    not isinstance(inner, dict)
                    or len(inner) != 1
                    or not next(iter(inner)).startswith("$")
                ):
                    raise ValueError("a $dict holds a dict of one key starting with '$'")
                return {k: _untagged(v) for k, v in inner.items()}
        return {k: _untagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untagged(v) for v in value]
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def dumps(value: Any) -> str:
    """``value`` (JSON-like values and bytes) as compact JSON text."""
    try:
        return json.dumps(_tagged(value), separators=(",", ":"), allow_nan=False)
    except (ValueError, RecursionError) as exc:
        raise InvalidValueError(f"not storable as JSON: {exc}") from None


def loads(text: bytes | str, where: str) -> Any:
    """What :func:`dumps` wrote; CorruptDataError (naming ``where``) if it is not that."""
    try:
        return _untagged(json.loads(text, parse_constant=_no_constant))
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise CorruptDataError(f"{where} holds no JSON kvstore wrote ({exc})") from None


def is_number(value: object) -> bool:
    """An int or a finite float, not a bool: what the helpers store as a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


@contextlib.contextmanager
def reading(where: str) -> Iterator[None]:
    """Around a read of what the helpers wrote: a value that is not UTF-8 text on a store
    opened with ``decode_responses=True`` is damage too - CorruptDataError naming ``where``."""
    try:
        yield
    except ResponseDecodeError as exc:
        raise CorruptDataError(f"{where} holds no JSON kvstore wrote ({exc})") from None


async def mget(
    store: AsyncKVStore, keys: Sequence[str], where: Callable[[str], str]
) -> list[bytes | str | None]:
    """``store.mget(keys)``; when one of them is not UTF-8 text on a store opened with
    ``decode_responses=True``, CorruptDataError naming it (``where(key)``), found by reading
    them one by one (only then)."""
    try:
        return await store.mget(keys)
    except ResponseDecodeError:
        pass
    out = []
    for key in keys:
        with reading(where(key)):
            out.append(await store.get(key))
    return out
