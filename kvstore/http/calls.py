"""``POST /v1/call``: a library call made by the service on the caller's store view - the
route behind ``kvstore.open("kvstore+http://...")`` (:mod:`kvstore.remote`).

The body is one call in :mod:`kvstore.remote.wire`'s msgpack (``[op, args, kwargs]``, an
operation of ``wire.OPS``); the answer is its result in the same msgpack (200), or the
library's error as every route gives it (its class's status, the JSON error body). A
read-only token may make the ``read`` and ``whole`` (reading) operations only, a namespace's
token none of the ``whole`` and ``whole-write`` ones. The arguments are checked against
the method's signature before it runs (400, as a ``TypeError`` would be in the library);
what it does with them is the library's own checking.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, cast

from fastapi import APIRouter, Request, Response

from ..errors import KVStoreError
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
    access = wire.OPS[op]
    if access in ("write", "whole-write"):
        scoped.require_write()
    if access in ("whole", "whole-write"):
        scoped.require_whole()
    try:
        result = await run(scoped, op, args, kwargs)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        if isinstance(exc, KVStoreError):
            raise
        # An argument of the right name but not of a type the library checks for (it
        # raises what Python would: 'int' object is not iterable ...): the caller's error.
        raise HttpError(400, "InvalidValueError", f"{op}: {type(exc).__name__}: {exc}") from None
    except MemoryError:
        raise HttpError(413, "PayloadTooLarge", f"{op}: the call needs more memory") from None
    answer = wire.pack(result)
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
        prefix, after, limit = _SIGNATURES[key_page].bind(store, *args, **kwargs).args[1:]
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= PAGE_MAX:
            raise HttpError(400, "ConfigurationError", f"a page is 1 to {PAGE_MAX} keys")
        return await key_page(store, prefix, after, limit)
    if op == "health":
        found: dict[str, Any] = await _method(store, op, args, kwargs)(*args, **kwargs)
        if not scoped.whole:  # where the data lives is the whole store's business
            found.get("store", {}).pop("url", None)
        return found
    if op in ("sessions.delete_user", "sessions.delete_app", "maintain", "rekey"):
        # progress: True here (the client's callable stays with it), the reports go back
        method = _method(store, op, args, kwargs)
        owner = store.sessions if op.startswith("sessions.") else store
        bound = _SIGNATURES[cast(Any, method).__func__].bind(owner, *args, **kwargs)
        reports: list[tuple[str, int, int]] = []
        if bound.arguments.get("progress") not in (None, False, True):
            raise HttpError(400, "ConfigurationError", "progress is True or False here")
        if bound.arguments.get("progress"):
            bound.arguments["progress"] = lambda what, done, total: reports.append(
                (what, done, total)
            )
        else:
            bound.arguments.pop("progress", None)
        result = await method(*bound.args[1:], **bound.kwargs)
        return [result, reports]
    return await _method(store, op, args, kwargs)(*args, **kwargs)


def _method(store: Any, op: str, args: list[Any], kwargs: dict[str, Any]) -> Callable[..., Any]:
    """The method ``op`` names on ``store`` (a records call's first two arguments, the
    collection's name and span, are taken off ``args``), its arguments checked."""
    owner, _, name = op.rpartition(".")
    if owner == "records":
        if len(args) < 2:
            raise HttpError(400, "ConfigurationError", "a records call starts with name, span")
        target = store.records(args.pop(0), args.pop(0))
    else:
        target = getattr(store, owner) if owner else store
    method: Callable[..., Any] = getattr(target, name)
    _bind(method, args, kwargs)
    return method


_SIGNATURES: dict[Callable[..., Any], inspect.Signature] = {}


def _bind(method: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> None:
    """HttpError 400 unless ``method`` takes these arguments (a bound method: its function's
    signature, found once, bound with the instance)."""
    function = getattr(method, "__func__", method)
    signature = _SIGNATURES.get(function)
    if signature is None:
        signature = _SIGNATURES[function] = inspect.signature(function)
    owner = getattr(method, "__self__", None)
    try:
        if owner is None:
            signature.bind(*args, **kwargs)
        else:
            signature.bind(owner, *args, **kwargs)
    except TypeError as exc:
        raise HttpError(400, "ConfigurationError", f"{method.__name__}: {exc}") from None


refuse_other_methods(router)
