"""What :class:`~kvstore.cache.redis.RedisCache` keeps in Redis, and the Lua scripts that
change it atomically (the protocol is in the docstring of :mod:`kvstore.cache.redis`).

For a store cache key ``K``: ``{K}:d`` holds the entry (the generation it was filled under,
then the bytes), ``{K}:v`` the key's invalidation token; ``kvstore:generation`` holds the
cache generation (the server's run_id prefix, then a random token). The hash tag ``{K}``
keeps ``d`` and ``v`` in one cluster slot, so one script can act on both.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from ..base import Entry

GENERATION_KEY = "kvstore:generation"
_RUN_ID_LEN = 16
_GEN_LEN = 32  # run_id prefix + 16 random hex digits

_FILL = """
for i = 1, #KEYS, 2 do
  local j = (i + 1) / 2
  local seen = redis.call('GET', KEYS[i + 1]) or ''
  if seen == ARGV[3 * j - 2] then
    redis.call('SET', KEYS[i], ARGV[3 * j - 1], 'PX', ARGV[3 * j])
  end
end
return 1
"""

_INVALIDATE = """
for i = 1, #KEYS, 2 do
  redis.call('DEL', KEYS[i])
  redis.call('SET', KEYS[i + 1], ARGV[(i + 1) / 2 + 1], 'PX', ARGV[1])
end
return 1
"""

_ADOPT_GENERATION = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, #ARGV[1]) == ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[2])
return ARGV[2]
"""


@functools.lru_cache(maxsize=8192)  # hot keys are looked up on every read
def _data_key(key: str) -> str:
    return f"{{{key}}}:d"


def _version_key(key: str) -> str:
    return f"{{{key}}}:v"


def _entries_of(values: Sequence[bytes | None], generation: bytes) -> list[Entry | None]:
    """The entries filled under ``generation``, as Redis sent them - the generation still
    in front (``RedisCache.entry_offset``): neither a copy of the 1 KiB a value entry holds
    nor a view past it, each of which costs more than the rest of a hit; None for the
    rest."""
    return [data if data is not None and data.startswith(generation) else None for data in values]
