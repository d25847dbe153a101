"""The artifact store's numbers (read at call time, so tests and tuning can change them:
``kvstore.artifacts.limits.PART_SIZE = ...``)."""

from __future__ import annotations

PART_SIZE = 8 << 20
"""Data above this size is stored as parts of this size (and streamed in them)."""
PART_CONCURRENCY = 4
"""Parts in flight while saving; parts fetched ahead while reading sequentially."""
MAX_KNOWN = 4096
"""Artifact names whose latest version a process remembers."""
MAX_CLAIMS = 10_000
"""Version numbers one save tries before it gives up."""
RETRIES = 5
"""Times a read starts again when the version it found is deleted under it."""
INFO_HEAD = 4 << 10
"""Bytes of a manifest the first ranged read of ``info`` asks for: the header and a
typical metadata fit; larger metadata costs a second read of exactly the rest."""
RAW_MAX_BYTES = 512 << 20
"""The most a raw artifact (``save(..., raw=True)``) holds: it is one object, written by one
PUT, so its data is held in memory whole while it is saved (and by ``load``)."""
RAW_BLOCK = 8 << 20
"""A raw artifact's object is checked in blocks of this size: the manifest holds a CRC-32 of
each, so a ranged read of a block (``open``) is verified on its own. A save records the
block size it used."""
