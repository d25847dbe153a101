"""Versioned artifacts: numbered immutable versions, claimed by conditional create, streamed.

Layout below ``{base}`` (the README's table)::

    art/{enc(name)}/{version:020d}          the version's manifest (an envelope)
    art/{enc(name)}/{version:020d}.deleted  tombstone marker of a deleted version
    artpart/{enc(name)}/{upload}/{i:06d}    parts of a large artifact (envelopes)

A manifest's msgpack metadata holds the mime type, the user's metadata (under its own
field, never mixed with internal ones), size, sha256, creation time and the upload id. Data
of at most :data:`PART_SIZE` bytes is the manifest's payload (zstd when it pays, never for
already-compressed media types); larger data is cut into parts, each its own checksummed
envelope, and the manifest lists their sizes.

Guarantees:

* **No lost versions.** A version is claimed with a conditional create of its manifest
  (DESIGN invariant 3). A saver that loses the race lists the directory once and claims the
  next free number; the parts it already uploaded are reused, never sent twice. Any number
  of savers in any number of processes or machines get distinct versions.
* **Durable and atomic.** ``save`` returns after the manifest is acknowledged; a version
  is visible whole or not at all (its parts are written before the manifest that names
  them).
* **Immutable and never reused.** A version's content never changes. ``delete`` replaces
  the manifest by a small tombstone and adds a ``.deleted`` marker that listings see, so a
  deleted number is never claimed again.
* **Verified.** Every object carries a CRC; the sha256 of the data is checked on every
  ``load`` and at the end of a sequential read through ``open``.
* **Bounded memory for streams.** ``save`` of a file object or path, and reading through
  ``open``, hold a few parts at a time whatever the artifact's size.
* **Latest without listing when possible.** ``load(name)`` uses the latest-version pointer
  kept in the cache (invalidated by every save and delete, and refilled under the cache's
  stale-fill guard) and one LIST otherwise. A process never reads a version older than one
  it saved or saw itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import io
import mimetypes
import os
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack

from . import codec
from .blob.base import AmbiguousWriteError
from .cache import Fill
from .errors import ConfigurationError, CorruptDataError, InvalidValueError
from .keys import decode_name, encode_name, encode_prefix, key_str

if TYPE_CHECKING:
    from .api import AsyncKVStore

PART_SIZE = 8 << 20
"""Data above this size is stored as parts of this size (and streamed in them)."""
PART_CONCURRENCY = 4
"""Parts in flight while saving; parts fetched ahead while reading sequentially."""
MAX_METADATA_BYTES = 1 << 20
VERSION_DIGITS = 20
MAX_KNOWN = 4096  # artifact names whose latest version a process remembers
_FORMAT = 1
_DELETED = ".deleted"
_MAX_CLAIMS = 10_000
_RETRIES = 5
_TEXT_MIME = "text/plain; charset=utf-8"
_BINARY_MIME = "application/octet-stream"

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
class Artifact:
    """One version of an artifact, loaded whole."""

    name: str
    version: int
    data: bytes = field(repr=False)
    mime_type: str
    metadata: dict[str, Any]
    size: int
    sha256: str
    created_at: datetime.datetime

    @property
    def text(self) -> str:
        """The data decoded as UTF-8."""
        return self.data.decode("utf-8")


@dataclass(frozen=True)
class _Manifest:
    """What a version's manifest says (the decoded envelope of ``art/{enc}/{version}``)."""

    mime_type: str
    metadata: dict[str, Any]
    size: int
    sha256: str
    created_ms: int
    upload: str
    parts: list[int] | None  # part sizes; None = the data is inline
    inline: bytes

    @classmethod
    def parse(cls, env: codec.Envelope, key: str, path: str) -> _Manifest | None:
        """The manifest, or None for a tombstone (a deleted version)."""
        meta = env.meta or {}
        try:
            if meta.get("f") != _FORMAT:
                raise ValueError(f"unknown artifact format {meta.get('f')!r}")
            if meta.get("deleted"):
                return None
            parts = meta.get("parts")
            manifest = cls(
                mime_type=str(meta["mime"]),
                metadata=dict(meta["user"]),
                size=int(meta["size"]),
                sha256=str(meta["sha256"]),
                created_ms=int(meta["created"]),
                upload=str(meta["upload"]),
                parts=None if parts is None else [int(n) for n in parts],
                inline=env.payload,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptDataError(f"bad artifact manifest: {exc}", key=key, path=path) from None
        expected = len(env.payload) if manifest.parts is None else sum(manifest.parts)
        if expected != manifest.size:
            raise CorruptDataError("artifact size does not match its data", key=key, path=path)
        return manifest

    def created_at(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.created_ms / 1000, tz=datetime.timezone.utc)


def _tombstone() -> bytes:
    return codec.encode(b"", meta={"f": _FORMAT, "deleted": True})


def _version_name(version: int) -> str:
    return f"{version:0{VERSION_DIGITS}d}"


def _check_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ConfigurationError(f"version must be an int >= 0, not {version!r}")
    return version


def _check_mime(mime_type: object) -> str:
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


def _check_metadata(metadata: object) -> dict[str, Any]:
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


class _Source:
    """The data of a save, handed out in blocks of at most :data:`PART_SIZE` bytes."""

    def __init__(self, data: object, name: str) -> None:
        self._buffer: bytes | None = None
        self._file: Any = None
        self._path: str | None = None
        if isinstance(data, str):
            try:
                self._buffer = data.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidValueError(f"str data is not valid Unicode: {exc.reason}") from None
            self.default_mime = _TEXT_MIME
        elif isinstance(data, (bytes, bytearray, memoryview)):
            self._buffer = bytes(data)
            self.default_mime = mimetypes.guess_type(name)[0] or _BINARY_MIME
        elif isinstance(data, os.PathLike):
            self._path = os.fspath(data)
            if not isinstance(self._path, str):
                self._path = os.fsdecode(self._path)
            guess = mimetypes.guess_type(self._path)[0] or mimetypes.guess_type(name)[0]
            self.default_mime = guess or _BINARY_MIME
        elif callable(getattr(data, "read", None)):
            self._file = data
            self.default_mime = mimetypes.guess_type(name)[0] or _BINARY_MIME
        else:
            raise InvalidValueError(
                "artifact data must be bytes, str, a binary file object or a pathlib.Path, "
                f"not {type(data).__name__}"
            )

    @property
    def whole(self) -> bytes | None:
        """All the data, if it is already in memory."""
        return self._buffer

    async def blocks(self) -> AsyncIterator[bytes]:
        """The data in blocks of exactly PART_SIZE bytes (the last may be shorter)."""
        part = PART_SIZE
        if self._buffer is not None:
            view = memoryview(self._buffer)
            for start in range(0, len(view), part):
                yield bytes(view[start : start + part])
            return
        opened = False
        if self._path is not None:
            try:
                self._file = await asyncio.to_thread(open, self._path, "rb")
            except OSError as exc:
                raise ConfigurationError(f"cannot read {self._path!r}: {exc}") from None
            opened = True
        try:
            while True:
                block = await asyncio.to_thread(_read_full, self._file, part)
                if not block:
                    return
                yield block
                if len(block) < part:
                    return
        finally:
            if opened:
                await asyncio.to_thread(self._file.close)


def _read_full(file: Any, size: int) -> bytes:
    """Read ``size`` bytes (fewer only at EOF) from a file that may return short reads."""
    chunks: list[bytes] = []
    got = 0
    while got < size:
        chunk = file.read(size - got)
        if chunk is None:  # a non-blocking raw file with nothing ready
            continue
        if isinstance(chunk, str):
            raise InvalidValueError("the file object returns str: open it in binary mode ('rb')")
        if not chunk:
            break
        chunks.append(bytes(chunk))
        got += len(chunk)
    return b"".join(chunks)


# -- the core -------------------------------------------------------------------------------


class AsyncArtifacts:
    """The artifact operations of one store view (the root or a namespace)."""

    def __init__(self, store: AsyncKVStore) -> None:
        self._s = store
        self._r = store._r

    # -- names -------------------------------------------------------------------------------

    def _dir(self, name: object) -> tuple[str, str]:
        """The artifact's name as str, and its manifest directory (ending in '/')."""
        key = key_str(name, "artifact name")
        encoded = encode_name(key, "artifact name")
        directory = f"{self._s._base}art/{encoded}/"
        self._r.blob.check_path(directory + _version_name(0) + _DELETED)
        self._r.blob.check_path(self._part_path(directory, "0" * 24, 0))
        return key, directory

    def _part_path(self, directory: str, upload: str, index: int) -> str:
        """Part ``index`` of an upload, beside the name's manifest directory:
        ``{base}art/{enc}/`` -> ``{base}artpart/{enc}/{upload}/{index:06d}``."""
        encoded = directory[len(self._s._base) + len("art/") : -1]
        return f"{self._s._base}artpart/{encoded}/{upload}/{index:06d}"

    def _pointer_key(self, directory: str) -> str:
        return directory + "latest"  # a cache key only; no object has this name

    def _known(self, directory: str) -> tuple[int, int]:
        """What this process knows of a name: the highest version number claimed (deleted
        or not) and the newest live version it saved, read or listed; -1 = nothing."""
        return self._r.artifact_known.get(directory, (-1, -1))

    def _learn(self, directory: str, version: int, *, live: int | None = None) -> None:
        """Record that ``version`` exists or existed; ``live`` (from a listing) replaces
        the newest live version, otherwise a live ``version`` raises it."""
        known = self._r.artifact_known
        claimed, newest = known.get(directory, (-1, -1))
        newest = live if live is not None else max(newest, version)
        known[directory] = (max(claimed, version), newest)
        known.move_to_end(directory)
        while len(known) > MAX_KNOWN:
            known.popitem(last=False)

    # -- listing -----------------------------------------------------------------------------

    async def _scan(self, directory: str) -> tuple[list[int], int]:
        """One listing of a name's directory: its live versions (ascending) and the highest
        version number ever claimed (-1 if none)."""
        numbers: set[int] = set()
        deleted: set[int] = set()
        async for page in self._r.blob.list_pages(directory):
            for path in page:
                leaf = path[len(directory) :]
                number, _, suffix = leaf.partition(".")
                if len(number) != VERSION_DIGITS or not number.isdigit():
                    self._r.stats.add("foreign_objects")
                    continue
                if suffix == "":
                    numbers.add(int(number))
                elif "." + suffix == _DELETED:
                    deleted.add(int(number))
        highest = max(numbers | deleted, default=-1)
        live = sorted(numbers - deleted)
        self._learn(directory, highest, live=live[-1] if live else -1)
        return live, highest

    async def versions(self, name: str) -> list[int]:
        """The artifact's live versions, ascending ([] if none). One LIST."""
        _, directory = self._dir(name)
        live, _ = await self._scan(directory)
        return live

    async def list(self, prefix: str = "") -> list[str]:
        """Names of the artifacts that have a live version and start with ``prefix``, sorted.

        Pages through the listing of every version object below the prefix (one LIST per
        1000 objects on S3/GCS).
        """
        area = f"{self._s._base}art/"
        live: set[str] = set()
        deleted: set[str] = set()
        async for page in self._r.blob.list_pages(area + encode_prefix(prefix)):
            for path in page:
                encoded, _, leaf = path[len(area) :].rpartition("/")
                (deleted if leaf.endswith(_DELETED) else live).add(
                    encoded + "/" + leaf.removesuffix(_DELETED)
                )
        names = set()
        for entry in live - deleted:
            encoded = entry.rpartition("/")[0]
            try:
                names.add(decode_name(encoded))
            except ValueError:
                self._r.stats.add("foreign_objects")
        return sorted(names)

    # -- reading -----------------------------------------------------------------------------

    async def _manifest(
        self, key: str, directory: str, version: int, cached: bool = True
    ) -> _Manifest | None:
        """A version's manifest: from the cache, else one GET (then cached under the guard).
        None if the version does not exist or was deleted."""
        path = directory + _version_name(version)
        cache_key = self._r.cache_prefix + path
        lookup = None
        if cached:
            lookup = await self._s._cache_safely(self._r.cache.lookup([cache_key]), None)
            hit = lookup.values[0] if lookup is not None else None
            if hit is not None:
                try:
                    manifest = _Manifest.parse(self._decode(hit, key, path), key, path)
                except CorruptDataError:  # a damaged cache entry: drop it, ask the source
                    self._r.stats.add("cache.corrupt")
                    await self._s._invalidate([path])
                else:
                    self._r.stats.add("cache.hits")
                    return manifest
            self._r.stats.add("cache.misses")
        blob = await self._r.blob.get(path)
        if blob is None:
            return None
        manifest = _Manifest.parse(self._decode(blob.data, key, path), key, path)
        if manifest is None:
            self._learn(directory, version, live=self._known(directory)[1])
            return None
        self._learn(directory, version)
        if lookup is not None:
            fill = Fill(cache_key, blob.data, self._r.cache_ttl)
            await self._s._cache_safely(self._r.cache.fill([fill], lookup.ticket), None)
        return manifest

    def _decode(self, data: bytes, key: str, path: str) -> codec.Envelope:
        return codec.decode(data, key=key, path=self._s._where(path))

    async def _latest(self, key: str, directory: str) -> tuple[int, _Manifest] | None:
        """The newest live version and its manifest: the cached pointer if it is fresh and
        not older than what this process knows, else one LIST."""
        pointer_key = self._r.cache_prefix + self._pointer_key(directory)
        for _ in range(_RETRIES):
            lookup = await self._s._cache_safely(self._r.cache.lookup([pointer_key]), None)
            hit = lookup.values[0] if lookup is not None else None
            if hit is not None and hit.isdigit() and int(hit) >= self._known(directory)[1]:
                self._r.stats.add("cache.hits")
                version = int(hit)
                manifest = await self._manifest(key, directory, version)
                if manifest is not None:
                    return version, manifest
                await self._s._invalidate([self._pointer_key(directory)])
                continue
            live, _ = await self._scan(directory)
            if not live:
                return None
            for version in reversed(live):  # past tombstones of half-finished deletes
                manifest = await self._manifest(key, directory, version)
                if manifest is not None:
                    if lookup is not None:
                        fill = Fill(pointer_key, str(version).encode(), self._r.cache_ttl)
                        await self._s._cache_safely(self._r.cache.fill([fill], lookup.ticket), None)
                    return version, manifest
            return None
        return None

    async def _resolve(
        self, name: str, version: int | None
    ) -> tuple[str, str, int, _Manifest] | None:
        key, directory = self._dir(name)
        if version is None:
            found = await self._latest(key, directory)
            if found is None:
                return None
            return key, directory, found[0], found[1]
        version = _check_version(version)
        manifest = await self._manifest(key, directory, version)
        return None if manifest is None else (key, directory, version, manifest)

    async def _part(
        self, key: str, directory: str, version: int, manifest: _Manifest, index: int
    ) -> bytes:
        """Part ``index`` of a version, verified; CorruptDataError if it is missing while
        the version still exists, :class:`_Gone` if the version was deleted meanwhile."""
        assert manifest.parts is not None
        path = self._part_path(directory, manifest.upload, index)
        blob = await self._r.blob.get(path)
        if blob is None:
            if await self._manifest(key, directory, version, cached=False) is None:
                raise _Gone
            raise CorruptDataError("artifact part is missing", key=key, path=path)
        data = (await asyncio.to_thread(codec.decode, blob.data, key=key, path=path)).payload
        if len(data) != manifest.parts[index]:
            raise CorruptDataError("artifact part has the wrong size", key=key, path=path)
        return data

    async def _data(self, key: str, directory: str, version: int, manifest: _Manifest) -> bytes:
        """A version's whole data: inline, or its parts fetched concurrently."""
        if manifest.parts is None:
            return manifest.inline
        gate = asyncio.Semaphore(PART_CONCURRENCY)

        async def fetch(index: int) -> bytes:
            async with gate:
                return await self._part(key, directory, version, manifest, index)

        return b"".join(await asyncio.gather(*map(fetch, range(len(manifest.parts)))))

    async def load(self, name: str, version: int | None = None) -> Artifact | None:
        """The artifact's version (None = the latest), whole, or None if there is none.

        Verified: every object's CRC, and the sha256 of the whole data. Costs one GET (none
        when cached) for a given version, plus one LIST for the latest when the cache has no
        fresh pointer, plus one GET per part for a large artifact (fetched concurrently).
        """
        for _ in range(_RETRIES):
            found = await self._resolve(name, version)
            if found is None:
                return None
            key, directory, number, manifest = found
            try:
                data = await self._data(key, directory, number, manifest)
            except _Gone:
                continue
            path = directory + _version_name(number)
            if hashlib.sha256(data).hexdigest() != manifest.sha256:
                raise CorruptDataError("artifact sha256 mismatch", key=key, path=path)
            return Artifact(
                name=key,
                version=number,
                data=data,
                mime_type=manifest.mime_type,
                metadata=manifest.metadata,
                size=manifest.size,
                sha256=manifest.sha256,
                created_at=manifest.created_at(),
            )
        return None

    async def open(self, name: str, version: int | None = None) -> AsyncArtifactReader | None:
        """A reader over the artifact's version (None = the latest), or None if there is none.

        Memory stays bounded by a few parts whatever the size. Every part is CRC-checked;
        a sequential read to the end also checks the sha256 (CorruptDataError at the end).
        """
        found = await self._resolve(name, version)
        if found is None:
            return None
        return AsyncArtifactReader(self, *found)

    # -- writing -----------------------------------------------------------------------------

    async def save(
        self,
        name: str,
        data: Any,
        mime_type: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        """Store a new version and return its number (0, 1, 2, ...).

        ``data``: bytes, str (stored as UTF-8, text mime type by default), a binary file
        object or a ``pathlib.Path`` (both streamed: memory stays bounded by a few parts).
        ``mime_type``: by default ``text/plain; charset=utf-8`` for str, else guessed from
        the file's or the artifact's name (``chart.png``: ``image/png``), else
        ``application/octet-stream``; already-compressed types are stored uncompressed.
        ``metadata``: a dict of JSON-like values (and bytes), returned as it was given.

        Durable and atomic on return. Costs one conditional PUT when this process (or the
        cache's pointer) knows the latest version, one LIST more otherwise or after losing
        a race, plus one PUT per part for data above :data:`PART_SIZE`.
        """
        key, directory = self._dir(name)
        source = _Source(data, key)
        mime = _check_mime(mime_type) if mime_type is not None else source.default_mime
        user = _check_metadata(metadata)
        compress: bool | None = False if is_compressed_type(mime) else None
        upload = secrets.token_hex(12)
        digest = hashlib.sha256()
        sizes: list[int] = []
        inline = b""
        pending: set[asyncio.Task[str]] = set()
        try:
            whole = source.whole
            if whole is not None and len(whole) <= PART_SIZE:
                inline = whole
                digest.update(whole)
            else:
                blocks = aiter(source.blocks())
                first = await anext(blocks, b"")
                ahead = await anext(blocks, b"") if len(first) == PART_SIZE else b""
                if not ahead:  # at most PART_SIZE bytes in all: the manifest holds them
                    inline = first
                    digest.update(first)
                else:
                    head, first, ahead = [first, ahead], b"", b""  # only _chain holds them
                    async for block in _chain(head, blocks):
                        digest.update(block)
                        path = self._part_path(directory, upload, len(sizes))
                        sizes.append(len(block))
                        put = self._put_part(path, block, compress)
                        pending.add(asyncio.ensure_future(put))
                        del block
                        while len(pending) >= PART_CONCURRENCY:
                            pending = await _reap(pending)
                    while pending:
                        pending = await _reap(pending)
            meta = {
                "f": _FORMAT,
                "mime": mime,
                "user": user,
                "size": sum(sizes) if sizes else len(inline),
                "sha256": digest.hexdigest(),
                "created": self._r.clock(),
                "upload": upload,
            }
            if sizes:
                meta["parts"] = sizes
            manifest = codec.encode(inline, meta=meta, compress=compress)
            return await self._claim(key, directory, manifest, upload)
        except BaseException:
            for task in pending:
                task.cancel()
            if sizes:
                paths = [self._part_path(directory, upload, i) for i in range(len(sizes))]
                cleanup = asyncio.ensure_future(self._discard(paths))
                cleanup.add_done_callback(_consume)
            raise

    async def _put_part(self, path: str, block: bytes, compress: bool | None) -> str:
        envelope = await asyncio.to_thread(codec.encode, block, compress=compress)
        return await self._r.blob.put(path, envelope)

    async def _discard(self, paths: Sequence[str]) -> None:
        """Best effort: remove the parts of a save that failed (they are unreferenced)."""
        for path in paths:
            with contextlib.suppress(Exception):
                await self._r.blob.delete(path)

    async def _claim(self, key: str, directory: str, manifest: bytes, upload: str) -> int:
        """Create the manifest at the first free version; the version number."""
        pointer = self._pointer_key(directory)
        version = self._known(directory)[0] + 1
        if version == 0:
            cached = await self._s._cache_safely(
                self._r.cache.lookup([self._r.cache_prefix + pointer]), None
            )
            hit = cached.values[0] if cached is not None else None
            if hit is not None and hit.isdigit():
                version = int(hit) + 1
            else:
                version = (await self._scan(directory))[1] + 1
        for _ in range(_MAX_CLAIMS):
            path = directory + _version_name(version)
            self._r.blob.check_path(path)

            async def create(path: str = path) -> bool:
                try:
                    return await self._r.blob.put_if_absent(path, manifest) is not None
                except AmbiguousWriteError:
                    return await self._is_ours(key, path, upload)

            if await self._s._commit([pointer], create):
                self._learn(directory, version)
                return version
            self._r.stats.add("artifacts.claim_conflicts")
            version = max(version + 1, (await self._scan(directory))[1] + 1)
        raise AssertionError("unreachable: a claim kept losing")  # pragma: no cover

    async def _is_ours(self, key: str, path: str, upload: str) -> bool:
        blob = await self._r.blob.get(path)
        if blob is None:
            return False
        meta = codec.decode(blob.data, key=key, path=path).meta or {}
        return meta.get("upload") == upload

    async def delete(self, name: str, version: int | None = None) -> int:
        """Delete one version, or all of them; the number of versions removed.

        A deleted version reads as missing at once; its number is never reused (a
        ``.deleted`` marker stays in the listing and a tombstone in place of the manifest).
        """
        key, directory = self._dir(name)
        if version is not None:
            targets = [_check_version(version)]
        else:
            targets, _ = await self._scan(directory)
        gate = asyncio.Semaphore(self._r.concurrency)

        async def remove(number: int) -> bool:
            async with gate:
                return await self._delete_version(key, directory, number)

        removed = await asyncio.gather(*map(remove, targets))
        return sum(removed)

    async def _delete_version(self, key: str, directory: str, version: int) -> bool:
        """Bury one version: a tombstone over its manifest (it reads as missing at once),
        then the ``.deleted`` marker (listings stop showing it), then its parts. A version
        found already buried has its marker written again, which finishes a delete that
        failed halfway. A damaged manifest is buried too (its parts, unknown, stay)."""
        path = directory + _version_name(version)
        blob = await self._r.blob.get(path)
        if blob is None:
            return False
        parts: tuple[str, int] | None = None
        try:
            manifest = _Manifest.parse(self._decode(blob.data, key, path), key, path)
        except CorruptDataError:
            self._r.stats.add("artifacts.corrupt_deleted")
            alive = True
        else:
            alive = manifest is not None
            if manifest is not None and manifest.parts is not None:
                parts = (manifest.upload, len(manifest.parts))

        async def bury() -> None:
            if alive:
                await self._r.blob.put(path, _tombstone())
            await self._r.blob.put(path + _DELETED, _tombstone())

        await self._s._commit([path, self._pointer_key(directory)], bury)
        if parts is not None:
            gate = asyncio.Semaphore(self._r.concurrency)

            async def drop(index: int) -> None:
                async with gate:
                    await self._r.blob.delete(self._part_path(directory, parts[0], index))

            await asyncio.gather(*map(drop, range(parts[1])))
        return alive


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``head``'s blocks (released as they are handed out), then ``rest``'s."""
    while head:
        yield head.pop(0)
    async for block in rest:
        yield block


class _Gone(Exception):
    """The version was deleted while it was being read."""


async def _reap(pending: set[asyncio.Task[str]]) -> set[asyncio.Task[str]]:
    """Wait for at least one task; raise the first failure."""
    done, rest = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        task.result()
    return rest


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


# -- streaming reads --------------------------------------------------------------------------


class AsyncArtifactReader:
    """A seekable reader over one artifact version; parts are fetched on demand.

    Holds the current part and the next one (fetched ahead while reading forward). The
    sha256 is checked when the bytes read so far cover the whole artifact contiguously from
    its start.
    """

    def __init__(
        self, owner: AsyncArtifacts, key: str, directory: str, version: int, manifest: _Manifest
    ) -> None:
        self._owner = owner
        self._directory = directory
        self._manifest = manifest
        self.name = key
        self.version = version
        self.size = manifest.size
        self.mime_type = manifest.mime_type
        self.metadata = manifest.metadata
        self.sha256 = manifest.sha256
        self.created_at = manifest.created_at()
        self.closed = False
        self._pos = 0
        sizes = manifest.parts if manifest.parts is not None else [manifest.size]
        self._starts = [0]
        for n in sizes[:-1]:
            self._starts.append(self._starts[-1] + n)
        self._sizes = sizes
        self._current: tuple[int, bytes] | None = None
        if manifest.parts is None:
            self._current = (0, manifest.inline)
        self._ahead: tuple[int, asyncio.Task[bytes]] | None = None
        self._hasher = hashlib.sha256()
        self._hashed = 0
        self._verified = False

    def __repr__(self) -> str:
        return f"<AsyncArtifactReader {self.name!r} v{self.version} {self.size} bytes>"

    async def __aenter__(self) -> AsyncArtifactReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def tell(self) -> int:
        return self._pos

    async def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` (``whence`` as for files); returns the new position."""
        self._check_open()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        self._pos = target
        return target

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all the rest if negative); b"" at the end."""
        self._check_open()
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        out: list[bytes] = []
        while self._pos < end:
            index = self._index(self._pos)
            data = await self._load(index)
            offset = self._pos - self._starts[index]
            piece = data[offset : offset + (end - self._pos)]
            self._account(self._pos, piece)
            out.append(piece)
            self._pos += len(piece)
        return b"".join(out)

    async def close(self) -> None:
        self.release()

    def release(self) -> None:
        """Close without awaiting (safe from any thread, and at interpreter exit)."""
        if self._ahead is not None:
            task = self._ahead[1]
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                task.get_loop().call_soon_threadsafe(task.cancel)
            self._ahead = None
        self._current = None
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on a closed artifact reader")

    def _index(self, position: int) -> int:
        lo, hi = 0, len(self._starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._starts[mid] <= position:
                lo = mid
            else:
                hi = mid - 1
        return lo

    async def _load(self, index: int) -> bytes:
        if self._current is not None and self._current[0] == index:
            return self._current[1]
        if self._ahead is not None and self._ahead[0] == index:
            task = self._ahead[1]
            self._ahead = None
        else:
            if self._ahead is not None:
                self._ahead[1].cancel()
                self._ahead = None
            task = asyncio.ensure_future(self._fetch(index))
        self._current = None  # drop the old part before the new one arrives
        data = await task
        self._current = (index, data)
        if index + 1 < len(self._sizes):
            ahead = asyncio.ensure_future(self._fetch(index + 1))
            ahead.add_done_callback(_consume)
            self._ahead = (index + 1, ahead)
        return data

    async def _fetch(self, index: int) -> bytes:
        try:
            return await self._owner._part(
                self.name, self._directory, self.version, self._manifest, index
            )
        except _Gone:
            raise CorruptDataError(
                "artifact was deleted while it was being read",
                key=self.name,
                path=self._directory + _version_name(self.version),
            ) from None

    def _account(self, position: int, piece: bytes) -> None:
        if position <= self._hashed < position + len(piece):
            self._hasher.update(piece[self._hashed - position :])
            self._hashed = position + len(piece)
            if self._hashed == self.size and not self._verified:
                self._verified = True
                if self._hasher.hexdigest() != self.sha256:
                    raise CorruptDataError(
                        "artifact sha256 mismatch",
                        key=self.name,
                        path=self._directory + _version_name(self.version),
                    )


class ArtifactFile(io.RawIOBase):
    """The blocking face of :class:`AsyncArtifactReader`: a readable, seekable binary file."""

    def __init__(self, reader: AsyncArtifactReader, run: Callable[[Any], Any]) -> None:
        super().__init__()
        self._reader = reader
        self._run = run
        self.name = reader.name
        self.version = reader.version
        self.size = reader.size
        self.mime_type = reader.mime_type
        self.metadata = reader.metadata
        self.sha256 = reader.sha256
        self.created_at = reader.created_at

    def __repr__(self) -> str:
        return f"<ArtifactFile {self.name!r} v{self.version} {self.size} bytes>"

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data: bytes = self._run(self._reader.read(len(view)))
        view[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        data: bytes = self._run(self._reader.read(-1))
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        position: int = self._run(self._reader.seek(offset, whence))
        return position

    def tell(self) -> int:
        return self._reader.tell()

    def close(self) -> None:
        # Never waits for the loop: close also runs from __del__ and at interpreter exit.
        self._reader.release()
        super().close()
