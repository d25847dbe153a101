"""Who may use ``kvstore serve``: the default user's password (``--requirepass``), ACL-style
users each confined to a namespace of the store (``--users FILE``), and a limit on failed
AUTH attempts per client address.

A user confined to namespace ``tenant`` sees ``store.namespace("tenant")`` as database 0
(and its namespaces ``db1``...``db15`` as SELECT 1-15): its keys, FLUSHDB and SCAN never
reach another tenant's. Passwords are compared in constant time (``hmac.compare_digest``).

**Failed attempts are rate-limited per client address**: once an address has ``FREE``
failures within ``WINDOW_S`` seconds, its AUTH attempts - on any of its connections, right
password or wrong - are spaced out, each waiting its turn: 0.05 s apart after the first
``FREE``, doubling with every further failure up to ``MAX_DELAY_S``. A guesser gets at most
one try per second per address however many connections it opens; a client with a wrong
password in its configuration (whose library retries) slows only itself and its address;
nobody is locked out, and the server keeps serving every other connection while they wait.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hmac
import json
import time
from pathlib import Path

from ..commands.reply import CommandError, err
from ..errors import ConfigurationError

FREE = 5
"""Failures an address may have in the window before its attempts are spaced out."""
WINDOW_S = 60.0
BASE_DELAY_S = 0.05
MAX_DELAY_S = 1.0


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    password: str
    namespace: str | None = None
    """The namespace this user is confined to; None: the whole store."""


def load_users(path: str | Path) -> tuple[User, ...]:
    """Users from a JSON file: ``{"alice": {"password": "...", "namespace": "tenant-a"}}``
    (``namespace`` may be omitted: the whole store)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the users file {str(path)!r}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}: expected an object of users, got {type(raw).__name__}")
    users = []
    for name, entry in raw.items():
        if not isinstance(entry, dict) or set(entry) - {"password", "namespace"}:
            raise ConfigurationError(
                f"{path}: user {name!r} must be an object with 'password' (and 'namespace')"
            )
        password, namespace = entry.get("password"), entry.get("namespace")
        if not isinstance(password, str) or not password:
            raise ConfigurationError(f"{path}: user {name!r} needs a non-empty 'password'")
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise ConfigurationError(f"{path}: user {name!r}: 'namespace' must be a name")
        if not name or any(ch.isspace() for ch in name):
            raise ConfigurationError(f"{path}: {name!r} is not a user name")
        users.append(User(name, password, namespace))
    return tuple(users)


class _Address:
    __slots__ = ("failures", "next_at")

    def __init__(self) -> None:
        self.failures: collections.deque[float] = collections.deque()
        self.next_at = 0.0


class Guard:
    """AUTH checks for one server."""

    def __init__(self, users: dict[str, User]) -> None:
        self.users = users
        self.addresses: dict[str, _Address] = {}

    def delay(self, failures: int) -> float:
        """Seconds between two attempts from an address with ``failures`` recent ones."""
        if failures < FREE:
            return 0.0
        return min(MAX_DELAY_S, BASE_DELAY_S * 2.0 ** (failures - FREE))

    async def check(self, host: str, user: bytes, password: bytes) -> User:
        """The user ``user``/``password`` logs in as; raises Redis's error otherwise
        (after this address's turn, see the module docstring)."""
        if not self.users:
            raise err(
                "AUTH <password> called without any password configured for the default "
                "user. Are you sure your configuration is correct?"
            )
        address = self.addresses.setdefault(host, _Address())
        now = time.monotonic()
        while address.failures and now - address.failures[0] > WINDOW_S:
            address.failures.popleft()
        spacing = self.delay(len(address.failures))
        if spacing:
            turn = max(address.next_at, now)
            address.next_at = turn + spacing  # the next attempt waits behind this one
            await asyncio.sleep(turn - now)
        found = self.users.get(user.decode("utf-8", "replace"))
        expected = found.password.encode() if found is not None else b"\0" * 32
        if not (hmac.compare_digest(password, expected) and found is not None):
            address.failures.append(time.monotonic())
            raise CommandError("WRONGPASS invalid username-password pair or user is disabled.")
        if not address.failures:
            self.addresses.pop(host, None)
        return found
