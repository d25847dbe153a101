"""Redis glob patterns (KEYS, SCAN MATCH, HSCAN/SSCAN/ZSCAN MATCH), on bytes.

As Redis's ``stringmatchlen``: ``*`` any run of bytes, ``?`` one byte, ``[abc]`` a set,
``[^abc]`` its complement, ``[a-z]`` a range (either order), ``\\x`` the byte ``x``
literally (also inside a set). An unclosed ``[`` takes the rest of the pattern as its set.
"""

from __future__ import annotations

import functools
import re

_SPECIAL = frozenset(b"*?[\\")


@functools.lru_cache(maxsize=256)
def compile_glob(pattern: bytes) -> re.Pattern[bytes]:
    out: list[bytes] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x2A:  # *
            out.append(b".*")
        elif c == 0x3F:  # ?
            out.append(b".")
        elif c == 0x5C and i + 1 < n:  # \x
            i += 1
            out.append(re.escape(pattern[i : i + 1]))
        elif c == 0x5B:  # [
            i += 1
            negate = i < n and pattern[i] == 0x5E
            if negate:
                i += 1
            members: list[bytes] = []
            while i < n and pattern[i] != 0x5D:
                if pattern[i] == 0x5C and i + 1 < n:
                    i += 1
                    members.append(re.escape(pattern[i : i + 1]))
                elif i + 2 < n and pattern[i + 1] == 0x2D:  # a-z (Redis: either order)
                    lo, hi = sorted((pattern[i], pattern[i + 2]))
                    members.append(re.escape(bytes([lo])) + b"-" + re.escape(bytes([hi])))
                    i += 2
                else:
                    members.append(re.escape(pattern[i : i + 1]))
                i += 1
            body = b"".join(members)
            if not body:
                out.append(b"(?!)" if not negate else b".")
            else:
                out.append(b"[" + (b"^" if negate else b"") + body + b"]")
        else:
            out.append(re.escape(pattern[i : i + 1]))
        i += 1
    return re.compile(b"".join(out) + b"\\Z", re.DOTALL)


def matches(pattern: bytes, name: bytes) -> bool:
    if not name:  # Redis's matcher never enters its loop for an empty string: only the
        return pattern in (b"", b"*")  # empty pattern (or KEYS/SCAN's "*" shortcut) matches
    return compile_glob(pattern).match(name) is not None


def literal_prefix(pattern: bytes) -> bytes:
    """The bytes every match starts with (before the first special character): what a
    listing by prefix can narrow to."""
    out = bytearray()
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == 0x5C and i + 1 < len(pattern):
            out.append(pattern[i + 1])
            i += 2
            continue
        if c in _SPECIAL:
            break
        out.append(c)
        i += 1
    return bytes(out)
