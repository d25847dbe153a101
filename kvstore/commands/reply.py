"""Replies and arguments of the command layer, as Redis has them.

A command takes its arguments as Redis receives them - a list of ``bytes`` after the
command name - and returns a reply in Redis's RESP2 shapes: ``bytes`` (a bulk string),
:class:`Status` (a simple string such as ``OK``), ``int``, ``None`` (nil), or a ``list``
of replies. Errors are :class:`CommandError` with Redis's exact message (``ERR ...``,
``WRONGTYPE ...``), so every face - the redis-py-compatible class, the RESP server - shows
what Redis would.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Union

from ..errors import WRONGTYPE, KVStoreError, WrongTypeError


class Status(bytes):
    """A simple-string reply (``+OK``); a plain ``bytes`` is a bulk string."""


OK = Status(b"OK")

Reply = Union[bytes, int, None, list[Any], "CommandError"]
"""bytes (bulk), Status (simple), int, None (nil), a list of replies, or an error in its
place (inside a transaction's or pipeline's replies)."""


class CommandError(KVStoreError):
    """A command failed as Redis would fail it; the message is Redis's (its first word is
    the error code: ``ERR``, ``WRONGTYPE``, ``CROSSSLOT`` ...). Nothing was changed."""

    @property
    def code(self) -> str:
        return str(self).split(" ", 1)[0]


class WrongType(CommandError, WrongTypeError):
    """WRONGTYPE: the key holds another type."""

    def __init__(self, message: str = WRONGTYPE) -> None:
        CommandError.__init__(self, message)


def err(message: str) -> CommandError:
    return CommandError(f"ERR {message}")


NOT_INTEGER = "value is not an integer or out of range"
NOT_FLOAT = "value is not a valid float"
SYNTAX = "syntax error"
OVERFLOW = "increment or decrement would overflow"

INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def wrong_args(command: str) -> CommandError:
    return err(f"wrong number of arguments for '{command.lower()}' command")


def parse_int(raw: bytes, message: str = NOT_INTEGER) -> int:
    """A 64-bit signed integer as Redis parses it (no spaces, no '+', no leading zeros)."""
    text = raw.decode("ascii", "replace")
    if (
        not text
        or len(text) > 20
        or text != text.strip()
        or text.startswith("+")
        or (len(text) > 1 and text.lstrip("-").startswith("0"))
        or text == "-0"
    ):
        raise err(message)
    try:
        value = int(text)
    except ValueError:
        raise err(message) from None
    if not INT_MIN <= value <= INT_MAX:
        raise err(message)
    return value


def parse_float(raw: bytes, message: str = NOT_FLOAT, *, allow_inf: bool = True) -> float:
    text = raw.decode("ascii", "replace")
    if not text or text != text.strip():
        raise err(message)
    lowered = text.lower()
    if lowered in ("inf", "+inf", "infinity", "+infinity"):
        value = math.inf
    elif lowered in ("-inf", "-infinity"):
        value = -math.inf
    else:
        try:
            value = float(text)
        except ValueError:
            raise err(message) from None
        if lowered.lstrip("+-").startswith(("nan", "inf")) or "_" in text:
            raise err(message)
    if math.isnan(value) or (not allow_inf and math.isinf(value)):
        raise err(message)
    return value


def fmt_double(value: float) -> bytes:
    """A score as Redis replies with it (shortest round-trip form; integers without '.0')."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if value == int(value) and abs(value) < 1e17:
        return str(int(value)).encode()
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else "+"
        text = f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return text.encode()


def fmt_incrbyfloat(value: float) -> bytes:
    """INCRBYFLOAT's reply: fixed notation, no exponent, no trailing zeros."""
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.encode()
