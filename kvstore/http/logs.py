"""Append logs over HTTP: ``/v1/logs/{key}`` (POST appends, GET reads a range),
``/v1/length/{key}`` and ``/v1/logs`` (the logs that hold records).

Records are bytes: a POST's body is one record (``application/octet-stream``), or a JSON
batch ``{"records": [...], "encoding": "utf-8" | "base64"}`` appended at once (one object,
consecutive sequence numbers). A GET returns ``{"first": seq, "records": [...],
"encoding": ...}`` - base64 by default, ``encoding=utf-8`` for text (400 if a record is
not). ``expect_next`` makes an append conditional (409 if the log moved on): of writers
racing with the same value, exactly one wins.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel

from .body import BINARY, OCTETS, read_body
from .errors import HttpError, responses
from .routing import refuse_other_methods
from .scope import Scoped
from .values import KEY_DOC

MAX_READ = 10_000
"""Records one GET of a log returns at most (a whole log is paged, never held at once)."""
router = APIRouter(prefix="/v1", tags=["logs"])

Encoding = Literal["base64", "utf-8"]
Key = Annotated[str, Path(description=KEY_DOC)]


class Appended(BaseModel):
    """The sequence numbers the records got: ``[first, next)``."""

    first: int
    next: int


class Records(BaseModel):
    """Records of a log from sequence number ``first`` on, in ``encoding``."""

    first: int
    records: list[str]
    encoding: Encoding


class Length(BaseModel):
    """Records in the log, and the sequence number the next one gets."""

    length: int
    next_seq: int


class LogKeys(BaseModel):
    keys: list[str]


def _decode(records: Any, encoding: Any) -> list[bytes]:
    if encoding not in ("utf-8", "base64"):
        raise HttpError(
            400, "ConfigurationError", f"encoding must be utf-8 or base64, not {encoding!r}"
        )
    if not isinstance(records, list) or not records or any(not isinstance(r, str) for r in records):
        raise HttpError(400, "ConfigurationError", "records must be a non-empty list of strings")
    if encoding == "utf-8":
        try:
            return [r.encode() for r in records]
        except UnicodeEncodeError:  # a lone surrogate, "\ud800" in the JSON: not text
            raise HttpError(400, "ConfigurationError", "a record is not valid Unicode") from None
    try:
        return [base64.b64decode(r, validate=True) for r in records]
    except (binascii.Error, ValueError):
        raise HttpError(400, "ConfigurationError", "a record is not valid base64") from None


def _bytes(record: bytes | str) -> bytes:
    assert isinstance(record, bytes)  # the service's store never decodes
    return record


def _encode(records: list[bytes], encoding: Encoding) -> list[str]:
    if encoding == "base64":
        return [base64.b64encode(r).decode() for r in records]
    try:
        return [r.decode() for r in records]
    except UnicodeDecodeError:
        raise HttpError(
            400, "ConfigurationError", "a record is not UTF-8: ask for base64"
        ) from None


@router.post(
    "/logs/{key:text}",
    summary="Append one record (the body) or a JSON batch; durable when answered",
    status_code=201,
    responses=responses(403, 409, 413),
    openapi_extra={
        "requestBody": {
            "content": {
                OCTETS: BINARY,
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["records"],
                        "properties": {
                            "records": {
                                "type": "array",
                                "items": {"type": "string"},
                                "minItems": 1,
                            },
                            "encoding": {"enum": ["utf-8", "base64"], "default": "utf-8"},
                        },
                    }
                },
            }
        }
    },
)
async def append(
    key: Key,
    request: Request,
    scoped: Scoped,
    expect_next: Annotated[
        int | None, Query(ge=0, description="append only if the first record gets this number")
    ] = None,
) -> Appended:
    scoped.require_write()
    body = await read_body(request)
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        try:
            batch = json.loads(body)
        except (ValueError, RecursionError):
            raise HttpError(400, "ConfigurationError", "the body is not JSON") from None
        if not isinstance(batch, dict):
            raise HttpError(400, "ConfigurationError", 'expected {"records": [...]}')
        records = _decode(batch.get("records"), batch.get("encoding", "utf-8"))
    else:
        records = [body]
    seqs = await scoped.store.extend(key, records, expect_next=expect_next)
    return Appended(first=seqs.start, next=seqs.stop)


@router.get("/logs/{key:text}", summary="Records of a log (cached)", responses=responses(409))
async def read(
    key: Key,
    scoped: Scoped,
    start: Annotated[int | None, Query(description="LRANGE index (negative: from the end)")] = None,
    end: Annotated[int | None, Query(description="LRANGE index, inclusive")] = None,
    from_seq: Annotated[
        int | None, Query(ge=0, description="records from this sequence number")
    ] = None,
    count: Annotated[int | None, Query(ge=0, le=MAX_READ, description="at most this many")] = None,
    encoding: Encoding = "base64",
) -> Records:
    store = scoped.store
    if from_seq is not None:
        if start is not None or end is not None:
            raise HttpError(400, "ConfigurationError", "give from_seq or start/end, not both")
        pairs = await store.range_from(key, from_seq, 1000 if count is None else count)
        first = pairs[0][0] if pairs else from_seq
        found = [_bytes(r) for _, r in pairs]
    else:
        if count is not None:
            raise HttpError(400, "ConfigurationError", "count goes with from_seq")
        lo, hi = 0 if start is None else start, -1 if end is None else end
        if lo < 0 or hi < 0 or hi - lo + 1 > MAX_READ:  # the window, by the (cached) length
            length = await store.length(key)
            lo, hi = (max(0, length + i) if i < 0 else i for i in (lo, hi))
            hi = min(hi, length - 1)
        if hi - lo + 1 > MAX_READ:
            raise HttpError(
                400,
                "ConfigurationError",
                f"at most {MAX_READ} records a read: page with start/end or from_seq/count",
            )
        first, records = await store.range_at(key, lo, hi)
        found = [_bytes(r) for r in records]
    return Records(first=first, records=_encode(found, encoding), encoding=encoding)


@router.get(
    "/length/{key:text}",
    summary="A log's length and next sequence number",
    responses=responses(409),
)
async def length(key: Key, scoped: Scoped) -> Length:
    store = scoped.store
    return Length(length=await store.length(key), next_seq=await store.next_seq(key))


@router.get("/logs", summary="The logs holding records (one listing)", responses=responses())
async def list_logs(
    scoped: Scoped, prefix: Annotated[str, Query(description="only keys starting with it")] = ""
) -> LogKeys:
    return LogKeys(keys=await scoped.store.log_keys(prefix))


refuse_other_methods(router)
