"""Derive a remote method from the library's: same name, signature and docstring; the
arguments are checked against the signature here (a wrong call fails before any request,
with the library's TypeError), then the call crosses to the service (:mod:`.wire`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

from .transport import Service

P = ParamSpec("P")
R = TypeVar("R")


class Remote(Protocol):
    """What a remote object has: the service, its view's namespace, its ops' prefix."""

    _service: Service
    namespace_path: tuple[str, ...]
    _prefix: str
    _leading: tuple[Any, ...]
    """Arguments every call of this object starts with (a collection's name and span)."""

    def _shape(self, op: str, result: Any) -> Any: ...


def remote(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]:
    """The remote twin of the library's coroutine method ``method`` (for a class that is
    a :class:`Remote`)."""
    signature = inspect.signature(method)
    name = method.__name__

    async def call(self: Remote, *args: P.args, **kwargs: P.kwargs) -> R:
        bound = signature.bind(self, *args, **kwargs)
        op = self._prefix + name
        given: tuple[Any, ...] = (*self._leading, *bound.args[1:])
        result = await self._service.call(op, self.namespace_path, given, bound.kwargs)
        return cast(R, self._shape(op, result))

    return cast(
        Callable[Concatenate[Any, P], Coroutine[Any, Any, R]], functools.wraps(method)(call)
    )
