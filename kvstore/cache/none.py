"""``cache=None``: every read goes to the object store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import Cache, Fill, Lookup


class NoCache(Cache):
    """Caches nothing; always coherent."""

    name = "none"

    async def lookup(self, keys: Sequence[str]) -> Lookup:
        return Lookup([None] * len(keys), None)

    async def fill(self, entries: Sequence[Fill], ticket: Any) -> None:
        return None

    async def invalidate(self, keys: Sequence[str]) -> None:
        return None

    async def put_immutable(self, entries: Sequence[Fill]) -> None:
        return None
