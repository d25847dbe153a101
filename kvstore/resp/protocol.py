"""RESP, the Redis serialization protocol: commands read from a byte stream, replies written
in RESP2 or RESP3 (https://redis.io/docs/latest/develop/reference/protocol-spec/).

**Reading** (:class:`CommandReader`) is incremental: bytes are fed as they arrive and whole
commands come out, each a ``list[bytes]`` - the multibulk form every client library sends
(``*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n``) or the inline form a person types into a
socket (``GET k``, split like Redis's ``sdssplitargs``: quotes, escapes). Pipelined
commands come out one by one, in order. Every length is checked *before* anything is kept
for it (:class:`Limits`: a bulk longer than ``max_bulk``, more arguments than
``max_args``, an inline line longer than ``max_inline`` are refused at their header), so a
client cannot make the server allocate what it announces; a client that has not
authenticated gets Redis's tighter limits (10 arguments, 16 KiB bulks). A malformed
stream raises :class:`ProtocolError` with Redis's message; the server answers it and
closes the connection, as Redis does - what was read before it stays valid.

**Writing** (:func:`encode`): the command layer's replies (:mod:`kvstore.commands.reply`:
``bytes`` bulk, ``Status``, ``int``, ``None``, lists, ``CommandError``) plus the RESP3
shapes declared here - :class:`Map`, :class:`SetReply`, :class:`Double`, :class:`Push`,
:class:`Verbatim`, :data:`NULL_ARRAY`, ``bool`` - each written in RESP3 as itself and in
RESP2 as Redis writes it there (a map as a flat array, a double as a bulk string, ...).
An error's message is one line: a CR or LF in it is written as a space.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

from ..commands.reply import CommandError, Status, fmt_double

CRLF = b"\r\n"


class ProtocolError(Exception):
    """The client broke the protocol; ``str(exc)`` is Redis's message (``Protocol error:
    ...``). Nothing after the error can be read: the connection is answered and closed."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one connection may send (Redis's defaults)."""

    max_bulk: int = 512 * 1024 * 1024
    """Bytes of one argument (``proto-max-bulk-len``)."""
    max_args: int = 1024 * 1024
    """Arguments of one multibulk command."""
    max_inline: int = 64 * 1024
    """Bytes of one inline command line (``PROTO_INLINE_MAX_SIZE``)."""
    max_pending: int = 1024 * 1024 * 1024
    """Bytes one command may hold while it is being read (``client-query-buffer-limit``)."""
    unauthenticated_args: int = 10
    """Arguments of a command from a connection that must authenticate and has not."""
    unauthenticated_bulk: int = 16 * 1024
    """Bytes of one argument from such a connection."""


def _header_at(buf: bytearray, pos: int) -> tuple[int, int] | None:
    """The plain decimal of a complete ``*N``/``$N`` header line at ``pos`` and where the
    line after it starts; None if it is incomplete or anything but digits (the careful
    reader then decides)."""
    end = buf.find(b"\r\n", pos, pos + 32)
    if end < 0:
        return None
    text = buf[pos + 1 : end]
    if not text.isdigit():
        return None
    return int(text), end + 2


class CommandReader:
    """Commands out of a byte stream, incrementally (see the module docstring).

    ``feed(data)`` then ``next()`` until it returns None (a command is incomplete: feed
    more). Memory held: the unread bytes, at most one command's worth plus what arrived
    after it; a partly read command keeps its finished arguments, never re-parsed."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._buf = bytearray()
        self._pos = 0
        self._args: list[bytes] | None = None  # a multibulk command being read
        self._left = 0  # its arguments still to read
        self._bulk = -1  # the length of the argument being read, once its header is read
        self._pending = 0  # bytes of the command held so far

    @property
    def buffered(self) -> int:
        """Bytes fed and not yet consumed."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]  # keep the buffer to what is still unread
            self._pos = 0
        self._buf += data

    def next(self, authenticated: bool = True) -> list[bytes] | None:
        """The next whole command, or None if the buffer ends inside one (or holds only
        empty inline lines). Raises ProtocolError on a malformed or oversized command."""
        while True:
            if self._args is None:
                if self._pos >= len(self._buf):
                    return None
                if self._buf[self._pos] != 0x2A:  # not '*': an inline command
                    inline = self._inline()
                    if inline is None:
                        return None
                    if inline:
                        return inline
                    continue  # an empty line: Redis ignores it
                whole = self._whole(authenticated)
                if whole is not None:
                    return whole
                count = self._line_int(b"*")
                if count is None:
                    return None
                max_args = (
                    self.limits.max_args if authenticated else self.limits.unauthenticated_args
                )
                if count > max_args:
                    raise ProtocolError("Protocol error: invalid multibulk length")
                if count <= 0:
                    continue  # '*0' and '*-1' are no command; Redis skips them
                self._args, self._left, self._pending = [], count, 0
            command = self._multibulk(authenticated)
            if command is not None:
                return command
            if self._args is not None:
                return None

    def _whole(self, authenticated: bool) -> list[bytes] | None:
        """The common case, quickly: a well-formed multibulk command whose every byte is
        already here. None for anything else (incomplete, malformed, over a limit) - the
        careful reader below then reads it, waits for more or raises what Redis says."""
        buf, limits = self._buf, self.limits
        header = _header_at(buf, self._pos)
        if header is None:
            return None
        count, pos = header
        if not 0 < count <= (limits.max_args if authenticated else limits.unauthenticated_args):
            return None
        max_bulk = limits.max_bulk if authenticated else limits.unauthenticated_bulk
        size = len(buf)
        args = []
        for _ in range(count):
            if pos >= size or buf[pos] != 0x24:  # '$'
                return None
            header = _header_at(buf, pos)
            if header is None:
                return None
            length, start = header
            end = start + length
            if length > max_bulk or end + 2 > size or buf[end : end + 2] != CRLF:
                return None
            args.append(bytes(buf[start:end]))
            pos = end + 2
        if pos - self._pos > limits.max_pending:
            return None
        self._pos = pos
        return args

    def _multibulk(self, authenticated: bool) -> list[bytes] | None:
        assert self._args is not None
        max_bulk = self.limits.max_bulk if authenticated else self.limits.unauthenticated_bulk
        while self._left:
            if self._bulk < 0:
                if self._pos >= len(self._buf):
                    return None
                if self._buf[self._pos] != 0x24:  # '$'
                    got = chr(self._buf[self._pos])
                    raise ProtocolError(f"Protocol error: expected '$', got '{got}'")
                length = self._line_int(b"$")
                if length is None:
                    return None
                if length < 0 or length > max_bulk:
                    raise ProtocolError("Protocol error: invalid bulk length")
                self._pending += length
                if self._pending > self.limits.max_pending:
                    raise ProtocolError("Protocol error: command larger than the query buffer")
                self._bulk = length
            end = self._pos + self._bulk
            if len(self._buf) < end + 2:
                return None
            if self._buf[end : end + 2] != CRLF:
                raise ProtocolError("Protocol error: bulk not followed by CRLF")
            self._args.append(bytes(self._buf[self._pos : end]))
            self._pos = end + 2
            self._bulk = -1
            self._left -= 1
        command, self._args = self._args, None
        return command

    def _line_int(self, marker: bytes) -> int | None:
        """The integer on the header line at the read position (``*N`` or ``$N``); None
        if the line is not complete yet."""
        end = self._buf.find(b"\r\n", self._pos, self._pos + 32)
        if end < 0:
            if len(self._buf) - self._pos >= 32:  # no header is that long
                kind = "multibulk" if marker == b"*" else "bulk"
                raise ProtocolError(f"Protocol error: invalid {kind} length")
            return None
        text = bytes(self._buf[self._pos + 1 : end])
        kind = "multibulk" if marker == b"*" else "bulk"
        if not text or not (text.isdigit() or (text[:1] == b"-" and text[1:].isdigit())):
            raise ProtocolError(f"Protocol error: invalid {kind} length")
        self._pos = end + 2
        return int(text)

    def _inline(self) -> list[bytes] | None:
        end = self._buf.find(b"\n", self._pos, self._pos + self.limits.max_inline + 1)
        if end < 0:
            if len(self._buf) - self._pos > self.limits.max_inline:
                raise ProtocolError("Protocol error: too big inline request")
            return None
        line = bytes(self._buf[self._pos : end]).rstrip(b"\r")
        self._pos = end + 1
        args = split_args(line)
        if args is None:
            raise ProtocolError("Protocol error: unbalanced quotes in request")
        return args


_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX = b"0123456789abcdefABCDEF"
_SPACES = b" \t\n\r\v\f"


def split_args(line: bytes) -> list[bytes] | None:
    """An inline command's arguments, as Redis's ``sdssplitargs`` splits them: spaces
    between arguments; "double quotes" with \\n \\r \\t \\b \\a \\xHH and \\<char>
    escapes; 'single quotes' with only \\'; a closing quote must be followed by a space
    or the end. None when the quotes do not balance."""
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _SPACES:
            i += 1
        if i >= n:
            return args
        current = bytearray()
        quote = 0  # 0, or the quote character being read
        while True:
            if i >= n:
                if quote:
                    return None
                break
            c = line[i]
            if quote and c == quote:  # a closing quote ends the argument
                if i + 1 < n and line[i + 1] not in _SPACES:
                    return None
                i += 1
                break
            if quote == 0x22:  # double quotes
                if c == 0x5C and i + 3 < n and line[i + 1] == 0x78 and _is_hex(line, i + 2):
                    current.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 0x5C and i + 1 < n:
                    i += 1
                    current.append(_ESCAPES.get(line[i], line[i]))
                else:
                    current.append(c)
            elif quote == 0x27:  # single quotes
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    i += 1
                    current.append(0x27)
                else:
                    current.append(c)
            elif c in _SPACES:
                break
            elif c in (0x22, 0x27):
                quote = c
            else:
                current.append(c)
            i += 1
        args.append(bytes(current))


def _is_hex(line: bytes, at: int) -> bool:
    return at + 1 < len(line) and line[at] in _HEX and line[at + 1] in _HEX


# --------------------------------------------------------------------------- replies
class Map(list[tuple[Any, Any]]):
    """A map reply (RESP3 ``%``), as (key, value) pairs in order; RESP2: a flat array."""


class SetReply(list[Any]):
    """A set reply (RESP3 ``~``); RESP2: an array."""


class Push(list[Any]):
    """An out-of-band push (RESP3 ``>``: pub/sub messages); RESP2: an array."""


class Double(float):
    """A double reply (RESP3 ``,``); RESP2: a bulk string, as Redis formats scores."""


class Verbatim(bytes):
    """A verbatim text reply (RESP3 ``=`` with ``txt:``: INFO, CLIENT LIST); RESP2: a bulk
    string."""


class _NullArray:
    """A nil array (RESP2 ``*-1``: EXEC after a WATCHed key changed); RESP3: null."""


NULL_ARRAY = _NullArray()


def encode(reply: Any, protocol: int = 2) -> bytes:
    """``reply`` as RESP ``protocol`` (2 or 3) bytes."""
    return encode_many((reply,), protocol)


def encode_many(replies: Iterable[Any], protocol: int = 2) -> bytes:
    """Several replies, one after the other (a pipeline's answers in one write)."""
    out: list[bytes] = []
    resp3 = protocol == 3
    for reply in replies:
        _encode(reply, resp3, out)
    return b"".join(out)


def error_line(message: str) -> bytes:
    """``-<message>\\r\\n``, the message on one line."""
    text = message.replace("\r", " ").replace("\n", " ")
    return b"-" + text.encode("utf-8", "replace") + CRLF


def _encode(reply: Any, resp3: bool, out: list[bytes]) -> None:
    if reply is None:
        out.append(b"_\r\n" if resp3 else b"$-1\r\n")
    elif isinstance(reply, Status):
        out += (b"+", reply.replace(b"\r", b" ").replace(b"\n", b" "), CRLF)
    elif isinstance(reply, Verbatim):
        if resp3:
            out += (b"=", str(len(reply) + 4).encode(), b"\r\ntxt:", reply, CRLF)
        else:
            out += (b"$", str(len(reply)).encode(), CRLF, reply, CRLF)
    elif isinstance(reply, (bytes, bytearray, memoryview)):
        out += (b"$", str(len(reply)).encode(), CRLF, bytes(reply), CRLF)
    elif isinstance(reply, bool):
        if resp3:
            out.append(b"#t\r\n" if reply else b"#f\r\n")
        else:
            out.append(b":1\r\n" if reply else b":0\r\n")
    elif isinstance(reply, int):
        out += (b":", str(reply).encode(), CRLF)
    elif isinstance(reply, Double):
        if resp3:
            out += (b",", _double(reply), CRLF)
        else:
            text = fmt_double(reply)
            out += (b"$", str(len(text)).encode(), CRLF, text, CRLF)
    elif isinstance(reply, CommandError):
        out.append(error_line(str(reply)))
    elif isinstance(reply, Map):
        if resp3:
            out += (b"%", str(len(reply)).encode(), CRLF)
        else:
            out += (b"*", str(2 * len(reply)).encode(), CRLF)
        for key, value in reply:
            _encode(key, resp3, out)
            _encode(value, resp3, out)
    elif isinstance(reply, (list, tuple)):
        mark = b"*"
        if resp3 and isinstance(reply, SetReply):
            mark = b"~"
        elif resp3 and isinstance(reply, Push):
            mark = b">"
        out += (mark, str(len(reply)).encode(), CRLF)
        for item in reply:
            _encode(item, resp3, out)
    elif reply is NULL_ARRAY:
        out.append(b"_\r\n" if resp3 else b"*-1\r\n")
    elif isinstance(reply, float):
        _encode(Double(reply), resp3, out)
    else:
        raise TypeError(f"not a reply: {type(reply).__name__}")


def _double(value: float) -> bytes:
    if math.isnan(value):
        return b"nan"
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return fmt_double(value)
