"""Request counts spent by a block of code: exact where a time is noisy (DESIGN: count
requests, it is what S3 bills)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..stats import Stats


class RequestDelta(dict[str, int]):
    """Counter name -> how much it grew inside the ``with`` block; counters that did not
    change are absent, so ``spent == {"requests.get": 1}`` says "one GET and nothing else".
    Filled when the block exits."""

    @property
    def total(self) -> int:
        """All requests of every kind (the sum of the ``requests.*`` deltas)."""
        return sum(n for name, n in self.items() if name.startswith("requests."))


def _reader(source: Any) -> Callable[[], Mapping[str, Any]]:
    if isinstance(source, Stats):
        return source.snapshot
    stats = getattr(source, "stats", None)  # a KVStore / AsyncKVStore, or a BlobStore
    if isinstance(stats, Stats):
        return stats.snapshot
    if callable(stats):
        return stats  # type: ignore[no-any-return]
    raise TypeError(f"request_delta needs a Stats, a store or a blob store, not {source!r}")


def _counters(snapshot: Mapping[str, Any], prefix: str) -> dict[str, int]:
    return {
        name: n
        for name, n in snapshot.items()
        if name.startswith(prefix) and isinstance(n, int) and not isinstance(n, bool)
    }


@contextmanager
def request_delta(source: Any, prefix: str = "requests.") -> Iterator[RequestDelta]:
    """What the block spent, per counter whose name starts with ``prefix``::

        with request_delta(store) as spent:
            store.get("k")
        assert spent == {"requests.get": 1}

    ``source``: a :class:`kvstore.stats.Stats`, a store (``store.stats()``) or a blob
    store (its ``stats``). ``prefix=""`` reports every counter (retries, bytes, cache).
    Counters are read from a snapshot before and after, so work still running in the
    background when the block ends (an automatic compaction) may land outside it.
    """
    read = _reader(source)
    before = _counters(read(), prefix)
    spent = RequestDelta()
    try:
        yield spent
    finally:
        after = _counters(read(), prefix)
        for name, n in after.items():
            if n != before.get(name, 0):
                spent[name] = n - before.get(name, 0)
