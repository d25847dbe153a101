"""kvstore: a Redis-style key-value API over object storage, with a cache in front.

    import kvstore
    with kvstore.open("s3://bucket/prefix", cache="local") as store:
        store.set("greeting", "hello", ex=60)
        store.get("greeting")  # b"hello"

The object store is the source of truth; the cache only accelerates reads.
"""

from __future__ import annotations

import os
from typing import Any

from . import remote
from .api import DEFAULT_CONCURRENCY, AsyncKVStore, Versioned
from .artifacts import Artifact, ArtifactFile, AsyncArtifactReader
from .blob import BlobStore, RetryPolicy, open_blob_store
from .cache import Cache, LocalCache, NoCache, resolve_cache
from .crypto import EncryptionKeyError, KeyRing, encrypting
from .errors import (
    BackendError,
    ConfigurationError,
    ConflictError,
    CorruptDataError,
    ForbiddenError,
    InvalidKeyError,
    InvalidValueError,
    KVStoreError,
    NotFoundError,
    ResponseDecodeError,
    SessionExistsError,
    StaleSessionError,
    UnsupportedOperationError,
    WrongTypeError,
)
from .sessions import Event, Session, SessionPage
from .stats import Stats
from .sync import Artifacts, KVStore

__version__ = "0.1.0"

DEFAULT_URL = "./kvstore-data"
"""Where a store lives when no URL is given (and ``KVSTORE_URL`` is unset)."""

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_URL",
    "Artifact",
    "ArtifactFile",
    "Artifacts",
    "AsyncArtifactReader",
    "AsyncKVStore",
    "AsyncRedis",
    "BackendError",
    "BlobStore",
    "Cache",
    "ConfigurationError",
    "ConflictError",
    "CorruptDataError",
    "EncryptionKeyError",
    "Event",
    "ForbiddenError",
    "InvalidKeyError",
    "InvalidValueError",
    "KVStore",
    "KVStoreError",
    "KeyRing",
    "LocalCache",
    "NoCache",
    "NotFoundError",
    "Redis",
    "RedisCache",
    "ResponseDecodeError",
    "RetryPolicy",
    "Session",
    "SessionExistsError",
    "SessionPage",
    "StaleSessionError",
    "UnsupportedOperationError",
    "Versioned",
    "WrongTypeError",
    "open",
    "open_async",
]


def __getattr__(name: str) -> Any:
    """``kvstore.RedisCache``, ``kvstore.Redis`` and ``kvstore.AsyncRedis`` without importing
    redis-py for users who do not need it."""
    if name == "RedisCache":
        from .cache.redis import RedisCache

        return RedisCache
    if name in ("Redis", "AsyncRedis"):  # the redis-py face needs redis-py (kvstore[redis])
        from . import redis_face

        return getattr(redis_face, name)
    raise AttributeError(f"module 'kvstore' has no attribute {name!r}")


def open_async(
    url: str | BlobStore | None = None,
    cache: str | Cache | None = "local",
    *,
    storage_options: dict[str, Any] | None = None,
    decode_responses: bool = False,
    cache_ttl: float = 60.0,
    concurrency: int = DEFAULT_CONCURRENCY,
    retry: RetryPolicy | None = None,
    verify_preconditions: bool = True,
    token: str | None = None,
    timeout: float | None = None,
    encryption: KeyRing | None = None,
) -> AsyncKVStore:
    """Open a store for asyncio code. Performs no I/O; a bad argument fails here.

    ``url``: a local path or ``file://`` URL, ``memory://name``, ``s3://bucket/prefix``,
    ``gs://bucket/prefix`` or another fsspec URL; default ``$KVSTORE_URL`` or
    ``./kvstore-data``. Or a :class:`kvstore.blob.BlobStore` instance (a backend of your
    own, a :class:`kvstore.blob.WrapperBlobStore`): the store uses it as is, with its own
    ``stats`` as the store's counters; ``storage_options`` and ``retry`` then belong to
    the instance and must not be given here.
    ``cache``: None, ``"local"`` (the in-process cache) or a Cache.
    ``storage_options`` go to the fsspec filesystem (endpoint_url, credentials ...; for a
    local directory: ``fsync``). ``decode_responses``: return str instead of bytes.
    ``cache_ttl``: the longest a cache entry lives (seconds). ``concurrency``: the most
    object-store requests one multi-key call keeps in flight (default: an eighth of the
    open-file limit, as fsspec's ``FSMap.getitems``, between 32 and 256).
    ``verify_preconditions``: on S3 and GCS, check once per process (six requests on a
    scratch object) that the server enforces conditional writes before relying on one; a
    server that ignores them is refused with UnsupportedOperationError. False skips the
    check - on such a server ``nx``, logs and artifacts then lose data silently. (With a
    BlobStore instance as ``url``, False is set on that instance.)

    ``kvstore+http://host:port/namespace`` (or ``kvstore+https://``): the same API over
    kvstore's HTTP service (``kvstore serve --http``), which makes every call on its own
    store (:mod:`kvstore.remote`; ``pip install 'kvstore[client]'``). ``token``: the
    service's bearer token (default ``$KVSTORE_HTTP_TOKEN``); ``timeout``: seconds a
    request may take (default 60). ``cache`` may be "local" (the default) or None - the
    service's cache serves - and the options that configure a store must keep their
    defaults: the service's store is configured where it runs.
    """
    if url is None:
        url = os.environ.get("KVSTORE_URL") or DEFAULT_URL
    if not isinstance(decode_responses, bool):
        raise ConfigurationError(
            f"decode_responses must be True or False, not {decode_responses!r}"
        )
    if remote.is_service_url(url):
        assert isinstance(url, str)
        if cache not in ("local", None):
            raise ConfigurationError(
                "cache= does not apply to a kvstore+http:// store: the service's cache "
                "serves (a cache here could not see other clients' writes)"
            )
        defaults = {
            "storage_options": (storage_options, None),
            "cache_ttl": (cache_ttl, 60.0),
            "retry": (retry, None),
            "verify_preconditions": (verify_preconditions, True),
            "encryption": (encryption, None),
        }
        return remote.open_service(  # type: ignore[no-any-return]
            url,
            token=token,
            decode_responses=decode_responses,
            concurrency=concurrency,
            timeout=timeout,
            options=defaults,
        )
    for option, value in (("token", token), ("timeout", timeout)):
        if value is not None:
            raise ConfigurationError(f"{option}= is for kvstore+http:// URLs (the HTTP service)")
    if storage_options is not None and not isinstance(storage_options, dict):
        raise ConfigurationError("storage_options must be a dict")
    if not isinstance(verify_preconditions, bool):
        raise ConfigurationError(
            f"verify_preconditions must be True or False, not {verify_preconditions!r}"
        )
    if isinstance(url, BlobStore):
        for name, given in (("storage_options", storage_options), ("retry", retry)):
            if given is not None:
                raise ConfigurationError(
                    f"{name} cannot be given with a BlobStore instance as url: "
                    "pass it to the blob store when you make it"
                )
    resolved = resolve_cache(cache)
    if isinstance(url, BlobStore):
        blob, stats = url, url.stats
    else:
        stats = Stats()
        blob = open_blob_store(url, storage_options, retry=retry, stats=stats)
    if not verify_preconditions:
        blob.verify_preconditions = False
    if encryption is not None:
        blob, resolved = encrypting(blob, resolved, encryption)
    return AsyncKVStore(
        blob,
        resolved,
        decode_responses=decode_responses,
        stats=stats,
        cache_ttl=cache_ttl,
        concurrency=concurrency,
    )


def open(
    url: str | BlobStore | None = None,
    cache: str | Cache | None = "local",
    *,
    storage_options: dict[str, Any] | None = None,
    decode_responses: bool = False,
    cache_ttl: float = 60.0,
    concurrency: int = DEFAULT_CONCURRENCY,
    retry: RetryPolicy | None = None,
    verify_preconditions: bool = True,
    token: str | None = None,
    timeout: float | None = None,
    encryption: KeyRing | None = None,
) -> KVStore:
    """Open a store with blocking methods; arguments as :func:`open_async`."""
    core = open_async(
        url,
        cache,
        storage_options=storage_options,
        decode_responses=decode_responses,
        cache_ttl=cache_ttl,
        concurrency=concurrency,
        retry=retry,
        verify_preconditions=verify_preconditions,
        token=token,
        timeout=timeout,
        encryption=encryption,
    )
    if remote.is_service_url(url):
        from .remote.face import RemoteKVStore

        return RemoteKVStore(core)
    return KVStore(core)
