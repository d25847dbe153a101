"""Caches in front of the object store: none, in-process (local), Redis (kvstore.cache.redis)."""

from __future__ import annotations

from ..errors import ConfigurationError
from .base import Cache, Fill, Lookup
from .local import LocalCache, shared_local_cache
from .none import NoCache

__all__ = ["REDIS_SCHEMES", "Cache", "Fill", "LocalCache", "Lookup", "NoCache", "resolve_cache"]

REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")


def resolve_cache(cache: object) -> Cache:
    """A Cache for the ``cache=`` argument of ``kvstore.open``; fails at once on a bad one."""
    if cache is None or cache == "none":
        return NoCache()
    if isinstance(cache, Cache):
        return cache
    if cache == "local":
        return shared_local_cache()
    if isinstance(cache, str) and cache.lower().startswith(REDIS_SCHEMES):
        try:
            from .redis import RedisCache
        except ImportError as exc:
            raise ConfigurationError(
                f"cache={cache!r} needs redis-py: pip install 'kvstore[redis]'"
            ) from exc
        return RedisCache(cache)
    raise ConfigurationError(
        "cache must be None, 'local', a redis://, rediss://, unix:// or redis+cluster:// "
        f"URL, or a Cache instance, not {cache!r}"
    )
