"""S3 through obstore (Rust's ``object_store``): the default transport for ``s3://``.

The same store as :class:`~kvstore.blob.s3.S3BlobStore` - the same objects, tags (quoted
ETags), guarantees, retries and bounds - with the hot requests sent by obstore instead of
botocore/aiohttp, at about a fifth of the client CPU per request (BENCHMARKS.md, "S3
transports"). Which request does what:

* ``get`` is one GetObject (``Range: bytes=0-{head-1}`` for a head; S3 answers 416 for a
  range of an empty object, which is then read whole); ``get_range`` one ranged GetObject
  (416 past the end: one 1-byte GET for the tag, and ``b""``).
* ``put`` is one PutObject; ``put_if_absent`` one PutObject with ``If-None-Match: *``;
  ``put_if_match`` one PutObject with ``If-Match: <etag>``. A conditional write answered
  ``409 ConditionalRequestConflict`` (not applied) is sent again, as on the s3fs transport.
* ``delete`` is one DeleteObject; ``delete_many`` one DeleteObjects per 1000 keys.
* ``list_pages`` is ListObjectsV2 from ``StartAfter``, 1000 keys per request whatever the
  ``page_size`` (smaller pages are cut from the answers: fewer requests than on s3fs).
* ``list_dated`` is the same ListObjectsV2 requests, each object dated by its
  LastModified and the listing's "now" by the newest of them (obstore gives no answer's
  ``Date``): ages are never overstated. An idle listing (its newest object older than
  ``DATE_PROBE_AFTER_MS`` by this process's clock) adds one HEAD of the bucket, through
  s3fs, for the store's clock.
* Through the s3fs transport (the parent class, its client made on first use), because
  obstore cannot: ``delete_if_match`` (obstore has no conditional delete) and
  ``sign_url`` (obstore signs no ``response-content-type``). Neither is on a hot path:
  expiry and compare-and-delete of values, presigned URLs.

**Errors** leave the primitives as :class:`~kvstore.blob.obstore_errors.S3RequestError`,
told briefly and classified as on s3fs (:mod:`kvstore.blob.obstore_errors`).

**fork().** obstore runs its requests on one Tokio runtime per process, whose threads do
not survive ``fork()``: a child forked after its parent sent an obstore request would wait
forever. Such a child (only such a child) sends every request through the s3fs transport.

**Options.** ``storage_options`` are s3fs's (README, "Storage URLs"); this transport maps
``endpoint_url``, ``key``, ``secret``, ``token``, ``anon``, ``region`` (or
``client_kwargs={"region_name": ...}``), ``profile``, ``requester_pays`` and ``use_ssl``.
Without ``key``/``secret``/``anon`` the credentials come from botocore's chain (the same
environment variables, files, profiles, SSO and instance roles s3fs uses), refreshed when
they expire. A store whose options name anything else (``config_kwargs``, ``session``,
``s3_additional_kwargs`` ...) is opened on the s3fs transport; see :func:`unmapped`.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ..errors import ConfigurationError
from .base import Blob, DatedPage
from .obstore_errors import (
    ConditionalRequestConflict,
    S3RequestError,
    failure_of,
    invalid_range,
    is_obstore_error,
    told,
)
from .remote import http_date_ms, written_ms
from .s3 import ATTEMPTS, CONFLICT_ATTEMPTS, CONNECT_TIMEOUT, PAGE, READ_TIMEOUT, S3BlobStore
from .s3 import _version as version_of

T = TypeVar("T")

USER_AGENT = f"kvstore/{version_of('kvstore')} obstore/{version_of('obstore')}"
"""The User-Agent of this transport's requests."""

DATE_PROBE_AFTER_MS = 1_000
"""A dated listing whose newest object is older than this (by this process's clock) asks
the store for its time: one HEAD of the bucket (see ``_list_dated``). A writer's settles
(at once after 32 chunks, or 0.5 s after its last) list a log whose newest chunk is
younger; a compaction or a read's settle of an idle log asks, so that its ages are
understated by at most about this much (plus LastModified's one-second resolution)."""

REQUEST_TIMEOUT = 300.0
"""Seconds a whole request may take (object_store's ``timeout``; its default is 30, short
for an 8 MiB part on a slow link). Silence is bounded by ``READ_TIMEOUT`` as on s3fs."""

# storage_options this transport understands; anything else is s3fs's alone.
MAPPED = frozenset(
    {
        "endpoint_url",
        "key",
        "secret",
        "token",
        "anon",
        "region",
        "profile",
        "requester_pays",
        "use_ssl",
        "client_kwargs",
        # fsspec's own caching options: nothing to map, nothing lost
        "skip_instance_cache",
        "use_listings_cache",
        "listings_expiry_time",
        "max_paths",
    }
)
MAPPED_CLIENT_KWARGS = frozenset({"endpoint_url", "region_name"})

_RUNTIME_PID: int | None = None
"""The process whose Tokio runtime obstore's requests ran on (see "fork()" above)."""


def available() -> bool:
    """obstore is installed."""
    try:
        import obstore  # noqa: F401
    except ImportError:
        return False
    return True


def unmapped(options: dict[str, Any]) -> list[str]:
    """The storage_options this transport cannot honour (sorted; empty if none)."""
    names = sorted(set(options) - MAPPED)
    client = options.get("client_kwargs")
    if isinstance(client, dict):
        names += [f"client_kwargs[{k!r}]" for k in sorted(set(client) - MAPPED_CLIENT_KWARGS)]
    return names


def _runtime_usable() -> bool:
    """False in a child forked after its parent started obstore's runtime."""
    return _RUNTIME_PID is None or os.getpid() == _RUNTIME_PID


class _BotocoreCredentials:
    """obstore credentials from botocore's chain (env, config and credential files,
    profiles, SSO, containers, instance roles), resolved on the first request and again
    when they expire: what s3fs would have used."""

    def __init__(self, profile: str | None) -> None:
        self.profile = profile
        self._credentials: Any = None

    def __call__(self) -> dict[str, Any]:
        if self._credentials is None:
            import botocore.session

            session = botocore.session.Session(profile=self.profile)
            self._credentials = session.get_credentials()
            if self._credentials is None:
                raise ConfigurationError(
                    "no AWS credentials found (environment, ~/.aws, instance role); give "
                    "storage_options key/secret, a profile, or anon=True for a public bucket"
                )
        frozen = self._credentials.get_frozen_credentials()
        expiry = getattr(self._credentials, "_expiry_time", None)
        if isinstance(expiry, datetime.datetime):
            # botocore's expiry is aware in dateutil's tzutc()/tzlocal(); obstore takes
            # datetime.timezone.utc and nothing else (it refuses the credentials otherwise)
            if expiry.tzinfo is None:
                expiry = expiry.replace(tzinfo=datetime.timezone.utc)
            expiry = expiry.astimezone(datetime.timezone.utc)
        return {
            "access_key_id": frozen.access_key,
            "secret_access_key": frozen.secret_key,
            "token": frozen.token,
            "expires_at": expiry if isinstance(expiry, datetime.datetime) else None,
        }


def _region_of_profile(profile: str | None) -> str | None:
    import botocore.session

    region = botocore.session.Session(profile=profile).get_config_variable("region")
    return str(region) if region else None


class ObstoreS3BlobStore(S3BlobStore):
    """Objects in ``s3://bucket/prefix``, the hot requests sent by obstore."""

    transport = "obstore"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = unmapped(self.storage_options)
        if names:
            raise ConfigurationError(
                f"storage_options {names} are s3fs's alone: open {self.url} with "
                "storage_options['transport'] = 's3fs' (or leave 'transport' unset)"
            )
        if not parsable(self.prefix):
            raise ConfigurationError(
                f"obstore cannot name objects below {self.url} (an empty, '.' or '..' "
                "segment, or a control character): open it with "
                "storage_options['transport'] = 's3fs' (or leave 'transport' unset)"
            )
        self._settings = self._obstore_settings()
        self._ob: Any = None
        self._ob_pid = 0

    def _obstore_settings(self) -> dict[str, Any]:
        """S3Store's keyword arguments, from the storage_options (no I/O)."""
        options = self.storage_options
        client = options.get("client_kwargs") or {}
        config: dict[str, Any] = {}
        endpoint = options.get("endpoint_url") or client.get("endpoint_url")
        if endpoint is None:
            endpoint = next((os.environ[v] for v in self.endpoint_env if os.environ.get(v)), None)
        if endpoint:
            config["endpoint"] = str(endpoint).rstrip("/")
        region = options.get("region") or client.get("region_name")
        if options.get("anon"):
            config["skip_signature"] = True
        credentials = None
        if options.get("key") or options.get("secret"):
            config["access_key_id"] = options.get("key") or ""
            config["secret_access_key"] = options.get("secret") or ""
            if options.get("token"):
                config["session_token"] = options["token"]
        elif not options.get("anon"):
            credentials = _BotocoreCredentials(options.get("profile"))
            if region is None and not (
                os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            ):
                region = _region_of_profile(options.get("profile"))
        if region:
            config["region"] = region
        if options.get("requester_pays"):
            config["request_payer"] = True
        allow_http = bool(endpoint and str(endpoint).startswith("http://"))
        if options.get("use_ssl") is False:
            allow_http = True
        return {
            "config": config,
            "credential_provider": credentials,
            "client_options": {
                "allow_http": allow_http,
                "connect_timeout": datetime.timedelta(seconds=CONNECT_TIMEOUT),
                "read_timeout": datetime.timedelta(seconds=READ_TIMEOUT),
                "timeout": datetime.timedelta(seconds=REQUEST_TIMEOUT),
                "user_agent": USER_AGENT,
            },
            "retry_config": {
                "max_retries": ATTEMPTS - 1,
                "retry_timeout": datetime.timedelta(seconds=60),
                "backoff": {
                    "init_backoff": datetime.timedelta(milliseconds=100),
                    "max_backoff": datetime.timedelta(seconds=2),
                    "base": 2,
                },
            },
        }

    def _fast(self) -> Any | None:
        """The obstore store for this process, or None where the s3fs transport must
        serve (a child forked after its parent used obstore)."""
        global _RUNTIME_PID
        if not _runtime_usable():
            return None
        if self._ob is None or self._ob_pid != os.getpid():
            from obstore.store import S3Store

            settings = {k: v for k, v in self._settings.items() if v is not None}
            try:
                self._ob = S3Store(self.bucket, prefix=self.prefix or None, **settings)
            except Exception as exc:  # obstore validates the configuration here
                raise ConfigurationError(f"bad storage_options for {self.url}: {exc}") from exc
            self._ob_pid = os.getpid()
        _RUNTIME_PID = os.getpid()
        return self._ob

    async def close(self) -> None:
        self._ob = None  # obstore keeps no session to close; its pool goes with the store
        await super().close()

    # -- the requests obstore sends ---------------------------------------------------------

    async def _read(self, store: Any, path: str, start: int, end: int | None) -> Blob | None:
        """One GetObject of bytes [start, end) (the whole object if end is None)."""
        import obstore
        from obstore.exceptions import NotFoundError

        missing = (NotFoundError, FileNotFoundError)  # obstore raises the builtin

        options: Any = None if end is None else {"range": (start, end)}
        try:
            result = await obstore.get_async(store, path, options=options)
            data = await result.bytes_async()
        except missing as exc:
            if failure_of(exc).code == "NoSuchBucket":
                raise  # a wrong bucket is an error, not an empty store
            return None
        return Blob(bytes(data), str(result.meta["e_tag"]))

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        store = self._fast()
        if store is None:
            return await super()._get(path, head)
        with told():
            if head is None:
                return await self._read(store, path, 0, None)
            try:
                return await self._read(store, path, 0, max(head, 1))
            except Exception as exc:
                if not invalid_range(exc):
                    raise
                return await self._read(store, path, 0, None)  # 416: an empty object

    async def _get_range(self, path: str, start: int, size: int) -> Blob | None:
        store = self._fast()
        if store is None:
            return await super()._get_range(path, start, size)
        try:
            with told():
                return await self._read(store, path, start, start + size)
        except S3RequestError as exc:
            if not invalid_range(exc):
                raise
        # 416: the range starts at or past the object's end - nothing to read there.
        head = await self._get(path, 1)
        return None if head is None else Blob(b"", head.tag)

    async def _put(self, path: str, data: bytes) -> str:
        store = self._fast()
        if store is None:
            return await super()._put(path, data)
        import obstore

        with told():
            result = await obstore.put_async(
                store, path, data, mode="overwrite", use_multipart=False
            )
        return str(result["e_tag"])

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        store = self._fast()
        if store is None:
            return await super()._put_if_absent(path, data)
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            with told():
                result = await self._resend_on_conflict(
                    lambda: obstore.put_async(store, path, data, mode="create", use_multipart=False)
                )
        except S3RequestError as exc:
            # (object_store reports a 409 as AlreadyExistsError too: that one was resent)
            refused = (AlreadyExistsError, PreconditionError)
            if isinstance(exc.__cause__, refused) and not isinstance(
                exc, ConditionalRequestConflict
            ):
                return None
            raise
        return str(result["e_tag"])

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        store = self._fast()
        if store is None:
            return await super()._put_if_match(path, data, tag)
        import obstore
        from obstore.exceptions import NotFoundError, PreconditionError

        missing = (NotFoundError, FileNotFoundError)  # obstore raises the builtin

        try:
            with told():
                result = await self._resend_on_conflict(
                    lambda: obstore.put_async(
                        store, path, data, mode={"e_tag": tag}, use_multipart=False
                    )
                )
        except S3RequestError as exc:
            refused = (PreconditionError, *missing)
            if isinstance(exc.__cause__, refused) and not isinstance(
                exc, ConditionalRequestConflict
            ):
                return None
            raise
        return str(result["e_tag"])

    async def _resend_on_conflict(self, send: Callable[[], Awaitable[T]]) -> T:
        """A conditional request, sent again after ``409 ConditionalRequestConflict`` (see
        :meth:`S3BlobStore._conditional`: not applied, so sending it again is safe). For a
        ``put_if_match`` object_store also resends a 409 itself (within ``ATTEMPTS``)."""
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                return await send()
            except Exception as exc:
                if not is_obstore_error(exc):
                    raise
                failure = failure_of(exc)
                if failure.code != "ConditionalRequestConflict":
                    raise
                if attempt + 1 == CONFLICT_ATTEMPTS:
                    # object_store reports the 409 as AlreadyExistsError: re-raised as is,
                    # it would read as a refusal ("exists"), not as a write never applied.
                    raise ConditionalRequestConflict(failure) from exc
                self.stats.add("s3.conditional_conflicts")
                await asyncio.sleep(self.CONFLICT_DELAY * 2**attempt * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _delete(self, path: str) -> None:
        store = self._fast()
        if store is None:
            return await super()._delete(path)
        import obstore
        from obstore.exceptions import NotFoundError

        missing = (NotFoundError, FileNotFoundError)  # obstore raises the builtin

        with told():
            try:
                await obstore.delete_async(store, path)
            except missing as exc:
                if failure_of(exc).code == "NoSuchBucket":
                    raise

    async def _delete_many(self, paths: Sequence[str]) -> None:
        """One DeleteObjects for at most 1000 paths (object_store's bulk delete; a key S3
        refused raises, naming it; a missing key is not a failure)."""
        store = self._fast()
        if store is None:
            return await super()._delete_many(paths)
        import obstore

        with told():
            await obstore.delete_async(store, list(paths))

    def _lister(self, prefix: str) -> Any | None:
        """The obstore client that lists ``prefix``, or None: s3fs lists it (a forked
        child, or a directory object_store cannot name)."""
        store = self._fast()
        return store if store is not None and parsable(prefix.rpartition("/")[0]) else None

    async def _list_after(
        self, prefix: str, start_after: str | None, page_size: int | None
    ) -> AsyncIterator[list[str]]:
        store = self._lister(prefix)
        if store is None:
            async for paths in super()._list_after(prefix, start_after, page_size):
                yield paths
            return
        async for found in self._listed(store, prefix, start_after, page_size):
            yield [str(meta["path"]) for meta in found]

    async def _list_dated(self, prefix: str) -> AsyncIterator[DatedPage]:
        """Each object dated by the LastModified obstore's listing gives (the store's clock
        when it was written, rounded up as on s3fs), in the same requests as
        ``list_pages``. obstore gives no answer's ``Date``, so the listing's "now" is its
        newest object's date - no later than the store's now (to its one-second
        resolution): ages come out no larger than they are, and nothing is taken as old
        too soon. Where that would understate them - the newest object older than
        ``DATE_PROBE_AFTER_MS`` by this process's clock (an idle log), or nothing listed -
        one HEAD of the bucket through s3fs asks the store's clock (its ``Date``). s3fs's
        own dated listing parses each answer with botocore, and a log's every settle lists
        it (README, "S3 transports": the CPU of each)."""
        store = self._lister(prefix)
        if store is None:
            async for page in super()._list_dated(prefix):
                yield page
            return
        newest: int | None = None
        async for found in self._listed(store, prefix, None, None):
            dates = [written_ms(m["last_modified"]) for m in found]
            if dates:
                newest = max(newest or 0, *dates)
            yield [(str(m["path"]), ms) for m, ms in zip(found, dates, strict=True)], None
        if newest is None or _wall_ms() - newest > DATE_PROBE_AFTER_MS:
            yield [], await self._server_time(prefix)

    async def _list_sized(self, prefix: str) -> AsyncIterator[list[tuple[str, int]]]:
        store = self._lister(prefix)
        if store is None:
            async for page in super()._list_sized(prefix):
                yield page
            return
        async for found in self._listed(store, prefix, None, None):
            yield [(str(m["path"]), int(m["size"])) for m in found]

    async def _server_time(self, prefix: str) -> int | None:
        """The store's clock (ms): the ``Date`` of one HEAD of the bucket (s3fs)."""

        async def head() -> Any:
            return await self._s3("head_bucket")

        resp = await self._call("head", prefix, head)
        return http_date_ms(resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date"))

    async def _listed(
        self, store: Any, prefix: str, start_after: str | None, page_size: int | None
    ) -> AsyncIterator[list[Any]]:
        """obstore's listing of ``prefix``: pages of object metas (path, last_modified...),
        each request counted and retried alone."""
        import obstore

        directory, slash, stem = prefix.rpartition("/")

        # object_store lists by path segments ("v/a" lists "v/a/...", not "v/ab"): a
        # prefix that ends inside a name is listed from its directory, starting just
        # before the prefix, until the first path past it (paths come sorted). Its
        # offset is a path too: a start_after it cannot parse starts at the longest
        # start of it that it can (the rest is filtered here).
        floor = just_before(prefix) if stem else None
        after = None if start_after is None else parsable_start(start_after)
        offset = max((b for b in (floor, after) if b), default=None)
        size = min(page_size, PAGE) if page_size else PAGE
        stream: Any = None

        async def next_page() -> Sequence[Any] | None:
            nonlocal stream
            with told():
                if stream is None:
                    stream = obstore.list(
                        store, directory + slash or None, offset=offset, chunk_size=size
                    )
                try:
                    return await stream.__anext__()  # type: ignore[no-any-return]
                except StopAsyncIteration:
                    return None

        fetched = 0  # paths the listing's answers held so far
        while True:
            # object_store asks for 1000 keys per ListObjectsV2 and cuts the answers into
            # pages of `size`: requests are counted by the answers it needed, not pages.
            page = await self._call("list", prefix, next_page, counter="s3.list_pages")
            held = fetched + (0 if page is None else len(page))
            answers = max(1, -(-held // PAGE)) - (-(-fetched // PAGE) if fetched else 0)
            if answers > 0:
                self.stats.add("requests.list", answers)
            if page is None:
                return
            fetched = held
            paths = [str(meta["path"]) for meta in page]
            found = [m for m, p in zip(page, paths, strict=True) if p.startswith(prefix)]
            if start_after is not None:
                found = [m for m in found if str(m["path"]) > start_after]
            past = bool(paths) and paths[-1] > prefix and not paths[-1].startswith(prefix)
            if found or page_size is None:
                yield found
            if past or len(page) < size:
                return

    def _list(self, prefix: str) -> AsyncIterator[list[str]]:
        return self._list_after(prefix, None, None)


def _wall_ms() -> float:
    """This process's clock, in ms: only to choose whether to ask the store's."""
    return time.time() * 1000


def _bad_path_char(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or code == 0x7F or 0xD800 <= code < 0xE000


def parsable_start(text: str) -> str | None:
    """The longest start of ``text`` that object_store takes as a path as it is (it
    refuses control characters, lone surrogates, empty and ``.``/``..`` segments, and
    drops a ``/`` at either end), or None if there is none: never above ``text``, so a
    listing may start after it and filter the rest."""
    end = len(text)
    for i, char in enumerate(text):
        if _bad_path_char(char) or (char == "/" and (i == 0 or text[i - 1] == "/")):
            end = i
            break
    segments = text[:end].split("/")
    for n, segment in enumerate(segments):
        if segment in (".", ".."):
            del segments[n:]
            break
    return "/".join(segments).rstrip("/") or None


def parsable(path: str) -> bool:
    """object_store can name ``path`` (a prefix or directory without its last ``/``)."""
    return not path or parsable_start(path) == path


def just_before(prefix: str) -> str | None:
    """A path object_store accepts that sorts below ``prefix`` and above almost every
    string below it (in code point order, which is S3's UTF-8 byte order): where a listing
    of paths starting with ``prefix`` can start without reading the siblings before them.
    None: from the beginning. (``kv/0`` -> ``kv``, not ``kv//<U+10FFFF>``, which has an
    empty segment.)"""
    last = ord(prefix[-1])
    below = prefix[:-1] + (chr(last - 1) + "\U0010ffff" if last else "")
    return parsable_start(below)
