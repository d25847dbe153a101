"""AsyncArtifacts: save, load, open, info, versions, versions_info, list, delete, url - on
one store context.

Guarantees:

* **No lost versions.** A version is claimed with a conditional create of its manifest
  (docs/architecture.md, invariant 3). A saver that loses the race lists the directory
  once and claims the next free number; the parts it already uploaded are reused, never
  sent twice. Any number of savers in any number of processes or machines get distinct
  versions.
* **Durable and atomic.** ``save`` returns after the manifest is acknowledged; a version
  is visible whole or not at all (its parts are written before the manifest that names
  them).
* **Immutable and never reused.** A version's content never changes. ``delete`` replaces
  the manifest by a small tombstone and adds a ``.deleted`` marker that listings see, so a
  deleted number is never claimed again.
* **Verified.** Every object carries a CRC; the sha256 of the data is checked on every
  ``load`` and at the end of a sequential read through ``open``. ``info`` and
  ``versions_info`` read only a manifest's header and metadata, each with its own CRC. A
  raw version's object (``save(..., raw=True)``: no envelope) is checked against what its
  manifest says of it: size, CRC-32 of the whole and of each block (:mod:`.raw`).
* **URLs only of raw versions.** ``url`` presigns a GET of a raw version's object, so the
  file itself is served (S3; GCS with a service account's key).
* **Bounded memory for streams.** ``save`` of a file object or path, and reading through
  ``open``, hold a few parts at a time whatever the artifact's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import secrets
from collections.abc import Sequence
from typing import Any, NoReturn

from .. import aio, codec
from ..blob.base import AmbiguousWriteError
from ..context import StoreContext
from ..errors import ConfigurationError, CorruptDataError, UnsupportedOperationError
from ..layout import parse_version_leaf
from . import limits
from .manifest import (
    FORMAT,
    Artifact,
    ArtifactInfo,
    Manifest,
    check_metadata,
    check_mime,
    check_version,
    is_compressed_type,
    tombstone,
)
from .manifest import encode as encode_manifest
from .raw import RawReads, prepare
from .reader import AsyncArtifactReader, Gone
from .sources import Source, chain
from .versions import Versions


class AsyncArtifacts:
    """The artifact operations of one store view (the root or a namespace)."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx
        self._versions = Versions(ctx)
        self._raw = RawReads(ctx)

    def __repr__(self) -> str:
        return f"<AsyncArtifacts of {self.ctx.blob.url}/{self.ctx.layout.base}>"

    # -- listing -----------------------------------------------------------------------------

    async def versions(self, name: str) -> list[int]:
        """The artifact's live versions, ascending ([] if none). One LIST."""
        _, directory = self._versions.dir(name)
        live, _ = await self._versions.scan(directory)
        return live

    async def versions_info(self, name: str) -> list[ArtifactInfo]:
        """Every live version's info (``ArtifactInfo``: no data), oldest first ([] if none):
        ADK's ``list_artifact_versions``.

        Verified as :meth:`info`. Costs one LIST, plus one ranged GET of each version the
        cache does not hold (see :meth:`info`), at most ``concurrency`` at a time; one cache
        lookup for all. No data is downloaded.
        """
        key, directory = self._versions.dir(name)
        live, _ = await self._versions.scan(directory)
        infos = await self._versions.infos(key, directory, live)
        return [info for info in infos if info is not None]  # None: deleted since the LIST

    async def list(self, prefix: str = "") -> list[str]:
        """Names of the artifacts that have a live version and start with ``prefix``, sorted.

        Pages through the listing of every version object below the prefix (one LIST per
        1000 objects on S3/GCS).
        """
        layout = self.ctx.layout
        live: set[tuple[str, int]] = set()
        deleted: set[tuple[str, int]] = set()
        async for page in self.ctx.blob.list_pages(layout.artifact_prefix(prefix)):
            for path in page:
                encoded, leaf = layout.split_artifact_path(path)
                found = parse_version_leaf(leaf)
                if found is not None:
                    (deleted if found[1] else live).add((encoded, found[0]))
        names = set()
        for encoded, _ in live - deleted:
            try:
                names.add(layout.key_of(encoded))
            except ValueError:
                self.ctx.stats.add("foreign_objects")
        return sorted(names)

    # -- reading -----------------------------------------------------------------------------

    async def info(self, name: str, version: int | None = None) -> ArtifactInfo | None:
        """The artifact's version (None = the latest) described without its data: name,
        version, mime type, metadata, size, sha256 and creation time; None if there is none
        (deleted or never saved).

        Verified: the manifest's header and metadata checksums and its binding to the
        version's path (the data is not read, so its sha256 is checked by ``load`` and
        ``open``, not here). Costs nothing when the cache holds the version's manifest or
        info; else one ranged GET of the manifest's first 4 KiB
        (``limits.INFO_HEAD``), a second one of exactly its header and metadata when the
        user metadata is larger, or one whole GET for a manifest saved before kvstore
        wrote metadata checksums. For the latest, one LIST more when the cache has no fresh
        pointer (as ``load``).
        """
        key, directory = self._versions.dir(name)
        if version is None:
            found = await self._versions.latest(key, directory, self._versions.info)
            return None if found is None else found[1]
        return await self._versions.info(key, directory, check_version(version))

    async def _resolve(
        self, name: str, version: int | None
    ) -> tuple[str, str, int, Manifest] | None:
        key, directory = self._versions.dir(name)
        if version is None:
            found = await self._versions.latest(key, directory, self._versions.manifest)
            if found is None:
                return None
            return key, directory, found[0], found[1]
        version = check_version(version)
        manifest = await self._versions.manifest(key, directory, version)
        return None if manifest is None else (key, directory, version, manifest)

    async def _missing(
        self, key: str, directory: str, version: int, path: str, what: str
    ) -> NoReturn:
        """An object a version names is missing: :class:`Gone` if the version was deleted
        meanwhile (one GET of its manifest, not cached), else CorruptDataError."""
        if await self._versions.manifest(key, directory, version, cached=False) is None:
            raise Gone
        raise CorruptDataError(f"artifact {what} is missing", key=key, path=self.ctx.where(path))

    async def _part(
        self, key: str, directory: str, version: int, manifest: Manifest, index: int
    ) -> bytes:
        """Piece ``index`` of a version, verified: a part (one GET), or a raw object's
        block (one ranged GET); CorruptDataError if it is missing while the version still
        exists, :class:`Gone` if the version was deleted meanwhile."""
        if manifest.raw is not None:
            path = self.ctx.layout.raw(directory, manifest.upload)
            block = await self._raw.block(path, manifest.raw, index, key)
            if block is None:
                await self._missing(key, directory, version, path, "raw object")
            return block
        assert manifest.parts is not None
        path = self.ctx.layout.part(directory, manifest.upload, index)
        blob = await self.ctx.blob.get(path)
        if blob is None:
            await self._missing(key, directory, version, path, "part")
        where = self.ctx.where(path)
        env = await asyncio.to_thread(codec.decode, blob.data, key=key, path=where, bound=path)
        data = env.payload
        if len(data) != manifest.parts[index]:
            raise CorruptDataError("artifact part has the wrong size", key=key, path=where)
        return data

    async def _data(self, key: str, directory: str, version: int, manifest: Manifest) -> bytes:
        """A version's whole data: inline, its raw object (one GET), or its parts fetched
        concurrently."""
        if manifest.raw is not None:
            path = self.ctx.layout.raw(directory, manifest.upload)
            data = await self._raw.whole(path, manifest.raw, key)
            if data is None:
                await self._missing(key, directory, version, path, "raw object")
            return data
        if manifest.parts is None:
            return manifest.inline
        count = len(manifest.parts)
        parts = [self._part(key, directory, version, manifest, i) for i in range(count)]
        return b"".join(await aio.bounded(parts, limits.PART_CONCURRENCY))

    async def load(self, name: str, version: int | None = None) -> Artifact | None:
        """The artifact's version (None = the latest), whole, or None if there is none.

        Verified: every object's CRC (a raw version's object: its size and CRC-32, against
        the manifest), and the sha256 of the whole data. Costs one GET (none when cached)
        for a given version, plus one LIST for the latest when the cache has no fresh
        pointer, plus one GET per part for a large artifact (fetched concurrently), or one
        GET of a raw version's object.
        """
        for _ in range(limits.RETRIES):
            found = await self._resolve(name, version)
            if found is None:
                return None
            key, directory, number, manifest = found
            try:
                data = await self._data(key, directory, number, manifest)
            except Gone:
                continue
            if hashlib.sha256(data).hexdigest() != manifest.sha256:
                path = self.ctx.where(self.ctx.layout.version(directory, number))
                raise CorruptDataError("artifact sha256 mismatch", key=key, path=path)
            info = manifest.info(key, number)
            return Artifact(**vars(info), data=data)
        return None

    async def open(self, name: str, version: int | None = None) -> AsyncArtifactReader | None:
        """A reader over the artifact's version (None = the latest), or None if there is none.

        Memory stays bounded by a few parts whatever the size. Every part is CRC-checked (a
        raw version is read in blocks of ``limits.RAW_BLOCK`` bytes, one ranged GET each,
        each checked against its CRC-32 in the manifest); a sequential read to the end
        also checks the sha256 (CorruptDataError at the end).
        """
        found = await self._resolve(name, version)
        if found is None:
            return None
        key, directory, number, manifest = found

        async def fetch_part(index: int) -> bytes:
            return await self._part(key, directory, number, manifest, index)

        path = self.ctx.where(self.ctx.layout.version(directory, number))
        inline = manifest.inline if manifest.parts is None and manifest.raw is None else None
        info = manifest.info(key, number)
        return AsyncArtifactReader(info, manifest.pieces(), path, fetch_part, inline)

    async def url(
        self,
        name: str,
        version: int | None = None,
        expires: float | datetime.timedelta = 3600,
    ) -> str | None:
        """A presigned URL that GETs the artifact's version (None = the latest) straight
        from the object store - a browser or another service needs no credentials - for
        ``expires`` (seconds, or a ``timedelta``; more than 0, at most 7 days; rounded up
        to a whole second); None if there is no such version.

        Only a version saved with ``raw=True`` is stored as the file itself; any other
        raises UnsupportedOperationError (save it with raw=True). The answer's
        ``Content-Type`` is the version's mime type.

        What the URL reveals: anyone who holds it can GET that one object - the version's
        bytes - until it expires (nothing else: no other object, no listing, no write),
        and it names the bucket, the object's path (the artifact's name, encoded) and the
        signer (S3: its access key id; GCS: the service account). It cannot be revoked
        before it expires, except by deleting the version (its raw object goes with it)
        or the signing key; on S3 with temporary credentials (a role, STS) it stops
        working when they expire, if that comes first. kvstore does not check the data a
        URL serves: the reader gets the object's bytes unverified (``sha256`` in ``info``
        lets them check).

        Backends: S3 (SigV4 by the store's own client: its credentials, endpoint, region);
        GCS with a service account's private key (other credentials:
        UnsupportedOperationError saying so); local disk and memory:// have no server to
        serve a URL (UnsupportedOperationError before any request).

        Costs the manifest's GET (none when cached), plus one LIST for the latest when the
        cache has no fresh pointer (as ``load``); signing makes no request (counted as
        ``signatures``). It does not check that the raw object is still there (``load``
        and fsck do).
        """
        self._versions.dir(name)  # the arguments, then the backend: before any request
        if version is not None:
            check_version(version)
        lifetime = self.ctx.blob.url_lifetime(expires)
        found = await self._resolve(name, version)
        if found is None:
            return None
        key, directory, number, manifest = found
        if manifest.raw is None:
            raise UnsupportedOperationError(
                f"artifact {key!r} version {number} was not saved raw: its objects are "
                "kvstore's envelopes, not the file, so no URL can serve it - save it with "
                "raw=True to get a URL"
            )
        path = self.ctx.layout.raw(directory, manifest.upload)
        return await self.ctx.blob.sign_url(path, lifetime, content_type=manifest.mime_type)

    # -- writing -----------------------------------------------------------------------------

    async def save(
        self,
        name: str,
        data: Any,
        mime_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        raw: bool = False,
    ) -> int:
        """Store a new version and return its number (0, 1, 2, ...).

        ``data``: bytes, str (stored as UTF-8, text mime type by default), a binary file
        object, a ``pathlib.Path`` or an async iterable of bytes (an HTTP request's body):
        the last three streamed - memory stays bounded by a few parts.
        ``mime_type``: by default ``text/plain; charset=utf-8`` for str, else guessed from
        the file's or the artifact's name (``chart.png``: ``image/png``), else
        ``application/octet-stream``; already-compressed types are stored uncompressed.
        ``metadata``: a dict of JSON-like values (and bytes), returned as it was given.
        ``raw``: store the data byte for byte - uncompressed, no envelope - as one object
        beside the manifest, so :meth:`url` can hand out a presigned URL of it. Its data is
        held in memory whole (a file or path is read whole): at most
        ``limits.RAW_MAX_BYTES`` (512 MiB), else ConfigurationError before anything is
        written. Its manifest verifies it (size, CRC-32s, sha256) on every read.

        Durable and atomic on return. Costs one conditional PUT when this process (or the
        cache's pointer) knows the latest version, one LIST more otherwise or after losing
        a race, plus one PUT per part for data above ``limits.PART_SIZE`` - or, raw, one
        PUT of the object whatever its size.
        """
        key, directory = self._versions.dir(name)
        if not isinstance(raw, bool):
            raise ConfigurationError(f"raw must be True or False, not {raw!r}")
        source = Source(data, key)
        mime = check_mime(mime_type) if mime_type is not None else source.default_mime
        user = check_metadata(metadata)
        # The version is claimed by a conditional create: refuse now, before any part is
        # written, on a store that cannot make one (or whose server ignores it).
        await self.ctx.blob.require("atomic_create")
        if raw:
            if self.ctx.blob.encrypted:
                raise UnsupportedOperationError(
                    "raw=True keeps a file byte for byte for presigned URLs; an encrypted "
                    "store seals every object and makes no URL: save it without raw"
                )
            return await self._save_raw(key, directory, source, mime, user)
        compress: bool | None = False if is_compressed_type(mime) else None
        upload = secrets.token_hex(12)
        digest = hashlib.sha256()
        sizes: list[int] = []
        inline = b""
        pending: set[asyncio.Task[str]] = set()
        part_size = limits.PART_SIZE
        try:
            whole = source.whole
            if whole is not None and len(whole) <= part_size:
                inline = whole
                digest.update(whole)
            else:
                blocks = aiter(source.blocks())
                first = await anext(blocks, b"")
                ahead = await anext(blocks, b"") if len(first) == part_size else b""
                if not ahead:  # at most PART_SIZE bytes in all: the manifest holds them
                    inline = first
                    digest.update(first)
                else:
                    head, first, ahead = [first, ahead], b"", b""  # only chain() holds them
                    async for block in chain(head, blocks):
                        digest.update(block)
                        path = self.ctx.layout.part(directory, upload, len(sizes))
                        sizes.append(len(block))
                        put = self._put_part(path, block, compress)
                        pending.add(asyncio.ensure_future(put))
                        del block
                        while len(pending) >= limits.PART_CONCURRENCY:
                            pending = await _reap(pending)
                    while pending:
                        pending = await _reap(pending)
            size = sum(sizes) if sizes else len(inline)
            meta = self._meta(mime, user, size, digest.hexdigest(), upload)
            if sizes:
                meta["parts"] = sizes
            version = await self._versions.next_free(directory)
            path = self.ctx.layout.version(directory, version)
            manifest = encode_manifest(inline, meta, path, compress)
            return await self._claim(key, directory, manifest, upload, version)
        except BaseException:
            for task in pending:
                task.cancel()
            if sizes:
                paths = [self.ctx.layout.part(directory, upload, i) for i in range(len(sizes))]
                aio.detach(self._discard(paths))
            raise

    def _meta(
        self, mime: str, user: dict[str, Any], size: int, sha256: str, upload: str
    ) -> dict[str, Any]:
        """A manifest's metadata (the fields every version has)."""
        return {
            "f": FORMAT,
            "mime": mime,
            "user": user,
            "size": size,
            "sha256": sha256,
            "created": self.ctx.clock(),
            "upload": upload,
        }

    async def _save_raw(
        self, key: str, directory: str, source: Source, mime: str, user: dict[str, Any]
    ) -> int:
        """A raw save: the data whole (refused above the limit before any write), one PUT
        of it as is, then the manifest's claim, which describes it (:mod:`.raw`)."""
        data, raw, sha256 = await prepare(source)
        upload = secrets.token_hex(12)
        path = self.ctx.layout.raw(directory, upload)
        self.ctx.check(path)
        try:
            await self.ctx.blob.put(path, data)
            del data
            meta = self._meta(mime, user, raw.size, sha256, upload)
            meta["raw"] = raw.to_meta()
            version = await self._versions.next_free(directory)
            manifest_path = self.ctx.layout.version(directory, version)
            manifest = encode_manifest(b"", meta, manifest_path, None)
            return await self._claim(key, directory, manifest, upload, version)
        except BaseException:
            aio.detach(self._discard([path]))  # (it may have landed: unreferenced either way)
            raise

    async def _put_part(self, path: str, block: bytes, compress: bool | None) -> str:
        envelope = await asyncio.to_thread(codec.encode, block, compress=compress, bind=path)
        return await self.ctx.blob.put(path, envelope)

    async def _discard(self, paths: Sequence[str]) -> None:
        """Best effort: remove the parts of a save that failed (they are unreferenced)."""
        for path in paths:
            with contextlib.suppress(Exception):
                await self.ctx.blob.delete(path)

    async def _claim(
        self, key: str, directory: str, manifest: bytes, upload: str, version: int
    ) -> int:
        """Create the manifest (bound to ``version``) at the first free version from
        ``version`` on; the version number.

        A create that finds the version taken checks whether the manifest there is its own
        (the upload id): when a response is lost, the client library (botocore, gcsfs)
        retries by itself and reports the retry's "already exists" - without the check the
        same data would be saved again as the next version."""
        pointer = self._versions.pointer_key(directory)
        for _ in range(limits.MAX_CLAIMS):
            path = self.ctx.layout.version(directory, version)
            self.ctx.check(path)

            async def create(path: str = path, manifest: bytes = manifest) -> bool:
                try:
                    if await self.ctx.blob.put_if_absent(path, manifest) is not None:
                        return True
                except AmbiguousWriteError:
                    pass
                return await self._is_ours(key, path, upload)

            if await self.ctx.commit([pointer], create):
                self._versions.known.learn(directory, version)
                return version
            self.ctx.stats.add("artifacts.claim_conflicts")
            version = max(version + 1, (await self._versions.scan(directory))[1] + 1)
            manifest = codec.rebind(manifest, self.ctx.layout.version(directory, version))
        raise AssertionError("unreachable: a claim kept losing")  # pragma: no cover

    async def _is_ours(self, key: str, path: str, upload: str) -> bool:
        """Whether the manifest at ``path`` is the one this save wrote (one GET)."""
        blob = await self.ctx.blob.get(path)
        if blob is None:
            return False
        try:
            meta = self._versions.decode(blob.data, key, path).meta or {}
        except CorruptDataError:
            return False  # not ours: ours is intact; the reader of that version reports it
        return meta.get("upload") == upload

    async def delete(self, name: str, version: int | None = None) -> int:
        """Delete one version, or all of them; the number of versions removed.

        A deleted version reads as missing at once; its number is never reused (a
        ``.deleted`` marker stays in the listing and a tombstone in place of the manifest).
        """
        key, directory = self._versions.dir(name)
        if version is not None:
            targets = [check_version(version)]
        else:
            targets, _ = await self._versions.scan(directory)
        removed = await aio.bounded(
            [self._delete_version(key, directory, n) for n in targets], self.ctx.concurrency
        )
        return sum(removed)

    async def _delete_version(self, key: str, directory: str, version: int) -> bool:
        """Bury one version: a tombstone over its manifest (it reads as missing at once),
        then the ``.deleted`` marker (listings stop showing it), then its parts or its raw
        object. A version
        found already buried has its marker written again, which finishes a delete that
        failed halfway. A damaged manifest is buried too (its parts, unknown, stay)."""
        layout = self.ctx.layout
        path = layout.version(directory, version)
        blob = await self.ctx.blob.get(path)
        if blob is None:
            return False
        objects: list[str] = []  # its parts, or its raw object
        try:
            manifest = Manifest.parse(self._versions.decode(blob.data, key, path), key, path)
        except CorruptDataError:
            self.ctx.stats.add("artifacts.corrupt_deleted")
            alive = True
        else:
            alive = manifest is not None
            if manifest is not None and manifest.parts is not None:
                count = len(manifest.parts)
                objects = [layout.part(directory, manifest.upload, i) for i in range(count)]
            elif manifest is not None and manifest.raw is not None:
                objects = [layout.raw(directory, manifest.upload)]

        async def bury() -> None:
            if alive:
                await self.ctx.blob.put(path, tombstone(path))
            marker = layout.deleted_marker(directory, version)
            await self.ctx.blob.put(marker, tombstone(marker))

        stale = [path, self._versions.info_key(path), self._versions.pointer_key(directory)]
        await self.ctx.commit(stale, bury)
        drops = [self.ctx.blob.delete(path) for path in objects]
        await aio.bounded(drops, self.ctx.concurrency)
        return alive


async def _reap(pending: set[asyncio.Task[str]]) -> set[asyncio.Task[str]]:
    """Wait for at least one task; raise the first failure."""
    done, rest = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        task.result()
    return rest
