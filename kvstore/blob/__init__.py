"""The blob layer: fsspec-backed object access with per-protocol atomicity.

:func:`open_blob_store` turns a URL into the right :class:`BlobStore`:

============================  ======================  ==========================
URL                           backend                 conditional create / CAS
============================  ======================  ==========================
``/path``, ``file:///path``   :class:`LocalBlobStore`  ``os.link`` / ``flock``
``memory://name``             :class:`MemoryBlobStore` a lock
``s3://bucket/prefix``        :class:`S3BlobStore`     If-None-Match / If-Match
``gs://bucket/prefix``        :class:`GCSBlobStore`    ifGenerationMatch
anything else fsspec knows    :class:`FsspecBlobStore` not supported
============================  ======================  ==========================
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError
from ..stats import Stats
from .base import Blob, BlobStore, RetryPolicy
from .local import LocalBlobStore
from .memory import MemoryBlobStore

__all__ = ["Blob", "BlobStore", "RetryPolicy", "open_blob_store", "split_url"]

_LOCAL_OPTIONS = {"fsync"}


def split_url(url: str) -> tuple[str, str]:
    """(protocol, rest) of a store URL; a bare path is ``file``."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(
            "store URL must be a non-empty string such as './data', 'file:///srv/kv', "
            "'memory://name', 's3://bucket/prefix' or 'gs://bucket/prefix'"
        )
    protocol, sep, rest = url.partition("://")
    if not sep:
        return "file", url
    protocol = protocol.lower()
    if not protocol.replace("+", "").replace("-", "").isalnum():
        raise ConfigurationError(f"bad protocol {protocol!r} in store URL {url!r}")
    return protocol, rest


def open_blob_store(
    url: str,
    storage_options: dict[str, Any] | None = None,
    *,
    retry: RetryPolicy | None = None,
    stats: Stats,
) -> BlobStore:
    """The blob store for ``url``; fails at once on a bad URL or option (no I/O)."""
    options = dict(storage_options or {})
    protocol, rest = split_url(url)
    if protocol in ("file", "local"):
        unknown = set(options) - _LOCAL_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown storage_options for a local directory: {sorted(unknown)} "
                f"(allowed: {sorted(_LOCAL_OPTIONS)})"
            )
        if not rest:
            raise ConfigurationError(f"store URL {url!r} names no directory")
        return LocalBlobStore(rest, retry=retry, stats=stats, **options)
    if protocol == "memory":
        if options:
            raise ConfigurationError("memory:// takes no storage_options")
        return MemoryBlobStore(rest, retry=retry, stats=stats)
    bucket, _, prefix = rest.partition("/")
    if protocol in ("s3", "s3a"):
        from .s3 import S3BlobStore

        return S3BlobStore(bucket, prefix, options, retry=retry, stats=stats)
    if protocol in ("gs", "gcs"):
        from .gcs import GCSBlobStore

        return GCSBlobStore(bucket, prefix, options, retry=retry, stats=stats)
    import fsspec

    if protocol not in fsspec.available_protocols():
        raise ConfigurationError(
            f"unknown storage protocol {protocol!r} in {url!r}; use a local path, "
            "memory://, s3://, gs:// or another protocol fsspec knows"
        )
    from .generic import FsspecBlobStore

    return FsspecBlobStore(protocol, rest, options, retry=retry, stats=stats)
