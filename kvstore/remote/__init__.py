"""The library's API over the HTTP service: ``kvstore.open("kvstore+http://host:8084/ns",
token=...)`` (``kvstore+https://`` too) gives a :class:`~kvstore.sync.KVStore` (and
``open_async`` an :class:`~kvstore.api.AsyncKVStore`) whose calls the service makes on its
store - the same methods, results and errors. Needs ``httpx`` (``pip install
'kvstore[client]'``). See :mod:`.store` for what the network adds.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import ConfigurationError
from ..stats import Stats

SCHEMES = ("kvstore+http", "kvstore+https")
TOKEN_ENV = "KVSTORE_HTTP_TOKEN"
DEFAULT_TIMEOUT = 60.0


def is_service_url(url: object) -> bool:
    return isinstance(url, str) and url.split("://", 1)[0].lower() in SCHEMES


def open_service(
    url: str,
    *,
    token: str | None,
    decode_responses: bool,
    concurrency: int,
    timeout: float | None,
    options: dict[str, Any],
) -> Any:
    """An :class:`~kvstore.remote.store.AsyncRemoteStore` for a ``kvstore+http(s)://``
    URL; ``options``: the other ``open`` arguments, which must be their defaults (they
    configure a store, and the service's store is configured where it runs)."""
    for name, (given, default) in options.items():
        if given != default and given is not default:
            raise ConfigurationError(
                f"{name}= does not apply to a kvstore+http:// store: the service's own store "
                "is configured where the service runs (kvstore serve --http)"
            )
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            "a kvstore+http:// URL carries no credentials (URLs end up in logs): give "
            f"token= or ${TOKEN_ENV}"
        )
    if not parts.hostname:
        raise ConfigurationError(f"no host in {url!r}: kvstore+http://host:port/namespace")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{url!r}: a kvstore+http:// URL has no query or fragment")
    try:
        parts.port  # noqa: B018 - a bad port raises here, not at the first request
    except ValueError as exc:
        raise ConfigurationError(f"{url!r}: {exc}") from None
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise ConfigurationError("token must be a non-empty str")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(f"concurrency must be an int >= 1, not {concurrency!r}")
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigurationError(f"timeout must be a number of seconds > 0, not {timeout!r}")
    try:
        from .store import AsyncRemoteStore, namespace_name
        from .transport import Service
    except ImportError as exc:  # httpx
        raise ConfigurationError(
            f"a kvstore+http:// store needs httpx ({exc}): pip install 'kvstore[client]'"
        ) from None
    scheme = parts.scheme.lower().removeprefix("kvstore+")
    base = f"{scheme}://{parts.netloc}"
    service = Service(base, token, timeout=float(timeout), retries=2, stats=Stats())
    names = tuple(namespace_name(unquote(p)) for p in parts.path.split("/") if p)
    return AsyncRemoteStore(
        service, decode_responses=decode_responses, concurrency=concurrency, _namespace=names
    )
