"""EncryptingBlobStore: every object sealed on its way to the object store, opened on its
way back (:mod:`.sealing`), below everything else - values, log chunks and segments,
artifact manifests and parts, session heads and state, records, the policy.

Object names stay plain: a reader of the bucket sees keys, names, namespaces, sizes (to a
few dozen bytes) and times, never the data. A ranged read (an envelope's header, a block
of a part) reads and opens the whole object - objects are at most 8 MiB - and a presigned
URL, which would hand out ciphertext, is refused.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..blob.base import Blob, BlobStore
from ..blob.wrapper import WrapperBlobStore
from .keyring import EncryptionKeyError, KeyRing, is_key_id
from .sealing import OBJECT, key_id_of, seal, unseal


class EncryptingBlobStore(WrapperBlobStore):
    """Seals every object with ``ring``'s primary key, opens any the ring has the key of."""

    encrypted = True
    can_sign_urls = False
    unsigned_reason = "the store is encrypted: a presigned URL would serve ciphertext"

    def __init__(self, inner: BlobStore, ring: KeyRing) -> None:
        if not isinstance(ring, KeyRing):
            raise TypeError(f"encryption takes a kvstore.KeyRing, not a {type(ring).__name__}")
        super().__init__(inner)
        self.ring = ring

    @property
    def identity(self) -> str:
        # Apart from the same store opened without a ring: its cache entries (plaintext,
        # in-process) are never served to it, nor its to this one. Not the primary key's
        # id: processes mid-rotation must share one cache namespace to stay coherent.
        return self.inner.identity + "#sealed"

    def _where(self, path: str) -> str:
        return f"{self.url.rstrip('/')}/{path}"

    def open_object(self, path: str, data: bytes) -> bytes:
        return unseal(self.ring, data, OBJECT + path.encode(), self._where(path))

    def seal_object(self, path: str, data: bytes) -> bytes:
        return seal(self.ring, data, OBJECT + path.encode())

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        found = await self.inner._get(path)
        if found is None:
            return None
        key_id = key_id_of(found.data)
        if self.ring.fetches and is_key_id(key_id) and not self.ring.holds(key_id):
            # a callback ring's fetch (a KMS request) in a thread, not on the event loop;
            # a failure is raised by the open below, naming the object
            with contextlib.suppress(EncryptionKeyError):
                await asyncio.to_thread(self.ring.key, key_id)
        plain = self.open_object(path, found.data)
        return Blob(plain if head is None else plain[:head], found.tag)

    async def _put(self, path: str, data: bytes) -> str:
        return await self.inner._put(path, self.seal_object(path, data))

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        return await self.inner._put_if_absent(path, self.seal_object(path, data))

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        return await self.inner._put_if_match(path, self.seal_object(path, data), tag)
