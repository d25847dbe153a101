"""The exceptions kvstore raises.

Everything kvstore raises on purpose derives from :class:`KVStoreError`, so one ``except``
catches it all. Errors about the caller's input also derive from the built-in exception a
Python user would expect (``ValueError``, ``TypeError``), so code written against redis-py or
plain Python keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class KVStoreError(Exception):
    """Base class of every error kvstore raises on purpose."""


class ConfigurationError(KVStoreError, ValueError):
    """A bad URL, option or argument; raised at once, before any I/O is attempted."""


class InvalidKeyError(ConfigurationError):
    """A key (or namespace or artifact name) that cannot be stored."""


class InvalidValueError(KVStoreError, TypeError):
    """A value of a type kvstore does not store (use bytes, str, int or float)."""


class UnsupportedOperationError(KVStoreError, NotImplementedError):
    """The operation needs an atomic primitive this backend does not offer."""


class ForbiddenError(KVStoreError, PermissionError):
    """A service refused the caller's token (kvstore+http://: missing or unknown, read-only
    for a write, or not for that namespace)."""


class CorruptDataError(KVStoreError):
    """A stored object failed its checksum or format check.

    Raised instead of ever returning garbage; names the key and the object path.
    """

    def __init__(self, message: str, *, key: str | None = None, path: str | None = None) -> None:
        where = []
        if key is not None:
            where.append(f"key {key!r}")
        if path is not None:
            where.append(f"object {path!r}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.key = key
        self.path = path


WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


class WrongTypeError(KVStoreError, TypeError):
    """A command for one type (a string's GET, a hash's HSET) on a key holding another;
    Redis's WRONGTYPE error. Nothing was changed."""

    def __init__(self, message: str = WRONGTYPE) -> None:
        super().__init__(message)


class ResponseDecodeError(KVStoreError, ValueError):
    """A stored value is not UTF-8 text and the store was opened with
    ``decode_responses=True``; nothing is lost - read it with ``decode_responses=False``."""


class ConflictError(KVStoreError):
    """A conditional write's condition did not hold: an append whose ``expect_next`` was
    not the log's next sequence number, a session event whose ``expect_last`` was stale.
    Nothing was written. ``expected`` is what the caller gave, ``actual`` what the store
    holds (when it is known)."""

    def __init__(self, message: str, *, expected: Any = None, actual: Any = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class NotFoundError(KVStoreError, LookupError):
    """What a call needs does not exist (a session to append to); nothing was changed."""


class SessionExistsError(ConflictError):
    """``sessions.create`` of an id that is taken; nothing was changed."""


class StaleSessionError(ConflictError):
    """An event appended with ``expect_last`` to a session that has moved on (another
    writer appended since the caller read it); nothing was written. Read the session
    again, then retry."""


class BackendError(KVStoreError):
    """The object store failed; names the URL and the operation and chains the cause."""

    def __init__(self, operation: str, url: str, cause: BaseException | None = None) -> None:
        detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        super().__init__(f"{operation} {url} failed{detail}")
        self.operation = operation
        self.url = url
        self.cause = cause


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it was raised from or during (``__cause__``, else
    ``__context__``), and so on - each once: where a client library's own error lies."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


__all__ = [
    "BackendError",
    "ConfigurationError",
    "ConflictError",
    "CorruptDataError",
    "ForbiddenError",
    "InvalidKeyError",
    "InvalidValueError",
    "KVStoreError",
    "NotFoundError",
    "ResponseDecodeError",
    "SessionExistsError",
    "StaleSessionError",
    "UnsupportedOperationError",
    "WrongTypeError",
]
