"""Reading a request body whole, refusing one over the service's limit before it is all
read (413) - whether the client said its length or streams it in chunks."""

from __future__ import annotations

from fastapi import Request

from .errors import HttpError


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
