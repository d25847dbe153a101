"""The HTTP service's configuration: where it listens, who may call it, how much it takes.

Bearer tokens each grant one *namespace* (``None``: the whole store) for reading or for
reading and writing. Without any token the service answers every caller as the store's
owner - so it refuses to listen beyond loopback (as ``kvstore serve`` does without a
password). Tokens come from a JSON file (``--tokens FILE``)::

    {"ci-reader": {"token": "...", "namespace": "builds", "access": "read"},
     "admin": {"token": "...", "access": "read-write"}}

or from ``$KVSTORE_HTTP_TOKEN`` (one read-write token for the whole store).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError

TOKEN_ENV = "KVSTORE_HTTP_TOKEN"
DEFAULT_PORT = 8084
MAX_BODY = 64 << 20
"""The largest value or log record a request may carry (413 beyond, before it is read whole)."""
ACCESS = ("read", "read-write")
MIN_TOKEN = 16
"""Characters a token has at least."""


@dataclass(frozen=True)
class Token:
    """A bearer token: its ``name`` (for logs and errors, never the secret), the
    ``namespace`` it is confined to (None: the whole store) and whether it may write."""

    name: str
    secret: bytes = field(repr=False)
    namespace: str | None
    write: bool


@dataclass(frozen=True)
class HttpConfig:
    """``host``/``port``: where to listen; ``tokens``: who may call (none: anyone, on
    loopback only); ``max_body``: bytes a value or a log record may have."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tokens: tuple[Token, ...] = ()
    max_body: int = MAX_BODY

    def check(self) -> None:
        """Refuse a configuration that would expose the store to anyone."""
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigurationError(f"port must be 0..65535, not {self.port!r}")
        if self.max_body < 1:
            raise ConfigurationError(f"max_body must be >= 1, not {self.max_body!r}")
        if not self.tokens and not is_loopback(self.host):
            raise ConfigurationError(
                f"refusing to listen on {self.host!r} without tokens: anyone who can reach "
                f"it could read and write the store; give --tokens FILE or ${TOKEN_ENV}, "
                "or listen on 127.0.0.1"
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_tokens(path: str | None, env: str | None) -> tuple[Token, ...]:
    """The tokens of a JSON file (see the module docstring) and of ``$KVSTORE_HTTP_TOKEN``;
    ConfigurationError, naming the entry, for anything malformed."""
    tokens: list[Token] = []
    if env:
        if len(env) < MIN_TOKEN:
            raise ConfigurationError(f"${TOKEN_ENV} must have at least {MIN_TOKEN} characters")
        tokens.append(Token(TOKEN_ENV, env.encode(), None, True))
    if path:
        try:
            raw: Any = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the tokens file {path!r}: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigurationError(f"{path}: expected a JSON object of named tokens")
        for name, entry in raw.items():
            tokens.append(_token(path, name, entry))
    named: dict[bytes, str] = {}
    for token in tokens:
        if token.secret in named:
            raise ConfigurationError(
                f"tokens {named[token.secret]!r} and {token.name!r} have the same secret"
            )
        named[token.secret] = token.name
    return tuple(tokens)


def _token(path: str, name: str, entry: Any) -> Token:
    where = f"{path}: token {name!r}"
    if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
        raise ConfigurationError(f'{where}: expected {{"token": "...", ...}}')
    secret = entry["token"]
    if len(secret) < MIN_TOKEN:
        raise ConfigurationError(f"{where}: a token must have at least {MIN_TOKEN} characters")
    namespace = entry.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise ConfigurationError(f"{where}: namespace must be a non-empty string or absent")
    access = entry.get("access", "read-write")
    if access not in ACCESS:
        raise ConfigurationError(f"{where}: access must be one of {ACCESS}, not {access!r}")
    unknown = set(entry) - {"token", "namespace", "access"}
    if unknown:
        raise ConfigurationError(f"{where}: unknown fields {sorted(unknown)}")
    return Token(name, secret.encode(), namespace, access == "read-write")


# The options of `kvstore serve` that are the HTTP service's (kvstore.http.cli).
HTTP_ARGUMENTS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("--http",), {"action": "store_true", "help": "serve HTTP (REST + console) instead"}),
    (
        ("--tokens",),
        {"metavar": "FILE", "help": f"--http: bearer tokens, JSON (or ${TOKEN_ENV})"},
    ),
    (
        ("--max-body",),
        {"type": int, "default": MAX_BODY, "help": "--http: bytes a value or record may have"},
    ),
)
