"""The event loop ``kvstore serve`` runs on (``--loop``): uvloop's when it is installed,
else asyncio's."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import ConfigurationError

T = TypeVar("T")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop ``kvstore serve`` runs on: uvloop's when it is installed (``auto``:
    a cache-hit GET costs a third less CPU there - BENCHMARKS.md, S16), asyncio's
    otherwise or when asked. ``uvloop`` without uvloop installed is a ConfigurationError."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigurationError(
                    "--loop uvloop: uvloop is not installed (pip install 'kvstore[server]')"
                ) from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def loop_name() -> str:
    """The running event loop's implementation: ``uvloop`` or ``asyncio``."""
    return type(asyncio.get_running_loop()).__module__.partition(".")[0]


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """``asyncio.run(main)`` on the loop ``choice`` names (see :func:`loop_factory`)."""
    factory = loop_factory(choice)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    loop = factory()  # pragma: no cover (Python 3.10)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()
