"""The contract kit: what a new backend or cache must pass, and the helpers tests share.

Imported only by test code (it imports pytest). A backend or a cache is one module plus a
subclass of a contract here:

* :class:`BlobStoreContract` - every :class:`kvstore.blob.BlobStore` (override the
  ``open_store`` fixture).
* :class:`CacheContract` - every :class:`kvstore.cache.Cache` (override ``open_cache``).

Helpers:

* :class:`FakeClock` - milliseconds since the epoch, moved by the test (``clock=``).
* :class:`ClockedBlobStore` - a blob store whose own clock (dated listings) is the test's.
* :func:`request_delta` - the requests (or any counters) a block of code spent.
* :func:`run_in_processes` - one function in N spawned processes, results or failures back.
"""

from __future__ import annotations

from .blob_contract import BlobStoreContract
from .cache_contract import CacheContract
from .clock import ClockedBlobStore, FakeClock
from .counting import RequestDelta, request_delta
from .processes import ProcessFailure, run_in_processes

__all__ = [
    "BlobStoreContract",
    "CacheContract",
    "ClockedBlobStore",
    "FakeClock",
    "ProcessFailure",
    "RequestDelta",
    "request_delta",
    "run_in_processes",
]
