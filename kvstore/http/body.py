"""Reading a request body whole, refusing one over the service's limit before it is all
read (413) - whether the client said its length or streams it in chunks."""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from pydantic import WithJsonSchema

from .errors import HttpError

OCTETS = "application/octet-stream"
BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
"""The OpenAPI description of a request body of any bytes (``application/octet-stream``)."""


def headers(**described: str) -> dict[str, Any]:
    """The OpenAPI description of an answer's headers, each a string: ``ETag="..."``
    (underscores in a name become dashes: ``X_KVStore_Version``)."""
    return {
        name.replace("_", "-"): {"description": text, "schema": {"type": "string"}}
        for name, text in described.items()
    }


MAX_DEPTH = 64
"""How deeply JSON a request carries may nest (a deeper one is refused: 400)."""


def finite(value: Any, what: str, depth: int = 0) -> None:
    """HttpError 400 if the JSON ``value`` holds a number JSON cannot carry - ``NaN``,
    ``Infinity`` or one too large for a double (``1e999``), which Python's and Pydantic's
    parsers take as float nan/inf: stored, they would read back as null - or nests deeper
    than :data:`MAX_DEPTH` (stored, it could not be read back within Python's recursion
    limit)."""
    if depth > MAX_DEPTH:
        raise HttpError(400, "InvalidValueError", f"{what} nests deeper than {MAX_DEPTH}")
    if isinstance(value, float) and not math.isfinite(value):
        raise HttpError(400, "InvalidValueError", f"{what} holds {value}: not a JSON number")
    if isinstance(value, dict):
        for item in value.values():
            finite(item, what, depth + 1)
    elif isinstance(value, list):
        for item in value:
            finite(item, what, depth + 1)


def text(pattern: str | None = None) -> WithJsonSchema:
    """The schema of an optional header's value: a string (matching ``pattern``) - absent
    or there, never null, which is what ``str | None`` alone would document."""
    schema: dict[str, Any] = {"type": "string"}
    if pattern is not None:
        schema["pattern"] = pattern
    return WithJsonSchema(schema)


async def read_body(request: Request) -> bytes:
    limit: int = request.app.state.config.max_body
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HttpError(400, "ConfigurationError", f"bad Content-Length {declared!r}")
        if int(declared) > limit:
            raise HttpError(413, "PayloadTooLarge", f"the body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, "PayloadTooLarge", f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
