"""The long-term store's keys, records, filters and checks (pure, no I/O).

Used by :mod:`.store_engine`; the layout and its reasons are in :mod:`.store`'s docstring.
Every label of a namespace and the item's key is one ``/``-free field (``%`` and ``/``
%-escaped, :func:`.keys.field`): ``langgraph-store/{label}/.../{label}/{key}``. The last
field is the key, the others the namespace, so a key parses one way only; a namespace's
prefix ends with ``/``, so ``("a",)``'s prefix ``langgraph-store/a/`` is not a prefix of
``("ab",)``'s items, and ``("a", "b")``'s prefix is not a prefix of the item ``b`` of
``("a",)`` (``langgraph-store/a/b``, no slash after it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from langgraph.store.base import InvalidNamespaceError, MatchCondition

from ...errors import CorruptDataError
from .keys import field, unfield

AREA = "langgraph-store/"
FORMAT = 1
OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
COMPARISONS = frozenset({"$gt", "$gte", "$lt", "$lte"})


# -- keys ---------------------------------------------------------------------------------


def prefix_of(namespace: Iterable[str]) -> str:
    """The key prefix of every item whose namespace starts with ``namespace``."""
    return AREA + "".join(field(label) + "/" for label in namespace)


def item_key(namespace: tuple[str, ...], key: str) -> str:
    return prefix_of(namespace) + field(key)


def parse(name: str) -> tuple[tuple[str, ...], str] | None:
    """(namespace, key) of a kvstore key of the store's area; None for anything else."""
    if not name.startswith(AREA):
        return None
    fields = name[len(AREA) :].split("/")
    if len(fields) < 2 or "" in fields[:-1]:
        return None
    return tuple(unfield(f) for f in fields[:-1]), unfield(fields[-1])


# -- records ------------------------------------------------------------------------------


class Record(NamedTuple):
    value: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    ttl: float | None  # minutes


def value_text(value: Any) -> str:
    """The JSON text of an item's value; raises what a value that is not a JSON object
    with str keys deserves (TypeError; ValueError for NaN, infinities, cycles)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"an item's value is a dict (a Mapping), not {type(value).__name__}")
    for name in value:
        if not isinstance(name, str):
            raise TypeError(f"an item's value has str keys, not {name!r}")
    return json.dumps(dict(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def record_text(
    namespace: tuple[str, ...],
    key: str,
    value: str,
    created_at: datetime,
    updated_at: datetime,
    ttl: float | None,
) -> str:
    meta = {
        "format": FORMAT,
        "namespace": list(namespace),
        "key": key,
        "created_at": created_at.isoformat(),
        "updated_at": updated_at.isoformat(),
        "ttl": ttl,
    }
    return '{"value":' + value + "," + json.dumps(meta, ensure_ascii=False)[1:]


def decode(name: str, namespace: tuple[str, ...], key: str, data: bytes | str) -> Record:
    """The record stored at ``name``; CorruptDataError for anything that is not one of
    this store's items, or one that names another item (a misplaced object)."""
    try:
        raw = json.loads(data)
        if raw["namespace"] != list(namespace) or raw["key"] != key:
            raise CorruptDataError("a LangGraph store item stored under another key", key=name)
        value = raw["value"]
        ttl = raw["ttl"]
        if not isinstance(value, dict) or not (ttl is None or isinstance(ttl, (int, float))):
            raise ValueError("bad value or ttl")
        created = datetime.fromisoformat(raw["created_at"])
        updated = datetime.fromisoformat(raw["updated_at"])
    except CorruptDataError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptDataError(f"not a LangGraph store item ({exc})", key=name) from None
    return Record(value, created, updated, ttl)


# -- checks of what callers pass ----------------------------------------------------------


def check_labels(namespace: Any, what: str = "namespace") -> tuple[str, ...]:
    """LangGraph's rules for labels (str, not empty, no ``.`` or NUL); as a tuple."""
    if not isinstance(namespace, (tuple, list)):
        raise InvalidNamespaceError(f"a {what} is a tuple of str, not {namespace!r}")
    labels: tuple[str, ...] = tuple(namespace)
    for label in labels:
        if not isinstance(label, str):
            raise InvalidNamespaceError(
                f"Invalid namespace label {label!r} in {namespace}: labels are str, "
                f"not {type(label).__name__}."
            )
        if not label:
            raise InvalidNamespaceError(f"Namespace labels cannot be empty (in {namespace}).")
        if "." in label or "\x00" in label:
            raise InvalidNamespaceError(
                f"Invalid namespace label {label!r} in {namespace}: no '.' or NUL."
            )
    return labels


def check_put_namespace(namespace: Any) -> tuple[str, ...]:
    """An item's namespace: labels as above, at least one, not rooted at "langgraph"."""
    labels = check_labels(namespace)
    if not labels:
        raise InvalidNamespaceError("Namespace cannot be empty.")
    if labels[0] == "langgraph":
        raise InvalidNamespaceError(f'Root label for namespace cannot be "langgraph": {labels}')
    return labels


def check_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"an item's key is a str, not {type(key).__name__}")
    return key


def check_count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} is an int >= 0, not {value!r}")
    return value


def ttl_ms(ttl: Any) -> int | None:
    """A TTL in minutes (None: none) as milliseconds, at least 1."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl):
        raise ValueError(f"a ttl is a number of minutes or None, not {ttl!r}")
    if ttl <= 0:
        raise ValueError(f"a ttl is a positive number of minutes (or None), not {ttl!r}")
    return max(1, round(ttl * 60_000))


def check_filter(filter: Any) -> dict[str, Any] | None:
    """A search filter: None, or a dict of field -> condition; an operator that is not
    one of :data:`OPERATORS`, or a comparison with a non-number, raises ValueError."""
    if filter is None:
        return None
    if not isinstance(filter, dict):
        raise TypeError(f"a search filter is a dict, not {type(filter).__name__}")
    for condition in filter.values():
        _check_condition(condition)
    return filter


def _is_operators(condition: dict[Any, Any]) -> bool:
    return any(isinstance(k, str) and k.startswith("$") for k in condition)


def _check_condition(condition: Any) -> None:
    if isinstance(condition, dict):
        if not _is_operators(condition):
            for sub in condition.values():
                _check_condition(sub)
            return
        for op, operand in condition.items():
            if op not in OPERATORS:
                raise ValueError(f"Unsupported operator: {op!r} (known: {sorted(OPERATORS)})")
            if op in COMPARISONS and _number(operand) is None:
                raise ValueError(f"{op} compares numbers, not {operand!r}")
    elif isinstance(condition, (list, tuple)):
        for sub in condition:
            _check_condition(sub)


def check_conditions(conditions: Any) -> tuple[MatchCondition, ...]:
    out = []
    for condition in conditions or ():
        match_type, path = condition
        if match_type not in ("prefix", "suffix"):
            raise ValueError(f"Unsupported match type: {match_type!r} (prefix or suffix)")
        out.append(MatchCondition(match_type, check_labels(path, "namespace path")))
    return tuple(out)


# -- matching -----------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _operator_holds(actual: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return bool(actual == operand)
    if op == "$ne":
        return bool(actual != operand)
    left, right = _number(actual), _number(operand)
    if left is None or right is None:  # a missing or non-numeric field: no match
        return False
    if op == "$gt":
        return left > right
    if op == "$gte":
        return left >= right
    if op == "$lt":
        return left < right
    return left <= right


def holds(actual: Any, condition: Any) -> bool:
    """Does a field's value meet a filter's condition for it? Operators; a dict without
    operators matches a dict field by field; a list an equal-length list element by
    element; anything else by equality."""
    if isinstance(condition, dict):
        if _is_operators(condition):
            return all(_operator_holds(actual, op, v) for op, v in condition.items())
        if not isinstance(actual, dict):
            return False
        return all(holds(actual.get(k), v) for k, v in condition.items())
    if isinstance(condition, (list, tuple)):
        return (
            isinstance(actual, (list, tuple))
            and len(actual) == len(condition)
            and all(holds(a, c) for a, c in zip(actual, condition, strict=True))
        )
    return bool(actual == condition)


def matches(value: dict[str, Any], filter: dict[str, Any] | None) -> bool:
    return not filter or all(holds(value.get(k), c) for k, c in filter.items())


def namespace_matches(namespace: tuple[str, ...], condition: MatchCondition) -> bool:
    """A namespace against a prefix or suffix path ("*" matches any one label)."""
    path = condition.path
    if not path:
        return True
    if len(namespace) < len(path):
        return False
    part = namespace[: len(path)] if condition.match_type == "prefix" else namespace[-len(path) :]
    return all(p in ("*", label) for label, p in zip(part, path, strict=True))


def literal_prefix(conditions: tuple[MatchCondition, ...]) -> tuple[str, ...]:
    """The longest leading run of literal labels of any prefix condition: every
    namespace listed must start with it, so only that part of the area is listed."""
    best: tuple[str, ...] = ()
    for condition in conditions:
        if condition.match_type != "prefix":
            continue
        run: list[str] = []
        for label in condition.path:
            if label == "*":
                break
            run.append(label)
        if len(run) > len(best):
            best = tuple(run)
    return best
