"""Authenticated encryption of one object or cache entry: AES-256-GCM (``cryptography``).

A sealed blob is ``KVX\\x01``, the key id's length (one byte) and the id, a 96-bit random
nonce, then the ciphertext and its 16-byte tag. The associated data binds it to where it
belongs - an object's path, a cache entry's key - so an object copied over another's name,
or a cache entry served for another key, fails authentication like a flipped bit does.
A random 96-bit nonce per seal: NIST's bound for one key (2^32 seals) is far past what a
store writes before ``kvstore rekey`` to a new key.
"""

from __future__ import annotations

import os
from typing import Any

from ..codec import SEALED_MAGIC
from ..errors import CorruptDataError
from .keyring import EncryptionKeyError, KeyRing, is_key_id

MAGIC = SEALED_MAGIC
NONCE_BYTES = 12
TAG_BYTES = 16
OBJECT = b"kvstore object\x00"
CACHE = b"kvstore cache\x00"

_CIPHERS: dict[bytes, Any] = {}


def _cipher(key: bytes) -> Any:
    found = _CIPHERS.get(key)
    if found is None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        found = _CIPHERS[key] = AESGCM(key)
    return found


def is_sealed(data: bytes) -> bool:
    return data[:4] == MAGIC


def key_id_of(data: bytes) -> str | None:
    """The id of the key a sealed blob was written with; None if it is not sealed."""
    at = len(MAGIC) + NONCE_BYTES
    if not is_sealed(data) or len(data) <= at:
        return None
    size = data[at]
    return data[at + 1 : at + 1 + size].decode("ascii", "replace")


def sealed_overhead(key_id: str) -> int:
    """How many bytes sealing under ``key_id`` adds."""
    return len(MAGIC) + 1 + len(key_id) + NONCE_BYTES + TAG_BYTES


def seal(ring: KeyRing, data: bytes, context: bytes) -> bytes:
    """``data`` encrypted under the ring's primary key, bound to ``context``."""
    key_id = ring.primary.encode("ascii")
    nonce = os.urandom(NONCE_BYTES)
    sealed = _cipher(ring.key(ring.primary)).encrypt(nonce, data, context)
    return b"".join((MAGIC, nonce, bytes([len(key_id)]), key_id, sealed))


def unseal(ring: KeyRing, data: bytes, context: bytes, where: str) -> bytes:
    """The plaintext of a sealed blob; CorruptDataError (naming ``where``) if it is not
    one, was changed, or belongs elsewhere; EncryptionKeyError if its key is not in the
    ring."""
    from cryptography.exceptions import InvalidTag

    if not is_sealed(data):
        raise CorruptDataError(
            "not encrypted: the store is opened with a key ring, and every object it writes "
            "is sealed (written without one? `kvstore rekey` seals a plaintext store)",
            path=where,
        )
    at = len(MAGIC) + NONCE_BYTES  # the id's length byte
    size = data[at] if len(data) > at else 0
    start = at + 1 + size  # the ciphertext
    if size == 0 or len(data) < start + TAG_BYTES:
        raise CorruptDataError("a sealed object cut short", path=where)
    key_id = data[at + 1 : start].decode("ascii", "replace")
    if not is_key_id(key_id):  # a damaged or crafted length byte or id: never a key lookup
        raise CorruptDataError("a sealed object whose key id is damaged", path=where)
    try:
        key = ring.key(key_id)
    except EncryptionKeyError as exc:
        raise EncryptionKeyError(f"{exc}; needed by {where!r}") from exc
    try:
        nonce = data[len(MAGIC) : at]
        plain: bytes = _cipher(key).decrypt(nonce, data[start:], context)
    except InvalidTag:
        raise CorruptDataError(
            f"fails authentication under key {key_id!r}: changed, damaged, or not this "
            "object's (copied from another name)",
            path=where,
        ) from None
    return plain
