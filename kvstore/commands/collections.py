"""How hashes, sets and sorted sets are stored: each is one value object (msgpack payload).

* hash: a map ``{field: value}`` (bytes to bytes);
* set: an array of members (bytes), unique;
* sorted set: an array of ``[member, score]`` pairs ordered by (score, member).

**The size limit.** Every write of a member rewrites the whole object (one conditional PUT
of its new version), so a write costs time and bytes in proportion to the collection: about
a millisecond of client CPU per 100 kB encoded, and that many bytes uploaded. That is the
right layout for the collections applications keep in Redis (sessions, counters, small
indexes: up to some 10^5 small members). Above :data:`MAX_COLLECTION_BYTES` encoded, a
write fails with a clear error and changes nothing; reads of what is stored still work.
Larger data belongs in many keys, a log (a list) or an artifact.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .. import codec
from ..errors import CorruptDataError
from .reply import CommandError

MAX_COLLECTION_BYTES = 32 << 20
MAX_STRING_BYTES = 512 << 20  # Redis's proto-max-bulk-len


def _unpack(payload: bytes, kind: int) -> Any:
    try:
        return msgpack.unpackb(payload, raw=True, strict_map_key=False, use_list=True)
    except Exception as exc:
        raise CorruptDataError(f"a {codec.KIND_NAMES[kind]} value is undecodable: {exc}") from exc


def _pack(data: Any, kind: int) -> bytes:
    packed: bytes = msgpack.packb(data, use_bin_type=True)
    if len(packed) > MAX_COLLECTION_BYTES:
        raise CommandError(
            f"ERR the {codec.KIND_NAMES[kind]} would be {len(packed)} bytes; one collection "
            f"is one object, rewritten by each write, and is limited to "
            f"{MAX_COLLECTION_BYTES} bytes (use more keys, a list or an artifact)"
        )
    return packed


def load_hash(payload: bytes) -> dict[bytes, bytes]:
    data = _unpack(payload, codec.HASH)
    if not isinstance(data, dict):
        raise CorruptDataError("a hash value is not a map")
    return data


def dump_hash(data: dict[bytes, bytes]) -> bytes:
    return _pack(data, codec.HASH)


def load_set(payload: bytes) -> set[bytes]:
    data = _unpack(payload, codec.SET)
    if not isinstance(data, list):
        raise CorruptDataError("a set value is not an array")
    return set(data)


def dump_set(members: set[bytes]) -> bytes:
    return _pack(sorted(members), codec.SET)


def load_zset(payload: bytes) -> dict[bytes, float]:
    data = _unpack(payload, codec.ZSET)
    if not isinstance(data, list):
        raise CorruptDataError("a sorted set value is not an array")
    return {bytes(m): float(s) for m, s in data}


def dump_zset(scores: dict[bytes, float]) -> bytes:
    return _pack(ordered(scores), codec.ZSET)


def ordered(scores: dict[bytes, float]) -> list[list[Any]]:
    """``[[member, score], ...]`` by (score, member), as Redis orders a sorted set."""
    return [[m, s] for m, s in sorted(scores.items(), key=lambda item: (item[1], item[0]))]
