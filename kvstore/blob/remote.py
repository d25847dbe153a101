"""What the S3 and GCS blob stores share: an async fsspec filesystem bound to the loop.

aiohttp sessions belong to the event loop that created them. The filesystem is therefore
made lazily, inside the running loop, and made again if the store is later used from a
different loop (``asyncio.run`` twice, or the sync face's loop thread after a fork).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
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
        endpoint = self.storage_options.get("endpoint_url") or next(
            (os.environ[v] for v in self.endpoint_env if os.environ.get(v)), "default"
        )
        return f"{self.url}@{endpoint}"

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
                self._fs, self._loop = await self._open_filesystem(loop), loop
        return self._fs

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
        fs, self._fs = self._fs, None
        if fs is not None and self._loop is asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                await self._disconnect(fs)
