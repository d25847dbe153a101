"""How the service's routes match: ``{key:text}``, a path parameter of any text (newlines
too), and a 405 with the right ``Allow`` for a method a path lacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.convertors import Convertor, register_url_convertor

from .errors import HttpError


class AnyText(Convertor[str]):
    """``{key:text}``: a path parameter of any text - '/' and newlines too. (Starlette's
    ``{key:path}`` is ``.*``, which stops at a newline: a key holding one would have no
    route, a 404, though keys are any text.)"""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("text", AnyText())


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def refuse_other_methods(router: APIRouter) -> None:
    """For each path of ``router``, a route answering every method the path lacks with
    405 and an ``Allow`` header listing all those it has (without it, the first route of
    the path would answer for its own methods only: ``Allow: GET`` on a path that has
    GET, PUT and DELETE). Call once the router's routes are all declared."""
    allowed: dict[str, set[str]] = {}
    for route in router.routes:
        if isinstance(route, APIRoute):
            allowed.setdefault(route.path, set()).update(route.methods or ())
    for path, methods in allowed.items():
        others = [m for m in HTTP_METHODS if m not in methods]
        allow = ", ".join(m for m in HTTP_METHODS if m in methods)
        router.add_api_route(
            path.removeprefix(router.prefix),
            _not_allowed(allow),
            methods=others,
            include_in_schema=False,
        )


def _not_allowed(allow: str) -> Callable[[], Any]:
    async def not_allowed() -> None:
        raise HttpError(405, "MethodNotAllowed", f"this path takes {allow}", Allow=allow)

    return not_allowed
