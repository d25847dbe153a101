"""Records: time-ordered collections of time-stamped, labelled records, partitioned by
time so that a range query reads only the partitions it covers and old data goes a whole
partition at a time. One module per job:

* :mod:`.model` - pure: Record, the partitions' names and spans, a record's encoding;
* :mod:`.store` - AsyncRecords: append, extend, query, partitions, drop_before, purge.

A collection composes the engine's models (a value for its span, a log per partition)
through their classes on a store view of its own; it sits above them, below the faces.
"""

from __future__ import annotations

from .model import SPANS, Record
from .store import AsyncRecords, record_collections

__all__ = ["SPANS", "AsyncRecords", "Record", "record_collections"]
