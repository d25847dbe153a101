"""Retries: the policy (attempts, backoff) and which failures are transient.

:class:`~kvstore.blob.base.BlobStore` retries a request that failed transiently
(:func:`is_transient`: connection resets, timeouts, throttling, 5xx) under its
:class:`RetryPolicy`; a conditional write that failed in a way that says it was not applied
(:func:`not_applied`) leaves nothing uncertain behind.
"""

from __future__ import annotations

import asyncio
import errno
import random
from dataclasses import dataclass

from ..errors import ConfigurationError, causes


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for transient faults: ``attempts`` tries in all, exponential backoff, jitter."""

    attempts: int = 4
    base_delay: float = 0.05
    max_delay: float = 2.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.attempts, bool)
            or not isinstance(self.attempts, int)
            or self.attempts < 1
        ):
            raise ConfigurationError(f"attempts must be an int >= 1, not {self.attempts!r}")
        for name in ("base_delay", "max_delay"):
            delay = getattr(self, name)
            if not isinstance(delay, (int, float)) or not delay >= 0:
                raise ConfigurationError(f"{name} must be seconds >= 0, not {delay!r}")

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.base_delay * 2**attempt) * random.uniform(0.5, 1.0))


_TRANSIENT_NAMES = frozenset(
    {
        "ClientConnectionError",
        "ClientOSError",
        "ServerDisconnectedError",
        "ServerTimeoutError",
        "ClientPayloadError",
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "ProxyError",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ConditionalRequestConflict",
        "OperationAborted",
        "Throttling",
    }
)
_TRANSIENT_ERRNOS = frozenset(
    {errno.ECONNRESET, errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EPIPE, errno.EAGAIN}
)


def is_transient(exc: BaseException) -> bool:
    """True for faults worth retrying: connection resets, timeouts, throttling, 5xx."""
    for current in causes(exc):
        if isinstance(current, (ConnectionError, TimeoutError, asyncio.TimeoutError)):
            return True
        if isinstance(current, OSError) and current.errno in _TRANSIENT_ERRNOS:
            return True
        if any(cls.__name__ in _TRANSIENT_NAMES for cls in type(current).__mro__):
            return True
        code = getattr(current, "code", None)  # gcsfs HttpError
        if isinstance(code, int) and (code >= 500 or code == 429):
            return True
        response = getattr(current, "response", None)  # botocore ClientError
        if isinstance(response, dict):
            error = response.get("Error", {})
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if error.get("Code") in _TRANSIENT_CODES or status >= 500 or status == 429:
                return True
    return False


def not_applied(exc: BaseException) -> bool:
    """A conditional write's failure that says it was not applied: S3's ``409
    ConditionalRequestConflict`` (another conditional write to the key was in flight)."""
    for current in causes(exc):
        response = getattr(current, "response", None)
        code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
        if code == "ConditionalRequestConflict":
            return True
    return False
