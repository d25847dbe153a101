"""Finding versions: names, listings, manifests (cached) and the latest-version pointer.

* **Manifests** never change once written (a delete replaces one by a tombstone and
  invalidates it), so they are cached under the stale-fill guard; tombstones are not.
* **Latest without listing when possible.** ``latest`` uses the pointer kept in the cache
  (``{art dir}latest``: invalidated by every save and delete, refilled under the guard),
  and one LIST otherwise. A process never reads a version older than one it saved or saw
  itself (:class:`KnownVersions`).
"""

from __future__ import annotations

from collections import OrderedDict

from .. import codec
from ..context import Loaded, StoreContext, each
from ..keys import key_str
from ..layout import parse_version_leaf
from . import limits
from .manifest import Manifest


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

    async def latest(self, key: str, directory: str) -> tuple[int, Manifest] | None:
        """The newest live version and its manifest: the cached pointer if it is fresh and
        not older than what this process knows, else one LIST."""
        pointer_key = self.pointer_key(directory)
        for _ in range(limits.RETRIES):
            found: dict[int, Manifest] = {}

            async def find(
                _: list[int], found: dict[int, Manifest] = found
            ) -> list[Loaded[int | None]]:
                live, _highest = await self.scan(directory)
                for version in reversed(live):  # past tombstones of half-finished deletes
                    manifest = await self.manifest(key, directory, version)
                    if manifest is not None:
                        found[version] = manifest
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
            manifest = found.get(version) or await self.manifest(key, directory, version)
            if manifest is not None:
                return version, manifest
            await self.ctx.invalidate([self.pointer_key(directory)])  # a stale pointer
        return None

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
