"""Values: one object per key, read through the cache, written by PUT or compare-and-swap.

Object: ``{base}kv/{enc(key)}`` (:meth:`kvstore.layout.Layout.value`), an envelope holding
the payload and its absolute expiry. Guarantees (per backend details in the README's
guarantees table):

* **Durable on return.** A write returns only after the object store acknowledged it; the
  cache is touched afterwards, and only to invalidate (:meth:`StoreContext.commit`).
* **Atomic single-key writes.** ``set`` replaces an object in one PUT. ``set(nx=True)`` is
  a conditional create, atomic across processes and machines. ``xx``, ``keepttl``,
  ``expire``, ``pexpire`` and ``persist`` read the object, then write it back with a
  compare-and-swap on the version they read (S3 If-Match, GCS generation, local flock),
  retrying on conflict, so they never undo a concurrent write.
* **Versioned reads, compare-and-swap writes.** :meth:`Values.get_versioned` returns a
  value with its version (the object's tag: S3 ETag, GCS generation, local disk's inode,
  mtime, size and head checksum - always different after a write, as every envelope holds a
  random nonce); ``set(..., if_version=v)`` writes only while the object is still that
  version (one conditional PUT), atomically across processes.
* **Expiry is exact.** An expired value is invisible at once (it is stored with its absolute
  expiry and checked on every read); ``purge_expired`` deletes expired objects for good.
* **Verified reads.** Every object is checksummed; a bad one raises CorruptDataError.
* **Multi-key calls** run their per-key requests concurrently (bounded) and are not atomic
  as a whole.

Cost: a read whose keys are all cached is one cache round trip (none for the local cache)
and, on the blocking face, no hop to the event loop (:meth:`Values.load_now`); a miss is
one GET per key, concurrently, then one guarded fill.
"""

from __future__ import annotations

from .known import DELETE, UNKNOWN, Change, KnownVersions
from .store import MAX_BACKOFF_S, MAX_SWAP_ROUNDS, TOMBSTONE, Values

__all__ = [
    "DELETE",
    "MAX_BACKOFF_S",
    "MAX_SWAP_ROUNDS",
    "TOMBSTONE",
    "UNKNOWN",
    "Change",
    "KnownVersions",
    "Values",
]
