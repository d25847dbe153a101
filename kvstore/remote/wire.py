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
2     range               ``[start, stop, step]`` (in answers: an argument goes as a list)
3     datetime            its fields to the microsecond, and its UTC offset (None: naive)
4     timedelta           ``[days, seconds, microseconds]``
5     a result record     ``[class name, fields]``: only the classes in :data:`RECORDS`
6     int beyond 64 bits  its decimal digits
7     anything else       its type's name: the library refuses it as it would the object
8     ``KEEP``            nothing (``sessions.update_state``'s "leave it as it is")
====  ==================  =============================================================

Decoding builds nothing but these: a record's class comes from the fixed table, an
unknown extension code or a malformed one is :class:`WireError`, never an object the
sender chose. What one request can make the service do while decoding is bounded:
extensions nest at most :data:`MAX_DEPTH` deep, a map's keys are of msgpack's own types
(no colliding big ints), an opaque type is one class per name.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Literal, cast

import msgpack

from ..api import KeyInfo, Versioned
from ..artifacts import Artifact, ArtifactInfo
from ..errors import InvalidValueError, KVStoreError
from ..records import Record
from ..sessions.model import KEEP, Event, Keep, Session, SessionPage

Access = Literal["read", "write", "whole", "whole-write"]
"""What a token needs: read access; write access; the whole store (not a namespace's
token); the whole store and write access."""

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
    "health": "read",
    "usage": "read",  # listings only
    "retention": "read",
    "set_retention": "write",
    "remove_retention": "write",
    "maintain": "write",
    "rekey": "whole-write",  # rewrites every object of the service's store
    "fsck": "write",  # reads every object: not for read-only tokens (and repair=True writes)
    # artifacts (data itself streams through /v1/artifacts/{name})
    "artifacts.versions": "read",
    "artifacts.versions_info": "read",
    "artifacts.info": "read",
    "artifacts.list": "read",
    "artifacts.url": "whole",  # names the bucket and the signer: whole-store tokens only
    "artifacts.delete": "write",
    # records (each call: the collection's name and span, then the method's arguments)
    "records.append": "write",
    "records.extend": "write",
    "records.query": "read",
    "records.partitions": "read",
    "records.drop_before": "write",
    "records.purge": "write",
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
"""Every operation a call may name, and who may: any token (read), a read-write one
(write), or one of the whole store (whole: a presigned URL names the bucket and the
signer's key, which a namespace's token is not told - as its health omits the store's URL)."""

TUPLE, RANGE, DATETIME, TIMEDELTA, RECORD, BIGINT, OPAQUE, KEEPING = range(1, 9)

RECORDS: dict[str, type] = {
    cls.__name__: cls
    for cls in (Versioned, KeyInfo, ArtifactInfo, Artifact, Event, Session, SessionPage, Record)
}
"""The result classes a record may name (NamedTuples and dataclasses of the library)."""

MEDIA_TYPE = "application/vnd.kvstore.call+msgpack"
UPLOAD_TYPE = "application/vnd.kvstore.artifact+msgpack"
"""A framed artifact upload (``PUT /v1/artifacts/{name}``): :func:`frame`, then the data -
the client's save, with its arguments as the library takes them (no header carries them)."""
FRAME_MAX = 4 << 20
"""Bytes of an upload's frame at most (the library's metadata is at most 1 MiB packed)."""


class WireError(KVStoreError, ValueError):
    """A call or an answer that is not this wire's msgpack."""


class Opaque:
    """What an argument msgpack cannot carry becomes on the service: an object of a type of
    the same name, which the library refuses as it refuses the original."""


MAX_DEPTH = 32
"""Extension values inside extension values, at most (the library's own nest 3 deep: a
list of tuples in a session's page). Each level is a nested msgpack decoder on the C
stack: without a bound, ~200 levels in a request of 700 bytes overflow it."""
OPAQUE_NAME = 200
"""Characters of an opaque value's type name kept."""


@functools.lru_cache(maxsize=512)
def _opaque_class(name: str) -> type:
    return type(name, (Opaque,), {})


class _Packer:
    """One :func:`pack`: extension payloads are packed by the same packer, a level deeper."""

    def __init__(self, request: bool) -> None:
        self.request = request
        self.depth = 0

    def pack(self, value: Any) -> bytes:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise InvalidValueError(f"a value nests more than {MAX_DEPTH} tuples deep")
        try:
            packed: bytes = msgpack.packb(
                value,
                default=self.default,
                use_bin_type=True,
                strict_types=True,
                unicode_errors="surrogatepass",  # a str is carried as it is, lone surrogates too
            )
        finally:
            self.depth -= 1
        return packed

    def default(self, value: Any) -> Any:
        """What msgpack cannot carry as it is (``strict_types``: subclasses come here too)."""
        if isinstance(value, Opaque):
            return msgpack.ExtType(OPAQUE, type(value).__name__.encode())
        name = type(value).__name__
        if RECORDS.get(name) is type(value):
            if dataclasses.is_dataclass(value):
                named = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            else:
                named = cast(Any, value)._asdict()  # a NamedTuple
            return msgpack.ExtType(RECORD, self.pack([name, named]))
        if isinstance(value, str):  # a subclass (a str Enum): its text, as the library takes it
            return str.__str__(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        if isinstance(value, float):
            return float(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if type(value) is not int:
                return int(value)  # an IntEnum ...
            return msgpack.ExtType(BIGINT, str(value).encode())  # beyond 64 bits
        if isinstance(value, tuple):
            return msgpack.ExtType(TUPLE, self.pack(list(value)))
        if isinstance(value, range) and not self.request:
            return msgpack.ExtType(RANGE, self.pack([value.start, value.stop, value.step]))
        if isinstance(value, datetime.datetime):
            offset = value.utcoffset()
            when = [value.year, value.month, value.day, value.hour, value.minute, value.second]
            zone = None if offset is None else [offset.days, offset.seconds, offset.microseconds]
            return msgpack.ExtType(DATETIME, self.pack([*when, value.microsecond, zone]))
        if isinstance(value, datetime.timedelta):
            days, seconds, micro = value.days, value.seconds, value.microseconds
            return msgpack.ExtType(TIMEDELTA, self.pack([days, seconds, micro]))
        if value is KEEP:
            return msgpack.ExtType(KEEPING, b"")
        if isinstance(value, Mapping):
            return dict(value)
        if isinstance(value, (list, set, frozenset)) or (
            self.request and isinstance(value, Iterable)
        ):
            # an argument the library iterates (mget's keys: a generator, a range, a view)
            return list(value)
        return msgpack.ExtType(OPAQUE, name.encode()[:OPAQUE_NAME])


def pack(value: Any, *, request: bool = False) -> bytes:
    """``value`` as this wire's msgpack (what msgpack cannot carry: see the table).
    ``request``: a call's arguments - iterables go as lists (a range too: the service takes
    no lazy range, which the library would expand). InvalidValueError for what cannot be
    sent (nested too deep)."""
    try:
        return _Packer(request).pack(value)
    except (ValueError, OverflowError, TypeError, RecursionError) as exc:
        if isinstance(exc, KVStoreError):
            raise
        raise InvalidValueError(f"cannot send {type(value).__name__}: {exc}") from None


class _Unpacker:
    """One :func:`unpack`: extension payloads are decoded by the same unpacker, a level
    deeper; map keys are checked (no key msgpack's own types cannot be)."""

    def __init__(self, request: bool) -> None:
        self.request = request
        self.depth = 0

    def unpack(self, data: bytes) -> Any:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise WireError(f"extension values nest more than {MAX_DEPTH} deep")
        try:
            return msgpack.unpackb(
                data,
                ext_hook=self.ext,
                object_pairs_hook=self.pairs,
                raw=False,
                strict_map_key=False,
                unicode_errors="surrogatepass",
            )
        finally:
            self.depth -= 1

    @staticmethod
    def pairs(items: list[tuple[Any, Any]]) -> dict[Any, Any]:
        """A map, whose keys are str, bytes, numbers of 64 bits, bool or None: no key of an
        extension type (an int of any size makes hash collisions at will: a dict of them
        costs n squared)."""
        for key, _ in items:
            if not (
                key is None
                or isinstance(key, (str, bytes, float, bool))
                or (isinstance(key, int) and -(2**63) <= key < 2**64)
            ):
                raise WireError(f"a map key of type {type(key).__name__}")
        return dict(items)

    def ext(self, code: int, data: bytes) -> Any:
        try:
            if code == OPAQUE:
                return _opaque_class(data.decode()[:OPAQUE_NAME] or "object")()
            if code == KEEPING:
                return KEEP
            if code == BIGINT:
                return int(data.decode(), 10)
            if code == RANGE and self.request:
                raise WireError("a call's argument is never a range (send a list)")
            inner = self.unpack(data)
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


def unpack(data: bytes, *, request: bool = False) -> Any:
    """Decode this wire's msgpack; :class:`WireError` for anything else. ``request``: a
    call (no range in it)."""
    try:
        return _Unpacker(request).unpack(data)
    except WireError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise WireError(f"not a call's msgpack: {exc}") from None


def frame(arguments: dict[str, Any]) -> bytes:
    """An upload's frame: the length (4 bytes, big-endian), then the save's other
    arguments (``mime_type``, ``metadata``, ``raw``) in this wire's msgpack."""
    packed = pack(arguments, request=True)
    if len(packed) > FRAME_MAX:
        raise InvalidValueError(f"an artifact's metadata is over {FRAME_MAX} bytes packed")
    return len(packed).to_bytes(4, "big") + packed


UPLOAD_ARGUMENTS = frozenset({"mime_type", "metadata", "raw"})


async def read_frame(stream: AsyncIterator[bytes]) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
    """An upload's frame, and the data that follows it (the rest of ``stream``);
    WireError if the frame is not one."""
    chunks = aiter(stream)
    buffer = bytearray()

    async def fill(size: int) -> None:
        while len(buffer) < size:
            chunk = await anext(chunks, None)
            if chunk is None:
                raise WireError("the upload ends inside its frame")
            buffer.extend(chunk)

    await fill(4)
    length = int.from_bytes(buffer[:4], "big")
    if length > FRAME_MAX:
        raise WireError(f"an upload's frame is at most {FRAME_MAX} bytes, not {length}")
    await fill(4 + length)
    arguments = unpack(bytes(buffer[4 : 4 + length]), request=True)
    if not isinstance(arguments, dict) or not set(arguments) <= UPLOAD_ARGUMENTS:
        raise WireError(f"an upload's frame is a map of {sorted(UPLOAD_ARGUMENTS)}")
    rest = bytes(buffer[4 + length :])
    del buffer[:]

    async def data() -> AsyncIterator[bytes]:
        if rest:
            yield rest
        async for chunk in chunks:
            yield chunk

    return arguments, data()


def call(op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """A request body: the call of ``op``."""
    return pack([op, list(args), kwargs], request=True)


def parse_call(data: bytes) -> tuple[str, list[Any], dict[str, Any]]:
    """A request body's ``(op, args, kwargs)``; WireError if it is not a call of a known
    operation with a list and a map of string names."""
    found = unpack(data, request=True)
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
