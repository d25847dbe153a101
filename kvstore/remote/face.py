"""The blocking face of the service's client: :class:`~kvstore.sync.KVStore`, every method
derived from its async twin - the cached reads too, which the library's face answers in
the caller's thread from a local cache when it can; here there is none, so they hop to the
loop thread like every other call."""

from __future__ import annotations

from ..api import AsyncKVStore
from ..sync import KVStore, _blocking


class RemoteKVStore(KVStore):
    """``kvstore.open("kvstore+http://...")``: a :class:`KVStore` over the HTTP service."""

    get = _blocking(AsyncKVStore.get)
    mget = _blocking(AsyncKVStore.mget)
    pttl = _blocking(AsyncKVStore.pttl)
    ttl = _blocking(AsyncKVStore.ttl)

    def __repr__(self) -> str:
        return repr(self._core).replace("AsyncRemoteStore", "RemoteKVStore", 1)
