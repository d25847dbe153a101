"""``python -m backends up`` and the names the project's tests and benchmarks import.

The servers themselves ship with the library, in :mod:`kvstore.testing.servers` (so a
user's tests can start them too, after ``pip install 'kvstore[testing]'``); this package
re-exports them.
"""

from kvstore.testing.servers import (
    BackendError,
    GCSEmulator,
    KVStoreServer,
    MotoS3Server,
    RedisCluster,
    RedisServer,
    SeaweedFS,
)

__all__ = [
    "BackendError",
    "GCSEmulator",
    "KVStoreServer",
    "MotoS3Server",
    "RedisCluster",
    "RedisServer",
    "SeaweedFS",
]
