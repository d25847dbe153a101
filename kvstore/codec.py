"""The envelope: how every stored object is framed, compressed and checksummed.

Layout (little-endian), docs/architecture.md "Envelope"::

    offset size  field
    0      4     magic            b"KVS\\x1e"
    4      1     format version   1
    5      1     flags            bit 0: payload is zstd-compressed
                                  bit 1: a meta_crc follows the meta (FLAG_META_CRC)
    6      2     count            records in a log chunk or segment (<= 65535); 0 otherwise
    8      8     expires_at_ms    Unix epoch milliseconds; 0 = never expires
    16     8     nonce            random per write: lets a writer recognise its own object
    24     4     meta_len         length of the msgpack metadata map that follows (0 = none)
    28     4     header_crc       CRC-32 of bytes 0..27
    32     M     meta             msgpack map (structured header), M = meta_len
    32+M   C     meta_crc         CRC-32 of the meta; C = 4 with FLAG_META_CRC, else 0
    32+M+C P     payload          raw or zstd frame
    end-4  4     body_crc         CRC-32 of everything after the header (meta, meta_crc,
                                  payload)

The header has its own checksum so a reader of the first 32 bytes (a TTL check) can trust
it; the body checksum covers everything after it. With ``FLAG_META_CRC`` (written on
request: ``encode(..., meta_crc=True)``; artifact manifests use it) the meta has a checksum
of its own too, so a reader of the first ``32 + M + 4`` bytes (a ranged read) can trust the
meta without downloading the payload: :func:`peek_meta`. Objects without the flag (every
object written before it existed, and those written without it) decode as they always did;
their meta can only be verified with the whole body (:class:`NoMetaChecksum`).

**Binding.** Every object kvstore writes names, in its metadata (``"@"``), the path it was
written for, relative to the store root: the namespace, the kind (value, chunk, segment,
mark, manifest, part), the key and the position (sequence numbers, version, part index) are
all in that path. A reader says which path it read (``bound=``), so an intact object copied
or moved onto another key or position is a :class:`CorruptDataError` that names both the
path expected and the one found - never another key's data. Objects written before
bindings existed carry none and are read as they are. :func:`decode` verifies both and turns
*any* malformed input - truncated, bit-flipped, foreign - into :class:`CorruptDataError`;
no other exception escapes it.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zstandard

from .errors import CorruptDataError

MAGIC = b"KVS\x1e"
SEALED_MAGIC = b"KVX\x01"
"""What an object sealed by an encrypted store starts with (kvstore.crypto.sealing)."""
VERSION = 1
FLAG_ZSTD = 0x01
FLAG_META_CRC = 0x02
_KNOWN_FLAGS = FLAG_ZSTD | FLAG_META_CRC
_HEADER = struct.Struct("<4sBBHqQI")
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER.size + _CRC.size  # 32
MIN_SIZE = HEADER_SIZE + _CRC.size

COMPRESS_THRESHOLD = 256
"""Payloads shorter than this are stored raw: zstd cannot win much on them."""

_MIN_SAVING = 0.05
"""Keep the compressed form only if it saves at least this fraction of the payload."""

_MAX_DECOMPRESSED = 1 << 34
"""Refuse zstd frames claiming to inflate beyond 16 GiB (a corrupted size field)."""

# Leading bytes of formats that are already compressed: compressing them again costs CPU
# and saves nothing, so they are stored raw without trying.
_COMPRESSED_MAGICS = (
    b"\x89PNG",
    b"\xff\xd8\xff",  # JPEG
    b"GIF8",
    b"PK\x03\x04",  # zip, docx, jar, ...
    b"\x1f\x8b",  # gzip
    b"\x28\xb5\x2f\xfd",  # zstd
    b"BZh",
    b"\xfd7zXZ\x00",
    b"7z\xbc\xaf",
    b"OggS",
    b"fLaC",
    b"ID3",
    b"RIFF",  # webp, wav(rarely worth it), avi
    b"\x00\x00\x00\x18ftyp",
    b"\x00\x00\x00\x1cftyp",
    b"\x00\x00\x00\x20ftyp",
)


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 2 us, paid per value read
class Envelope:
    """A decoded object: its payload, expiry and structured metadata."""

    payload: bytes
    expires_at_ms: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    nonce: int = 0
    count: int = 0

    def expired(self, now_ms: int) -> bool:
        return self.expires_at_ms != 0 and self.expires_at_ms <= now_ms


DEFAULT_LEVEL = 3
"""zstd level for writes on the request path; background work (compaction) may use more."""


class _Codecs(threading.local):
    """zstd contexts are not thread-safe; keep them per thread (a compressor per level)."""

    def __init__(self) -> None:
        self.compressors: dict[int, zstandard.ZstdCompressor] = {}
        self.decompressor = zstandard.ZstdDecompressor()

    def compressor(self, level: int) -> zstandard.ZstdCompressor:
        found = self.compressors.get(level)
        if found is None:
            found = self.compressors[level] = zstandard.ZstdCompressor(level=level)
        return found


_codecs = _Codecs()


def looks_compressed(payload: bytes) -> bool:
    """True if the payload starts like an already-compressed format."""
    return payload.startswith(_COMPRESSED_MAGICS)


BINDING = "@"
"""The metadata field that holds the path an object was written for."""


def new_nonce() -> int:
    return int.from_bytes(os.urandom(8), "little")


class NoMetaChecksum(CorruptDataError):
    """The object has no checksum of its own over its metadata (no ``FLAG_META_CRC``: it
    was written before the flag existed, or without it), so :func:`peek_meta` cannot
    verify the metadata without the whole body. Not damage: read the whole object and
    :func:`decode` it. A subclass of CorruptDataError only so that a caller that does not
    tell the two apart still never trusts unverified bytes."""


def encode(
    payload: bytes,
    *,
    expires_at_ms: int = 0,
    meta: dict[str, Any] | None = None,
    compress: bool | None = None,
    nonce: int | None = None,
    count: int = 0,
    level: int = DEFAULT_LEVEL,
    bind: str | None = None,
    meta_crc: bool = False,
) -> bytes:
    """Frame a payload. ``compress=None`` decides by size, content and result; ``level`` is
    the zstd level (3 by default: fast; compaction uses more); ``bind`` the path (relative
    to the store root) the object is written for (see "Binding"); ``meta_crc`` adds a
    checksum of the metadata alone (``FLAG_META_CRC``: 4 bytes), so that the metadata can
    be read and verified from the object's first bytes (:func:`peek_meta`)."""
    if bind is not None:
        meta = {**meta, BINDING: bind} if meta else {BINDING: bind}
    flags = FLAG_META_CRC if meta_crc else 0
    body = payload
    if compress is None:
        compress = len(payload) >= COMPRESS_THRESHOLD and not looks_compressed(payload)
    if compress and payload:
        packed = _codecs.compressor(level).compress(payload)
        if len(packed) <= len(payload) * (1 - _MIN_SAVING):
            body, flags = packed, flags | FLAG_ZSTD
    meta_bytes = msgpack.packb(meta, use_bin_type=True) if meta else b""
    if not 0 <= count <= 0xFFFF:
        raise ValueError(f"count {count} does not fit the header")
    nonce = new_nonce() if nonce is None else nonce
    return _frame(flags, count, expires_at_ms, nonce, meta_bytes, body)


def _frame(
    flags: int, count: int, expires: int, nonce: int, meta_bytes: bytes, body: bytes | memoryview
) -> bytes:
    """The envelope's bytes: header, its CRC, meta (and its CRC with FLAG_META_CRC), the
    payload as stored (``body``), the body CRC."""
    header = _HEADER.pack(MAGIC, VERSION, flags, count, expires, nonce, len(meta_bytes))
    if flags & FLAG_META_CRC:
        meta_bytes += _CRC.pack(zlib.crc32(meta_bytes))
    crc = zlib.crc32(body, zlib.crc32(meta_bytes))
    return b"".join((header, _CRC.pack(zlib.crc32(header)), meta_bytes, body, _CRC.pack(crc)))


def _header(data: bytes, key: str | None, path: str | None) -> tuple[int, int, int, int, int]:
    """Check and unpack the fixed header: (flags, expires_at_ms, nonce, meta_len, count)."""
    if len(data) < HEADER_SIZE:
        raise CorruptDataError(f"object is truncated ({len(data)} bytes)", key=key, path=path)
    magic, version, flags, count, expires, nonce, meta_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        if magic == SEALED_MAGIC:
            raise CorruptDataError(
                "sealed by an encrypted store: open it with its key ring (encryption=)",
                key=key,
                path=path,
            )
        raise CorruptDataError("not a kvstore object (bad magic)", key=key, path=path)
    (header_crc,) = _CRC.unpack_from(data, _HEADER.size)
    if zlib.crc32(data[: _HEADER.size]) != header_crc:
        raise CorruptDataError("header checksum mismatch", key=key, path=path)
    if version != VERSION:
        raise CorruptDataError(
            f"unsupported format version {version} (this kvstore reads {VERSION})",
            key=key,
            path=path,
        )
    if flags & ~_KNOWN_FLAGS or expires < 0:
        raise CorruptDataError("invalid header fields", key=key, path=path)
    return flags, expires, nonce, meta_len, count


def _meta_crc_size(flags: int) -> int:
    return _CRC.size if flags & FLAG_META_CRC else 0


def _unpack_meta(raw: memoryview, key: str | None, path: str | None) -> dict[str, Any]:
    """The msgpack metadata map; CorruptDataError if it is not one."""
    if not raw:
        return {}
    try:
        meta = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as exc:  # a decoder must never leak its own exception types
        raise CorruptDataError(f"undecodable object: {exc}", key=key, path=path) from exc
    if not isinstance(meta, dict):
        raise CorruptDataError("undecodable object: metadata is not a map", key=key, path=path)
    return meta


def _check_binding(
    meta: dict[str, Any], bound: str | None, key: str | None, path: str | None
) -> None:
    if bound is not None:
        found = meta.get(BINDING, bound)
        if found != bound:
            raise CorruptDataError(
                f"misplaced object: it was written for {found!r}, not for {bound!r}",
                key=key,
                path=path,
            )


def peek_count(data: bytes, *, key: str | None = None, path: str | None = None) -> int:
    """The record count of a log object from its verified header alone (32 bytes)."""
    return _header(data, key, path)[4]


def peek_expiry(data: bytes, *, key: str | None = None, path: str | None = None) -> int:
    """The expiry of an object from its verified header alone (first 32 bytes suffice)."""
    return _header(data, key, path)[1]


def meta_span(data: bytes, *, key: str | None = None, path: str | None = None) -> int:
    """How many leading bytes of the object :func:`peek_meta` needs: the header, the meta
    and the meta's CRC (``32 + meta_len + 4``), from the verified header (``data``: at
    least its 32 bytes, else CorruptDataError). :class:`NoMetaChecksum` for an object
    without ``FLAG_META_CRC``."""
    flags, _expires, _nonce, meta_len, _count = _header(data, key, path)
    if not flags & FLAG_META_CRC:
        raise NoMetaChecksum("object has no metadata checksum: read it whole", key=key, path=path)
    return HEADER_SIZE + meta_len + _CRC.size


def peek_meta(
    data: bytes, *, key: str | None = None, path: str | None = None, bound: str | None = None
) -> dict[str, Any] | None:
    """The metadata of an object from its first bytes (a ranged read), verified: the
    header's CRC, the meta's own CRC (``FLAG_META_CRC``) and the binding (``bound``, as in
    :func:`decode`). The payload is neither read nor checked.

    Returns None when ``data`` ends before the meta's CRC does (fewer than the 32 bytes of
    the header, or than :func:`meta_span`): read that many bytes and call again - unless
    ``data`` is already the whole object, which is then truncated. Raises
    :class:`NoMetaChecksum` (a CorruptDataError) for an object written without
    ``FLAG_META_CRC``: its meta can only be verified by :func:`decode` of the whole object.
    Any damage is a CorruptDataError; no other exception escapes."""
    if len(data) < HEADER_SIZE:
        return None
    end = meta_span(data, key=key, path=path) - _CRC.size
    if len(data) < end + _CRC.size:
        return None
    (meta_crc,) = _CRC.unpack_from(data, end)
    raw = memoryview(data)[HEADER_SIZE:end]
    if zlib.crc32(raw) != meta_crc:
        raise CorruptDataError("metadata checksum mismatch", key=key, path=path)
    meta = _unpack_meta(raw, key, path)
    _check_binding(meta, bound, key, path)
    return meta


def decode(
    data: bytes, *, key: str | None = None, path: str | None = None, bound: str | None = None
) -> Envelope:
    """Verify and unpack an object; every failure is a CorruptDataError. ``bound``: the
    path (relative to the store root) the object was read from; an object bound to another
    path is refused, naming both. With ``FLAG_META_CRC`` the meta's own CRC is checked too."""
    flags, expires, nonce, meta_len, count = _header(data, key, path)
    skip = meta_len + _meta_crc_size(flags)
    if len(data) < MIN_SIZE + skip:
        raise CorruptDataError(f"object is truncated ({len(data)} bytes)", key=key, path=path)
    body = memoryview(data)[HEADER_SIZE:-4]
    (body_crc,) = _CRC.unpack_from(data, len(data) - 4)
    if zlib.crc32(body) != body_crc:
        raise CorruptDataError("checksum mismatch", key=key, path=path)
    if skip != meta_len:
        (meta_crc,) = _CRC.unpack_from(body, meta_len)
        if zlib.crc32(body[:meta_len]) != meta_crc:
            raise CorruptDataError("metadata checksum mismatch", key=key, path=path)
    meta = _unpack_meta(body[:meta_len], key, path)
    try:
        payload = bytes(body[skip:])
        if flags & FLAG_ZSTD:
            size = zstandard.frame_content_size(payload)
            if not 0 <= size <= _MAX_DECOMPRESSED:
                raise ValueError(f"zstd frame declares an invalid size ({size})")
            payload = _codecs.decompressor.decompress(payload)
    except Exception as exc:  # a decoder must never leak its own exception types
        raise CorruptDataError(f"undecodable object: {exc}", key=key, path=path) from exc
    _check_binding(meta, bound, key, path)
    return Envelope(payload=payload, expires_at_ms=expires, meta=meta, nonce=nonce, count=count)


def rebind(data: bytes, bind: str, *, key: str | None = None, path: str | None = None) -> bytes:
    """The same object bound to another path (a claim that moves on to the next version):
    the metadata (and its CRC, with ``FLAG_META_CRC``) and the body checksum are redone;
    the payload bytes are reused as they are (no second compression)."""
    flags, expires, nonce, meta_len, count = _header(data, key, path)
    body = memoryview(data)[HEADER_SIZE:-4]
    meta = _unpack_meta(body[:meta_len], key, path)
    meta_bytes = msgpack.packb({**meta, BINDING: bind}, use_bin_type=True)
    payload = body[meta_len + _meta_crc_size(flags) :]
    return _frame(flags, count, expires, nonce, meta_bytes, payload)


def with_expiry(
    data: bytes, expires_at_ms: int, *, key: str | None = None, path: str | None = None
) -> bytes:
    """The same object with a new expiry (and nonce); the body is reused, not re-encoded."""
    flags, _expires, _nonce, meta_len, count = _header(data, key, path)
    header = _HEADER.pack(MAGIC, VERSION, flags, count, expires_at_ms, new_nonce(), meta_len)
    return b"".join((header, _CRC.pack(zlib.crc32(header)), data[HEADER_SIZE:]))


# -- the cache's form of a value -----------------------------------------------------------
#
# A cache holds a value *decoded*: a hit then costs one checksum and one slice instead of
# the envelope's header, CRC and zstd frame (measured: ~1 us instead of ~9 us for a 1 KiB
# JSON value). The form is private to kvstore and never reaches the object store::
#
#     offset size  field
#     0      3     tag              b"KVc"
#     3      1     kind             the value's type: STRING, HASH, SET, ZSET, LIST
#     4      8     expires_at_ms    as in the envelope
#     12     P     payload          uncompressed
#     12+P   4     crc              CRC-32 of everything before it
#
# With its CRC appended little-endian, the CRC-32 of a whole intact entry is a constant
# (the CRC residue), so a reader checks an entry with one call and no copy.

CACHED_TAG = b"KVc"
CACHED_OVERHEAD = 16
_CRC_RESIDUE = 0x2144DF1C
_EXPIRY = struct.Struct("<q")

# -- the type of a value (the Redis data model's typed key space) ---------------------------
#
# A value object's metadata field ``"t"`` names its type; a value without one is a string
# (every value written before types existed is one). The cache form carries the type as a
# byte, so a cached read knows it too.

STRING, HASH, SET, ZSET, LIST = 1, 2, 3, 4, 5
KIND_FIELD = "t"
KIND_NAMES = {STRING: "string", HASH: "hash", SET: "set", ZSET: "zset", LIST: "list"}
_KIND_OF_NAME = {name: kind for kind, name in KIND_NAMES.items() if kind != STRING}


def kind_meta(kind: int) -> dict[str, Any] | None:
    """The metadata that marks a value's type (none for a string)."""
    return None if kind == STRING else {KIND_FIELD: KIND_NAMES[kind]}


def kind_of(env: Envelope, *, key: str | None = None, path: str | None = None) -> int:
    """The type of a decoded value object; CorruptDataError for a type this version does
    not know (an object written by a newer kvstore, or damage the checksum missed)."""
    name = env.meta.get(KIND_FIELD)
    if name is None:
        return STRING
    kind = _KIND_OF_NAME.get(name) if isinstance(name, str) else None
    if kind is None:
        raise CorruptDataError(f"value of unknown type {name!r}", key=key, path=path)
    return kind


Live = tuple[bytes, int, int]
"""A value as a read returns it: (payload, expires_at_ms, kind), 0 = never expires. A plain
tuple: a warm ``mget`` makes a thousand of them."""


def expired(expires_at_ms: int, now_ms: int) -> bool:
    return expires_at_ms != 0 and expires_at_ms <= now_ms


def seal(data: bytes) -> bytes:
    """A cache entry that is not an envelope (a log plan, a version pointer): the data and
    its CRC-32, so a damaged entry is told from a good one (:func:`unseal`)."""
    return data + _CRC.pack(zlib.crc32(data))


def unseal(entry: bytes | memoryview) -> bytes:
    """The data of a :func:`seal`-ed entry; CorruptDataError if the entry is damaged."""
    if len(entry) < _CRC.size or zlib.crc32(entry) != _CRC_RESIDUE:
        raise CorruptDataError("damaged cache entry")
    return bytes(entry[: -_CRC.size])


def pack_cached(payload: bytes, expires_at_ms: int, kind: int = STRING) -> bytes:
    """A value in the cache's form (see above)."""
    head = CACHED_TAG + bytes((kind,)) + _EXPIRY.pack(expires_at_ms)
    return b"".join((head, payload, _CRC.pack(zlib.crc32(payload, zlib.crc32(head)))))


def unpack_cached(
    entries: Sequence[bytes | None], offset: int = 0
) -> tuple[list[Live | None], list[int]]:
    """Verify cache entries in the cache's form, in one pass (this is a cache hit's whole
    decoding cost): (values, indexes of damaged entries). A miss (None) and a cached
    "missing" (no data) are None in values; so is a damaged entry, whose index is listed.

    Each entry's data starts ``offset`` bytes in (``Cache.entry_offset``: the Redis
    cache's generation stays in front). It is read in place - tag, kind and expiry at
    offsets, the CRC-32 over a view - and only the payload is copied out, once: per
    entry, one view for the CRC, one bytes for the payload and the tuple returned."""
    out: list[Live | None] = []
    damaged: list[int] = []
    crc32 = zlib.crc32
    expiry = _EXPIRY.unpack_from
    kind_at, expiry_at, payload_at = offset + 3, offset + 4, offset + 12
    shortest = offset + CACHED_OVERHEAD
    for i, entry in enumerate(entries):
        if entry is None or len(entry) == offset:
            out.append(None)
        elif (
            len(entry) >= shortest
            and entry.startswith(CACHED_TAG, offset)
            and STRING <= entry[kind_at] <= LIST
            and crc32(memoryview(entry)[offset:] if offset else entry) == _CRC_RESIDUE
        ):
            out.append((entry[payload_at:-4], expiry(entry, expiry_at)[0], entry[kind_at]))
        else:
            out.append(None)
            damaged.append(i)
    return out, damaged
