"""Caches in front of the object store: none, in-process (local), Redis (see the issues)."""

from __future__ import annotations

from ..errors import ConfigurationError
from .base import Cache, Fill, Lookup
from .local import LocalCache, shared_local_cache
from .none import NoCache

__all__ = ["Cache", "Fill", "LocalCache", "Lookup", "NoCache", "resolve_cache"]


def resolve_cache(cache: object) -> Cache:
    """A Cache for the ``cache=`` argument of ``kvstore.open``; fails at once on a bad one."""
    if cache is None or cache == "none":
        return NoCache()
    if isinstance(cache, Cache):
        return cache
    if cache == "local":
        return shared_local_cache()
    if isinstance(cache, str) and cache.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(
            f"cache={cache!r}: the Redis cache is not available in this version; "
            "use cache='local' or cache=None"
        )
    raise ConfigurationError(
        f"cache must be None, 'local', a redis://, rediss:// or unix:// URL, or a Cache "
        f"instance, not {cache!r}"
    )
