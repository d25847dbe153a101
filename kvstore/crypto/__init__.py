"""Encryption at rest: client-side authenticated encryption (AES-256-GCM, ``cryptography``)
of every object a store writes, and of every entry it puts in a shared cache.

``kvstore.open(url, encryption=KeyRing.from_env())``: the object store below and the Redis
cache in front of it see only sealed bytes (:mod:`.sealing`); object names stay plain.
``kvstore rekey`` (:mod:`.rekey`) rewrites the objects sealed under older keys (or not at
all) under the ring's primary key. ``pip install 'kvstore[encryption]'``.
"""

from __future__ import annotations

from ..blob.base import BlobStore
from ..cache.base import Cache
from ..errors import ConfigurationError
from .keyring import EncryptionKeyError, KeyRing, encode_key, generate_key

__all__ = ["EncryptionKeyError", "KeyRing", "encode_key", "encrypting", "generate_key"]


def encrypting(blob: BlobStore, cache: Cache, ring: object) -> tuple[BlobStore, Cache]:
    """``blob`` and ``cache`` wrapped to seal with ``ring``: every object; the cache's
    entries when it is shared (Redis) - the in-process cache holds plaintext, as the
    process's own memory does."""
    if not isinstance(ring, KeyRing):
        # (the type only: a mapping of keys passed by mistake must not reach a traceback)
        raise ConfigurationError(f"encryption takes a kvstore.KeyRing, not a {type(ring).__name__}")
    try:
        import cryptography  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            "encryption needs the cryptography package: pip install 'kvstore[encryption]'"
        ) from exc
    from .blob import EncryptingBlobStore
    from .cache import EncryptingCache

    if blob.encrypted:
        raise ConfigurationError("this blob store is encrypted already")
    sealed_cache = EncryptingCache(cache, ring) if cache.shared else cache
    return EncryptingBlobStore(blob, ring), sealed_cache
