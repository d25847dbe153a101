"""Errors as HTTP answers: the library's exception classes, each with one status, and the
same JSON body everywhere - ``{"error": {"type": "InvalidKeyError", "message": "..."}}``.

====================================================  ======
``InvalidKeyError``, ``ConfigurationError``,          400
``InvalidValueError``, ``ResponseDecodeError``, a
malformed request
no or a wrong bearer token                            401
a read-only token writing, a namespace not granted    403
``NotFoundError``, a missing key                      404
``ConflictError`` (``StaleSessionError`` ...),         409
``WrongTypeError`` (the key holds another type)
a failed ``If-Match``/``If-None-Match``               412
a method the path does not have (``Allow`` lists      405
those it has)
a body over the limit                                 413
a ``Range`` that cannot be met (artifacts)            416
``UnsupportedOperationError``                         501
``CorruptDataError`` (the store returned bad data)    502
``BackendError``, the store unreachable               503
====================================================  ======
"""

from __future__ import annotations

from typing import Any

from .. import errors

STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (errors.StaleSessionError, 409),
    (errors.SessionExistsError, 409),
    (errors.ConflictError, 409),
    (errors.WrongTypeError, 409),
    (errors.NotFoundError, 404),
    (errors.InvalidKeyError, 400),
    (errors.ConfigurationError, 400),
    (errors.InvalidValueError, 400),
    (errors.ResponseDecodeError, 400),
    (errors.UnsupportedOperationError, 501),
    (errors.CorruptDataError, 502),
    (errors.BackendError, 503),
)


class HttpError(Exception):
    """An answer other than success, raised by a handler: ``status``, the error's
    ``type`` (the library's class name where there is one) and its message."""

    def __init__(self, status: int, kind: str, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers


def status_of(exc: BaseException) -> int | None:
    """The status of a library error, None for anything else (a bug: 500)."""
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return None


def body(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


ERROR_SCHEMA: dict[str, Any] = {
    "description": "an error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["type", "message"],
                        "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                    }
                },
            }
        }
    },
}
"""The OpenAPI description of an error answer."""


COMMON = (400, 401, 501, 502, 503)
"""What any route over the store may answer: a malformed request or ``?ns=`` (400), no
or an unknown token (401), an operation the backend lacks (501), bad data from the store
(502), the store unreachable (503)."""


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route declares: :data:`COMMON` and ``statuses`` (403 for a
    write, 404, 409, 412 ...), each with the one error body."""
    return {s: ERROR_SCHEMA for s in sorted({*COMMON, *statuses})}
