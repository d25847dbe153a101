"""``kvstore serve``'s configuration: what its options say, checked before anything opens."""

from __future__ import annotations

import dataclasses
import ipaddress
import ssl

from ..errors import ConfigurationError
from .auth import User
from .protocol import Limits


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """What ``kvstore serve`` takes (see its ``--help``)."""

    host: str = "127.0.0.1"
    port: int = 6379
    unix_socket: str | None = None
    requirepass: str | None = None
    maxclients: int = 10_000
    timeout: float = 0.0
    """Seconds a client may stay idle before it is closed (0: never)."""
    grace: float = 30.0
    """Seconds :meth:`Server.close` waits for running commands."""
    limits: Limits = dataclasses.field(default_factory=Limits)
    tls_cert: str | None = None
    """A PEM certificate (chain): the server speaks TLS only (with ``tls_key``)."""
    tls_key: str | None = None
    users: tuple[User, ...] = ()
    """ACL-style users (``--users FILE``), each confined to its namespace."""

    def all_users(self) -> dict[str, User]:
        """Every user who may log in: ``users``, and ``default`` with ``requirepass``."""
        found = {u.name: u for u in self.users}
        if self.requirepass:
            found.setdefault("default", User("default", self.requirepass))
        return found

    @property
    def auth_required(self) -> bool:
        return bool(self.requirepass or self.users)

    def check(self) -> None:
        """Refuse a configuration that would expose the store or cannot work."""
        if self.unix_socket is None and not _loopback(self.host) and not self.auth_required:
            raise ConfigurationError(
                f"refusing to listen on {self.host!r} without a password: anyone who can "
                "reach it could read and change the store (give --requirepass, or bind "
                "127.0.0.1)"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigurationError(f"port must be 0-65535, not {self.port}")
        if self.maxclients < 1:
            raise ConfigurationError(f"maxclients must be >= 1, not {self.maxclients}")
        if self.timeout < 0 or self.grace < 0:
            raise ConfigurationError("timeout and grace must be >= 0")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigurationError("TLS needs both a certificate and its key")

    def tls_context(self) -> ssl.SSLContext | None:
        """The server's TLS context (certificate and key loaded and checked), or None."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot use the TLS certificate {self.tls_cert!r} and key {self.tls_key!r}: {exc}"
            ) from None
        return context


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
