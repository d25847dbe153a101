"""The client's HTTP: one connection pool per event loop (httpx), the bearer token, the
store view's namespace (``X-KVStore-Namespace``), the service's errors raised as the library's
own.

What a failure becomes:

* the service's JSON error -> the library class it names (``InvalidKeyError``,
  ``WrongTypeError``, ``StaleSessionError`` ...; a class this client does not know: its
  nearest kind by status), with the service's message;
* no connection, a timeout, a broken answer -> :class:`~kvstore.errors.BackendError`
  naming the operation and the service (as an unreachable object store is). A request
  that may have reached the service is **not** sent again (an append must not happen
  twice); only connecting is retried (``retries``).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from .. import errors
from ..stats import Stats
from . import wire

_BY_NAME: dict[str, type[errors.KVStoreError]] = {
    cls.__name__: cls
    for cls in (
        errors.ConfigurationError,
        errors.InvalidKeyError,
        errors.InvalidValueError,
        errors.UnsupportedOperationError,
        errors.CorruptDataError,
        errors.WrongTypeError,
        errors.ResponseDecodeError,
        errors.ConflictError,
        errors.NotFoundError,
        errors.SessionExistsError,
        errors.StaleSessionError,
        wire.WireError,
    )
}
_BY_STATUS: dict[int, type[errors.KVStoreError]] = {
    400: errors.ConfigurationError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    412: errors.ConflictError,
    413: errors.ConfigurationError,
    416: errors.ConfigurationError,
    501: errors.UnsupportedOperationError,
    502: errors.CorruptDataError,
}


NAMESPACE_HEADER = "X-KVStore-Namespace"
"""The store view's namespace path, a JSON array of names (kvstore.http.scope)."""


class Service:
    """The HTTP side of one client: base URL, token, timeouts, counters."""

    def __init__(
        self, base: str, token: str | None, *, timeout: float, retries: int, stats: Stats
    ) -> None:
        self.base = base.rstrip("/")
        self.stats = stats
        self._headers = {"User-Agent": "kvstore-client"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self._retries = retries
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.AsyncClient:
        """This event loop's pool (a pool is bound to the loop that opened it). The pools
        of loops that closed are let go (they cannot be closed without their loop: their
        sockets close when they are collected)."""
        loop = asyncio.get_running_loop()
        found = self._clients.get(loop)
        if found is not None:
            return found
        with self._lock:
            for old in [k for k in self._clients if k.is_closed()]:
                del self._clients[old]
            found = self._clients.get(loop)
            if found is None:
                found = self._clients[loop] = self._new_client()
        return found

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base,
            headers=self._headers,
            timeout=self._timeout,
            trust_env=False,
            transport=httpx.AsyncHTTPTransport(retries=self._retries),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            found = self._clients.pop(loop, None)
        if found is not None:
            await found.aclose()

    # -- requests ------------------------------------------------------------------------------

    async def call(
        self,
        op: str,
        namespace: tuple[str, ...],
        args: Any,
        kwargs: Any,
        timeout: float | None = None,
    ) -> Any:
        """Make the library call ``op`` on the service's view ``namespace``; its result.
        ``timeout``: seconds for this request, instead of the client's."""
        body = wire.call(op, args, kwargs)
        answer = await self.send(
            "POST",
            "/v1/call",
            op,
            namespace,
            content=body,
            headers={"Content-Type": wire.MEDIA_TYPE},
            timeout=timeout,
        )
        try:
            return wire.unpack(answer.content)
        except wire.WireError as exc:
            raise errors.BackendError(op, self.base, exc) from None

    async def send(
        self,
        method: str,
        path: str,
        op: str,
        namespace: tuple[str, ...],
        *,
        params: Mapping[str, Any] | None = None,
        expect: tuple[int, ...] = (200, 201, 204, 206),
        content: bytes | AsyncIterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """One request, read whole; the answer if its status is in ``expect``, else the
        library's error for it."""
        if namespace:
            headers = {**(headers or {}), NAMESPACE_HEADER: json.dumps(namespace)}
        request = self.client.build_request(
            method,
            path,
            params={k: v for k, v in (params or {}).items() if v is not None},
            content=content,
            headers=headers,
            timeout=self._timeout if timeout is None else httpx.Timeout(timeout),
        )
        self.stats.add("requests")
        self.stats.add(f"requests.{op}")
        if isinstance(content, bytes):
            self.stats.add("bytes_written", len(content))
        elif content is not None:
            content = self._counted(content)
        try:
            answer = await self.client.send(request)
        except httpx.HTTPError as exc:
            self.stats.add("errors")
            raise errors.BackendError(op, self.base, exc) from None
        self.stats.add("bytes_read", len(answer.content))
        if answer.status_code not in expect:
            self.stats.add("errors")
            raise self.error(op, answer)
        return answer

    async def _counted(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in stream:
            self.stats.add("bytes_written", len(chunk))
            yield chunk

    def error(self, op: str, answer: httpx.Response) -> Exception:
        """The library's exception for the service's error answer to ``op``."""
        kind, message = "", answer.text[:500]
        try:
            found = json.loads(answer.content)["error"]
            kind, message = str(found["type"]), str(found["message"])
        except (ValueError, KeyError, TypeError):
            pass
        status = answer.status_code
        if status in (401, 403):
            return errors.ForbiddenError(
                f"{op}: the service refused the token ({status}): {message}"
            )
        if status == 503 or (status >= 500 and kind not in _BY_NAME and status not in _BY_STATUS):
            cause = RuntimeError(f"{status} {kind}: {message}".strip())
            return errors.BackendError(op, self.base, cause)
        cls = _BY_NAME.get(kind) or _BY_STATUS.get(status) or errors.KVStoreError
        return cls(message)


def path_of(name: str) -> str:
    """An artifact name as one path segment: everything %-encoded but letters, digits and
    ``_-~``, the dots too - so no client or proxy can read ``.``/``..`` segments in it and
    "normalize" the path to another name (the service decodes the segment whole)."""
    return quote(name, safe="").replace(".", "%2E")
