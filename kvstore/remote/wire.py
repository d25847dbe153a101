"""The wire of ``POST /v1/call``: how a library call crosses the HTTP service.

A call is one msgpack array ``[op, args, kwargs]``: ``op`` one of :data:`OPS` (a method of
the store view, ``artifacts.<m>`` or ``sessions.<m>``), then the arguments as the caller
gave them. The answer (200) is the method's result in msgpack; a failure is the service's
JSON error (``{"error": {"type", "message"}}``) with the status of its class. Both sides
use this module, so what crosses is what the library takes and returns - Python's own
types, where msgpack has none, as extension types:

====  ==================  =============================================================
code  type                carried as
====  ==================  =============================================================
1     tuple               a msgpack array (lists stay lists)
2     range               ``[start, stop, step]``
3     datetime            its fields to the microsecond, and its UTC offset (None: naive)
4     timedelta           ``[days, seconds, microseconds]``
5     a result record     ``[class name, fields]``: only the classes in :data:`RECORDS`
6     int beyond 64 bits  its decimal digits
7     anything else       its type's name: the library refuses it as it would the object
8     ``KEEP``            nothing (``sessions.update_state``'s "leave it as it is")
====  ==================  =============================================================

Decoding builds nothing but these: a record's class comes from the fixed table, an
unknown extension code or a malformed one is :class:`WireError`, never an object the
sender chose.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping
from typing import Any, Literal, cast

import msgpack

from ..api import KeyInfo, Versioned
from ..artifacts import Artifact, ArtifactInfo
from ..errors import KVStoreError
from ..sessions.model import KEEP, Event, Keep, Session, SessionPage

Access = Literal["read", "write"]

OPS: dict[str, Access] = {
    # values
    "get": "read",
    "mget": "read",
    "get_versioned": "read",
    "exists": "read",
    "key_info": "read",
    "pttl": "read",
    "ttl": "read",
    "set": "write",
    "mset": "write",
    "delete": "write",
    "discard": "write",
    "delete_prefix": "write",
    "pexpire": "write",
    "expire": "write",
    "persist": "write",
    "purge_expired": "write",
    "purge": "write",
    # logs
    "append": "write",
    "extend": "write",
    "range": "read",
    "range_at": "read",
    "range_from": "read",
    "next_seq": "read",
    "length": "read",
    "log_keys": "read",
    "trim": "write",
    "compact": "write",
    "settle": "write",
    # listing, checks
    "keys": "read",
    "key_page": "read",  # the service's own: one page of value keys (AsyncRemoteStore.key_pages)
    "namespaces": "read",
    "check_keys": "read",
    "health": "read",
    "fsck": "write",  # reads every object: not for read-only tokens (and repair=True writes)
    # artifacts (data itself streams through /v1/artifacts/{name})
    "artifacts.versions": "read",
    "artifacts.versions_info": "read",
    "artifacts.info": "read",
    "artifacts.list": "read",
    "artifacts.url": "read",
    "artifacts.delete": "write",
    "artifacts.save": "write",  # data in the call: bytes or str up to remote.artifacts.CALL_BYTES
    # sessions
    "sessions.create": "write",
    "sessions.get": "read",
    "sessions.scope_state": "read",
    "sessions.list": "read",
    "sessions.append_event": "write",
    "sessions.update_state": "write",
    "sessions.delete": "write",
    "sessions.delete_user": "write",
    "sessions.delete_app": "write",
}
"""Every operation a call may name, and whether a read-only token may make it."""

TUPLE, RANGE, DATETIME, TIMEDELTA, RECORD, BIGINT, OPAQUE, KEEPING = range(1, 9)

RECORDS: dict[str, type] = {
    cls.__name__: cls
    for cls in (Versioned, KeyInfo, ArtifactInfo, Artifact, Event, Session, SessionPage)
}
"""The result classes a record may name (NamedTuples and dataclasses of the library)."""

MEDIA_TYPE = "application/vnd.kvstore.call+msgpack"


class WireError(KVStoreError, ValueError):
    """A call or an answer that is not this wire's msgpack."""


class Opaque:
    """What an argument msgpack cannot carry becomes on the service: an object of a type of
    the same name, which the library refuses as it refuses the original."""


def _opaque(name: str) -> Any:
    return type(name, (Opaque,), {})()


def _default(value: Any) -> Any:
    if isinstance(value, Opaque):
        return msgpack.ExtType(OPAQUE, type(value).__name__.encode())
    name = type(value).__name__
    if RECORDS.get(name) is type(value):
        if dataclasses.is_dataclass(value):
            named = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        else:
            named = cast(Any, value)._asdict()  # a NamedTuple
        return msgpack.ExtType(RECORD, pack([name, named]))
    if isinstance(value, tuple):
        return msgpack.ExtType(TUPLE, pack(list(value)))
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, range):
        return msgpack.ExtType(RANGE, pack([value.start, value.stop, value.step]))
    if isinstance(value, datetime.datetime):
        offset = value.utcoffset()
        when = [value.year, value.month, value.day, value.hour, value.minute, value.second]
        zone = None if offset is None else [offset.days, offset.seconds, offset.microseconds]
        return msgpack.ExtType(DATETIME, pack([*when, value.microsecond, zone]))
    if isinstance(value, datetime.timedelta):
        return msgpack.ExtType(TIMEDELTA, pack([value.days, value.seconds, value.microseconds]))
    if isinstance(value, int) and not isinstance(value, bool):
        return msgpack.ExtType(BIGINT, str(value).encode())
    if value is KEEP:
        return msgpack.ExtType(KEEPING, b"")
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return msgpack.ExtType(OPAQUE, type(value).__name__.encode()[:200])


def pack(value: Any) -> bytes:
    """``value`` as this wire's msgpack (what msgpack cannot carry: see the table)."""
    try:
        packed: bytes = msgpack.packb(
            value,
            default=_default,
            use_bin_type=True,
            strict_types=True,
            unicode_errors="surrogatepass",  # a str is carried as it is, lone surrogates too
        )
    except (ValueError, OverflowError, TypeError) as exc:  # nesting too deep, a huge float...
        raise WireError(f"cannot send {type(value).__name__}: {exc}") from None
    return packed


def _ext(code: int, data: bytes) -> Any:
    try:
        if code == OPAQUE:
            return _opaque(data.decode() or "object")
        if code == KEEPING:
            return KEEP
        if code == BIGINT:
            return int(data.decode(), 10)
        inner = unpack(data)
        if code == TUPLE:
            return tuple(inner)
        if code == RANGE:
            return range(*inner)
        if code == DATETIME:
            year, month, day, hour, minute, second, micro, offset = inner
            zone = None if offset is None else datetime.timezone(datetime.timedelta(*offset))
            return datetime.datetime(year, month, day, hour, minute, second, micro, zone)
        if code == TIMEDELTA:
            return datetime.timedelta(*inner)
        if code == RECORD:
            name, fields = inner
            return _record(name, fields)
    except WireError:
        raise
    except (ValueError, TypeError, OverflowError, OSError, UnicodeDecodeError) as exc:
        raise WireError(f"malformed extension {code}: {exc}") from None
    raise WireError(f"unknown extension type {code}")


def _record(name: Any, fields: Any) -> Any:
    cls: Callable[..., Any] | None = RECORDS.get(name) if isinstance(name, str) else None
    if cls is None or not isinstance(fields, dict):
        raise WireError(f"not a result record: {name!r}")
    return cls(**fields)


def unpack(data: bytes) -> Any:
    """Decode this wire's msgpack; :class:`WireError` for anything else."""
    try:
        return msgpack.unpackb(
            data,
            ext_hook=_ext,
            raw=False,
            strict_map_key=False,
            unicode_errors="surrogatepass",
        )
    except WireError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise WireError(f"not a call's msgpack: {exc}") from None


def call(op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """A request body: the call of ``op``."""
    return pack([op, list(args), kwargs])


def parse_call(data: bytes) -> tuple[str, list[Any], dict[str, Any]]:
    """A request body's ``(op, args, kwargs)``; WireError if it is not a call of a known
    operation with a list and a map of string names."""
    found = unpack(data)
    if not (isinstance(found, list) and len(found) == 3):
        raise WireError("a call is [op, args, kwargs]")
    op, args, kwargs = found
    if not isinstance(op, str) or op not in OPS:
        raise WireError(f"no operation {op!r} (known: {', '.join(sorted(OPS))})")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise WireError("a call's args are a list and its kwargs a map")
    if not all(isinstance(k, str) and k.isidentifier() for k in kwargs):
        raise WireError("a call's keyword names are identifiers")
    return op, args, kwargs


__all__ = ["KEEP", "OPS", "Keep", "WireError", "call", "pack", "parse_call", "unpack"]
