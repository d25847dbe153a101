"""``cache="redis://…"``: Redis (or Redis Cluster) in front of the object store.

Redis is an accelerator that may vanish, hang, or come back with old data at any moment;
the object store stays the commit point. This cache never raises: a failing Redis turns into
cache misses (reads go to the object store) and is counted.

Layout in Redis, for a store cache key ``K`` (already prefixed per store and namespace)::

    {K}:d   the cached object, prefixed by the generation it was filled under; PX = TTL
    {K}:v   the key's invalidation token (a new random one on every write); lives VERSION_TTL
    kvstore:generation   the cache generation: the server's run_id prefix + a random token

The hash tag ``{K}`` keeps ``d`` and ``v`` in one cluster slot, so each fill is one atomic
Lua script. How staleness is prevented:

* **Stale-set race.** ``lookup`` reads ``{K}:v`` with the data (one MGET). ``fill`` runs a
  script that writes ``{K}:d`` only if ``{K}:v`` is unchanged - a reader that read the object
  store before a concurrent write cannot put its old value over the write's invalidation.
* **Redis restarted** - empty, or from a snapshot (RDB/AOF) with old entries. Every new
  connection learns the server's ``run_id``; a generation that does not start with it was
  made by an earlier server process, so the client atomically replaces it before using the
  cache. Entries filled under any older generation are ignored. (Redis Cluster: restarts
  come back empty unless persistence is on; the run_id check covers standalone Redis.)
* **Undelivered invalidations** (Redis down, hung, partitioned, or returning with its old
  contents). A client whose Redis call fails marks the cache *dirty* and stops using it (the
  circuit breaker opens, reads go to the object store). When Redis answers again, the
  client's first act is to replace the generation: every entry filled before is ignored by
  every client from then on. An outage therefore costs one cache flush, never a stale read
  from the client that saw it. Residual window, stated honestly: a *different* client that
  never noticed the outage can read an entry older than the missed invalidation between the
  moment Redis returns and the first recovery probe of a client that noticed (at most
  ``breaker_interval``), and if every client that noticed dies first, until the entry's TTL.

A dead or hung Redis costs reads at most one timeout (``socket_timeout``) per
``breaker_interval`` per process; writes still attempt their invalidation through an open
breaker (at most ``invalidation_wait`` each, 50 ms by default, so a client that noticed an
outage cannot leave a stale entry behind once Redis answers again; README states the
trade-off a shorter wait makes during a hang). One warning per outage.
"""

from __future__ import annotations

from .breaker import CircuitBreaker
from .cache import RedisCache

# _GEN_LEN, _RUN_ID_LEN and _INVALIDATE: the entry format and the invalidation script, which
# the cache tests look at.
from .scripts import _GEN_LEN as _GEN_LEN
from .scripts import _INVALIDATE as _INVALIDATE
from .scripts import _RUN_ID_LEN as _RUN_ID_LEN
from .scripts import GENERATION_KEY

__all__ = ["GENERATION_KEY", "CircuitBreaker", "RedisCache"]
