"""LangGraph's checkpointer and long-term store on a kvstore: :class:`KVStoreSaver`,
:class:`KVStoreStore`.

::

    import kvstore
    from kvstore.integrations.langgraph import KVStoreSaver

    saver = KVStoreSaver(url="s3://bucket/app", namespace="graphs")  # or KVStoreSaver(store)
    graph = builder.compile(checkpointer=saver)
    graph.invoke(inputs, {"configurable": {"thread_id": "t-1"}})

A ``BaseCheckpointSaver`` with every method LangGraph defines, blocking and async (the
async ones run on kvstore's loop and are awaited from the caller's): ``put``,
``put_writes``, ``get_tuple``, ``list``, ``delete_thread``, ``delete_for_runs``,
``copy_thread``, ``prune``, ``get_delta_channel_history`` (DeltaChannel's ancestor walk).

Layout (kvstore keys, in the saver's store or namespace; ``{T}``, ``{N}``, ``{ch}``,
``{task}``, ``{run}`` are the thread id, checkpoint namespace, channel, task id and run id
with ``%`` and ``/`` %-escaped, so ``/`` separates fields and no thread's prefix is
another's; ``{inv}`` is the checkpoint id - a uuid6 - with each hex digit ``d`` written
``f-d``, so a listing, ascending, yields the newest checkpoint first)::

    langgraph/t/{T}/c/{N}/{inv}               checkpoint: the checkpoint without its channel
                                              values (versions, versions seen...), metadata,
                                              parent id, which channels have a value
    langgraph/t/{T}/c/{N}/{inv}/{task}/{idx}  a pending write of that checkpoint (listed
                                              with it: just before it)
    langgraph/t/{T}/b/{N}/{ch}/{version}      a channel's value at one version: written
                                              once (set-if-absent), shared by every
                                              checkpoint at that version
    langgraph/t/{T}/r/{run}                   run {run} wrote in this thread
    langgraph/r/{run}/{T}                     the same, found by run (delete_for_runs)

Each object is one kvstore value: serialized by the saver's ``serde``
(``dumps_typed``), framed by kvstore's envelope, which compresses it (zstd, when that
pays) and checksums it - not compressed twice. A channel that did not change in a step
costs nothing: its blob is the one an earlier checkpoint wrote. ``get_next_version``
gives versions ``{n:032}.{random}``, unique, so concurrent writers branching from one
checkpoint never share a version for different values.

Costs in object-store requests (S3; GCS and local disk delete one object per request),
*rounds* being sequential steps of concurrent requests; checkpoints, blobs and writes are
immutable, so a cached store (``cache="local"`` or Redis) reads each once:

* ``put``: a conditional PUT per new channel version not yet written by this process,
  then one PUT of the checkpoint (2 rounds; 1 without new values); the first checkpoint
  of a run in a thread adds 2 PUTs (the run index). Atomic: the checkpoint object is the
  commit point, written after its blobs; a crash before it leaves unreferenced blobs
  (removed with the thread) and no checkpoint.
* ``put_writes``: a PUT per write, concurrently (1 round); a regular write is
  set-if-absent (a task's write at an index is kept once; a repeat costs a GET more), a
  special one (error, interrupt, resume) replaces. Each write is atomic, the call is not.
* ``get_tuple`` with a checkpoint id: a GET of the checkpoint and a LIST of its writes
  at once, then a GET per stored channel value and per write (2 rounds). Without one
  (the latest): a LIST of the namespace's first page (its first checkpoint key is the
  newest, its writes listed just before it), a GET of the checkpoint, then the values
  and writes (3 rounds; with everything cached, the LIST alone) - one LIST however long
  the thread. Chosen over a "latest" pointer object, which would cost a PUT on every
  step to save a LIST on each load (a graph loads once per invoke and puts once per
  step), and could name an older checkpoint than the newest when two writers share a
  thread. Measured on SeaweedFS (loopback): a pointer's GET 2.5 ms; the LIST 1.7 ms for
  a short thread, 34 ms for one of 1,200 checkpoints (SeaweedFS lists a large prefix
  slowly; S3 returns a first page in about constant time) - ``prune`` keeps threads
  short.
* ``list``: a LIST per 1000 objects of the thread (of the namespace if the config names
  one; the whole saver without a config), then per 64 checkpoints a round of GETs of the
  checkpoints and a round for their values and writes (``limit`` stops early).
* ``delete_thread``: a LIST per 1000 objects of the thread and a bulk DELETE per 1000
  (2 requests for a thread of under a thousand objects). Checkpoints go first, so no
  reader finds a checkpoint without its values; not atomic as a whole.
* ``get_delta_channel_history``: a LIST of the namespace, the ancestors' checkpoint
  objects a window per round of GETs (2, 4, ... up to 64 ancestors), then their writes
  and the seeds in one round.
* ``delete_for_runs``: per run a LIST of its index; per thread it wrote in, a LIST of
  the thread, a GET per checkpoint, one bulk DELETE (its checkpoints, their writes, the
  values only they used).
* ``copy_thread``: a LIST of the source, a GET and a PUT per object (blobs and writes
  first, checkpoints last). ``prune(strategy="keep_latest")``: a LIST per thread, a GET
  per kept checkpoint (the newest per namespace, and for DeltaChannel state its ancestors
  back to a snapshot), one bulk DELETE; ``"delete"`` is ``delete_thread``.

Bad input - a config without ``thread_id``, wrong types, a checkpoint id that is not a
uuid, a value the serde cannot serialize - raises (``ValueError``/``TypeError``, or the
serde's error) before anything is written.

The long-term memory store, :class:`KVStoreStore` (:mod:`.store`), is LangGraph's
``BaseStore`` without a vector index (``search`` filters by namespace prefix and fields,
``query`` is ignored as ``InMemoryStore`` ignores it without an index), with kvstore's
value TTL: ``builder.compile(checkpointer=saver, store=KVStoreStore(url=...))``. One item
is one kvstore value at ``langgraph-store/{label}/.../{key}``; get = a GET (cached), put
= a PUT (+ a cached GET, keeping ``created_at``), search = a LIST of the namespace prefix
and the GETs of what it reads, list_namespaces = a LIST. See :mod:`.store` for the layout,
the batch semantics and the costs.
"""

from .saver import KVStoreSaver
from .store import KVStoreStore

__all__ = ["KVStoreSaver", "KVStoreStore"]
