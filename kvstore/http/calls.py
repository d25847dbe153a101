"""``POST /v1/call``: a library call made by the service on the caller's store view - the
route behind ``kvstore.open("kvstore+http://...")`` (:mod:`kvstore.remote`).

The body is one call in :mod:`kvstore.remote.wire`'s msgpack (``[op, args, kwargs]``, an
operation of ``wire.OPS``); the answer is its result in the same msgpack (200), or the
library's error as every route gives it (its class's status, the JSON error body). A
read-only token may make the ``read`` operations only. The arguments are checked against
the method's signature before it runs (400, as a ``TypeError`` would be in the library);
what it does with them is the library's own checking.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response

from ..remote import wire
from .body import BINARY, read_body
from .errors import HttpError, responses
from .routing import refuse_other_methods
from .scope import Scope, Scoped
from .values import key_page

router = APIRouter(prefix="/v1", tags=["calls"])

PAGE_MAX = 1000
"""The most keys one ``key_page`` call returns (a LIST's page)."""


@router.post(
    "/call",
    summary="A library call made on the store view (the kvstore+http:// client's route)",
    response_class=Response,
    responses={
        200: {"description": "the result", "content": {wire.MEDIA_TYPE: BINARY}},
        **responses(403, 404, 409, 413),
    },
    openapi_extra={"requestBody": {"content": {wire.MEDIA_TYPE: BINARY}, "required": True}},
)
async def call(request: Request, scoped: Scoped) -> Response:
    data = await read_body(request)
    try:
        op, args, kwargs = wire.parse_call(data)
    except wire.WireError as exc:
        raise HttpError(400, "WireError", str(exc)) from None
    if wire.OPS[op] == "write":
        scoped.require_write()
    answer = wire.pack(await run(scoped, op, args, kwargs))
    limit: int = request.app.state.config.max_body
    if len(answer) > limit:
        raise HttpError(
            413,
            "PayloadTooLarge",
            f"the result of {op} is {len(answer)} bytes, over the service's limit of {limit}: "
            "ask for less at a time (a range of a log, keys by page)",
        )
    return Response(answer, media_type=wire.MEDIA_TYPE)


async def run(scoped: Scope, op: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """The result of the call ``op(*args, **kwargs)`` on ``scoped``'s store view."""
    store = scoped.store
    if op == "key_page":
        _bind(key_page, [store, *args], kwargs)
        prefix, after, limit = inspect.signature(key_page).bind(store, *args, **kwargs).args[1:]
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= PAGE_MAX:
            raise HttpError(400, "ConfigurationError", f"a page is 1 to {PAGE_MAX} keys")
        return await key_page(store, prefix, after, limit)
    if op == "health":
        found: dict[str, Any] = await _method(store, op, args, kwargs)(*args, **kwargs)
        if not scoped.whole:  # where the data lives is the whole store's business
            found.get("store", {}).pop("url", None)
        return found
    if op in ("sessions.delete_user", "sessions.delete_app"):
        reports: list[tuple[str, int, int]] = []
        if kwargs.pop("progress", False) is True:
            kwargs["progress"] = lambda what, done, total: reports.append((what, done, total))
        deleted = await _method(store, op, args, kwargs)(*args, **kwargs)
        return [deleted, reports]
    return await _method(store, op, args, kwargs)(*args, **kwargs)


def _method(store: Any, op: str, args: list[Any], kwargs: dict[str, Any]) -> Callable[..., Any]:
    owner, _, name = op.rpartition(".")
    method: Callable[..., Any] = getattr(getattr(store, owner) if owner else store, name)
    _bind(method, args, kwargs)
    return method


def _bind(method: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> None:
    try:
        inspect.signature(method).bind(*args, **kwargs)
    except TypeError as exc:
        raise HttpError(400, "ConfigurationError", f"{method.__name__}: {exc}") from None


refuse_other_methods(router)
