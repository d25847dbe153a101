"""The log protocol's numbers, in one place (read at call time, so tests and tuning can
change them: ``kvstore.logs.limits.SEGMENT_RECORDS = ...``)."""

from __future__ import annotations

MIN_AGE_MS = 600_000
"""Chunks younger than this are never deleted (compaction, trim, delete)."""
TAIL_REFRESH_MS = 60_000
"""A writer re-reads the tail (one LIST) when what it knows is older than this."""
CHUNK_MAX_RECORDS = 10_000
"""Records in one chunk, and so in one ``append`` call."""
CHUNK_MAX_BYTES = 8 << 20
SEGMENT_RECORDS = 10_000
SEGMENT_BYTES = 16 << 20
AGE_BATCH = 32
"""Chunks read at once when looking for old ones (compaction, cleanup)."""
SEGMENT_ZSTD_LEVEL = 9
"""Segments are written once, by compaction, off the request path: smaller at little cost."""
AUTO_COMPACT = True
AUTO_COMPACT_CHUNKS = 64
"""A writer compacts in the background after leaving this many chunks older than
MIN_AGE_MS."""
MAX_WRITERS = 4096
"""Logs whose tail a process keeps in memory; idle ones are forgotten."""
IMMUTABLE_TTL = 3600.0
"""How long a cache keeps a chunk or a segment (they never change)."""
TAIL_READ_BYTES = 16 << 10
"""A cold plan reads this much of the tail chunk: the whole chunk when it is smaller."""
MAX_CLAIMS = 1000
"""Slots one append tries before it gives up ("could not claim the tail")."""
REPLANS = 5
"""Plans a read makes before it gives up on a log that keeps changing under it (or, if the
same records are missing from every listing, reports them lost)."""
REPLAN_PAUSE_S = 0.02
"""The first pause before listing again after a gap (doubling each time: 0.6 s in all)."""
POP_CLEANUP_RECORDS = 256
"""Every this many records a process pops from a log (Redis LPOP), it deletes the marks and
chunks below the head that are old enough: each pop leaves a mark, and a plan lists them."""
SETTLE = True
"""Writers cover the young chunks they leave with segments (see Compactor.settle)."""
SETTLE_DELAY_S = 0.5
"""A writer settles a log once it has been idle this long after its last chunk ..."""
SETTLE_CHUNKS = 32
"""... or at once after leaving this many chunks."""
SETTLE_RECORDS = 1024
"""A settled segment holds at most this many records (a longer log gets several): each
settle rewrites the last one, so this bounds what one settle writes."""
SETTLE_BYTES = 1 << 20
"""... and at most this many bytes of records (before compression)."""
SETTLE_READ_CHUNKS = 16
"""A read that needed this many chunks settles the log in the background (a writer that
died before settling leaves them behind)..."""
SETTLE_READ_LEFTOVERS = 256
"""... and so does a read whose listing held this many objects no read needs (chunks a
segment covers, waiting to be old enough to delete: a log written once and then only read
would list them forever) - at most once per ``SETTLE_READ_EVERY_MS`` per log and process."""
SETTLE_READ_EVERY_MS = 300_000
