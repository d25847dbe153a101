"""What obstore's errors say, read without being fooled by the names in them.

obstore's messages are long (the whole answer twice, and a "Debug source" dump of its
error) and name the object, so S3's error code is never looked for in them as a substring
(a key named ``NoSuchBucket`` is not a missing bucket): :func:`failure_of` reads the status,
S3's ``Code``/``Message`` and the request from the dump, whose strings are escaped. An error
leaving one of :class:`~kvstore.blob.s3_obstore.ObstoreS3BlobStore`'s primitives is an
:class:`S3RequestError` saying them briefly (obstore's own error chained as its cause), with
a botocore-shaped ``response``, so kvstore's retries (``retry=``) see throttling, 5xx and
dropped connections (:class:`S3ConnectionError`) as transient, as on s3fs.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

__all__ = [
    "ConditionalRequestConflict",
    "Failure",
    "S3ConnectionError",
    "S3RequestError",
    "failure_of",
    "invalid_range",
    "is_obstore_error",
    "told",
]


def _message(exc: BaseException) -> str:
    return str(exc)


@dataclass(frozen=True)
class Failure:
    """What an obstore error says, read from its "Debug source" dump (which escapes every
    string, so an object's name cannot fake its structure): the HTTP status and S3's error
    code and message where the server answered, else why the request failed."""

    status: int | None
    code: str | None
    message: str
    request: str | None
    connection: bool

    def describe(self) -> str:
        where = f"; {self.request}" if self.request else ""
        if self.status is not None:
            said = f"{self.code}: {self.message}" if self.code else self.message
            return f"{said} (HTTP {self.status}{where})"
        return f"{self.message} ({self.request})" if self.request else self.message


_DEBUG = "\n\nDebug source:\n"
_STATUS = re.compile(r"\n\s*status: (\d{3}),\n")
_BODY = re.compile(r'\n\s*body: Some\(\n\s*"((?:[^"\\]|\\.)*)",\n')
_METHOD = re.compile(r"\n\s*method: (\w+),\n\s*uri: Some\(\n\s*(\S+),\n")
_RETRIES = re.compile(r"\n\s*retries: (\d+),\n")
_OS_REASON = re.compile(r'\n\s*message: "((?:[^"\\]|\\.)*)",\n')
_HYPER_REASON = re.compile(r"hyper::Error\(\n\s*(\w+),")
_HTTP_KIND = re.compile(r"HttpError \{\n\s*kind: (\w+),")
_CONNECTION_KINDS = frozenset({"Connect", "Request", "Interrupted", "Timeout", "Decode", "Unknown"})


def _unescape(text: str) -> str:
    """A string as Rust's Debug wrote it (quotes, backslashes, \\n, \\u{...} escaped)."""
    return re.sub(
        r"\\(u\{[0-9a-fA-F]+\}|.)",
        lambda m: (
            chr(int(m.group(1)[2:-1], 16))
            if m.group(1).startswith("u{")
            else {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}.get(m.group(1), m.group(1))
        ),
        text,
    )


def _tag(body: str, name: str) -> str | None:
    found = re.search(rf"<{name}>([^<]*)</{name}>", body)
    return found.group(1).strip() if found else None


def failure_of(exc: BaseException) -> Failure:
    """What an obstore error says (see :class:`Failure`); an error without obstore's dump
    is told by its first line."""
    text = _message(exc)
    head, sep, debug = text.rpartition(_DEBUG)
    if not sep:
        head, debug = text, ""
    first = head.strip().split("\n", 1)[0] if head.strip() else type(exc).__name__
    request = None
    if found := _METHOD.search(debug):
        request = f"{found.group(1)} {found.group(2)}"
        if (retries := _RETRIES.search(debug)) and int(retries.group(1)):
            request += f", after {retries.group(1)} retries"
    if status := _STATUS.search(debug):
        body = _BODY.search(debug)
        xml = _unescape(body.group(1)) if body else ""
        code, said = _tag(xml, "Code"), _tag(xml, "Message")
        return Failure(int(status.group(1)), code, said or first, request, False)
    kind = _HTTP_KIND.search(debug)
    if request is not None and kind and kind.group(1) in _CONNECTION_KINDS:
        # the system's reason ("Connection refused") first, else hyper's, else the kind
        reasons = [_unescape(r) for r in _OS_REASON.findall(debug)]
        reasons = reasons or _HYPER_REASON.findall(debug) or [kind.group(1)]
        why = reasons[-1]
        return Failure(None, None, f"HTTP error: {why}", request, True)
    return Failure(None, None, first, request, False)


class S3RequestError(OSError):
    """An obstore request that failed, told briefly (:meth:`Failure.describe`); obstore's
    error is its ``__cause__``. ``response`` has botocore's shape, so
    :func:`kvstore.blob.retry.is_transient` reads the status and S3's code as on s3fs."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.describe())
        self.failure = failure
        self.response = {
            "Error": {
                "Code": failure.code or str(failure.status or ""),
                "Message": failure.message,
            },
            "ResponseMetadata": {"HTTPStatusCode": failure.status or 0},
        }


class S3ConnectionError(S3RequestError, ConnectionError):
    """A request obstore sent and got no answer to (refused, reset, closed, timed out),
    after its own retries: transient, as botocore's connection errors are."""


def is_obstore_error(exc: BaseException) -> bool:
    from obstore.exceptions import BaseError

    return isinstance(exc, BaseError) or (isinstance(exc, OSError) and _DEBUG in str(exc))


@contextlib.contextmanager
def told() -> Iterator[None]:
    """Errors obstore raised in the block leave it as :class:`S3RequestError`."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, S3RequestError) or not is_obstore_error(exc):
            raise
        failure = failure_of(exc)
        error = S3ConnectionError(failure) if failure.connection else S3RequestError(failure)
        raise error from exc


class ConditionalRequestConflict(S3RequestError):
    """S3's ``409 ConditionalRequestConflict`` after ``CONFLICT_ATTEMPTS`` sends: the write
    was not applied (kvstore's retry sees it as transient and not ambiguous)."""

    def __init__(self, failure: Failure | str) -> None:
        if isinstance(failure, str):
            failure = Failure(None, None, failure, None, False)
        super().__init__(replace(failure, status=409, code="ConditionalRequestConflict"))


def invalid_range(exc: BaseException) -> bool:
    """S3's 416 (InvalidRange), which obstore reports as a generic error."""
    failure = exc.failure if isinstance(exc, S3RequestError) else failure_of(exc)
    return failure.status == 416 or failure.code == "InvalidRange"
