"""The text the typed helpers store in values and log records: JSON, readable with
``kvstore get`` and on a store opened with ``decode_responses=True`` alike. Bytes travel as
``{"$bytes": base64}``; a dict of the caller's whose one key starts with ``$`` is wrapped
as ``{"$dict": {...}}`` so it never reads back as bytes."""

from __future__ import annotations

import base64
import json
from typing import Any

from ..errors import CorruptDataError, InvalidValueError


def _tagged(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise InvalidValueError("dict keys must be str here (JSON)")
        inner = {k: _tagged(v) for k, v in value.items()}
        if len(inner) == 1 and next(iter(inner)).startswith("$"):
            return {"$dict": inner}
        return inner
    if isinstance(value, (list, tuple)):
        return [_tagged(v) for v in value]
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
                return {k: _untagged(v) for k, v in inner.items()}
        return {k: _untagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untagged(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """``value`` (JSON-like values and bytes) as compact JSON text."""
    try:
        return json.dumps(_tagged(value), separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        raise InvalidValueError(f"not storable as JSON: {exc}") from None


def loads(text: bytes | str, where: str) -> Any:
    """What :func:`dumps` wrote; CorruptDataError (naming ``where``) if it is not that."""
    try:
        return _untagged(json.loads(text))
    except (ValueError, TypeError, AttributeError) as exc:
        raise CorruptDataError(f"{where} holds no JSON kvstore wrote ({exc})") from None
