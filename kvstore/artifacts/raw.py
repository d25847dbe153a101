"""Raw versions: data stored byte for byte as one object, so a presigned URL serves the file.

Every other object kvstore writes is an envelope that verifies itself (a CRC, the path it
belongs to). A raw object cannot carry either, so its *manifest* (an envelope) holds what
verifies it (:class:`~kvstore.artifacts.manifest.RawObject`): the size, a CRC-32 of the
whole object, a CRC-32 of each block of ``limits.RAW_BLOCK`` bytes, and the sha256 as
every manifest does. Every read checks them:

* a whole read (``load``, fsck): the size, the CRC-32 of the whole (then the caller checks
  the sha256);
* a ranged read of one block (``open``): that block's size and CRC-32; the last block's
  read asks for one byte more, so an object longer than its manifest says is caught; the
  sha256 is checked at the end of a sequential read, as for parts.

A raw object that was replaced, truncated, extended, or swapped for another artifact's raw
object fails one of them: CorruptDataError naming the raw object's path.
"""

from __future__ import annotations

import asyncio
import hashlib
import zlib

from ..context import StoreContext
from ..errors import CorruptDataError
from . import limits
from .manifest import RawObject
from .sources import Source


async def prepare(source: Source) -> tuple[bytes, RawObject, str]:
    """A raw save's data (whole, refused above ``limits.RAW_MAX_BYTES`` before anything is
    written), its description and its sha256 (computed off the event loop)."""
    data = await source.read_whole(limits.RAW_MAX_BYTES)

    def describe() -> tuple[RawObject, str]:
        return RawObject.of(data, limits.RAW_BLOCK), hashlib.sha256(data).hexdigest()

    raw, sha256 = await asyncio.to_thread(describe)
    return data, raw, sha256


class RawReads:
    """Verified reads of raw objects (never cached: like parts, they can be large)."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx

    async def whole(self, path: str, raw: RawObject, key: str) -> bytes | None:
        """The object, checked whole (size, CRC-32); None if it is missing. One GET."""
        blob = await self.ctx.blob.get(path)
        if blob is None:
            return None
        data = blob.data
        where = self.ctx.where(path)
        if len(data) != raw.size:
            raise CorruptDataError(
                f"raw artifact object holds {len(data)} bytes, its manifest says {raw.size} "
                "(replaced or truncated)",
                key=key,
                path=where,
            )
        if await _crc32(data) != raw.crc:
            raise CorruptDataError(
                "raw artifact object does not match its manifest's CRC-32 (replaced or damaged)",
                key=key,
                path=where,
            )
        return data

    async def block(self, path: str, raw: RawObject, index: int, key: str) -> bytes | None:
        """Block ``index`` of the object, checked (its size, its CRC-32); None if the object
        is missing. One ranged GET."""
        sizes = raw.blocks()
        size = sizes[index]
        last = index == len(sizes) - 1
        blob = await self.ctx.blob.get_range(path, index * raw.block, size + (1 if last else 0))
        if blob is None:
            return None
        data = blob.data
        where = self.ctx.where(path)
        if len(data) != size:
            more = "more" if len(data) > size else "fewer"
            raise CorruptDataError(
                f"raw artifact object holds {more} bytes than its manifest says "
                f"({raw.size}; block {index} read {len(data)} of {size}): replaced or truncated",
                key=key,
                path=where,
            )
        if await _crc32(data) != raw.crcs[index]:
            raise CorruptDataError(
                f"raw artifact object's block {index} does not match its manifest's CRC-32 "
                "(replaced or damaged)",
                key=key,
                path=where,
            )
        return data


async def _crc32(data: bytes) -> int:
    """The CRC-32 of ``data``; off the event loop when it is large."""
    return zlib.crc32(data) if len(data) < 1 << 20 else await asyncio.to_thread(zlib.crc32, data)
