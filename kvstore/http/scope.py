"""A request's scope: who is calling (the bearer token, compared in constant time) and
the store view it may touch (the token's namespace, and ``?ns=`` inside it)."""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import unquote_to_bytes

from fastapi import Depends, Query, Request

from ..api import AsyncKVStore
from .config import HttpConfig, Token
from .errors import HttpError

COOKIE = "kvstore_token"
"""The cookie the console's login sets (:mod:`.console`): a token, taken like the bearer
header when there is none - on GET and HEAD only, so a page of another site cannot make a
browser write with it (and it is ``SameSite=Strict``)."""


@dataclass(frozen=True)
class Scope:
    """What one request may touch: ``store`` (the view: the token's namespace, then the
    request's ``ns``) and whether it may write (``token`` None: no tokens configured)."""

    store: AsyncKVStore
    write: bool
    token: str | None
    whole: bool = True
    """The caller's token covers the whole store (no namespace; or no tokens at all)."""

    def require_write(self) -> None:
        if not self.write:
            raise HttpError(403, "Forbidden", f"token {self.token!r} may only read")

    def require_whole(self) -> None:
        """The store's own counters and health tell of every tenant's traffic and where
        the data lives: for whole-store tokens only."""
        if not self.whole:
            raise HttpError(403, "Forbidden", "a namespace's token cannot see the whole store")


def token_of(config: HttpConfig, header: str | None) -> Token | None:
    """The token a request's ``Authorization: Bearer ...`` names (None when the service
    has no tokens); HttpError 401 otherwise. Every token is compared, in constant time."""
    if not config.tokens:
        return None
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HttpError(401, "Unauthorized", "a bearer token is required", **_challenge())
    secret = given.strip().encode()
    found = None
    for token in config.tokens:
        if hmac.compare_digest(token.secret, secret):
            found = token
    if found is None:
        raise HttpError(401, "Unauthorized", "unknown token", **_challenge())
    return found


def grant(config: HttpConfig, secret: str) -> Token | None:
    """The token ``secret`` is (compared as the header's is); HttpError 401 if none."""
    return token_of(config, f"Bearer {secret}")


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="kvstore"'}


async def scope(
    request: Request,
    ns: Annotated[
        str | None,
        Query(
            pattern=r"^[^/]+(/[^/]+)*$",
            description="a namespace inside the token's (nested with '/'); none: the token's",
        ),
    ] = None,
) -> Scope:
    app = request.app
    header = request.headers.get("authorization")
    if header is None and request.method in ("GET", "HEAD") and COOKIE in request.cookies:
        header = f"Bearer {request.cookies[COOKIE]}"
    token = token_of(app.state.config, header)
    _check_path(request)
    store: AsyncKVStore = app.state.store
    if token is not None and token.namespace:
        store = store.namespace(token.namespace)
    nested = request.headers.get(NAMESPACE_HEADER)
    if nested is not None:
        if ns is not None:
            raise HttpError(400, "ConfigurationError", f"give ns or {NAMESPACE_HEADER}, not both")
        for part in _names(nested):
            store = store.namespace(part)
    elif ns is not None:
        if not ns or any(not part for part in ns.split("/")):
            raise HttpError(400, "ConfigurationError", f"ns must be non-empty parts, not {ns!r}")
        for part in ns.split("/"):
            store = store.namespace(part)
    if token is None:
        return Scope(store, True, None)
    return Scope(store, token.write, token.name, whole=not token.namespace)


NAMESPACE_HEADER = "X-KVStore-Namespace"
"""The namespace path as a JSON array of names, for names that hold a '/' (which ``?ns=``
cannot carry): what the ``kvstore+http://`` client sends."""


def _names(header: str) -> list[str]:
    try:
        names = json.loads(header)
    except (ValueError, RecursionError):
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise HttpError(
            400, "ConfigurationError", f"{NAMESPACE_HEADER} is a JSON array of non-empty names"
        )
    return names


def _check_path(request: Request) -> None:
    """A key in a path is text: %-escapes that are not UTF-8 (``%FF``) are refused - the
    server would read each as U+FFFD, and ``%FE`` and ``%FF`` would be the same key."""
    for part, what in (("raw_path", "path"), ("query_string", "query")):
        raw = request.scope.get(part)
        if not raw:
            continue
        try:
            unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(
                400, "InvalidKeyError", f"the {what} is not UTF-8 once %-decoded: text only"
            ) from None


Scoped = Annotated[Scope, Depends(scope)]
