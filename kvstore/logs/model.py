"""The log's pure model: which objects hold which records (no I/O here).

A log directory holds chunks ``c/{first}``, segments ``s/{first}-{end}`` and marks
``m/{at}`` (:mod:`kvstore.layout`). :func:`cover` turns a listing into the pieces that hold
the live records, in order - O(n log n) in the number of objects, so a log of many young
chunks is planned in milliseconds.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from .. import codec
from ..errors import CorruptDataError
from ..layout import Chunk, Lost, Mark, Segment, is_lost_name, is_segment_name, parse_log_name
from . import limits


class Replan(Exception):
    """No object holds records ``[start, end)`` although later ones exist: the listing
    raced a compaction (plan again) - or, if it persists, the object holding them is lost."""

    def __init__(self, start: int, end: int) -> None:
        super().__init__(f"no object holds records [{start}, {end})")
        self.start = start
        self.end = end


@dataclass(frozen=True)
class Piece:
    """One object of a log and the records ``[start, end)`` read from it; ``end`` None =
    unknown (last chunk). ``skip``: records at the object's beginning that are not part of
    the piece (a segment that starts below the previous piece's end, see cover)."""

    name: str  # relative to the log's directory: c/..., s/...
    start: int
    end: int | None
    skip: int = 0

    @property
    def count(self) -> int:
        """The records the object holds, if the plan is right (end known)."""
        return self.skip + (self.end if self.end is not None else self.start) - self.start

    @property
    def segment(self) -> bool:
        return is_segment_name(self.name)

    @property
    def lost(self) -> bool:
        """Records ``fsck --repair`` marked as lost: reading them raises."""
        return is_lost_name(self.name)


@dataclass(frozen=True)
class Plan:
    """Which objects hold the log's live records ``[first, tail)``, in order."""

    mark: int
    pieces: tuple[Piece, ...]
    tail: int
    names: tuple[str, ...]  # every object of the log, for cleanup

    @property
    def first(self) -> int:
        return max(self.mark, self.pieces[0].start) if self.pieces else self.tail

    @property
    def length(self) -> int:
        return max(0, self.tail - self.first)

    def to_bytes(self) -> bytes:
        pieces = [[p.name, p.start, p.end, p.skip] for p in self.pieces]
        return bytes(msgpack.packb([self.mark, pieces, self.tail, list(self.names)]))

    @classmethod
    def from_bytes(cls, data: bytes) -> Plan:
        """A plan from the cache; raises on anything that is not one (a damaged entry)."""
        mark, pieces, tail, names = msgpack.unpackb(data)
        plan = cls(mark, tuple(Piece(*p) for p in pieces), tail, tuple(names))
        if not isinstance(plan.mark, int) or not isinstance(plan.tail, int):
            raise ValueError("not a log plan")
        return plan


@dataclass
class Listing:
    """A log directory's objects, typed and sorted: chunks by first record, segments by
    (first, end), the highest mark."""

    chunks: list[Chunk]
    segments: list[Segment | Lost]  # lost ranges cover positions like segments do
    mark: int
    marks: list[Mark]

    @classmethod
    def parse(cls, names: Sequence[str]) -> Listing:
        chunks: list[Chunk] = []
        segments: list[Segment | Lost] = []
        marks: list[Mark] = []
        for name in names:
            found = parse_log_name(name)
            if isinstance(found, Chunk):
                chunks.append(found)
            elif isinstance(found, (Segment, Lost)):
                segments.append(found)
            elif isinstance(found, Mark):
                marks.append(found)
            # anything else is not ours: ignored
        chunks.sort(key=lambda c: c.first)
        segments.sort(key=lambda s: (s.first, s.end))
        mark = max((m.at for m in marks), default=0)
        return cls(chunks, segments, mark, marks)

    def starts(self) -> list[int]:
        """Every object's first record, ascending, without repeats."""
        return sorted({c.first for c in self.chunks} | {s.first for s in self.segments})


def cover(names: Sequence[str]) -> tuple[int, list[Piece]]:
    """(mark, the pieces covering the log from its first live record to its tail).

    Segments win over chunks where both cover a position; a chunk's end is the next
    object's start (chunks are contiguous; a compacted run is replaced by a segment that
    starts where the run did). The walk starts at the highest mark; any gap above it means
    the listing raced a compaction and raises Replan. Each piece starts where the previous
    one ended: segments cut by compactions with different views (one planned before a trim,
    one after) can overlap without one holding the other, and are then read from the
    walk's position on (``skip``), never from their own start.

    Cost: O(n log n) for n objects. The walk's position only grows, so the segment that
    reaches furthest among those starting at or below it is a running maximum, and chunk
    and start look-ups are bisections.
    """
    listing = Listing.parse(names)
    chunk_firsts = [c.first for c in listing.chunks]
    starts = listing.starts()
    segments = listing.segments
    pieces: list[Piece] = []
    pos = listing.mark
    seen = 0  # segments[:seen] start at or below pos
    best: Segment | Lost | None = None  # among them, the one reaching furthest (first such)
    while True:
        while seen < len(segments) and segments[seen].first <= pos:
            if best is None or segments[seen].end > best.end:
                best = segments[seen]
            seen += 1
        if best is not None and best.end > pos:
            skip = pos - best.first if pieces else 0  # the first piece may start below the mark
            pieces.append(Piece(best.name, best.first + skip, best.end, skip))
            pos = best.end
            continue
        at = bisect.bisect_right(chunk_firsts, pos)
        if at and (not pieces or chunk_firsts[at - 1] == pos):
            # Past the first piece a chunk must start exactly where the previous piece
            # ended; one starting below is a leftover inside a segment (not yet deleted)
            # whose computed end would be wrong - reading it would repeat records.
            chunk = listing.chunks[at - 1]
            later = bisect.bisect_right(starts, chunk.first)
            end = starts[later] if later < len(starts) else None
            if (end is None and pos < chunk.first + limits.CHUNK_MAX_RECORDS) or (
                end is not None and pos < end
            ):
                pieces.append(Piece(chunk.name, chunk.first, end))
                if end is None:
                    break
                pos = end
                continue
        if starts and starts[-1] > pos:
            # Records above this point exist but nothing holds `pos`: the listing raced a
            # compaction (it saw chunks deleted but not the segment replacing them). A
            # removed prefix always leaves a mark, so this is never a legitimate state.
            raise Replan(pos, next(s for s in starts if s > pos))
        break
    return listing.mark, pieces


def superseded(
    names: Sequence[str], mark: int, tail: int | None
) -> tuple[list[str], list[str], list[str]]:
    """What no reader needs once the log starts at ``mark`` (or a higher mark listed):
    (segments to delete, chunks to delete once old - in log order, lower marks to delete).

    Objects wholly below the mark, chunks that a segment covers (left by an interrupted
    compaction), segments inside bigger ones, and lower marks. O(n log n) for chunks."""
    listing = Listing.parse(names)
    mark = max(mark, listing.mark)
    starts = listing.starts()
    segments = listing.segments

    def chunk_end(first: int) -> int | None:
        later = bisect.bisect_right(starts, first)
        return starts[later] if later < len(starts) else tail

    # reach[i]: the furthest end among segments[:i + 1] (sorted by first): a chunk
    # [a, b) is inside some segment iff the furthest-reaching one starting at or below a
    # reaches b.
    reach: list[int] = []
    for segment in segments:
        reach.append(max(segment.end, reach[-1]) if reach else segment.end)
    firsts = [s.first for s in segments]

    def chunk_covered(a: int, b: int | None) -> bool:
        if b is not None and b <= mark:
            return True
        at = bisect.bisect_right(firsts, a)
        return b is not None and at > 0 and reach[at - 1] >= b

    def segment_covered(segment: Segment | Lost) -> bool:
        if segment.end <= mark:
            return True
        return any(
            other.first <= segment.first and segment.end <= other.end and other is not segment
            for other in segments
        )

    doomed = [s.name for s in segments if segment_covered(s)]
    chunks = [c.name for c in listing.chunks if chunk_covered(c.first, chunk_end(c.first))]
    return doomed, chunks, [m.name for m in listing.marks if m.at < mark]


def encode_records(records: Sequence[bytes], meta: dict[str, Any], bind: str) -> bytes:
    """A segment's envelope: compaction runs off the request path, so it compresses harder."""
    packed = bytes(msgpack.packb(list(records)))
    level = limits.SEGMENT_ZSTD_LEVEL
    return codec.encode(packed, meta=meta, count=len(records), level=level, bind=bind)


def decode_records(env: codec.Envelope, skip: int, take: int) -> list[bytes]:
    """Records ``[skip, skip + take)`` of an object: one C-level unpack of the whole array
    (faster than skipping record by record in Python even for a short tail)."""
    try:
        records = msgpack.unpackb(env.payload, raw=True)
    except Exception as exc:  # a checksummed object that does not parse: not ours
        raise CorruptDataError(f"undecodable log records: {exc}") from exc
    if not isinstance(records, list):
        raise CorruptDataError("undecodable log records: not an array")
    out = records[skip : skip + take]
    if not all(type(record) is bytes for record in out):
        raise CorruptDataError("undecodable log records: a record is not bytes")
    return out


def normalise(start: int, end: int, length: int) -> tuple[int, int] | None:
    """Redis LRANGE indices -> [lo, hi) offsets, or None for an empty range."""
    if start < 0:
        start = max(0, length + start)
    if end < 0:
        end = length + end
    end = min(end, length - 1)
    if start > end or start >= length:
        return None
    return start, end + 1


def shortfall(
    pieces: Sequence[Piece], envs: Sequence[codec.Envelope | None]
) -> tuple[int, int] | None:
    """The first records a listing places in a chunk that the chunk does not hold: a chunk
    whose successor is missing from the listing looks longer than it is. A listing that
    was not a snapshot shows this once; a lost object, in every listing."""
    for piece, env in zip(pieces, envs, strict=True):
        if env is None or piece.end is None or piece.lost or piece.segment:
            continue
        if env.count < piece.count:
            return piece.start + env.count - piece.skip, piece.end
    return None


def as_planned(pieces: Sequence[Piece], envs: Sequence[codec.Envelope | None]) -> bool:
    """Every piece is there and holds the records the plan says (its header's count).

    A listing is not always a snapshot (a local directory read in several batches while
    chunks are deleted): a chunk missing from it makes the chunk before look longer than it
    is. Reading it as planned would skip records; merging it would name a segment wrongly.
    """
    return all(
        piece.lost or (env is not None and (piece.end is None or env.count == piece.count))
        for piece, env in zip(pieces, envs, strict=True)
    )
