"""Versioned artifacts over HTTP, streamed both ways (memory stays bounded by a few parts
of 8 MiB whatever the size):

* ``PUT /v1/artifacts/{name}``: the body is a new version (``Content-Type`` its mime type,
  ``X-KVStore-Metadata`` a JSON object of metadata, bytes in it as ``{"$base64": ...}``
  as ``GET`` gives them; ``?raw=true``: stored byte for byte); answers ``{"version": n}``.
  The ``kvstore+http://`` client sends ``Content-Type: application/vnd.kvstore.artifact+
  msgpack`` instead: a frame of the save's arguments (kvstore.remote.wire), then the data.
* ``GET /v1/artifacts/{name}?version=n`` (the latest without): the bytes, with
  ``Content-Length``, the version's ``Content-Type``, ``ETag`` (its sha256) and
  ``X-KVStore-Version``; ``Range: bytes=a-b`` (one range) gives 206 and only those bytes.
  Every part is checked (CRC) on the way; a reader of the whole also checks the sha256.
* ``GET /v1/artifact-versions/{name}``: every version's info, from the manifests' headers
  (no data read); ``GET /v1/artifact-info/{name}?version=n``: one version's.
* ``DELETE /v1/artifacts/{name}?version=n`` (all versions without): ``{"deleted": count}``.
* ``GET /v1/artifacts?prefix=``: the names.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ..artifacts import ArtifactInfo
from ..remote import wire
from .body import BINARY, OCTETS, finite, headers, text
from .errors import HttpError, responses
from .routing import refuse_other_methods
from .scope import Scope, Scoped

router = APIRouter(prefix="/v1", tags=["artifacts"])

CHUNK = 1 << 20
"""Bytes handed to the server per write of a download."""
Name = Annotated[str, Path(description="the artifact's name ('/' allowed)")]
Version = Annotated[int | None, Query(ge=0, description="a version; none: the latest")]
LOADED = {
    "ETag": "the version's sha256",
    "X_KVStore_Version": "the version read",
    "Accept_Ranges": "bytes",
    "Content_Disposition": "attachment, with the name's last part",
    "X_Content_Type_Options": "nosniff",
    "Content_Security_Policy": "default-src 'none'; sandbox",
}
RANGE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})$")  # (past 19 digits: 416)


class Saved(BaseModel):
    version: int


class Info(BaseModel):
    """One version, without its data."""

    name: str
    version: int
    mime_type: str
    size: int
    sha256: str
    created_at: str
    metadata: dict[str, Any]


class Names(BaseModel):
    names: list[str]


class Deleted(BaseModel):
    deleted: int


def _info(found: ArtifactInfo) -> Info:
    return Info(
        name=found.name,
        version=found.version,
        mime_type=found.mime_type,
        size=found.size,
        sha256=found.sha256,
        created_at=found.created_at.isoformat(),
        metadata=_jsonable(found.metadata),
    )


def _from_json(value: Any) -> Any:
    """Metadata from JSON: ``{"$base64": ...}`` as the bytes it stands for (400 if it is
    not base64)."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("$base64"), str):
            try:
                return base64.b64decode(value["$base64"], validate=True)
            except ValueError:
                raise HttpError(400, "InvalidValueError", "a $base64 is not base64") from None
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    """Metadata as JSON: bytes (which the library allows) as ``{"$base64": ...}``."""
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@router.put(
    "/artifacts/{name:text}",
    summary="Save the body as the artifact's next version (streamed, any size)",
    status_code=201,
    responses=responses(403, 409, 413),
    openapi_extra={"requestBody": {"content": {OCTETS: BINARY}, "required": False}},
)
async def save(
    name: Name,
    request: Request,
    scoped: Scoped,
    content_type: Annotated[str | None, Header(), text()] = None,
    x_kvstore_metadata: Annotated[
        str | None,
        Header(description='a JSON object: the metadata (bytes as {"$base64": "..."})'),
        text(),
    ] = None,
    raw: Annotated[
        bool, Query(description="stored byte for byte (a presigned URL can serve it)")
    ] = False,
) -> Saved:
    scoped.require_write()
    if content_type is not None and content_type.strip().lower() == wire.UPLOAD_TYPE:
        return await _save_framed(name, request, scoped)
    metadata = None
    if x_kvstore_metadata is not None:
        try:
            metadata = json.loads(x_kvstore_metadata)
        except (ValueError, RecursionError):
            raise HttpError(400, "ConfigurationError", "X-KVStore-Metadata is not JSON") from None
        if not isinstance(metadata, dict):
            raise HttpError(400, "ConfigurationError", "X-KVStore-Metadata must be an object")
        finite(metadata, "X-KVStore-Metadata")
        metadata = _from_json(metadata)
    mime = content_type.strip() if content_type else None
    version = await scoped.store.artifacts.save(name, request.stream(), mime, metadata, raw=raw)
    return Saved(version=version)


async def _save_framed(name: str, request: Request, scoped: Scope) -> Saved:
    """The client's upload (:data:`kvstore.remote.wire.UPLOAD_TYPE`): the save's arguments
    in a frame before the data, handed to the library as they came."""
    try:
        arguments, data = await wire.read_frame(request.stream())
    except wire.WireError as exc:
        raise HttpError(400, "WireError", str(exc)) from None
    version = await scoped.store.artifacts.save(name, data, **arguments)
    return Saved(version=version)


def _range(header: str, size: int) -> tuple[int, int]:
    """``[start, end)`` of a single ``bytes=`` range; HttpError 416 if it cannot be met."""
    found = RANGE.match(header.strip())
    if found is None or not (found[1] or found[2]):
        raise HttpError(416, "RangeNotSatisfiable", f"only one bytes= range: not {header!r}")
    if not found[1]:  # the last N bytes (none of them, "-0": unsatisfiable)
        start, end = max(0, size - int(found[2])), size
    else:
        start = int(found[1])
        end = size if not found[2] else min(size, int(found[2]) + 1)
    if start >= size or start >= end:
        raise HttpError(
            416,
            "RangeNotSatisfiable",
            f"{header!r} of {size} bytes",
            **{"Content-Range": f"bytes */{size}"},
        )
    return start, end


@router.get(
    "/artifacts/{name:text}",
    summary="A version's bytes, streamed (Range: one bytes= range)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the bytes, of the version's type",
            "content": {"*/*": BINARY},
            "headers": headers(**LOADED),
        },
        206: {
            "description": "the bytes of the range",
            "content": {"*/*": BINARY},
            "headers": headers(**LOADED, Content_Range="the range's bytes, of the size"),
        },
        **responses(404, 416),
    },
)
async def load(
    name: Name,
    scoped: Scoped,
    version: Version = None,
    range_: Annotated[str | None, Header(alias="range"), text()] = None,
) -> Response:
    reader = await scoped.store.artifacts.open(name, version)
    if reader is None:
        raise HttpError(404, "NotFoundError", f"no artifact {name!r}" + _of(version))
    size = reader.info.size
    headers = {
        "ETag": f'"{reader.info.sha256}"',
        "X-KVStore-Version": str(reader.info.version),
        "Accept-Ranges": "bytes",
        # A stored file is never a page of this origin (the console's): downloaded, not
        # rendered or sniffed, and sandboxed if a browser renders it anyway.
        "Content-Disposition": _attachment(name),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    start, end, status = 0, size, 200
    if range_ is not None and size:
        try:
            start, end = _range(range_, size)
        except HttpError:
            await reader.close()
            raise
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    # The version's type as it is: media_type= would add "; charset=utf-8" to a text/* one.
    headers["Content-Type"] = reader.info.mime_type

    async def body() -> AsyncIterator[bytes]:
        try:
            if start:
                await reader.seek(start)
            left = end - start
            while left > 0:
                chunk = await reader.read(min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk
        finally:
            await reader.close()

    return StreamingResponse(body(), status, headers)


def _attachment(name: str) -> str:
    """``Content-Disposition: attachment`` with the name's last part (RFC 6266: ASCII
    fallback, and the UTF-8 name %-encoded - no quote, CR or LF reaches the header)."""
    base = name.rsplit("/", 1)[-1] or "artifact"
    ascii_name = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in base
    )
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(base, safe='')}"


def _of(version: int | None) -> str:
    return "" if version is None else f" version {version}"


@router.get(
    "/artifact-versions/{name:text}",
    summary="Every version's info (the manifests' headers: no data read)",
    responses=responses(),
)
async def versions(name: Name, scoped: Scoped) -> list[Info]:
    return [_info(i) for i in await scoped.store.artifacts.versions_info(name)]


@router.get(
    "/artifact-info/{name:text}", summary="One version's info (no data)", responses=responses(404)
)
async def info(name: Name, scoped: Scoped, version: Version = None) -> Info:
    found = await scoped.store.artifacts.info(name, version)
    if found is None:
        raise HttpError(404, "NotFoundError", f"no artifact {name!r}" + _of(version))
    return _info(found)


@router.delete(
    "/artifacts/{name:text}",
    summary="Delete a version, or every version",
    responses=responses(403, 404),
)
async def delete(name: Name, scoped: Scoped, version: Version = None) -> Deleted:
    scoped.require_write()
    deleted = await scoped.store.artifacts.delete(name, version)
    if not deleted:
        raise HttpError(404, "NotFoundError", f"no artifact {name!r}" + _of(version))
    return Deleted(deleted=deleted)


@router.get("/artifacts", summary="Artifact names (one listing)", responses=responses())
async def names(
    scoped: Scoped, prefix: Annotated[str, Query(description="only names starting with it")] = ""
) -> Names:
    return Names(names=await scoped.store.artifacts.list(prefix))


refuse_other_methods(router)
