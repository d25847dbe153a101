"""What every adapter does first: take a blocking ``kvstore.KVStore``, or open one from a
URL and ``kvstore.open``'s arguments (then the adapter owns it and closes it), and view it
through a namespace if one is given. No framework imported here."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..sync import KVStore


class Opened(NamedTuple):
    root: KVStore
    """The store as given or opened (what the adapter closes if it ``owned`` it)."""
    store: KVStore
    """``root``, or its namespace's view: what the adapter reads and writes."""
    owned: bool


def open_store(
    store: KVStore | None,
    url: str | None,
    namespace: str | None,
    open_kwargs: dict[str, Any],
    *,
    binary: str | None = None,
) -> Opened:
    """The store an adapter works on. TypeError for a store and a URL both, for anything
    but a blocking ``KVStore``, and - ``binary`` naming what the adapter stores - for a
    store that decodes responses; a store opened here is closed before the error."""
    import kvstore

    if store is not None and (url is not None or open_kwargs):
        raise TypeError("give a store, or a url and open() arguments, not both")
    owned = store is None
    opened: Any = kvstore.open(url, **open_kwargs) if store is None else store
    problem = None
    if not isinstance(opened, KVStore):
        problem = f"store must be a kvstore.KVStore (kvstore.open), not {opened!r}"
    elif binary is not None and opened.decode_responses:
        problem = f"{binary} stores bytes: open the store without decode_responses"
    if problem is not None:
        if owned:
            opened.close()
        raise TypeError(problem)
    return Opened(opened, opened.namespace(namespace) if namespace else opened, owned)
