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

Backends are found through a registry, not a chain of ifs: :func:`register_backend` maps
URL protocols to a factory ``factory(rest, options, *, retry, stats) -> BlobStore``, where
``rest`` is the URL after ``protocol://`` and ``options`` the user's ``storage_options``.
The built-ins above are registered here (S3 and GCS import their modules, and so s3fs or
gcsfs, only when a URL of theirs is opened); a protocol nobody registered falls back to
fsspec. A store object made by other means can also be handed to ``kvstore.open`` as is.

:class:`WrapperBlobStore` is the base for a store in front of another (latency models,
fault injection): it delegates every primitive and shares the inner store's counters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from ..errors import ConfigurationError
from ..stats import Stats
from .base import Blob, BlobStore, DatedListing, RetryPolicy
from .local import LocalBlobStore
from .memory import MemoryBlobStore
from .wrapper import WrapperBlobStore

__all__ = [
    "BackendFactory",
    "Blob",
    "BlobStore",
    "DatedListing",
    "RetryPolicy",
    "WrapperBlobStore",
    "open_blob_store",
    "register_backend",
    "split_url",
    "unregister_backend",
]

_LOCAL_OPTIONS = {"fsync"}


class BackendFactory(Protocol):
    """Makes the blob store for one URL: ``rest`` is what follows ``protocol://``,
    ``options`` the storage_options (a fresh dict the factory may consume). It validates
    both and raises ConfigurationError at once on a bad one; it performs no I/O."""

    def __call__(
        self, rest: str, options: dict[str, Any], *, retry: RetryPolicy | None, stats: Stats
    ) -> BlobStore: ...


_BACKENDS: dict[str, BackendFactory] = {}


def _protocols(protocols: str | Iterable[str]) -> list[str]:
    if isinstance(protocols, str):
        names = [protocols]
    elif isinstance(protocols, Iterable):
        names = list(protocols)
    else:
        raise ConfigurationError(f"bad protocol name {protocols!r}: give a str or a list")
    for name in names:
        if (
            not isinstance(name, str)
            or not name
            or not name.replace("+", "").replace("-", "").isalnum()
        ):
            raise ConfigurationError(f"bad protocol name {name!r}: letters, digits, '+', '-'")
    return [name.lower() for name in names]


def register_backend(
    protocols: str | Iterable[str], factory: BackendFactory, *, replace: bool = False
) -> None:
    """Open URLs of ``protocols`` (e.g. ``"azure"`` or ``["abfs", "az"]``) with ``factory``.

    A protocol that already has a factory (a built-in, or one registered earlier) is
    refused with ConfigurationError unless ``replace=True``. Registered protocols are
    tried before the fsspec fallback.
    """
    if not callable(factory):
        raise ConfigurationError(f"factory must be callable, not {factory!r}")
    names = _protocols(protocols)
    taken = [name for name in names if name in _BACKENDS]
    if taken and not replace:
        raise ConfigurationError(
            f"protocol {taken[0]!r} already has a backend; pass replace=True to override it"
        )
    for name in names:
        _BACKENDS[name] = factory


def unregister_backend(protocols: str | Iterable[str]) -> None:
    """Forget the factories of ``protocols`` (missing ones are ignored); their URLs then
    go to the fsspec fallback."""
    for name in _protocols(protocols):
        _BACKENDS.pop(name, None)


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
    factory = _BACKENDS.get(protocol)
    if factory is not None:
        return factory(rest, options, retry=retry, stats=stats)
    import fsspec

    if protocol not in fsspec.available_protocols():
        raise ConfigurationError(
            f"unknown storage protocol {protocol!r} in {url!r}; use a local path, "
            "memory://, s3://, gs:// or another protocol fsspec knows"
        )
    from .generic import FsspecBlobStore

    return FsspecBlobStore(protocol, rest, options, retry=retry, stats=stats)


# -- the built-in backends ---------------------------------------------------------------


def _local_factory(protocol: str) -> BackendFactory:
    def make(
        rest: str, options: dict[str, Any], *, retry: RetryPolicy | None, stats: Stats
    ) -> BlobStore:
        unknown = set(options) - _LOCAL_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown storage_options for a local directory: {sorted(unknown)} "
                f"(allowed: {sorted(_LOCAL_OPTIONS)})"
            )
        if not rest:
            raise ConfigurationError(f"store URL {protocol + '://'!r} names no directory")
        return LocalBlobStore(rest, retry=retry, stats=stats, **options)

    return make


def _memory(
    rest: str, options: dict[str, Any], *, retry: RetryPolicy | None, stats: Stats
) -> BlobStore:
    if options:
        raise ConfigurationError("memory:// takes no storage_options")
    return MemoryBlobStore(rest, retry=retry, stats=stats)


def _s3(
    rest: str, options: dict[str, Any], *, retry: RetryPolicy | None, stats: Stats
) -> BlobStore:
    """``storage_options["transport"]`` picks who sends the requests: ``"obstore"``,
    ``"s3fs"``, or ``"auto"`` (the default): obstore where it is installed and can honour
    every option given, else s3fs (README, "S3 transports")."""
    from . import s3_obstore
    from .s3 import S3BlobStore  # s3fs only for s3:// URLs

    transport = options.pop("transport", "auto")
    if transport not in ("auto", "obstore", "s3fs"):
        raise ConfigurationError(
            f"storage_options['transport'] must be 'auto', 'obstore' or 's3fs', not {transport!r}"
        )
    if transport == "obstore" and not s3_obstore.available():
        raise ConfigurationError("transport 'obstore' needs obstore: pip install 'kvstore[s3]'")
    region = options.pop("region", None)
    if region is not None:  # botocore's name for it is client_kwargs["region_name"]
        client = options.get("client_kwargs")
        options["client_kwargs"] = {
            **(client if isinstance(client, dict) else {}),
            "region_name": region,
        }
    bucket, _, prefix = rest.partition("/")
    if transport == "auto":
        fits = s3_obstore.available() and not s3_obstore.unmapped(options)
        # a prefix object_store cannot name (an empty or '.' segment: "s3://b/x//y")
        fits = fits and s3_obstore.parsable(prefix.strip("/"))
        transport = "obstore" if fits else "s3fs"
    if transport == "obstore":
        return s3_obstore.ObstoreS3BlobStore(bucket, prefix, options, retry=retry, stats=stats)
    return S3BlobStore(bucket, prefix, options, retry=retry, stats=stats)


def _gcs(
    rest: str, options: dict[str, Any], *, retry: RetryPolicy | None, stats: Stats
) -> BlobStore:
    from .gcs import GCSBlobStore  # gcsfs only for gs:// URLs

    bucket, _, prefix = rest.partition("/")
    return GCSBlobStore(bucket, prefix, options, retry=retry, stats=stats)


register_backend("file", _local_factory("file"))
register_backend("local", _local_factory("local"))
register_backend("memory", _memory)
register_backend(["s3", "s3a"], _s3)
register_backend(["gs", "gcs"], _gcs)
