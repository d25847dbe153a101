"""Manifests: what a version's manifest object says, and the checks on what a save is given.

A manifest (``art/{enc(name)}/{version:020d}``, :mod:`kvstore.layout`) is an envelope whose
msgpack metadata holds the mime type, the user's metadata (under its own field, never mixed
with internal ones), size, sha256, creation time and the upload id. Manifests are written
with the metadata's own checksum (``codec.FLAG_META_CRC``), so a version's info comes from a
ranged read of the manifest's first bytes, verified, without its data; those written
before it are read whole. Data of at most
``limits.PART_SIZE`` bytes is the manifest's payload; larger data is cut into parts and the
manifest lists their sizes. A *raw* version's data is one object beside where parts go,
stored byte for byte (no envelope: what a presigned URL serves); its manifest records the
object's size, a CRC-32 of the whole and of each block (:class:`RawObject`). A deleted
version's manifest is replaced by a tombstone.
"""

from __future__ import annotations

import datetime
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .. import codec
from ..errors import ConfigurationError, CorruptDataError, InvalidValueError

MAX_METADATA_BYTES = 1 << 20
FORMAT = 1
TEXT_MIME = "text/plain; charset=utf-8"
BINARY_MIME = "application/octet-stream"

# Media types whose content is already compressed: zstd is not even tried.
_COMPRESSED_FAMILIES = ("image/", "audio/", "video/")
_UNCOMPRESSED_MEDIA = frozenset(
    {"image/svg+xml", "image/bmp", "image/x-ms-bmp", "image/tiff", "image/x-portable-pixmap"}
)
_COMPRESSED_TYPES = frozenset(
    {
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "application/x-bzip2",
        "application/x-xz",
        "application/zstd",
        "application/x-zstd",
        "application/x-7z-compressed",
        "application/vnd.rar",
        "application/x-rar-compressed",
        "application/x-brotli",
        "application/java-archive",
        "application/epub+zip",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "font/woff",
        "font/woff2",
    }
)


def is_compressed_type(mime_type: str) -> bool:
    """True for media types whose bytes are already compressed (png, jpeg, zip, audio...)."""
    base = mime_type.split(";", 1)[0].strip().lower()
    if base in _UNCOMPRESSED_MEDIA:
        return False
    return base in _COMPRESSED_TYPES or base.startswith(_COMPRESSED_FAMILIES)


@dataclass(frozen=True)
class ArtifactInfo:
    """What describes one version of an artifact: shared by :class:`Artifact` (loaded
    whole), the streaming reader and its blocking file face."""

    name: str
    version: int
    mime_type: str
    metadata: dict[str, Any]
    size: int
    sha256: str
    created_at: datetime.datetime
    raw: bool = False
    """Saved with ``raw=True``: stored byte for byte as one object (``artifacts.url``)."""


@dataclass(frozen=True, kw_only=True)
class Artifact(ArtifactInfo):
    """One version of an artifact, loaded whole."""

    data: bytes = field(repr=False)

    @property
    def text(self) -> str:
        """The data decoded as UTF-8."""
        return self.data.decode("utf-8")


@dataclass(frozen=True)
class RawObject:
    """What a raw version's manifest says of its object (``artpart/{enc}/{upload}/raw``):
    its size, the CRC-32 of all of it, and a CRC-32 of each ``block`` bytes (the last block
    may be shorter), so a ranged read of one block is verified on its own."""

    size: int
    crc: int
    block: int
    crcs: list[int]

    @classmethod
    def of(cls, data: bytes, block: int) -> RawObject:
        """The description of ``data`` (a pass over it: run it off the event loop)."""
        view = memoryview(data)
        crcs = [zlib.crc32(view[i : i + block]) for i in range(0, len(view), block)]
        return cls(len(data), zlib.crc32(view), block, crcs)

    def to_meta(self) -> dict[str, Any]:
        return {"size": self.size, "crc": self.crc, "block": self.block, "crcs": self.crcs}

    @classmethod
    def from_meta(cls, meta: Any) -> RawObject:
        """Raises ValueError (or KeyError, TypeError) on a description that is not whole."""
        raw = cls(int(meta["size"]), int(meta["crc"]), int(meta["block"]), [])
        raw.crcs.extend(int(c) for c in meta["crcs"])
        if raw.size < 0 or raw.block < 1 or len(raw.crcs) != -(-raw.size // raw.block):
            raise ValueError("bad raw object description")
        return raw

    def blocks(self) -> list[int]:
        """The size of each block."""
        full, rest = divmod(self.size, self.block)
        return [self.block] * full + ([rest] if rest else [])


@dataclass(frozen=True)
class Manifest:
    """What a version's manifest says (the decoded envelope of ``art/{enc}/{version}``)."""

    mime_type: str
    metadata: dict[str, Any]
    size: int
    sha256: str
    created_ms: int
    upload: str
    parts: list[int] | None  # part sizes; None = the data is inline (or raw)
    inline: bytes
    raw: RawObject | None = None  # a raw version's object; None = inline or parts

    @classmethod
    def parse(cls, env: codec.Envelope, key: str, path: str) -> Manifest | None:
        """The manifest, or None for a tombstone (a deleted version)."""
        manifest = cls.from_meta(env.meta, key, path, inline=env.payload)
        if (
            manifest is not None
            and manifest.parts is None
            and manifest.raw is None
            and len(env.payload) != manifest.size
        ):
            raise CorruptDataError("artifact size does not match its data", key=key, path=path)
        return manifest

    @classmethod
    def from_meta(
        cls, meta: dict[str, Any], key: str, path: str, *, inline: bytes = b""
    ) -> Manifest | None:
        """The manifest its metadata describes (``inline``: the data, when the caller has
        it), or None for a tombstone. Checks the fields and that the part sizes add up to
        the size; the size of inline data is :meth:`parse`'s check (it has the data)."""
        try:
            if meta.get("f") != FORMAT:
                raise ValueError(f"unknown artifact format {meta.get('f')!r}")
            if meta.get("deleted"):
                return None
            parts = meta.get("parts")
            raw = meta.get("raw")
            manifest = cls(
                mime_type=str(meta["mime"]),
                metadata=dict(meta["user"]),
                size=int(meta["size"]),
                sha256=str(meta["sha256"]),
                created_ms=int(meta["created"]),
                upload=str(meta["upload"]),
                parts=None if parts is None else [int(n) for n in parts],
                inline=inline,
                raw=None if raw is None else RawObject.from_meta(raw),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptDataError(f"bad artifact manifest: {exc}", key=key, path=path) from None
        if manifest.parts is not None and sum(manifest.parts) != manifest.size:
            raise CorruptDataError("artifact size does not match its data", key=key, path=path)
        if manifest.raw is not None and (
            manifest.raw.size != manifest.size or manifest.parts is not None or inline
        ):
            raise CorruptDataError("raw artifact's manifest does not add up", key=key, path=path)
        return manifest

    def pieces(self) -> list[int]:
        """The sizes of the pieces a reader fetches one at a time: the parts, a raw
        object's blocks, or the inline data as one piece."""
        if self.parts is not None:
            return self.parts
        if self.raw is not None:
            return self.raw.blocks()
        return [self.size]

    def created_at(self) -> datetime.datetime:
        try:
            seconds = self.created_ms / 1000
            return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise CorruptDataError(f"artifact time out of range: {self.created_ms}") from None

    def info(self, name: str, version: int) -> ArtifactInfo:
        return ArtifactInfo(
            name=name,
            version=version,
            mime_type=self.mime_type,
            metadata=self.metadata,
            size=self.size,
            sha256=self.sha256,
            created_at=self.created_at(),
            raw=self.raw is not None,
        )


def encode(data: bytes, meta: dict[str, Any], path: str, compress: bool | None) -> bytes:
    """A manifest's envelope: with the metadata's own checksum (``codec.FLAG_META_CRC``),
    so a version's info is read and verified from the manifest's first bytes."""
    return codec.encode(data, meta=meta, compress=compress, bind=path, meta_crc=True)


def tombstone(path: str) -> bytes:
    """What replaces a deleted version's manifest (and marks it in the listing)."""
    return codec.encode(b"", meta={"f": FORMAT, "deleted": True}, bind=path, meta_crc=True)


def check_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ConfigurationError(f"version must be an int >= 0, not {version!r}")
    return version


def check_mime(mime_type: object) -> str:
    if not isinstance(mime_type, str):
        raise InvalidValueError(f"mime_type must be a str, not {type(mime_type).__name__}")
    if not 0 < len(mime_type) <= 255 or not mime_type.isprintable():
        raise ConfigurationError(f"mime_type must be 1-255 printable characters: {mime_type!r}")
    return mime_type


def _check_plain(value: object, depth: int = 0) -> None:
    """Metadata values must survive msgpack unchanged in kind: JSON-like types and bytes."""
    if depth > 64:
        raise InvalidValueError("metadata is nested more than 64 levels deep")
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        if isinstance(value, int) and not -(2**63) <= value < 2**64:
            raise InvalidValueError(f"metadata int {value} does not fit 64 bits")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(item, depth + 1)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise InvalidValueError(f"metadata keys must be str, not {type(k).__name__}")
            _check_plain(item, depth + 1)
        return
    raise InvalidValueError(
        f"metadata values must be None, bool, int, float, str, bytes, list or dict, "
        f"not {type(value).__name__}"
    )


def check_metadata(metadata: object) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidValueError(f"metadata must be a dict, not {type(metadata).__name__}")
    _check_plain(metadata)
    try:
        size = len(msgpack.packb(metadata, use_bin_type=True))
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidValueError(f"metadata cannot be stored: {exc}") from None
    if size > MAX_METADATA_BYTES:
        raise InvalidValueError(f"metadata is {size} bytes packed; at most 1 MiB")
    return metadata


# -- sources: what save() reads from -------------------------------------------------------
