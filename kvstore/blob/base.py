"""The blob contract: async access to immutable-or-replaced objects below one root.

Every backend (memory, local disk, S3, GCS, any other fsspec filesystem) implements the
small ``_``-prefixed primitives; this base class wraps each of them once with what every
backend needs identically: request counting, retries with backoff for transient faults,
and translation of every other failure into :class:`BackendError` naming the URL and the
operation, with the cause chained.

Guarantees every implementation must keep (and states in its docstring how):

* ``put`` replaces an object atomically: readers see the old or the new bytes, never a mix.
* ``put_if_absent`` is an atomic conditional create (docs/architecture.md, invariant 3): of several
  concurrent callers on one path, in any number of processes or machines, exactly one
  succeeds. Never implemented as exists-then-write.
* ``put_if_match`` / ``delete_if_match`` are atomic compare-and-swap against the ``tag``
  returned by ``get`` (S3 ETag, GCS generation, local inode+mtime, memory counter).
* A backend that cannot keep one of the three conditional guarantees says so with a
  capability flag (``atomic_create``, ``atomic_conditional_put``,
  ``atomic_conditional_delete``) and the method raises UnsupportedOperationError.
* A write returns only after the store acknowledged it (durable on local disk: fsync).
* ``delete_many`` removes each object atomically, not the set as a whole: after a failure
  some are gone and some not (the call is safe to repeat).
* ``list_pages`` lists in code point order of the paths (S3's and GCS's UTF-8 byte order),
  from a position (``start_after``) without reading what sorts before it where the server
  can (S3, GCS).
* ``list_dated`` (where ``dated_listing`` is True) dates each object by the *store's* clock
  and says how late that clock was at least when it answered: ages that no client's
  clock can make wrong (docs/architecture.md, "Time").
* ``get_range`` reads a span of an object in one request where the backend can (the
  default reads the whole object and slices it).
* ``sign_url`` (where ``can_sign_urls``) makes a presigned GET URL without a request.

Paths are relative to the store's root and already encoded by :mod:`kvstore.keys`; the
blob layer never globs or interprets them.

A conditional write whose outcome was unknown (a timeout, then a retry that finds the
object present) reports a conflict; callers that need to know whether they themselves
won compare the stored bytes with their own (every envelope carries a random nonce).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from .. import aio
from ..errors import (
    BackendError,
    ConfigurationError,
    KVStoreError,
    UnsupportedOperationError,
)
from ..stats import Stats
from . import preconditions
from .retry import RetryPolicy as RetryPolicy  # re-exported: backends import it from here
from .retry import is_transient as is_transient
from .retry import not_applied

T = TypeVar("T")


MAX_URL_EXPIRY = 7 * 24 * 3600
"""The longest a presigned URL can live on S3 (SigV4) and GCS (V4 signing): 7 days."""


class AmbiguousWriteError(KVStoreError):
    """A conditional write failed transiently, was retried, and the retry met a conflict:
    the first attempt may or may not have been applied. Callers decide (see api._swap)."""


_CONDITIONAL = frozenset({"put_if_absent", "put_if_match", "delete_if_match"})
_WHAT = {
    "atomic_create": "conditional create",
    "atomic_conditional_put": "compare-and-swap",
    "atomic_conditional_delete": "compare-and-delete",
}


@dataclass(frozen=True)
class Blob:
    """The bytes of an object and the version tag a compare-and-swap needs."""

    data: bytes
    tag: str


@dataclass(frozen=True)
class DatedListing:
    """The paths below a prefix, each with the time the object store last wrote it, and a
    time the store's clock had reached when it answered - all by the *store's* clock, in
    milliseconds since the epoch. So ``now - modified`` is an age no client clock can make
    wrong (S3: ``LastModified`` and the answer's ``Date``; GCS: ``updated`` and ``Date``;
    local disk: file mtimes and the machine's clock; memory: the process's clock).

    Both bounds lean the safe way: ``modified`` is never earlier than the write (a store
    that dates to the second is rounded up), ``now`` never later than the store's real time
    (the answer's ``Date``, or else the newest ``modified``), so ``age`` never exceeds an
    object's real age by more than the time its write took.
    """

    paths: tuple[str, ...]
    modified: tuple[int, ...]
    now: int

    def ages(self) -> dict[str, int]:
        """Path -> age in milliseconds (never negative)."""
        return {p: max(0, self.now - m) for p, m in zip(self.paths, self.modified, strict=True)}


DatedPage = tuple[list[tuple[str, int | None]], int | None]
"""One page of a dated listing: (path, modified ms) pairs and the store's time, if it said
(None where the store gave no readable date: the object is then taken as new)."""


class BlobStore(ABC):
    """Async object access below one root URL. See the module docstring for guarantees."""

    # Capabilities: each flag guards the method it names. A backend that cannot do one
    # atomically sets it False, and the method raises UnsupportedOperationError instead of
    # pretending (never a check-then-write). The three are independent: a store may offer
    # conditional create without compare-and-swap.

    #: ``put_if_absent`` is an atomic conditional create on this backend.
    atomic_create: bool = True
    #: ``put_if_match`` is an atomic compare-and-swap on this backend.
    atomic_conditional_put: bool = True
    #: ``delete_if_match`` is an atomic compare-and-delete on this backend.
    atomic_conditional_delete: bool = True
    #: The server behind this backend varies (S3-compatible stores, GCS stand-ins), so
    #: before the first conditional write, a probe checks that it enforces the conditions
    #: the store declares (:mod:`kvstore.blob.preconditions`): six requests, once per
    #: process and store.
    check_preconditions: bool = False
    #: False skips that probe (``kvstore.open(..., verify_preconditions=False)``): on a
    #: server that ignores conditions, kvstore then loses data silently.
    verify_preconditions: bool = True
    #: ``list_dated`` dates objects by the store's clock on this backend. Without it, what
    #: needs an object's age (removing old log chunks) falls back to the dates clients
    #: wrote into the objects, and so trusts their clocks.
    dated_listing: bool = False
    #: Objects are sealed (kvstore.crypto.EncryptingBlobStore): ranged reads open whole
    #: objects, raw artifact versions (for presigned URLs) are refused.
    encrypted: bool = False
    #: ``sign_url`` makes presigned GET URLs on this backend (S3; GCS when its credentials
    #: hold a private key). Where False it raises UnsupportedOperationError saying
    #: ``unsigned_reason``.
    can_sign_urls: bool = False
    #: Why this backend makes no presigned URL (the message's end).
    unsigned_reason: str = "no server to serve a URL (presigned URLs need s3:// or gs://)"
    #: The longest a presigned URL may stay valid here, in seconds (S3's SigV4 and GCS's V4
    #: signatures: 7 days).
    max_url_expiry: int = MAX_URL_EXPIRY
    #: Retries when the caller gives none. Backends whose client library already retries
    #: transient faults keep this small, so the layers do not multiply.
    default_retry: RetryPolicy = RetryPolicy()

    def __init__(self, url: str, *, retry: RetryPolicy | None = None, stats: Stats) -> None:
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a kvstore.RetryPolicy, not {retry!r}")
        self.url = url.rstrip("/")
        self.retry = retry or self.default_retry
        self.stats = stats
        self.connections = 0
        """Requests a store on top may keep in flight (its ``concurrency``): a backend
        whose client pools connections sizes its pool to match (see S3)."""

    def expect_concurrency(self, requests: int) -> None:
        """A store on top keeps up to ``requests`` in flight (called before first use)."""
        self.connections = max(self.connections, requests)

    @property
    def server(self) -> str:
        """The server this store talks to (a precondition verdict holds for all of it):
        by default the identity; S3 and GCS: the bucket at its endpoint."""
        return self.identity

    @property
    def identity(self) -> str:
        """What names this store's data uniquely, for keys in a shared cache: the URL plus
        whatever else tells two same-named stores apart (an endpoint, a host)."""
        return self.url

    def check_path(self, path: str) -> None:
        """Raise InvalidKeyError if the store cannot hold an object named ``path``."""

    # -- public operations: counted, retried, errors translated ---------------------------

    async def get(self, path: str) -> Blob | None:
        """The object's bytes and tag, or None if there is no object at ``path``."""
        blob = await self._call("get", path, lambda: self._get(path))
        if blob is not None:
            self.stats.add("bytes_read", len(blob.data))
        return blob

    async def get_head(self, path: str, size: int) -> Blob | None:
        """The first ``size`` bytes of an object (one ranged read) and the whole object's
        tag, or None if there is no object: enough to check a header without a download."""
        blob = await self._call("get", path, lambda: self._get(path, size))
        if blob is not None:
            self.stats.add("bytes_read", len(blob.data))
        return blob

    async def get_range(self, path: str, start: int, size: int) -> Blob | None:
        """Bytes ``[start, start + size)`` of an object - fewer where it ends first,
        ``b""`` from its end on - and the whole object's tag; None if there is no object.

        One ranged read (S3 and GCS ``Range``, a positioned read on local disk), counted
        as ``requests.get``; a backend without ranged reads reads the whole object and
        slices it (:meth:`_get_range`). Nothing is verified here: the caller checks what it
        asked for (an artifact's raw object: the size and a CRC-32 per block)."""
        for name, value in (("start", start), ("size", size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"{name} must be an int >= 0, not {value!r}")
        if size == 0:
            raise ConfigurationError("size must be at least 1 byte")
        blob = await self._call("get", path, lambda: self._get_range(path, start, size))
        if blob is not None:
            self.stats.add("bytes_read", len(blob.data))
        return blob

    async def get_many(self, paths: Sequence[str], concurrency: int = 32) -> list[Blob | None]:
        """``get`` for many paths at once, at most ``concurrency`` requests in flight; every
        request is settled before the first failure is raised."""
        return await aio.bounded([self.get(p) for p in paths], concurrency)

    async def put(self, path: str, data: bytes) -> str:
        """Create or atomically replace an object; returns its new tag."""
        tag = await self._call("put", path, lambda: self._put(path, data))
        self.stats.add("bytes_written", len(data))
        return tag

    async def require(self, capability: str) -> None:
        """Raise UnsupportedOperationError unless this store can do ``capability``
        (``atomic_create``, ``atomic_conditional_put``, ``atomic_conditional_delete``)
        atomically: the backend declares it, and - where ``check_preconditions`` - its
        server was found to enforce it (probed once, :mod:`kvstore.blob.preconditions`).
        A caller about to write objects that depend on a conditional write calls it first,
        so nothing is written for a write that would then be refused."""
        if not getattr(self, capability):
            self._unsupported(_WHAT[capability])
        if self.check_preconditions and self.verify_preconditions:
            await preconditions.ensure(self, capability)

    def url_lifetime(self, expires: object) -> int:
        """How long a presigned URL asked to live ``expires`` lives: whole seconds, rounded
        up. ``expires``: seconds (int or float) or a ``datetime.timedelta``, more than 0
        and at most ``max_url_expiry``, else ConfigurationError; UnsupportedOperationError
        where ``can_sign_urls`` is False. Makes no request: a caller checks before it
        spends any."""
        if not self.can_sign_urls:
            raise UnsupportedOperationError(
                f"{self.url} cannot make a presigned URL: {self.unsigned_reason}"
            )
        if isinstance(expires, datetime.timedelta):
            seconds = expires.total_seconds()
        elif isinstance(expires, (int, float)) and not isinstance(expires, bool):
            seconds = float(expires)
        else:
            raise ConfigurationError(
                f"expires must be seconds (int or float) or a timedelta, not {expires!r}"
            )
        if not math.isfinite(seconds) or seconds <= 0:
            raise ConfigurationError(f"expires must be more than 0 seconds, not {expires!r}")
        whole = math.ceil(seconds)
        if whole > self.max_url_expiry:
            raise ConfigurationError(
                f"expires must be at most {self.max_url_expiry} seconds on {self.url} "
                f"(7 days: the longest a signature is valid), not {expires!r}"
            )
        return whole

    async def sign_url(
        self,
        path: str,
        expires: float | datetime.timedelta,
        *,
        content_type: str | None = None,
    ) -> str:
        """A presigned URL that GETs the object at ``path`` - its bytes as stored - for
        ``expires`` (see :meth:`url_lifetime`), from anywhere, without credentials.

        ``content_type``: the ``Content-Type`` the server answers with (S3
        ``response-content-type``, GCS ``response-type``; part of the signature).

        Makes no request: the URL is signed by the client with the store's credentials
        (S3: the client's keys, endpoint and region; GCS: the service account's private
        key), so it says nothing of whether the object exists. Counted as ``signatures``,
        not as a request. UnsupportedOperationError where the backend or its credentials
        cannot sign (local disk, memory://: nothing serves a URL)."""
        seconds = self.url_lifetime(expires)
        return await self._call(
            "sign_url",
            path,
            lambda: self._sign_url(path, seconds, content_type),
            counter="signatures",
        )

    async def put_if_absent(self, path: str, data: bytes) -> str | None:
        """Atomic conditional create: the new tag, or None if an object already exists."""
        await self.require("atomic_create")
        tag = await self._call("put_if_absent", path, lambda: self._put_if_absent(path, data))
        if tag is not None:
            self.stats.add("bytes_written", len(data))
        return tag

    async def put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        """Atomic compare-and-swap: replace only if the object's tag is still ``tag``.

        Returns the new tag, or None if the object changed or vanished meanwhile.
        """
        await self.require("atomic_conditional_put")
        new = await self._call("put_if_match", path, lambda: self._put_if_match(path, data, tag))
        if new is not None:
            self.stats.add("bytes_written", len(data))
        return new

    async def delete(self, path: str) -> None:
        """Remove an object; a missing object is not an error."""
        await self._call("delete", path, lambda: self._delete(path))

    async def delete_many(self, paths: Sequence[str]) -> None:
        """Remove every object named in ``paths``; a missing one is not an error.

        In as few requests as the backend allows: batches of up to ``delete_batch`` paths,
        each one request (S3: one DeleteObjects per 1000 paths; local disk and memory: one
        call per 1000), up to ``connections`` (or 32) in flight; GCS and backends without a
        bulk delete send one DELETE per path. Each request is counted as
        ``requests.delete_many``, retried on its own and its failure translated
        (:class:`BackendError`); every request is settled before the first failure is
        raised. A path named twice is deleted once; an empty ``paths`` sends nothing.

        Not atomic as a whole: each object's removal is, but after a failure some objects
        may be gone and others not (calling it again with the same paths finishes the job).
        """
        if isinstance(paths, (str, bytes)):
            raise ConfigurationError(f"delete_many takes a sequence of paths, not {paths!r}")
        unique = list(dict.fromkeys(paths))
        size = max(1, self.delete_batch)
        batches = [unique[i : i + size] for i in range(0, len(unique), size)]
        requests = [
            self._call("delete_many", _batch_name(b), functools.partial(self._delete_many, b))
            for b in batches
        ]
        await aio.bounded(requests, self.connections or DELETE_CONCURRENCY)

    async def delete_if_match(self, path: str, tag: str) -> bool:
        """Remove an object only if its tag is still ``tag``; False if it changed or is
        missing."""
        await self.require("atomic_conditional_delete")
        return await self._call("delete_if_match", path, lambda: self._delete_if_match(path, tag))

    async def list_pages(
        self, prefix: str, start_after: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[list[str]]:
        """Pages of the paths that start with ``prefix`` (a string prefix), in order; never
        an empty page.

        ``start_after``: only the paths that sort strictly after it (a path as this method
        returns them; compared as Python strings, code point order - the UTF-8 byte order
        S3 and GCS list in). S3 and GCS start the listing there (``StartAfter``,
        ``startOffset``), so the paths before it cost no request; local disk skips the
        directories that sort entirely before it; memory starts at it.

        ``page_size``: at most this many paths per page, and about as many per request (S3
        ``MaxKeys``, GCS ``maxResults``: at most 1000). "The next 100 after X" is
        ``start_after=X, page_size=100``, reading pages until 100 paths came (usually the
        first page: one request) and no further.

        Each page request is retried on its own (backends call ``_call`` per page), so a
        transient fault in the middle of a long listing neither truncates nor restarts it.
        """
        if start_after is not None and not isinstance(start_after, str):
            raise ConfigurationError(f"start_after must be a str path, not {start_after!r}")
        if page_size is not None and (
            isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1
        ):
            raise ConfigurationError(f"page_size must be an int >= 1, not {page_size!r}")
        if start_after is None and page_size is None:
            pages = self._list(prefix)
        else:
            pages = self._list_after(prefix, start_after, page_size)
        async for page in pages:
            if page:
                yield page

    async def list_dated(self, prefix: str) -> DatedListing:
        """Every path that starts with ``prefix``, dated by the store's clock (see
        :class:`DatedListing`): as many requests as ``list_pages``, each retried on its own.
        Raises UnsupportedOperationError where ``dated_listing`` is False."""
        if not self.dated_listing:
            raise UnsupportedOperationError(f"{self.url} cannot date its objects")
        paths: list[str] = []
        dates: list[int | None] = []
        said: int | None = None
        async for entries, now in self._list_dated(prefix):
            for path, when in entries:
                paths.append(path)
                dates.append(when)
            if now is not None:
                said = now if said is None else max(said, now)
        newest = max((d for d in dates if d is not None), default=0)
        now = newest if said is None else max(said, newest)
        modified = tuple(now if d is None else d for d in dates)  # undated: taken as new
        return DatedListing(tuple(paths), modified, now)

    async def list_sizes(self, prefix: str) -> AsyncIterator[list[tuple[str, int]]]:
        """Pages of ``(path, size in bytes)`` of every object whose path starts with
        ``prefix``, in order; never an empty page. The sizes come with the listing itself
        (S3 ``Size``, GCS ``size``, a file's ``stat``): as many requests as ``list_pages``,
        no GET or HEAD. Every backend kvstore ships implements it (``store.usage``)."""
        async for page in self._list_sized(prefix):
            if page:
                yield page

    async def close(self) -> None:
        """Release connections. The store may be used again afterwards (it reconnects)."""

    # -- the primitives a backend implements -----------------------------------------------

    @abstractmethod
    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        """The object (only its first ``head`` bytes if given) and its tag, or None."""

    async def _get_range(self, path: str, start: int, size: int) -> Blob | None:
        """Bytes ``[start, start + size)`` of the object (fewer at its end, ``b""`` past
        it) and the whole object's tag, or None. The default reads the whole object with
        ``_get`` and slices it: correct, not cheap; a backend that can read a range
        overrides it (local disk, memory, S3, GCS do)."""
        blob = await self._get(path)
        return None if blob is None else Blob(blob.data[start : start + size], blob.tag)

    @abstractmethod
    async def _put(self, path: str, data: bytes) -> str: ...

    @abstractmethod
    async def _put_if_absent(self, path: str, data: bytes) -> str | None: ...

    @abstractmethod
    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None: ...

    @abstractmethod
    async def _delete(self, path: str) -> None: ...

    @abstractmethod
    async def _delete_if_match(self, path: str, tag: str) -> bool: ...

    #: How many paths one ``_delete_many`` request removes at most (S3: 1000, one
    #: DeleteObjects). 1 by default: one request per path.
    delete_batch: int = 1

    async def _delete_many(self, paths: Sequence[str]) -> None:
        """Remove the objects of one batch (at most ``delete_batch`` paths), missing ones
        being no error; one request where the backend has a bulk delete. The default, for
        a backend without one: ``_delete`` for each path, concurrently (at most
        ``connections``, or 32, in flight)."""
        await aio.bounded(
            [self._delete(path) for path in paths], self.connections or DELETE_CONCURRENCY
        )

    @abstractmethod
    def _list(self, prefix: str) -> AsyncIterator[list[str]]:
        """Pages of matching paths; each page's request goes through ``self._call``."""

    def _list_after(
        self, prefix: str, start_after: str | None, page_size: int | None
    ) -> AsyncIterator[list[str]]:
        """Pages of the paths that start with ``prefix`` and sort after ``start_after``
        (if not None), at most ``page_size`` each (if not None); each page's request goes
        through ``self._call``. The default filters ``_list`` (correct, but it lists from
        the beginning); a backend that can start a listing at a position overrides it."""
        return paged(self._list(prefix), start_after, page_size)

    def _list_dated(self, prefix: str) -> AsyncIterator[DatedPage]:
        """Pages of (path, modified ms) and the store's time when it answered (None if it
        did not say); each page's request goes through ``self._call``. A backend that
        implements it sets ``dated_listing = True``."""
        raise UnsupportedOperationError(f"{self.url} cannot date its objects")

    def _list_sized(self, prefix: str) -> AsyncIterator[list[tuple[str, int]]]:
        """Pages of (path, size) from the listing's own answers (no request per object);
        each page's request goes through ``self._call``."""
        raise UnsupportedOperationError(f"{self.url} cannot list its objects' sizes")

    async def _sign_url(self, path: str, seconds: int, content_type: str | None) -> str:
        """A presigned GET URL of ``path`` valid ``seconds``, made without a request. A
        backend that implements it sets ``can_sign_urls = True``; one whose credentials
        turn out unable to sign raises UnsupportedOperationError saying what to change."""
        raise UnsupportedOperationError(
            f"{self.url} cannot make a presigned URL: {self.unsigned_reason}"
        )

    # -- shared machinery ------------------------------------------------------------------

    def _unsupported(self, what: str) -> NoReturn:
        raise UnsupportedOperationError(
            f"{self.url} has no atomic {what}; use local disk, memory://, s3:// or gs://"
        )

    async def _call(
        self,
        operation: str,
        path: str,
        attempt: Callable[[], Awaitable[T]],
        counter: str | None = None,
    ) -> T:
        """One request, retried and translated; counted as ``counter`` (by default
        ``requests.{operation}``)."""
        uncertain = False  # an earlier attempt of a conditional write may have applied
        for n in range(self.retry.attempts):
            self.stats.add(counter or f"requests.{operation}")
            try:
                result = await attempt()
                if uncertain and result in (None, False):
                    self.stats.add("ambiguous_writes")
                    raise AmbiguousWriteError(f"{operation} {self.url}/{path}: outcome unknown")
                return result
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, KVStoreError):
                    raise
                if n + 1 < self.retry.attempts and is_transient(exc):
                    # A conditional write that failed in a way that says it was not applied
                    # (S3's 409) leaves nothing to be uncertain about.
                    uncertain = uncertain or (operation in _CONDITIONAL and not not_applied(exc))
                    self.stats.add("retries")
                    await asyncio.sleep(self.retry.delay(n))
                    continue
                self.stats.add("errors")
                raise BackendError(operation, f"{self.url}/{path}", exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover


DELETE_CONCURRENCY = 32
"""Requests ``delete_many`` keeps in flight on a store with no ``connections`` set."""


def _batch_name(paths: Sequence[str]) -> str:
    """How errors name a batch of paths: the first, and how many more."""
    more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
    return f"{paths[0]}{more}"


async def paged(
    pages: AsyncIterator[list[str]], start_after: str | None, page_size: int | None
) -> AsyncIterator[list[str]]:
    """``pages`` (sorted paths) without those up to ``start_after``, cut into pages of at
    most ``page_size`` (as they come, if None)."""
    held: list[str] = []
    async for page in pages:
        held += page if start_after is None else [p for p in page if p > start_after]
        if page_size is None:
            if held:
                yield held
            held = []
            continue
        while len(held) >= page_size:
            yield held[:page_size]
            del held[:page_size]
    if held:
        yield held
