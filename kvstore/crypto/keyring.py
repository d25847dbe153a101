"""KeyRing: the keys an encrypted store uses - one primary for new writes, older ones still
readable - from the environment, a file, a mapping, or a callback (a KMS)."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeGuard

from ..errors import ConfigurationError

KEY_BYTES = 32
"""AES-256: every key is 32 bytes."""
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
ENV_KEYS = "KVSTORE_KEYS"
ENV_PRIMARY = "KVSTORE_PRIMARY_KEY"
RETRY_FETCH_S = 5.0
"""Seconds a callback ring waits before asking again for a key it could not fetch."""


class EncryptionKeyError(ConfigurationError):
    """An object is encrypted under a key the ring does not have (or could not fetch):
    nothing is returned, nothing is changed. Give the ring that key (an old key stays in
    the ring until ``kvstore rekey`` has rewritten every object under the new one)."""


def generate_key() -> bytes:
    """A new random 32-byte key (from the operating system's CSPRNG)."""
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    """A key as the environment and key files hold it: URL-safe base64."""
    return base64.urlsafe_b64encode(key).decode("ascii")


def is_key_id(key_id: object) -> TypeGuard[str]:
    """True if ``key_id`` is a well-formed key id (what a sealed blob may name)."""
    return isinstance(key_id, str) and _KEY_ID.match(key_id) is not None


_SHOWN_ID = 32


def shown(value: object) -> str:
    """How messages name what was given as a key id: a short well-formed id as itself;
    anything else by its type and length only - a key pasted where an id goes (a
    base64 key is 44 characters, ``=`` included) must never reach a log or a traceback."""
    if is_key_id(value) and len(str(value)) <= _SHOWN_ID:
        return repr(value)
    if isinstance(value, (str, bytes, bytearray)):
        return f"a {type(value).__name__} of length {len(value)} (not shown)"
    return f"a {type(value).__name__}"


def _check_id(key_id: object) -> str:
    if not is_key_id(key_id):
        raise ConfigurationError(
            "a key id is 1 to 64 of A-Z a-z 0-9 . _ - (every object names its key's id), "
            f"not {shown(key_id)}"
        )
    return key_id


def _check_key(key_id: str, key: object) -> bytes:
    if isinstance(key, str):
        try:
            key = base64.urlsafe_b64decode(key.encode("ascii") + b"=" * (-len(key) % 4))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise ConfigurationError(f"key {shown(key_id)} is not base64") from None
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        size = len(key) if isinstance(key, (bytes, bytearray)) else type(key).__name__
        raise ConfigurationError(
            f"key {shown(key_id)} must be {KEY_BYTES} bytes (AES-256), not {size}"
        )
    return bytes(key)


class KeyRing:
    """Keys by id; ``primary`` encrypts new writes, every key of the ring decrypts.

    ``KeyRing({"2026-11": key}, primary="2026-11")``; :meth:`from_env`, :meth:`from_file`,
    :meth:`from_callback`. Keys are 32 bytes (AES-256-GCM), given as bytes or URL-safe
    base64. The ring holds the keys in this process's memory only; objects name the id of
    the key they were written with, never the key.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes | str] | None = None,
        primary: str | None = None,
        *,
        fetch: Callable[[str], bytes | str] | None = None,
    ) -> None:
        if keys is not None and not isinstance(keys, Mapping):
            raise ConfigurationError(f"keys must be a mapping of key id to key, not {shown(keys)}")
        given = dict(keys or {})
        self._keys = {_check_id(k): _check_key(k, v) for k, v in given.items()}
        if primary is None:
            if len(self._keys) != 1:
                raise ConfigurationError("name the primary key (primary=) of a ring of several")
            primary = next(iter(self._keys))
        self.primary = _check_id(primary)
        if fetch is not None and not callable(fetch):
            raise ConfigurationError(f"fetch must be callable, not {shown(fetch)}")
        self._fetch = fetch
        self._failed: dict[str, tuple[float, str]] = {}  # id -> (when, why): not asked again
        self._lock = threading.Lock()
        if self.primary not in self._keys:
            if fetch is None:
                raise ConfigurationError(f"the primary key {shown(primary)} is not in the ring")
            self.key(self.primary)  # fetched now: a ring that cannot write fails here

    def __repr__(self) -> str:
        return f"<KeyRing primary={self.primary!r} ids={sorted(self._keys)!r}>"

    @property
    def ids(self) -> list[str]:
        """The ids of the keys held (fetched ones included), sorted."""
        with self._lock:
            return sorted(self._keys)

    def holds(self, key_id: str) -> bool:
        """Whether the ring has ``key_id`` at hand (held, or fetched before)."""
        with self._lock:
            return key_id in self._keys

    @property
    def fetches(self) -> bool:
        """Whether keys it lacks are fetched (a callback ring)."""
        return self._fetch is not None

    def key(self, key_id: str) -> bytes:
        """The key ``key_id``: held, or fetched once (``fetch``) and kept;
        EncryptionKeyError if neither. A fetch that failed is not tried again for
        ``RETRY_FETCH_S`` seconds (the same error meanwhile): a store full of objects under
        a lost key does not call the KMS once per object."""
        with self._lock:
            found = self._keys.get(key_id)
            failed = self._failed.get(key_id)
        if found is not None:
            return found
        if self._fetch is None:
            raise EncryptionKeyError(f"no key {shown(key_id)} in the ring (it holds {self.ids})")
        if failed is not None and time.monotonic() - failed[0] < RETRY_FETCH_S:
            raise EncryptionKeyError(failed[1])
        try:
            fetched = _check_key(key_id, self._fetch(key_id))
        except Exception as exc:
            # ConfigurationError: the callback's answer is no key (None, a short one)
            why = f"key {shown(key_id)} could not be fetched: {exc}"
            with self._lock:
                self._failed[key_id] = (time.monotonic(), why)
            if isinstance(exc, ConfigurationError):
                raise EncryptionKeyError(why) from None
            raise EncryptionKeyError(why) from exc
        with self._lock:
            self._keys.setdefault(key_id, fetched)
            self._failed.pop(key_id, None)
        return fetched

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KeyRing:
        """``KVSTORE_KEYS="id1:BASE64,id2:BASE64"`` and ``KVSTORE_PRIMARY_KEY=id2`` (default:
        the last listed)."""
        env = os.environ if environ is None else environ
        text = env.get(ENV_KEYS, "").strip()
        if not text:
            raise ConfigurationError(
                f"${ENV_KEYS} is not set: id:base64 key pairs, comma-separated"
            )
        keys: dict[str, str] = {}
        for n, item in enumerate(text.split(","), 1):
            key_id, sep, value = item.strip().partition(":")
            if not sep:  # (never shown: it may well be a key given without its id)
                raise ConfigurationError(
                    f"${ENV_KEYS} holds id:base64 pairs, comma-separated; its item {n} has no ':'"
                )
            keys[key_id] = value
        return cls(keys, env.get(ENV_PRIMARY) or list(keys)[-1])

    @classmethod
    def from_file(cls, path: str | Path) -> KeyRing:
        """A JSON file ``{"primary": "id2", "keys": {"id1": "BASE64", "id2": "BASE64"}}``."""
        try:
            found = json.loads(Path(path).read_text())
            return cls(found["keys"], found.get("primary"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, ConfigurationError):
                raise
            raise ConfigurationError(f"key file {str(path)!r}: {exc}") from None

    @classmethod
    def from_callback(cls, fetch: Callable[[str], bytes | str], primary: str) -> KeyRing:
        """Keys fetched by id when first needed (a KMS's decrypt of a wrapped data key, a
        secrets manager), then kept in memory; the primary is fetched at once."""
        return cls(None, primary, fetch=fetch)
