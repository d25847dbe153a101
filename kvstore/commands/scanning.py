"""HSCAN, SSCAN, ZSCAN: a collection is one object, so one call returns all of it.

The cursor is always 0 after one call: the whole collection is read at once (it is one
object), filtered by ``MATCH``; ``COUNT`` is a hint, as in Redis, and is checked only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .core import Live, Op, key_of
from .glob import matches
from .reply import SYNTAX, Reply, err, parse_int

if TYPE_CHECKING:
    from . import Commands


def scan_items(
    core: Commands, args: list[bytes], items: Callable[[Live], list[tuple[bytes, list[bytes]]]]
) -> Op:
    """(member to match, reply items) of a collection, as one page with cursor 0."""
    parse_int(args[1], "invalid cursor")
    pattern: bytes | None = None
    novalues = False
    i = 2
    while i < len(args):
        opt = args[i].upper()
        if opt == b"NOVALUES":
            novalues = True
            i += 1
            continue
        if i + 1 >= len(args):
            raise err(SYNTAX)
        if opt == b"MATCH":
            pattern = args[i + 1]
        elif opt == b"COUNT":
            if parse_int(args[i + 1]) < 1:
                raise err(SYNTAX)
        else:
            raise err(SYNTAX)
        i += 2

    def read(current: Live) -> Reply:
        out: list[Reply] = []
        for name, reply in items(current):
            if pattern is None or matches(pattern, name):
                out.extend(reply[:1] if novalues else reply)
        return [b"0", out]

    return Op(key_of(args[0]), read=read)
