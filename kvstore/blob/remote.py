"""What the S3 and GCS blob stores share: an async fsspec filesystem bound to the loop.

aiohttp sessions belong to the event loop that created them. The filesystem is therefore
made lazily, inside the running loop, and made again if the store is later used from a
different loop (``asyncio.run`` twice, or the sync face's loop thread after a fork).

A filesystem left behind by its loop is closed, never just dropped (each holds an HTTP
session with its pooled connections):

* at the end of its loop, when the loop's owner shuts it down (``asyncio.run`` and
  ``asyncio.Runner`` do: ``loop.shutdown_asyncgens()``): so an ``asyncio.run()`` per request
  leaves nothing open, even for the last one;
* when the store is next used from another loop: on its own loop if that loop is running in
  another thread (scheduled there, not waited for); at once if it is closed (the sessions
  are marked closed, the sockets are freed with the loop's transports); if it is idle, at its
  shutdown as above;
* never in a forked child: the connections are shared with the parent, which owns them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import inspect
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any

from ..errors import ConfigurationError, InvalidKeyError
from ..stats import Stats
from .base import BlobStore, RetryPolicy

MAX_OBJECT_NAME = 1024
"""S3 and GCS object names are at most 1024 bytes of UTF-8."""


# Options fsspec itself consumes (instance cache, listings cache) on top of each class's own.
_FSSPEC_OPTIONS = frozenset(
    {"skip_instance_cache", "use_listings_cache", "listings_expiry_time", "max_paths"}
)


def _accepted_options(fs_class: type) -> set[str]:
    """The keyword arguments a filesystem class and its bases name in ``__init__``."""
    accepted = set(_FSSPEC_OPTIONS)
    for cls in fs_class.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        for name, param in inspect.signature(init).parameters.items():
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                accepted.add(name)
    accepted.discard("self")
    return accepted


def written_ms(when: datetime.datetime) -> int:
    """An object's modification time in ms, rounded up to the end of its second when the
    store dates to the second (AWS S3 does): never earlier than the write."""
    ms = int(when.timestamp() * 1000)
    return ms + 999 if when.microsecond == 0 else ms


def http_date_ms(date: str | None) -> int | None:
    """An HTTP ``Date`` header in ms (to the second, so never later than the server's
    time), or None without a readable one."""
    if not date:
        return None
    try:
        return int(email.utils.parsedate_to_datetime(date).timestamp()) * 1000
    except (TypeError, ValueError, OverflowError):
        return None


def _copied(value: Any) -> Any:
    """A copy of nested dicts and lists (filesystem libraries may change what they are
    given; the caller's ``storage_options`` must stay as they were)."""
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return value


class RemoteBlobStore(BlobStore):
    """An object store reached through an async fsspec filesystem below ``bucket/prefix``."""

    protocol: str
    extra: str  # the pip extra that installs the filesystem

    def __init__(
        self,
        bucket: str,
        prefix: str,
        storage_options: dict[str, Any],
        *,
        retry: RetryPolicy | None = None,
        stats: Stats,
    ) -> None:
        if not bucket:
            raise ConfigurationError(
                f"{self.protocol}:// URL needs a bucket: {self.protocol}://BUCKET[/PREFIX]"
            )
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        super().__init__(
            f"{self.protocol}://{bucket}/{self.prefix}".rstrip("/"), retry=retry, stats=stats
        )
        self.storage_options = _copied(dict(storage_options))
        self._fs_class = self._load_class()
        unknown = set(self.storage_options) - _accepted_options(self._fs_class)
        if unknown:
            raise ConfigurationError(
                f"unknown storage_options for {self.protocol}://: {sorted(unknown)} "
                f"(see {self._fs_class.__module__}.{self._fs_class.__name__})"
            )
        for name, value in self.storage_options.items():
            kinds = self.option_types.get(name)
            if kinds is not None and value is not None and not isinstance(value, kinds):
                wanted = " or ".join(k.__name__ for k in kinds)
                raise ConfigurationError(
                    f"storage_options[{name!r}] for {self.protocol}:// must be {wanted}, "
                    f"not {type(value).__name__} ({value!r})"
                )
        self._fs: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closer: _Closer | None = None
        self._pid = 0
        self._connect_lock = asyncio.Lock()
        self._connect_loop: asyncio.AbstractEventLoop | None = None

    def _load_class(self) -> Any:
        import fsspec

        try:
            return fsspec.get_filesystem_class(self.protocol)
        except ImportError as exc:
            raise ConfigurationError(
                f"{self.protocol}:// needs an extra package: pip install 'kvstore[{self.extra}]'"
            ) from exc

    #: The types of the options users set most, checked at open (None is always allowed):
    #: a wrong type would otherwise fail only at the first request.
    option_types: dict[str, tuple[type, ...]] = {"endpoint_url": (str,)}

    #: Environment variables that choose the endpoint when storage_options do not.
    endpoint_env: tuple[str, ...] = ()

    @property
    def identity(self) -> str:
        # The same bucket name on two endpoints (AWS vs MinIO, two regions' emulators) is
        # two stores: the endpoint is part of what a shared cache must tell apart.
        client = self.storage_options.get("client_kwargs") or {}
        endpoint = (
            self.storage_options.get("endpoint_url")
            or (client.get("endpoint_url") if isinstance(client, dict) else None)
            or next((os.environ[v] for v in self.endpoint_env if os.environ.get(v)), "default")
        )
        return f"{self.url}@{str(endpoint).rstrip('/')}"

    @property
    def server(self) -> str:
        return f"{self.protocol}://{self.bucket}@{self.identity.rpartition('@')[2]}"

    def key(self, path: str) -> str:
        """The object key inside the bucket."""
        return f"{self.prefix}/{path}" if self.prefix else path

    def check_path(self, path: str) -> None:
        size = len(self.key(path).encode())
        if size > MAX_OBJECT_NAME:
            raise InvalidKeyError(
                f"key too long for {self.url}: its object name would be {size} bytes and "
                f"{self.protocol}:// allows {MAX_OBJECT_NAME}; use a shorter key or prefix"
            )

    def relative(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

    async def filesystem(self) -> Any:
        """The filesystem for the running loop, created on first use."""
        loop = asyncio.get_running_loop()
        if self._fs is not None and self._loop is loop:
            return self._fs
        if self._connect_loop is not loop:  # an asyncio.Lock belongs to one loop
            self._connect_lock, self._connect_loop = asyncio.Lock(), loop
        async with self._connect_lock:  # concurrent first calls share one session
            if self._fs is None or self._loop is not loop:
                self._release()
                fs = await self._open_filesystem(loop)
                self._fs, self._loop, self._pid = fs, loop, os.getpid()
                self._closer = await _Closer.start(fs, self._disconnect)
        return self._fs

    def _release(self) -> None:
        """Close the filesystem of a loop this store is no longer used from (see the
        module docstring for when and how)."""
        fs, loop, closer = self._fs, self._loop, self._closer
        self._fs = self._loop = self._closer = None
        if fs is None or loop is None or closer is None:
            return
        if self._pid != os.getpid() or loop.is_closed():
            closer.cancel()
            if self._pid == os.getpid():
                for session in self._sessions(fs):
                    _mark_closed(session)
        elif loop.is_running():
            closer.cancel()
            asyncio.run_coroutine_threadsafe(_quietly(self._disconnect(fs)), loop)
        # else: an idle loop; the closer runs when the loop is shut down

    def _sessions(self, fs: Any) -> Iterator[Any]:
        """The aiohttp sessions a filesystem holds (a hook for subclasses)."""
        return iter(())

    def _filesystem_options(self) -> dict[str, Any]:
        """What the filesystem is built with: the user's storage_options, plus defaults."""
        return {"skip_instance_cache": True, **_copied(self.storage_options)}

    async def _open_filesystem(self, loop: asyncio.AbstractEventLoop) -> Any:
        options = self._filesystem_options()
        try:
            fs = self._fs_class(asynchronous=True, loop=loop, **options)
        except TypeError as exc:
            raise ConfigurationError(f"bad storage_options for {self.protocol}://: {exc}") from exc
        self._configure(fs)
        await self._connect(fs)
        return fs

    def _configure(self, fs: Any) -> None:
        """Set what the filesystem takes no option for (a hook for subclasses)."""

    async def _connect(self, fs: Any) -> None:
        """Open the filesystem's session (a hook for subclasses)."""

    async def _disconnect(self, fs: Any) -> None:
        """Close the filesystem's session (a hook for subclasses)."""

    async def close(self) -> None:
        if self._fs is not None and self._loop is asyncio.get_running_loop():
            fs, closer = self._fs, self._closer
            self._fs = self._loop = self._closer = None
            if closer is not None:
                closer.cancel()
            await _quietly(self._disconnect(fs))
        else:
            self._release()


async def _quietly(closing: Awaitable[None]) -> None:
    """Close something whose failure nobody is left to hear about."""
    with contextlib.suppress(Exception):
        await closing


def _mark_closed(session: Any) -> None:
    """Release an aiohttp session whose loop is closed: no coroutine can run there, so its
    connector is closed synchronously (what s3fs and gcsfs do in their finalizers); the
    open sockets go with the loop's transports."""
    connector = getattr(session, "connector", None)
    if connector is not None and not connector.closed:
        with contextlib.suppress(Exception):
            connector._close()


class _Closer:
    """An async generator suspended on a filesystem's loop for the filesystem's life.

    A loop's owner closes the async generators still open on it when it shuts the loop
    down (``loop.shutdown_asyncgens()``, called by ``asyncio.run``): this one then closes
    the filesystem, on its own loop, before the loop is closed. ``cancel()`` makes that a
    no-op (the filesystem was closed, or is being closed, another way)."""

    def __init__(self, fs: Any, disconnect: Callable[[Any], Awaitable[None]]) -> None:
        self._fs: Any = fs
        self._disconnect = disconnect
        self._gen = self._run()

    @classmethod
    async def start(cls, fs: Any, disconnect: Callable[[Any], Awaitable[None]]) -> _Closer:
        closer = cls(fs, disconnect)
        await closer._gen.__anext__()  # registers the generator with the running loop
        return closer

    async def _run(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            fs, self._fs = self._fs, None
            if fs is not None:
                await _quietly(self._disconnect(fs))

    def cancel(self) -> None:
        """Finish the generator without closing the filesystem (synchronously: nothing
        left in it awaits), so no loop is asked to close it later."""
        self._fs = None
        closing = self._gen.aclose()
        with contextlib.suppress(StopIteration, RuntimeError):
            closing.send(None)
        closing.close()
