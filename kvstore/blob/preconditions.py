"""The precondition self-check: a server that ignores conditional writes is found out before
kvstore relies on one.

kvstore's ``nx``, its logs, its artifact versions and every read-modify-write rest on three
server guarantees (docs/architecture.md, invariant 3): a conditional create refuses an
existing object, and a replace or a delete naming a stale version is refused. A server
that answers 200 and ignores the condition (fake-gcs-server on media uploads and DELETE;
an S3-compatible store without ``If-None-Match``) makes kvstore lose data silently: 8
racing ``set(nx=True)`` all win, appended records overwrite each other.

So before a store's first conditional write, on backends whose server varies (S3 and GCS:
``BlobStore.check_preconditions``), :func:`ensure` runs one probe on a scratch object below
``.kvstore/probe/``, through the store's own primitives (so a wrapper in front of the server
that probes first is what gets checked; the verdict is then kept for the server):

1. conditional create of a new object (must succeed);
2. conditional create of it again (must be refused);
3. a plain replace, so the first version tag is now stale;
4. a compare-and-swap naming the stale tag (must be refused);
5. a compare-and-delete naming the stale tag (must be refused);
6. a plain delete of the scratch object.

Six requests, once per process and server (the verdict is kept per ``BlobStore.server``:
the bucket at its endpoint, whatever wrappers a store puts in front; concurrent first
callers share one probe), counted apart from the store's own requests: ``probe.requests`` and
``probe.runs`` in ``stats()``, so the request counts of operations stay what they are.
What the server ignored is then refused by kvstore with
:class:`UnsupportedOperationError` naming the server and the condition; everything else
(plain ``set``/``get``/``delete``) goes on working. A probe that fails for another reason
(the network) is not kept: the next conditional write probes again.
``kvstore.open(..., verify_preconditions=False)`` skips the check - and with it the
protection: on a server that ignores conditions, kvstore then loses data silently.
"""

from __future__ import annotations

import asyncio
import errno
import secrets
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from ..errors import BackendError, UnsupportedOperationError, causes
from ..stats import Stats

T = TypeVar("T")


class BlobStore(Protocol):
    """What the probe uses of a :class:`kvstore.blob.BlobStore` (which calls this module:
    a protocol here keeps the imports one way)."""

    url: str
    stats: Stats

    @property
    def server(self) -> str: ...
    @property
    def atomic_create(self) -> bool: ...
    @property
    def atomic_conditional_put(self) -> bool: ...
    @property
    def atomic_conditional_delete(self) -> bool: ...

    async def _call(
        self,
        operation: str,
        path: str,
        attempt: Callable[[], Awaitable[T]],
        counter: str | None = None,
    ) -> T: ...
    async def _put(self, path: str, data: bytes) -> str: ...
    async def _put_if_absent(self, path: str, data: bytes) -> str | None: ...
    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None: ...
    async def _delete(self, path: str) -> None: ...
    async def _delete_if_match(self, path: str, tag: str) -> bool: ...


PROBE_DIR = ".kvstore/probe/"
"""Where the scratch objects live (below the store's root; removed by the probe)."""

CAPABILITIES = ("atomic_create", "atomic_conditional_put", "atomic_conditional_delete")

_VERDICTS: dict[str, dict[str, str]] = {}
"""Server -> {capability: what the server ignored} (empty: all enforced)."""
_PROBES: dict[tuple[str, int], asyncio.Task[dict[str, str]]] = {}


def _key(store: BlobStore) -> str:
    return store.server


async def ensure(store: BlobStore, capability: str) -> None:
    """Raise UnsupportedOperationError if ``store``'s server ignores the condition behind
    ``capability``; probe it first if this process has not yet (see the module docstring).

    A probe that could not finish raises :class:`BackendError` for the probe - never an
    error its caller would take for an answer about its own write (such as an
    ``AmbiguousWriteError``) - and is not kept."""
    key = _key(store)
    verdict = _VERDICTS.get(key)
    if verdict is None:
        verdict = await _shared_probe(store, key)
    problem = verdict.get(capability)
    if problem is not None:
        raise UnsupportedOperationError(problem)


def forget() -> None:
    """Drop every kept verdict (tests; a server that was replaced at the same address)."""
    _VERDICTS.clear()


async def _shared_probe(store: BlobStore, key: str) -> dict[str, str]:
    """One probe per server and event loop, as a task of its own: every caller (the first
    too) waits for it shielded, so cancelling one caller cancels neither the probe nor
    the others' wait."""
    loop = asyncio.get_running_loop()
    slot = (key, id(loop))
    task = _PROBES.get(slot)
    if task is None or task.get_loop() is not loop:
        task = loop.create_task(_probe_and_keep(store, key, slot))
        _PROBES[slot] = task
    return await asyncio.shield(task)


async def _probe_and_keep(store: BlobStore, key: str, slot: tuple[str, int]) -> dict[str, str]:
    try:
        verdict = await probe(store)
    except (UnsupportedOperationError, BackendError, asyncio.CancelledError):
        raise
    except Exception as exc:  # e.g. AmbiguousWriteError: inconclusive, and not the caller's
        raise BackendError("precondition probe of", store.url, exc) from exc
    finally:
        if _PROBES.get(slot) is asyncio.current_task():
            del _PROBES[slot]
    _VERDICTS[key] = verdict
    return verdict


async def probe(store: BlobStore) -> dict[str, str]:
    """Run the six-request probe (uncached) and return what the server ignored, by
    capability. Only capabilities the store declares are probed. Once the first create has
    answered, the scratch object is removed whatever happens (the probe runs as a task of
    its own, which a caller's cancellation does not stop); a failure to remove it is counted
    (``probe.cleanup_errors``), not raised: the verdict stands."""
    path = PROBE_DIR + secrets.token_hex(8)
    where = f"{store.server} ({store.url})"
    found: dict[str, str] = {}
    if not store.atomic_create:
        return found
    store.stats.add("probe.runs")
    try:
        created = await _request(
            store, "put_if_absent", path, lambda: store._put_if_absent(path, b"1")
        )
    except BackendError as exc:
        if not _not_implemented(exc):
            raise  # nothing written (or not known to be): nothing to remove
        created = None
    try:
        if created is None:
            found["atomic_create"] = (
                f"{where} refused to create a new object conditionally (it answered 'already "
                "exists' or 'not implemented' for a fresh name): kvstore cannot use its "
                "conditional writes"
            )
            return _all(found, store)
        again = await _request(
            store, "put_if_absent", path, lambda: store._put_if_absent(path, b"2")
        )
        if again is not None:
            found["atomic_create"] = _ignored(
                where,
                "a conditional create of an object that exists (S3 If-None-Match: *, "
                "GCS ifGenerationMatch=0) was accepted",
                "set(nx=True), log appends and artifact versions",
            )
        if store.atomic_conditional_put or store.atomic_conditional_delete:
            await _request(store, "put", path, lambda: store._put(path, b"3"))
        if store.atomic_conditional_put:
            swapped = await _request(
                store, "put_if_match", path, lambda: store._put_if_match(path, b"4", created)
            )
            if swapped is not None:
                found["atomic_conditional_put"] = _ignored(
                    where,
                    "a replace naming a stale version (S3 If-Match, GCS "
                    "ifGenerationMatch) was accepted",
                    "set(xx=...), expire, persist and every read-modify-write",
                )
        if store.atomic_conditional_delete:
            deleted = await _request(
                store, "delete_if_match", path, lambda: store._delete_if_match(path, created)
            )
            if deleted:
                found["atomic_conditional_delete"] = _ignored(
                    where,
                    "a delete naming a stale version (S3 If-Match on DELETE, GCS "
                    "ifGenerationMatch) was accepted",
                    "expire(k, 0) and purge_expired",
                )
    finally:
        try:
            await _request(store, "delete", path, lambda: store._delete(path))
        except Exception:  # e.g. a credential without delete: the verdict still holds
            store.stats.add("probe.cleanup_errors")
    return found


def _not_implemented(exc: BaseException) -> bool:
    """A server that answered 501 Not Implemented (s3fs: OSError ENOSYS)."""
    for current in causes(exc):
        if isinstance(current, OSError) and current.errno == errno.ENOSYS:
            return True
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NotImplemented" or status == 501:
                return True
    return False


async def _request(
    store: BlobStore, operation: str, path: str, attempt: Callable[[], Awaitable[T]]
) -> T:
    """One probe request: retried and translated as any, counted as ``probe.requests``."""
    return await store._call(operation, path, attempt, counter="probe.requests")


def _ignored(where: str, what: str, loses: str) -> str:
    return (
        f"{where} ignores conditional writes: {what}. kvstore will not rely on it "
        f"({loses} would lose data silently). Use a server that enforces conditional "
        "writes, or open the store with verify_preconditions=False to skip this check "
        "at that risk."
    )


def _all(found: dict[str, str], store: BlobStore) -> dict[str, str]:
    problem = found["atomic_create"]
    return {c: problem for c in CAPABILITIES if getattr(store, c)}
