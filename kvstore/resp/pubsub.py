"""Pub/sub among one ``kvstore serve`` process's clients: SUBSCRIBE, PSUBSCRIBE,
UNSUBSCRIBE, PUNSUBSCRIBE, PUBLISH and PUBSUB CHANNELS/NUMSUB/NUMPAT.

What it is: Redis's fire-and-forget delivery, in memory, to the subscribers connected to
*this* server - a message goes to every subscriber of its channel and of every matching
pattern, in the order published, as a RESP3 push (or a RESP2 array). What it is not: it
does not cross servers (a subscriber on another ``kvstore serve`` process receives
nothing), it stores nothing in the object store, and a message published while nobody
listens is lost, as in Redis. A subscriber that does not read its messages is disconnected
once ``OUTPUT_LIMIT`` bytes wait for it (Redis's ``client-output-buffer-limit pubsub``).

Tenants: a user confined to a namespace publishes and subscribes within it - its channel
``news`` is not another tenant's ``news``.
"""

from __future__ import annotations

import collections
from typing import Any, Protocol

from ..commands.glob import matches

OUTPUT_LIMIT = 32 * 1024 * 1024


class Subscriber(Protocol):
    def deliver(self, message: list[Any]) -> None: ...


class Hub:
    """Who listens to what, across one server's connections."""

    def __init__(self) -> None:
        # (namespace, channel) -> subscribers; (namespace, pattern) -> subscribers
        self.channels: dict[tuple[str | None, bytes], set[Subscriber]] = collections.defaultdict(
            set
        )
        self.patterns: dict[tuple[str | None, bytes], set[Subscriber]] = collections.defaultdict(
            set
        )

    def subscribe(self, who: Subscriber, space: str | None, channel: bytes) -> None:
        self.channels[space, channel].add(who)

    def unsubscribe(self, who: Subscriber, space: str | None, channel: bytes) -> None:
        _discard(self.channels, (space, channel), who)

    def psubscribe(self, who: Subscriber, space: str | None, pattern: bytes) -> None:
        self.patterns[space, pattern].add(who)

    def punsubscribe(self, who: Subscriber, space: str | None, pattern: bytes) -> None:
        _discard(self.patterns, (space, pattern), who)

    def publish(self, space: str | None, channel: bytes, message: bytes) -> int:
        """Deliver to every subscriber of ``channel`` and of each matching pattern; the
        number of deliveries (Redis's PUBLISH reply)."""
        count = 0
        for who in list(self.channels.get((space, channel), ())):
            who.deliver([b"message", channel, message])
            count += 1
        for (where, pattern), subscribers in list(self.patterns.items()):
            if where == space and matches(pattern, channel):
                for who in list(subscribers):
                    who.deliver([b"pmessage", pattern, channel, message])
                    count += 1
        return count

    def active(self, space: str | None, pattern: bytes | None) -> list[bytes]:
        """PUBSUB CHANNELS: the channels with subscribers (matching ``pattern``)."""
        return sorted(
            channel
            for (where, channel), subscribers in self.channels.items()
            if where == space and subscribers and (pattern is None or matches(pattern, channel))
        )

    def numsub(self, space: str | None, channel: bytes) -> int:
        return len(self.channels.get((space, channel), ()))

    def numpat(self, space: str | None) -> int:
        return sum(1 for (where, _), subs in self.patterns.items() if where == space and subs)


def _discard(
    table: dict[tuple[str | None, bytes], set[Subscriber]],
    slot: tuple[str | None, bytes],
    who: Subscriber,
) -> None:
    subscribers = table.get(slot)
    if subscribers is not None:
        subscribers.discard(who)
        if not subscribers:
            del table[slot]
