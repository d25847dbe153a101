"""kvstore in tests: the contract kit, the servers, and the helpers tests share.

Importing this package imports no test framework: the two contracts (which are pytest test
classes) are loaded when first named. A backend or a cache is one module plus a subclass of
a contract here:

* :class:`BlobStoreContract` - every :class:`kvstore.blob.BlobStore` (override the
  ``open_store`` fixture).
* :class:`CacheContract` - every :class:`kvstore.cache.Cache` (override ``open_cache``).

Servers (:mod:`kvstore.testing.servers`, after ``pip install 'kvstore[testing]'``): moto S3,
SeaweedFS, the GCS emulator and redis-server, each on a free loopback port.

In a user's tests: ``mock_s3()`` / ``mock_gcs()`` (a private moto S3 server or GCS
emulator for a block or a decorated test: ``kvstore.open("s3://any-bucket/...")`` reaches
it, no endpoint or credentials in the code), ``redis_server()`` (:mod:`.mocks`), and
:class:`FaultyBlobStore`, an object store that fails, slows down or loses answers on demand
(:mod:`.faults`).

Helpers:

* :class:`FakeClock` - milliseconds since the epoch, moved by the test (``clock=``).
* :class:`ClockedBlobStore` - a blob store whose own clock (dated listings) is the test's.
* :func:`request_delta` - the requests (or any counters) a block of code spent.
* :func:`run_in_processes` - one function in N spawned processes, results or failures back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .clock import ClockedBlobStore, FakeClock
from .counting import RequestDelta, request_delta
from .faults import FaultyBlobStore, InjectedFault
from .mocks import mock_gcs, mock_s3, redis_server
from .processes import ProcessFailure, run_in_processes

if TYPE_CHECKING:
    from .blob_contract import BlobStoreContract
    from .cache_contract import CacheContract

_CONTRACTS = {"BlobStoreContract": ".blob_contract", "CacheContract": ".cache_contract"}


def __getattr__(name: str) -> Any:
    """The contracts, imported (with pytest) when first named."""
    module = _CONTRACTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kvstore.testing' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)


__all__ = [
    "BlobStoreContract",
    "CacheContract",
    "ClockedBlobStore",
    "FakeClock",
    "FaultyBlobStore",
    "InjectedFault",
    "ProcessFailure",
    "RequestDelta",
    "mock_gcs",
    "mock_s3",
    "redis_server",
    "request_delta",
    "run_in_processes",
]
