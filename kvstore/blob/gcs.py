"""Google Cloud Storage through gcsfs's authenticated JSON-API session.

* ``get`` is one media download; the tag is the object generation from the
  ``x-goog-generation`` response header.
* ``put_if_absent`` uploads with ``ifGenerationMatch=0``: GCS creates the object only if
  none exists, atomically (412 otherwise).
* ``put_if_match`` / ``delete_if_match`` send ``ifGenerationMatch=<generation>``.
* Listing is objects.list, 1000 names per page, from a position with ``startOffset``
  (inclusive: the name itself is dropped); a dated listing is the same requests, read
  with each object's ``updated`` time and the answer's ``Date``.
* ``get_range`` is one ranged media download; ``sign_url`` is gcsfs's ``sign`` (V4, no
  request), which needs a service account's private key: anonymous or token credentials
  raise UnsupportedOperationError saying so.
* ``delete_many`` is one DELETE per object, up to ``connections`` (or 32) in flight (the
  base class's default; GCS's multipart batch requests are not used).

Each object name takes at most one write per second on GCS; kvstore keeps hot data
(log chunks, artifact versions) in immutable, once-written objects for that reason.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

from ..errors import BackendError, UnsupportedOperationError
from .base import Blob, DatedPage, RetryPolicy, paged
from .remote import RemoteBlobStore, http_date_ms, written_ms

# How long a request to an endpoint that never answers can take, by default (README,
# "Retries"): ATTEMPTS x (CONNECT_TIMEOUT, or READ_TIMEOUT once connected) + gcsfs's
# backoff between attempts (1-2 s, then 2-3 s). At most ~20 s when no connection is
# accepted, ~50 s when the server accepts and never answers. gcsfs itself sends its
# requests with no timeout at all (``requests_timeout=None`` is aiohttp's "no limit") and
# tries each 6 times: against a server that never answers, a request never returned.
CONNECT_TIMEOUT = 5.0
"""Seconds to establish a TCP (and TLS) connection."""
READ_TIMEOUT = 15.0
"""Seconds the server may stay silent: before the first byte of its answer (the clock
starts once the request body is sent) and between two reads of the answer. Not a limit on
a whole transfer."""
PAGE = 1000
"""Names per objects.list page: GCS's most."""
ATTEMPTS = 3
"""gcsfs tries per request (its retry loop: 429, 5xx, timeouts, dropped connections)."""


class GCSBlobStore(RemoteBlobStore):
    """Objects in ``gs://bucket/prefix``."""

    can_sign_urls = True  # where the credentials hold a private key (see _sign_url)

    protocol = "gs"
    extra = "gcs"
    dated_listing = True
    check_preconditions = True  # emulators may ignore ifGenerationMatch: probe first
    endpoint_env = ("STORAGE_EMULATOR_HOST",)
    option_types = {
        "endpoint_url": (str,),
        "project": (str,),
        "access": (str,),
        "consistency": (str,),
        "requester_pays": (bool, str),
    }
    # gcsfs retries each request (ATTEMPTS tries, exponential backoff) and reads the body
    # inside that loop; retrying again here would multiply its delays.
    default_retry = RetryPolicy(attempts=1)
    _bucket_checked = False

    def _filesystem_options(self) -> dict[str, Any]:
        """``requests_timeout``, unless the user set it: connect and silence timeouts
        (aiohttp's ``sock_connect``/``sock_read``), no limit on a whole transfer."""
        options = super()._filesystem_options()
        if options.get("requests_timeout") is None:
            import aiohttp  # gcsfs's own HTTP client

            options["requests_timeout"] = aiohttp.ClientTimeout(
                sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
            )
        return options

    def _configure(self, fs: Any) -> None:
        # gcsfs's retry loop is a decorator bound when the class is made (6 tries; the
        # ``retries`` attribute does not change it). This filesystem - kvstore's own
        # instance, no other - sends its requests through the same loop with ATTEMPTS tries,
        # called directly: the ``decorator`` package's wrapper binds the signature on every
        # call (``inspect.Signature.bind``, ~0.05 ms per request, S15).
        from gcsfs.retry import retry_request

        plain = getattr(type(fs)._request, "__wrapped__", None)
        loop = getattr(retry_request, "__wrapped__", None)  # the undecorated retry loop
        if plain is None:
            return
        if loop is None:
            fs._request = types.MethodType(retry_request(retries=ATTEMPTS)(plain), fs)
            return

        async def request(*args: Any, **kwargs: Any) -> Any:
            return await loop(plain, ATTEMPTS, fs, *args, **kwargs)

        fs._request = request

    async def _connect(self, fs: Any) -> None:
        await fs._set_session()

    async def _disconnect(self, fs: Any) -> None:
        if fs.session is not None and not fs.session.closed:
            await fs.session.close()

    def _sessions(self, fs: Any) -> Iterator[Any]:
        if fs._session is not None:
            yield fs._session

    async def _require_bucket(self, fs: Any) -> None:
        """GCS answers 404 alike for a missing object and a missing bucket; on the first
        miss, ask once whether the bucket exists, so a typo is an error, not empty data."""
        if self._bucket_checked:
            return
        try:
            await fs._call("GET", "b/{}", self.bucket, json_out=True)
        except FileNotFoundError:
            raise FileNotFoundError(f"bucket {self.bucket!r} does not exist") from None
        self._bucket_checked = True

    async def _upload(self, path: str, data: bytes, **conditions: Any) -> str | None:
        """A single-request media upload; None when a precondition failed (HTTP 412)."""
        fs = await self.filesystem()
        url = f"{fs._location}/upload/storage/v1/b/{quote(self.bucket, safe='')}/o"
        try:
            _headers, body = await fs._call(
                "POST",
                url,
                uploadType="media",
                name=self.key(path),
                data=data,
                headers={"Content-Type": "application/octet-stream"},
                **conditions,
            )
        except FileExistsError:  # gcsfs maps 412 Precondition Failed to this
            return None
        return str(json.loads(body)["generation"])

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        fs = await self.filesystem()
        ranged = None if head is None else {"Range": f"bytes=0-{max(head, 1) - 1}"}
        try:
            headers, data = await fs._call(
                "GET", "b/{}/o/{}", self.bucket, self.key(path), alt="media", headers=ranged
            )
        except FileNotFoundError:
            await self._require_bucket(fs)
            return None
        return Blob(data, str(headers.get("x-goog-generation", "")))

    async def _get_range(self, path: str, start: int, size: int) -> Blob | None:
        fs = await self.filesystem()
        ranged = {"Range": f"bytes={start}-{start + size - 1}"}
        try:
            headers, data = await fs._call(
                "GET", "b/{}/o/{}", self.bucket, self.key(path), alt="media", headers=ranged
            )
        except FileNotFoundError:
            await self._require_bucket(fs)
            return None
        except Exception as exc:
            if getattr(exc, "code", None) != 416:
                raise
            # The range starts at or past the object's end: nothing to read there.
            head = await self._get(path, 1)
            return None if head is None else Blob(b"", head.tag)
        return Blob(data, str(headers.get("x-goog-generation", "")))

    async def _sign_url(self, path: str, seconds: int, content_type: str | None) -> str:
        """gcsfs's ``sign`` (V4 signing, at the store's endpoint): needs credentials that
        hold a private key (a service account's key file); no request."""
        fs = await self.filesystem()
        credentials = getattr(getattr(fs, "credentials", None), "credentials", None)
        from google.auth.credentials import Signing  # google-auth comes with gcsfs

        if not isinstance(credentials, Signing):
            what = "anonymous access" if credentials is None else type(credentials).__name__
            raise UnsupportedOperationError(
                f"{self.url} cannot make a presigned URL: its credentials ({what}) hold no "
                "private key to sign with. GCS signs URLs with a service account's key: open "
                "the store with storage_options={'token': '/path/to/service-account.json'}"
            )
        url = await asyncio.to_thread(
            fs.sign,
            f"{self.bucket}/{self.key(path)}",
            expiration=seconds,
            version="v4",
            response_type=content_type,
        )
        return str(url)

    async def _put(self, path: str, data: bytes) -> str:
        tag = await self._upload(path, data)
        assert tag is not None  # an unconditional upload has no precondition to fail
        return tag

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        return await self._upload(path, data, ifGenerationMatch="0")

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        return await self._upload(path, data, ifGenerationMatch=tag)

    async def _delete_object(self, path: str, **conditions: Any) -> bool:
        fs = await self.filesystem()
        try:
            await fs._call("DELETE", "b/{}/o/{}", self.bucket, self.key(path), **conditions)
        except (FileNotFoundError, FileExistsError):
            return False
        return True

    async def _delete(self, path: str) -> None:
        await self._delete_object(path)

    async def _delete_if_match(self, path: str, tag: str) -> bool:
        return await self._delete_object(path, ifGenerationMatch=tag)

    async def _list(self, prefix: str) -> AsyncIterator[list[str]]:
        async for _headers, resp in self._pages(prefix):
            yield [self.relative(item["name"]) for item in resp.get("items", [])]

    def _list_after(
        self, prefix: str, start_after: str | None, page_size: int | None
    ) -> AsyncIterator[list[str]]:
        # startOffset is inclusive: ``paged`` drops the name itself (asked for one more
        # name in the first request, so "the next N" is still one request) and cuts the
        # pages to ``page_size``.
        return paged(self._names(prefix, start_after, page_size), start_after, page_size)

    async def _names(
        self, prefix: str, start_after: str | None, page_size: int | None
    ) -> AsyncIterator[list[str]]:
        async for _headers, resp in self._pages(prefix, start_after, page_size):
            yield [self.relative(item["name"]) for item in resp.get("items", [])]

    async def _list_dated(self, prefix: str) -> AsyncIterator[DatedPage]:
        async for headers, resp in self._pages(prefix):
            entries = [
                (self.relative(item["name"]), _modified_ms(item)) for item in resp.get("items", [])
            ]
            yield entries, http_date_ms(headers.get("Date"))

    async def _list_sized(self, prefix: str) -> AsyncIterator[list[tuple[str, int]]]:
        async for _headers, resp in self._pages(prefix):
            items = resp.get("items", [])
            yield [(self.relative(item["name"]), _size(item, self.url)) for item in items]

    async def _pages(
        self, prefix: str, start_after: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[tuple[Any, dict[str, Any]]]:
        """objects.list answers (headers, JSON), 1000 names per page (or ``page_size``),
        from ``start_after`` on (inclusive), each retried alone."""
        fs = await self.filesystem()
        token: str | None = None
        start = self.key(start_after) if start_after else None
        size = min(page_size or PAGE, PAGE)
        first = min(size + 1, PAGE) if start else size  # the first may name start itself
        while True:
            headers, body = await self._call(
                "list",
                prefix,
                functools.partial(
                    fs._call,
                    "GET",
                    "b/{}/o",
                    self.bucket,
                    prefix=self.key(prefix),
                    pageToken=token,
                    startOffset=start,
                    maxResults=size if token else first,
                ),
            )
            resp = json.loads(body)
            yield headers, resp
            token = resp.get("nextPageToken")
            if not token:
                return


def _size(item: dict[str, Any], url: str) -> int:
    """The object's ``size`` (a decimal string in GCS's JSON); BackendError if it has none
    (a store that lies: never taken as 0)."""
    try:
        size = int(item["size"])
    except (KeyError, TypeError, ValueError):
        size = -1
    if size < 0:
        lie = ValueError(f"GCS listed {item.get('name')!r} without a size ({item.get('size')!r})")
        raise BackendError("list", url, lie)
    return size


def _modified_ms(item: dict[str, Any]) -> int | None:
    """The object's ``updated`` time (RFC 3339), or None if it has no readable one."""
    stamp = item.get("updated")
    if not isinstance(stamp, str):
        return None
    try:
        return written_ms(datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")))
    except ValueError:
        return None
