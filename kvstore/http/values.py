"""Values over HTTP: ``/v1/values/{key}`` (GET, HEAD, PUT, DELETE), ``/v1/ttl/{key}``
and ``/v1/keys`` (a page of keys).

A value's ``ETag`` is a digest of its bytes (a *representation* validator, RFC 9110), so a
GET answers it from the cache - no request to the object store for a cache hit - and a
conditional request checks it:

* ``If-None-Match: *`` on PUT: only if the key is missing (Redis ``SET NX``; one
  conditional create, atomic across processes); 412 if it exists.
* ``If-Match: "<etag>"`` on PUT: only if the value is still that one - a compare-and-swap:
  one GET of the current version, then a conditional PUT on it (atomic: a write in between
  fails the PUT); 412 otherwise. ``If-Match: *``: only if the key exists (``SET XX``).
* ``If-None-Match: "<etag>"`` on GET/HEAD: 304 when the value is still that one.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BaseModel, Field

from ..api import AsyncKVStore
from .body import BINARY, OCTETS, headers, read_body, text
from .errors import HttpError, responses
from .routing import refuse_other_methods
from .scope import Scoped

router = APIRouter(prefix="/v1", tags=["values"])

MAX_TTL_MS = 2**53 - 1
"""The longest TTL taken (ms, ~285,000 years): within the library's bound (2**62) and
exact as a JSON number anywhere (a double), so ``ttl_ms`` one over it is refused as such."""
ETAG_DOC = "the value's digest (a strong validator)"
STAR = r"^\s*\*\s*$"
KEY_DOC = "the key (any text; %-encode '/', '?', '#' and '%' in it as usual)"


def etag(value: bytes) -> str:
    return '"' + hashlib.blake2b(value, digest_size=12).hexdigest() + '"'


def _matches(header: str, tag: str) -> bool:
    """Whether an If-Match/If-None-Match list names ``tag`` (weak tags compare weakly)."""
    return any(t.strip().removeprefix("W/") == tag for t in header.split(","))


def _bytes(found: bytes | str) -> bytes:
    assert isinstance(found, bytes)  # the service's store never decodes
    return found


async def _value(scoped: Scoped, key: str) -> bytes:
    found = await scoped.store.get(key)
    if found is None:
        raise HttpError(404, "NotFoundError", f"no value at key {key!r}")
    return _bytes(found)


@router.get(
    "/values/{key:text}",
    summary="A value's bytes (cached; ETag: a digest of them)",
    response_class=Response,
    responses={
        200: {"content": {OCTETS: BINARY}, "headers": headers(ETag=ETAG_DOC)},
        304: {"description": "not modified (If-None-Match)", "headers": headers(ETag=ETAG_DOC)},
        **responses(404, 409),
    },
)
async def get_value(
    key: Annotated[str, Path(description=KEY_DOC)],
    scoped: Scoped,
    if_none_match: Annotated[str | None, Header(), text()] = None,
) -> Response:
    value = await _value(scoped, key)
    tag = etag(value)
    if if_none_match is not None and (if_none_match.strip() == "*" or _matches(if_none_match, tag)):
        return Response(status_code=304, headers={"ETag": tag})
    return Response(value, media_type=OCTETS, headers={"ETag": tag, "Cache-Control": "no-store"})


@router.head("/values/{key:text}", include_in_schema=False)
async def head_value(key: str, scoped: Scoped) -> Response:
    value = await _value(scoped, key)
    return Response(
        headers={"ETag": etag(value), "Content-Length": str(len(value))}, media_type=OCTETS
    )


@router.put(
    "/values/{key:text}",
    summary="Store a value (the request body), atomically; conditions in If-Match/If-None-Match",
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "stored", "headers": headers(ETag=ETAG_DOC)},
        **responses(403, 409, 412, 413),
    },
    openapi_extra={"requestBody": {"content": {OCTETS: BINARY}, "required": False}},
)
async def put_value(
    key: Annotated[str, Path(description=KEY_DOC)],
    request: Request,
    scoped: Scoped,
    ttl_ms: Annotated[
        int | None, Query(ge=1, le=MAX_TTL_MS, description="expire after this many ms")
    ] = None,
    keepttl: Annotated[bool, Query(description="keep the key's current TTL")] = False,
    if_match: Annotated[str | None, Header(), text()] = None,
    if_none_match: Annotated[
        str | None,
        Header(pattern=STAR, description="on PUT: * (create only)"),
        text(STAR),
    ] = None,
) -> Response:
    scoped.require_write()
    if ttl_ms is not None and keepttl:
        raise HttpError(400, "ConfigurationError", "give ttl_ms or keepttl, not both")
    if if_match is not None and if_none_match is not None:
        raise HttpError(400, "ConfigurationError", "give If-Match or If-None-Match, not both")
    value = await read_body(request)
    store = scoped.store
    options: dict[str, Any] = {"px": ttl_ms, "keepttl": keepttl}
    if if_none_match is not None:
        done = await store.set(key, value, nx=True, **options)
    elif if_match is not None and if_match.strip() == "*":
        done = await store.set(key, value, xx=True, **options)
    elif if_match is not None:
        found = await store.get_versioned(key)
        done = None
        if found is not None and _matches(if_match, etag(_bytes(found.value))):
            done = await store.set(key, value, if_version=found.version, **options)
    else:
        done = await store.set(key, value, **options)
    if not done:
        raise HttpError(412, "PreconditionFailed", f"the condition on key {key!r} does not hold")
    return Response(status_code=204, headers={"ETag": etag(value)})


@router.delete(
    "/values/{key:text}",
    summary="Delete a value (or a log) at the key; 404 if there was none",
    status_code=204,
    response_class=Response,
    responses=responses(403, 404),
)
async def delete_value(key: Annotated[str, Path(description=KEY_DOC)], scoped: Scoped) -> Response:
    scoped.require_write()
    if not await scoped.store.delete(key):
        raise HttpError(404, "NotFoundError", f"nothing at key {key!r}")
    return Response(status_code=204)


class Ttl(BaseModel):
    """A key's time to live: milliseconds left, or None for a key that never expires."""

    ttl_ms: int | None


class NewTtl(BaseModel):
    """A time to live to set: milliseconds (>= 1), or None to remove it."""

    ttl_ms: Annotated[int | None, Field(ge=1, le=MAX_TTL_MS)]


@router.get("/ttl/{key:text}", summary="A key's time to live (cached)", responses=responses(404))
async def get_ttl(key: Annotated[str, Path(description=KEY_DOC)], scoped: Scoped) -> Ttl:
    left = await scoped.store.pttl(key)
    if left == -2:
        raise HttpError(404, "NotFoundError", f"nothing at key {key!r}")
    return Ttl(ttl_ms=None if left == -1 else left)


@router.put(
    "/ttl/{key:text}",
    summary="Set a key's time to live (ttl_ms), or remove it (null)",
    responses=responses(403, 404),
)
async def put_ttl(
    key: Annotated[str, Path(description=KEY_DOC)], ttl: NewTtl, scoped: Scoped
) -> Ttl:
    scoped.require_write()
    if ttl.ttl_ms is None:
        done = await scoped.store.persist(key) or await scoped.store.exists(key) > 0
    else:
        done = await scoped.store.pexpire(key, ttl.ttl_ms)
    if not done:
        raise HttpError(404, "NotFoundError", f"nothing at key {key!r}")
    return Ttl(ttl_ms=ttl.ttl_ms)


class KeyPage(BaseModel):
    """A page of value keys in listing order, and the cursor of the next page (None: last)."""

    keys: list[str]
    next: str | None


@router.get("/keys", summary="A page of value keys (one LIST)", responses=responses())
async def list_keys(
    scoped: Scoped,
    prefix: Annotated[str, Query(description="only keys starting with it")] = "",
    after: Annotated[str | None, Query(description="the cursor: a page's `next`")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> KeyPage:
    keys, cursor = await key_page(scoped.store, prefix, after, limit)
    return KeyPage(keys=keys, next=cursor)


async def key_page(
    store: AsyncKVStore, prefix: str, after: str | None, limit: int
) -> tuple[list[str], str | None]:
    """Up to ``limit`` value keys after the cursor ``after``, and the cursor of the next
    page (None: this was the last) - as many of the store's listings as that takes."""
    pages = store.key_pages(prefix, logs=False, after=after, page_size=limit + 1)
    keys: list[str] = []
    try:
        async for page in pages:
            keys.extend(page)
            if len(keys) > limit:
                break
    finally:
        await pages.aclose()  # type: ignore[attr-defined]
    more = len(keys) > limit
    keys = keys[:limit]
    return keys, keys[-1] if more else None


refuse_other_methods(router)
