"""Finding versions: names, listings, manifests (cached) and the latest-version pointer.

* **Manifests** never change once written (a delete replaces one by a tombstone and
  invalidates it), so they are cached under the stale-fill guard; tombstones are not.
* **Info without the data.** A version's info (:meth:`Versions.infos`) comes from the
  cached manifest when the cache holds it, else from the cached *info entry*
  (``{version path}.info``: the manifest's first bytes, header and metadata, which verify
  themselves: ``codec.peek_meta``), else from a ranged read of the manifest's first
  ``limits.INFO_HEAD`` bytes (a second read of exactly the header and metadata when they
  are longer; the whole manifest when it was written without the metadata checksum). The
  info entry is filled under the stale-fill guard like a manifest, never for a tombstone,
  and invalidated with the manifest by a delete; a manifest that fits the first read is
  verified whole and cached as the manifest itself.
* **Latest without listing when possible.** ``latest`` uses the pointer kept in the cache
  (``{art dir}latest``: invalidated by every save and delete, refilled under the guard),
  and one LIST otherwise. A process never reads a version older than one it saved or saw
  itself (:class:`KnownVersions`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from .. import aio, codec
from ..context import Loaded, StoreContext, each
from ..keys import key_str
from ..layout import parse_version_leaf
from . import limits
from .manifest import ArtifactInfo, Manifest

T = TypeVar("T")
Read = Callable[[str, str, int], Awaitable[T | None]]
"""What ``latest`` reads of a version: (key, directory, version) -> the item, or None if
the version does not exist or was deleted."""


class KnownVersions:
    """What this process knows of artifact names (per store, shared by its namespaces):
    the highest version number claimed (deleted or not) and the newest live version it
    saved, read or listed; -1 = nothing. At most ``limits.MAX_KNOWN`` names."""

    def __init__(self) -> None:
        self._by_dir: OrderedDict[str, tuple[int, int]] = OrderedDict()

    def get(self, directory: str) -> tuple[int, int]:
        return self._by_dir.get(directory, (-1, -1))

    def learn(self, directory: str, version: int, *, live: int | None = None) -> None:
        """Record that ``version`` exists or existed; ``live`` (from a listing) replaces
        the newest live version, otherwise a live ``version`` raises it."""
        known = self._by_dir
        claimed, newest = known.get(directory, (-1, -1))
        newest = live if live is not None else max(newest, version)
        known[directory] = (max(claimed, version), newest)
        known.move_to_end(directory)
        while len(known) > limits.MAX_KNOWN:
            known.popitem(last=False)


def _pointer(entry: bytes) -> int:
    """A cached latest-version pointer (sealed: a damaged one is told apart)."""
    number = codec.unseal(entry)
    if not number.isdigit():
        raise ValueError("not a version number")
    return int(number)


class Versions:
    """The read side of the artifacts of one store view."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx
        self.known = ctx.state(KnownVersions)

    def dir(self, name: object) -> tuple[str, str]:
        """The artifact's name as str, and its manifest directory (ending in '/')."""
        key = key_str(name, "artifact name")
        self.ctx.check(*self.ctx.layout.longest_artifact_paths(key))
        return key, self.ctx.layout.artifact_dir(key)

    def pointer_key(self, directory: str) -> str:
        return self.ctx.layout.latest_pointer_key(directory)

    def decode(self, data: bytes, key: str, path: str) -> codec.Envelope:
        return codec.decode(data, key=key, path=self.ctx.where(path), bound=path)

    async def scan(self, directory: str) -> tuple[list[int], int]:
        """One listing of a name's directory: its live versions (ascending) and the highest
        version number ever claimed (-1 if none)."""
        numbers: set[int] = set()
        deleted: set[int] = set()
        async for page in self.ctx.blob.list_pages(directory):
            for path in page:
                found = parse_version_leaf(path[len(directory) :])
                if found is None:
                    self.ctx.stats.add("foreign_objects")
                    continue
                (deleted if found[1] else numbers).add(found[0])
        highest = max(numbers | deleted, default=-1)
        live = sorted(numbers - deleted)
        self.known.learn(directory, highest, live=live[-1] if live else -1)
        return live, highest

    async def manifest(
        self, key: str, directory: str, version: int, cached: bool = True
    ) -> Manifest | None:
        """A version's manifest: from the cache, else one GET (then cached under the guard).
        None if the version does not exist or was deleted."""
        path = self.ctx.layout.version(directory, version)

        async def get(_: list[int]) -> list[Loaded[Manifest | None]]:
            blob = await self.ctx.blob.get(path)
            if blob is None:
                return [(None, None, 0.0)]
            manifest = Manifest.parse(self.decode(blob.data, key, path), key, path)
            if manifest is None:  # a tombstone: not cached
                self.known.learn(directory, version, live=self.known.get(directory)[1])
                return [(None, None, 0.0)]
            self.known.learn(directory, version)
            return [(manifest, blob.data, self.ctx.cache_ttl)]

        if not cached:
            return (await get([0]))[0][0]

        def parse(entry: bytes) -> Manifest:
            found = Manifest.parse(self.decode(entry, key, path), key, path)
            if found is None:
                raise ValueError("a cached tombstone")
            return found

        (manifest,) = await self.ctx.read_through([path], each(parse), get)
        return manifest

    async def latest(self, key: str, directory: str, read: Read[T]) -> tuple[int, T] | None:
        """The newest live version and what ``read`` reads of it (:meth:`manifest`,
        :meth:`info`): the cached pointer if it is fresh and not older than what this
        process knows, else one LIST."""
        pointer_key = self.pointer_key(directory)
        for _ in range(limits.RETRIES):
            found: dict[int, T] = {}

            async def find(_: list[int], found: dict[int, T] = found) -> list[Loaded[int | None]]:
                live, _highest = await self.scan(directory)
                for version in reversed(live):  # past tombstones of half-finished deletes
                    item = await read(key, directory, version)
                    if item is not None:
                        found[version] = item
                        return [(version, codec.seal(b"%d" % version), self.ctx.cache_ttl)]
                return [(None, None, 0.0)]

            (version,) = await self.ctx.read_through(
                [pointer_key],
                each(_pointer),
                find,
                usable=lambda v: v >= self.known.get(directory)[1],
            )
            if version is None:
                return None
            item = found.get(version)
            if item is None:
                item = await read(key, directory, version)
            if item is not None:
                return version, item
            await self.ctx.invalidate([self.pointer_key(directory)])  # a stale pointer
        return None

    # -- info: a version's description without its data ------------------------------------

    def info_key(self, path: str) -> str:
        return self.ctx.layout.version_info_key(path)

    async def info(self, key: str, directory: str, version: int) -> ArtifactInfo | None:
        """One version's info (see :meth:`infos`); None if missing or deleted."""
        return (await self.infos(key, directory, [version]))[0]

    async def infos(
        self, key: str, directory: str, versions: Sequence[int]
    ) -> list[ArtifactInfo | None]:
        """The info of each version (None: missing or deleted), without the data: one cache
        lookup of every version's manifest and info entry; for each version the cache has
        neither of, one ranged read (see the module docstring), concurrently (at most
        ``concurrency`` at a time)."""
        if not versions:
            return []
        paths = [self.ctx.layout.version(directory, v) for v in versions]
        names = [name for path in paths for name in (path, self.info_key(path))]

        def unpack(
            entries: Sequence[bytes | None], offset: int
        ) -> tuple[list[ArtifactInfo | None], list[int]]:
            out: list[ArtifactInfo | None] = []
            damaged: list[int] = []
            for i, entry in enumerate(entries):
                item = None
                if entry is not None:
                    try:
                        data, j = entry[offset:], i // 2
                        item = self._cached_info(data, key, versions[j], paths[j])
                    except Exception:
                        damaged.append(i)
                out.append(item)
            return out, damaged

        async def load(misses: list[int]) -> list[Loaded[ArtifactInfo | None]]:
            missed = set(misses)
            read = sorted({i // 2 for i in misses if {i, i ^ 1} <= missed})  # neither cached
            found = await aio.bounded(
                [self._read_info(key, directory, versions[j], paths[j]) for j in read],
                self.ctx.concurrency,
            )
            by_version = dict(zip(read, found, strict=True))
            loaded: list[Loaded[ArtifactInfo | None]] = []
            for i in misses:
                info, entries = by_version.get(i // 2, (None, (None, None)))
                entry = entries[i % 2]
                loaded.append((info, entry, self.ctx.cache_ttl if entry is not None else 0.0))
            return loaded

        out = await self.ctx.read_through(names, unpack, load)
        return [
            out[2 * j] if out[2 * j] is not None else out[2 * j + 1] for j in range(len(versions))
        ]

    def _cached_info(self, entry: bytes, key: str, version: int, path: str) -> ArtifactInfo:
        """A version's info from a cache entry: a whole manifest or an info entry (its first
        bytes). Raises on anything else (a damaged entry: dropped and read again)."""
        where = self.ctx.where(path)
        try:
            meta = codec.peek_meta(entry, key=key, path=where, bound=path)
        except codec.NoMetaChecksum:  # a whole manifest written without the meta CRC
            manifest = Manifest.parse(self.decode(entry, key, path), key, path)
        else:
            if meta is None:
                raise ValueError("a cut info entry")
            manifest = Manifest.from_meta(meta, key, where)
        if manifest is None:
            raise ValueError("a cached tombstone")
        return manifest.info(key, version)

    async def _read_info(
        self, key: str, directory: str, version: int, path: str
    ) -> tuple[ArtifactInfo | None, tuple[bytes | None, bytes | None]]:
        """A version's info from the object store, and what to cache: (the manifest entry,
        the info entry). One ranged read of ``limits.INFO_HEAD`` bytes; a second of exactly
        the header and metadata when they are longer; a whole GET for a manifest without
        the metadata checksum (when the first read did not already hold all of it)."""
        where = self.ctx.where(path)
        asked = limits.INFO_HEAD
        for _ in range(2):  # (a third read only if the object changed between the two)
            head = await self.ctx.blob.get_head(path, asked)
            if head is None:
                return None, (None, None)
            if len(head.data) < asked:  # the whole object: verified whole, cached as such
                return self._whole_info(head.data, key, directory, version, path)
            try:
                meta = codec.peek_meta(head.data, key=key, path=where, bound=path)
            except codec.NoMetaChecksum:
                break
            span = codec.meta_span(head.data, key=key, path=where)
            if meta is not None:
                manifest = Manifest.from_meta(meta, key, where)
                info = self._learn(directory, version, manifest, key)
                return info, (None, None if info is None else head.data[:span])
            asked = span  # the metadata goes on past the first read: read exactly up to its CRC
        whole = await self.ctx.blob.get(path)
        if whole is None:
            return None, (None, None)
        return self._whole_info(whole.data, key, directory, version, path)

    def _whole_info(
        self, data: bytes, key: str, directory: str, version: int, path: str
    ) -> tuple[ArtifactInfo | None, tuple[bytes | None, bytes | None]]:
        manifest = Manifest.parse(self.decode(data, key, path), key, self.ctx.where(path))
        info = self._learn(directory, version, manifest, key)
        return info, (None if info is None else data, None)

    def _learn(
        self, directory: str, version: int, manifest: Manifest | None, key: str
    ) -> ArtifactInfo | None:
        """What a read of a version's manifest teaches (as :meth:`manifest`); its info."""
        if manifest is None:  # a tombstone
            self.known.learn(directory, version, live=self.known.get(directory)[1])
            return None
        self.known.learn(directory, version)
        return manifest.info(key, version)

    async def next_free(self, directory: str) -> int:
        """The version a save should try first: one past what this process knows, else
        one past the cached pointer, else one past the highest listed."""
        version = self.known.get(directory)[0] + 1
        if version > 0:
            return version

        async def none(_: list[int]) -> list[Loaded[int | None]]:
            return [(None, None, 0.0)]  # not worth a LIST here: the caller lists

        pointer_key = self.pointer_key(directory)
        (hit,) = await self.ctx.read_through([pointer_key], each(_pointer), none)
        if hit is not None:
            return hit + 1
        return (await self.scan(directory))[1] + 1
