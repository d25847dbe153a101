"""S3 (and S3-compatible stores) through s3fs / aiobotocore.

* ``get`` is one GetObject; the tag is the ETag of the bytes returned.
* ``put_if_absent`` is PutObject with ``If-None-Match: *``: S3 decides atomically which of
  several concurrent creators wins (the others get 412 Precondition Failed).
* ``put_if_match`` / ``delete_if_match`` send ``If-Match: <etag>``.
* A conditional write answered ``409 ConditionalRequestConflict`` (another conditional
  write to the key in flight; not applied) is sent again, up to ``CONFLICT_ATTEMPTS``.
* Listing is ListObjectsV2, one page (1000 keys) per request, from a position with
  ``StartAfter``; a dated listing is the same requests, read with each object's
  ``LastModified`` and the answer's ``Date``.
* ``delete_many`` is one DeleteObjects per 1000 keys (``Quiet``); a key the answer says
  was refused raises, naming it - never ignored.
* ``get_range`` is one GetObject with ``Range``; ``sign_url`` presigns a GetObject with
  SigV4 (the client's credentials and endpoint; no request), at most 7 days.
* Client CPU: botocore's per-request User-Agent rebuild and parameter validation are off
  (a fixed ``USER_AGENT``, ``parameter_validation=False``), and answers' dates are parsed
  by the standard library, not dateutil (:func:`parse_timestamp`): 2.69 -> 2.11 ms of
  client CPU per request (SeaweedFS on loopback, 1 KiB objects; BENCHMARKS.md "S3 client
  CPU"). Each only where ``storage_options`` does not set its own.

SeaweedFS (4.48) lists in its own order where a directory's name is followed by a
character below ``/`` in a sibling's, and a ``StartAfter`` of ``a`` skips the directory
``a/``: ``list_pages(start_after=...)`` can miss objects there. kvstore's own object names
never meet either (every name ends in ``~``).

Conditional writes need an S3 that implements them (AWS S3 since 2024, MinIO, SeaweedFS,
moto >= 5): before relying on them, the store checks once that the server refuses what it
must (:mod:`kvstore.blob.preconditions`), so one that ignores the headers is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import functools
import importlib.metadata
import random
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from ..errors import BackendError, ConfigurationError
from .base import Blob, DatedPage, RetryPolicy
from .remote import RemoteBlobStore, http_date_ms, written_ms

# How long a request to an endpoint that never answers can take, by default (each is used
# only where ``storage_options["config_kwargs"]`` does not set it; README, "Retries"):
# ATTEMPTS x (CONNECT_TIMEOUT, or READ_TIMEOUT once connected) + botocore's backoff
# between attempts (standard mode: up to 1 s, then up to 2 s). At most ~18 s when no
# connection is accepted, ~48 s when the server accepts and never answers.
CONNECT_TIMEOUT = 5.0
"""Seconds to establish a TCP (and TLS) connection: botocore's default is 60."""
READ_TIMEOUT = 15.0
"""Seconds the server may stay silent: before the first byte of its answer (the clock
starts once the request body is sent) and between two reads of the answer. Not a limit on
a whole transfer: an 8 MiB part takes as long as it takes while bytes keep coming.
s3fs's default; botocore's is 60."""
CONFLICT_ATTEMPTS = 5
"""Tries of a conditional write that S3 answers ``409 ConditionalRequestConflict``."""
PAGE = 1000
"""Keys per ListObjectsV2 page and per DeleteObjects request: S3's most."""
ATTEMPTS = 3
"""botocore tries per request ("standard" retry mode: throttling, 5xx, timeouts and
dropped connections, jittered exponential backoff). botocore's own default here is the
"legacy" mode's 5."""


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


USER_AGENT = f"kvstore/{_version('kvstore')} botocore/{_version('botocore')}"
"""The User-Agent of kvstore's S3 requests (unless ``config_kwargs`` sets ``user_agent``)."""


_LOADER: list[Any] = []  # botocore's data loader, once made: shared by every session
_LOADER_LOCK = threading.Lock()


def _session() -> Any:
    """An aiobotocore session whose response parsers read HTTP and ISO 8601 dates with the
    standard library: botocore's dateutil parser costs ~0.5 ms per GET (its LastModified
    header), more than the rest of parsing the answer.

    Every session of the process shares one *data loader* - botocore's cache of the
    parsed service descriptions (S3's is a large JSON file): a client of a new session
    otherwise parses it again, ~95 ms for each store opened, ~6 ms shared. Only those
    read-only models are shared; credentials and everything else stay per session."""
    from aiobotocore.session import AioSession

    session = AioSession()
    with _LOADER_LOCK:
        if _LOADER:
            session.register_component("data_loader", _LOADER[0])
        else:
            _LOADER.append(session.get_component("data_loader"))
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )
    return session


def parse_timestamp(value: Any) -> datetime.datetime:
    """A timestamp from an S3 answer: an HTTP date (``Mon, 30 Nov 2026 12:00:00 GMT``) or
    ISO 8601 (``2026-11-30T12:00:00.000Z``) by the standard library, else botocore's own
    parser (epoch numbers, anything unusual) - the same aware datetime either way."""
    if isinstance(value, str):
        try:
            if value[:1].isdigit():
                found = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            else:
                found = email.utils.parsedate_to_datetime(value)
            if found.tzinfo is not None:
                return found
        except (TypeError, ValueError, IndexError):
            pass
    from botocore.utils import parse_timestamp as botocore_parse

    parsed: datetime.datetime = botocore_parse(value)
    return parsed


async def _blob_of(resp: dict[str, Any]) -> Blob:
    """The bytes and tag of a GetObject answer (its body read whole, then closed)."""
    body = resp["Body"]
    try:
        data = await body.read()
    finally:
        body.close()
    return Blob(data, resp["ETag"])


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc.__cause__, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def _precondition_failed(exc: BaseException) -> bool:
    """s3fs turns a 412 into FileExistsError (If-None-Match) or an OSError (If-Match)."""
    if isinstance(exc, FileExistsError):
        return True
    cause = exc.__cause__
    response = getattr(cause, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in ("PreconditionFailed", "412") or status == 412
    return False


class S3BlobStore(RemoteBlobStore):
    """Objects in ``s3://bucket/prefix``."""

    can_sign_urls = True

    #: Who sends the requests (``storage_options["transport"]``; see s3_obstore).
    transport = "s3fs"
    protocol = "s3"
    extra = "s3"
    dated_listing = True
    delete_batch = PAGE  # one DeleteObjects request
    check_preconditions = True  # S3-compatible servers differ: probe before relying
    # botocore retries requests itself (ATTEMPTS tries with backoff; s3fs's own loop is
    # set to one try); retrying again here would multiply the delays. Pass
    # retry=RetryPolicy(...) to add more.
    default_retry = RetryPolicy(attempts=1)
    endpoint_env = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    #: First pause (seconds, doubling, jittered) before resending after a 409.
    CONFLICT_DELAY = 0.05
    option_types = {
        "endpoint_url": (str,),
        "key": (str,),
        "secret": (str,),
        "token": (str,),
        "profile": (str,),
        "anon": (bool,),
        "use_ssl": (bool,),
        "requester_pays": (bool,),
        "version_aware": (bool,),
        "client_kwargs": (dict,),
        "config_kwargs": (dict,),
        "s3_additional_kwargs": (dict,),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if mock_aws_active() and self.identity.endswith("@default"):
            raise ConfigurationError(
                f"{self.url}: moto's mock_aws is active, but it patches boto3 only, not "
                "kvstore's S3 client (aiobotocore): this store would reach the real AWS. "
                "Use kvstore.testing.mock_s3() (a moto server this store reaches), or give "
                "storage_options={'endpoint_url': ...}."
            )

    def _filesystem_options(self) -> dict[str, Any]:
        """botocore's client options (``config_kwargs``), each only where the user did not
        set it:

        * ``max_pool_connections``: botocore keeps at most 10 connections by default, which
          would cap a 1000-key ``mget`` at 10 requests in flight whatever the store's
          ``concurrency``; it follows the store's concurrency.
        * ``connect_timeout``, ``read_timeout`` and ``retries``: a request to an endpoint
          that never answers fails within a bound (see ``ATTEMPTS``).
        * ``signature_version``: ``s3v4``, so presigned URLs (``sign_url``) are SigV4.
        """
        options = super()._filesystem_options()
        config = dict(options.get("config_kwargs") or {})
        if self.connections > 0 and "max_pool_connections" not in config:
            config["max_pool_connections"] = self.connections
        config.setdefault("connect_timeout", CONNECT_TIMEOUT)
        config.setdefault("read_timeout", READ_TIMEOUT)
        config.setdefault("retries", {"total_max_attempts": ATTEMPTS, "mode": "standard"})
        # Presigned URLs signed with SigV4: botocore's default, in the classic regions,
        # presigns with the old SigV2, which SeaweedFS refuses (requests are SigV4 anyway).
        config.setdefault("signature_version", "s3v4")
        # Client CPU per request (issue 16; measured in kvstore.blob.s3's docstring):
        # botocore rebuilds its User-Agent from ~40 components twice per request (~0.55 ms);
        # a fixed one is the documented override. kvstore builds every parameter itself, so
        # botocore's validation of them against the API model is work without a finding.
        config.setdefault("user_agent", USER_AGENT)
        config.setdefault("parameter_validation", False)
        options["config_kwargs"] = config
        if options.get("session") is None:  # a user's own session keeps its parsers
            options["session"] = _session()
        return options

    def _configure(self, fs: Any) -> None:
        # s3fs retries what botocore gave up on (read timeouts, dropped connections) up to
        # 5 times: on top of botocore's attempts, that multiplies every timeout by 5. The
        # one layer of retries is botocore's; kvstore's own (``retry=``) is the outer one.
        fs.retries = 1

    async def _connect(self, fs: Any) -> None:
        await fs.set_session()

    async def _disconnect(self, fs: Any) -> None:
        # The client's creator: the one client, or s3fs's per-region cache of clients.
        creator = getattr(fs, "_s3creator", None)
        if creator is not None:
            await creator.__aexit__(None, None, None)
        elif fs._s3 is not None:
            await fs._s3.__aexit__(None, None, None)

    def _sessions(self, fs: Any) -> Iterator[Any]:
        regions = getattr(getattr(fs, "_s3creator", None), "_regions", None) or {}
        for client in (fs._s3, *regions.values()):
            http = getattr(getattr(client, "_endpoint", None), "http_session", None)
            yield from (getattr(http, "_sessions", None) or {}).values()

    async def _s3(self, method: str, **kwargs: Any) -> Any:
        fs = await self.filesystem()
        return await fs._call_s3(method, Bucket=self.bucket, **kwargs)

    async def _conditional(self, method: str, **kwargs: Any) -> Any:
        """A conditional request, sent again after ``409 ConditionalRequestConflict``: AWS's
        answer when another conditional write to the same key is in flight. It means this
        request was *not* applied (so sending it again is safe and not ambiguous), and AWS
        says to retry; botocore does not (409 is not among its retryable answers)."""
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                return await self._s3(method, **kwargs)
            except OSError as exc:
                if _error_code(exc) != "ConditionalRequestConflict":
                    raise
                if attempt + 1 == CONFLICT_ATTEMPTS:
                    raise
                self.stats.add("s3.conditional_conflicts")
                await asyncio.sleep(self.CONFLICT_DELAY * 2**attempt * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        ranged = {} if head is None else {"Range": f"bytes=0-{max(head, 1) - 1}"}
        try:
            resp = await self._s3("get_object", Key=self.key(path), **ranged)
        except FileNotFoundError as exc:
            if _error_code(exc) == "NoSuchBucket":
                raise  # a wrong bucket is an error, not an empty store
            return None
        except OSError as exc:
            if head is not None and _error_code(exc) == "InvalidRange":
                # S3 answers 416 to a range of an empty object (no byte 0 to start at):
                # the whole object is then the head.
                return await self._get(path)
            raise
        return await _blob_of(resp)

    async def _get_range(self, path: str, start: int, size: int) -> Blob | None:
        ranged = f"bytes={start}-{start + size - 1}"
        try:
            resp = await self._s3("get_object", Key=self.key(path), Range=ranged)
        except FileNotFoundError as exc:
            if _error_code(exc) == "NoSuchBucket":
                raise
            return None
        except OSError as exc:
            if _error_code(exc) != "InvalidRange":
                raise
            # 416: the range starts at or past the object's end - nothing to read there.
            head = await self._get(path, 1)
            return None if head is None else Blob(b"", head.tag)
        return await _blob_of(resp)

    async def _sign_url(self, path: str, seconds: int, content_type: str | None) -> str:
        """SigV4 query signing by the store's own client: its credentials, endpoint,
        region and addressing style (so a URL of a moto or SeaweedFS store points at that
        server). No request (s3fs may ask for the bucket's region once, where it does)."""
        fs = await self.filesystem()
        client = await fs.get_s3(self.bucket)
        params = {"Bucket": self.bucket, "Key": self.key(path)}
        if content_type is not None:
            params["ResponseContentType"] = content_type
        url = await client.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds)
        return str(url)

    async def _put(self, path: str, data: bytes) -> str:
        resp = await self._s3("put_object", Key=self.key(path), Body=data)
        return str(resp["ETag"])

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        try:
            resp = await self._conditional(
                "put_object", Key=self.key(path), Body=data, IfNoneMatch="*"
            )
        except OSError as exc:
            if _precondition_failed(exc):
                return None
            raise
        return str(resp["ETag"])

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        try:
            resp = await self._conditional("put_object", Key=self.key(path), Body=data, IfMatch=tag)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if _precondition_failed(exc):
                return None
            raise
        return str(resp["ETag"])

    async def _delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await self._s3("delete_object", Key=self.key(path))

    async def _delete_many(self, paths: Sequence[str]) -> None:
        """One DeleteObjects (``Quiet``: the answer lists only failures) for at most 1000
        paths. A key S3 refused raises :class:`DeleteRefused` naming the first (a key
        reported missing is not a failure)."""
        objects = [{"Key": self.key(path)} for path in paths]
        resp = await self._s3("delete_objects", Delete={"Objects": objects, "Quiet": True})
        errors = [e for e in resp.get("Errors") or [] if e.get("Code") != "NoSuchKey"]
        if errors:
            raise DeleteRefused(self.relative(str(errors[0].get("Key", ""))), errors)

    async def _delete_if_match(self, path: str, tag: str) -> bool:
        try:
            await self._conditional("delete_object", Key=self.key(path), IfMatch=tag)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if _precondition_failed(exc):
                return False
            raise
        return True

    async def _list(self, prefix: str) -> AsyncIterator[list[str]]:
        async for resp in self._pages(prefix):
            yield [self.relative(item["Key"]) for item in resp.get("Contents", [])]

    async def _list_after(
        self, prefix: str, start_after: str | None, page_size: int | None
    ) -> AsyncIterator[list[str]]:
        async for resp in self._pages(prefix, start_after, page_size):
            paths = [self.relative(item["Key"]) for item in resp.get("Contents", [])]
            # S3 starts after the key itself; a server that ignored StartAfter is caught here
            yield paths if start_after is None else [p for p in paths if p > start_after]

    async def _list_dated(self, prefix: str) -> AsyncIterator[DatedPage]:
        async for resp in self._pages(prefix):
            contents = resp.get("Contents", [])
            entries = [(self.relative(item["Key"]), _modified_ms(item)) for item in contents]
            headers = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            yield entries, http_date_ms(headers.get("date"))

    async def _list_sized(self, prefix: str) -> AsyncIterator[list[tuple[str, int]]]:
        async for resp in self._pages(prefix):
            contents = resp.get("Contents", [])
            yield [(self.relative(item["Key"]), _size(item, self.url)) for item in contents]

    async def _pages(
        self, prefix: str, start_after: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """ListObjectsV2 answers, one per page of 1000 keys (or ``page_size``), from the
        first key after ``start_after`` (each request retried alone)."""
        token: str | None = None
        first: dict[str, Any] = {"StartAfter": self.key(start_after)} if start_after else {}
        size = {"MaxKeys": min(page_size, PAGE)} if page_size else {}
        while True:
            extra = {"ContinuationToken": token, **size} if token else {**first, **size}
            resp = await self._call(
                "list",
                prefix,
                functools.partial(self._s3, "list_objects_v2", Prefix=self.key(prefix), **extra),
            )
            yield resp
            if not resp.get("IsTruncated"):
                return
            token = resp["NextContinuationToken"]


class DeleteRefused(OSError):
    """A DeleteObjects answer that refused keys: names the first (``path``, relative to
    the store's root) and keeps S3's error for it in ``response``, so a transient one
    (``InternalError``, ``SlowDown``) is retried like a failed request."""

    def __init__(self, path: str, errors: list[dict[str, Any]]) -> None:
        first = errors[0]
        code, message = first.get("Code", "?"), first.get("Message", "")
        more = f" (and {len(errors) - 1} more keys)" if len(errors) > 1 else ""
        super().__init__(f"S3 refused to delete {path!r}: {code}: {message}{more}")
        self.path = path
        self.errors = errors
        self.response = {"Error": {"Code": code, "Message": message}}


def _size(item: dict[str, Any], url: str) -> int:
    """The object's ``Size`` in a ListObjectsV2 answer; BackendError if it has none (a
    store that lies: never taken as 0)."""
    size = item.get("Size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        lie = ValueError(f"S3 listed {item.get('Key')!r} without a size ({size!r})")
        raise BackendError("list", url, lie)
    return size


def _modified_ms(item: dict[str, Any]) -> int | None:
    when = item.get("LastModified")  # botocore parses it into a datetime
    return written_ms(when) if isinstance(when, datetime.datetime) else None


def mock_aws_active() -> bool:
    """True while moto's in-process ``mock_aws`` is active (moto imported and its botocore
    stubber on); looked up in ``sys.modules`` only, so it never imports moto."""
    models = sys.modules.get("moto.core.models")
    stubber = getattr(models, "botocore_stubber", None)
    return bool(getattr(stubber, "enabled", False))
