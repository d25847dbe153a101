"""Keys: validation and the reversible, prefix-preserving encoding into object names.

A key becomes one object name below a fixed area of the store (``kv/``, ``log/``, ``art/``).
The encoding guarantees (docs/architecture.md, invariant 7):

* **Confined.** The encoded name never contains ``..`` or ``.`` as a path segment, never
  starts with ``/``, and contains no backslash, NUL, ``*?[]#%:`` or other character with a
  meaning to a filesystem, a URL or an fsspec glob: every byte outside ``[A-Za-z0-9_=+,@-]``
  and the dot is escaped as ``%XX``. A key can therefore not address an object outside its
  area, its namespace or the store's root.
* **Reversible.** :func:`decode_name` gives back the exact key.
* **Prefix-preserving.** If key ``p`` is a prefix of key ``k``, ``encode_name(p)`` minus
  its terminator is a prefix of ``encode_name(k)``: ``keys(prefix)`` is one LIST by prefix.
* **Bounded segments.** Long names are cut into ``/``-separated segments of at most
  :data:`SEGMENT` characters (local filesystems allow 255 bytes per name), and every name
  ends with the terminator ``~`` so a segment of one key can never also be the file of a
  shorter key. A literal dot is escaped when it would start a segment, so no segment is
  ever ``.``, ``..`` or a hidden file.
"""

from __future__ import annotations

import functools

from .errors import InvalidKeyError

MAX_KEY_BYTES = 1024
SEGMENT = 240
TERMINATOR = "~"
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_=+,@-.")
_HEX = "0123456789ABCDEF"
_ESCAPES = tuple(f"%{_HEX[b >> 4]}{_HEX[b & 15]}" for b in range(256))


def key_bytes(key: object, what: str = "key") -> bytes:
    """Validate a key and return its bytes.

    Keys are binary-safe, as in Redis: any bytes (a ``str`` key is its UTF-8 form; a
    ``bytes`` key that is not UTF-8 is carried in a ``str`` by ``surrogateescape``, so it
    round-trips exactly). A key may be empty. A namespace or artifact name is text: UTF-8,
    not empty.
    Raises InvalidKeyError (a ValueError) with a message that says what is allowed.
    """
    if isinstance(key, str):
        try:
            raw = key.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:
            raise InvalidKeyError(f"{what} {key!r} is not valid Unicode: {exc.reason}") from None
    elif isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
        if what != "key":  # names (namespaces, artifacts) are text: listed, shown, in JSON
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidKeyError(f"{what} {raw!r} is not valid UTF-8") from None
    else:
        raise InvalidKeyError(f"{what} must be a str or bytes, not {type(key).__name__}")
    if not raw and what != "key":
        raise InvalidKeyError(f"{what} must not be empty")
    if len(raw) > MAX_KEY_BYTES:
        raise InvalidKeyError(
            f"{what} is {len(raw)} bytes long; the limit is {MAX_KEY_BYTES} bytes"
        )
    return raw


def key_str(key: object, what: str = "key") -> str:
    """Validate a key and return it as str (non-UTF-8 bytes by ``surrogateescape``)."""
    if type(key) is str and key and len(key) <= MAX_KEY_BYTES // 4:
        return key  # valid whatever its characters, unless it holds a lone surrogate:
        # those fail in encode_name, which every path goes through
    return key_bytes(key, what).decode("utf-8", "surrogateescape")


def _escape(raw: bytes) -> str:
    """Escape bytes; a dot is escaped where it would start a segment."""
    out: list[str] = []
    length = 0
    for byte in raw:
        if byte in _SAFE and not (byte == 0x2E and length % SEGMENT == 0):
            piece = chr(byte)
        else:
            piece = _ESCAPES[byte]
        out.append(piece)
        length += len(piece)
    return "".join(out)


def _segment(flat: str) -> str:
    return "/".join(flat[i : i + SEGMENT] for i in range(0, len(flat), SEGMENT))


def encode_name(key: object, what: str = "key") -> str:
    """The object name of a key: escaped, segmented and terminated.

    Recently used str/bytes keys are remembered (encoding is a per-byte loop and hot keys
    are encoded on every call); invalid keys are never remembered, they raise each time.
    """
    if type(key) is str or type(key) is bytes:
        return _encode_cached(key, what)
    return _encode(key, what)


def _encode(key: object, what: str) -> str:
    return _segment(_escape(key_bytes(key, what)) + TERMINATOR)


_encode_cached = functools.lru_cache(maxsize=4096)(_encode)


def encode_prefix(prefix: object) -> str:
    """The listing prefix matching every key that starts with ``prefix`` ("" matches all)."""
    if prefix in ("", b""):
        return ""
    return _segment(_escape(key_bytes(prefix, "prefix")))


def decode_name(name: str) -> str:
    """The key of an object name made by :func:`encode_name`.

    Raises ValueError for a name that encode_name cannot have produced (a foreign object).
    """
    if not name.endswith(TERMINATOR):
        raise ValueError(f"not a kvstore object name: {name!r}")
    flat = name[: -len(TERMINATOR)].replace("/", "")
    raw = bytearray()
    i = 0
    while i < len(flat):
        ch = flat[i]
        if ch == "%":
            try:
                raw.append(int(flat[i + 1 : i + 3], 16))
            except ValueError:
                raise ValueError(f"bad escape in object name: {name!r}") from None
            i += 3
        else:
            if ord(ch) not in _SAFE:
                raise ValueError(f"not a kvstore object name: {name!r}")
            raw.append(ord(ch))
            i += 1
    if len(raw) > MAX_KEY_BYTES:  # no valid key encodes to this name
        raise ValueError(f"not a kvstore object name: {name!r}")
    key = raw.decode("utf-8", "surrogateescape")
    if _segment(_escape(bytes(raw)) + TERMINATOR) != name:
        raise ValueError(f"not a canonical kvstore object name: {name!r}")
    return key
