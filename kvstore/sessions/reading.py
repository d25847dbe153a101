"""Reading a session's events from its log (:mod:`kvstore.logs`), whole or not at all."""

from __future__ import annotations

from ..errors import CorruptDataError
from ..layout import SESSION_EVENTS_KEY
from ..logs import Logs
from .model import Event, decode_event


async def read_events(
    logs: Logs, where: str, start: int, end: int
) -> dict[int, tuple[Event, bytes]]:
    """Events ``[start, end)`` of a session's log (``where``: its path, for errors), each
    with its record. ``end`` is at most the head's ``applied`` or a tail the log reported,
    so every one of them is durable: a cached plan of the log older than that ends early,
    and the read plans again from a new listing; still short, the log is damaged
    (CorruptDataError). Costs a LIST and a GET per 1024 events cold (settled logs)."""
    for fresh in (False, True):
        first, records = await logs.read_from(SESSION_EVENTS_KEY, start, end - start, fresh)
        if first == start and len(records) == end - start:
            seqs = range(start, end)
            return {s: (decode_event(s, r, where), r) for s, r in zip(seqs, records, strict=True)}
    raise CorruptDataError(f"events [{start}, {end}) of the session are missing", path=where)
