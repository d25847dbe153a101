"""Launcher for gcp-storage-emulator, run as ``python -m kvstore.testing.servers._gcs_main``.

The stock emulator is patched *in this process only* (nothing on disk is modified):

1. **Preconditions.** The emulator ignores ``ifGenerationMatch`` /
   ``ifGenerationNotMatch`` / ``ifMetagenerationMatch`` / ``ifMetagenerationNotMatch``
   (and the XML API ``x-goog-if-generation-match`` / ``-metageneration-match``
   headers). They are enforced here with GCS semantics:

   * writes (``uploadType=media``, ``multipart``, ``resumable``, XML ``PUT``, and the
     destination of copy/rewrite/compose) are checked at the single commit point,
     ``Storage.create_file``. ``ifGenerationMatch=0`` means "must not exist",
     ``=N`` means "current generation must be N"; a failure is HTTP 412.
   * a resumable upload is checked when the session is initiated (fail fast) and
     again, with the preconditions remembered from the initiating POST, when the
     final chunk commits the object.
   * ``GET`` (metadata and media), ``PATCH`` and ``DELETE`` of an existing object
     are checked before the handler runs (412; 304 for a failed ``*NotMatch`` on a
     read). ``generation=N`` on a read/delete that is not the live generation is 404.
   * Every request runs its check and its write under **one lock**, so
     check-and-write is atomic (concurrent ``ifGenerationMatch=0`` creates: exactly
     one wins).

   Every evaluated precondition is recorded (the newest 100 000 are kept);
   ``GET /_kvstore/preconditions`` returns
   ``{"records": [...]}`` and ``DELETE /_kvstore/preconditions`` clears it, so a test
   can prove a client *sent* a precondition. (Per-item preconditions inside a
   ``/batch`` request are not parsed; ``ifSourceGeneration*`` is not enforced.)

2. **Generations.** Each committed write gets a fresh, strictly increasing
   ``generation`` (``max(time_ns, last + 1)``), stamped at commit time (the emulator
   stamps resumable uploads when the session *starts*, and only with ``time_ns``), and
   ``metageneration`` restarts at 1 (the emulator reports 2 for multipart uploads).
   Object GETs (metadata and media) and XML API ``PUT`` answers carry
   ``x-goog-generation`` and ``x-goog-metageneration`` headers, which the emulator never
   sends, and GCS's XML API ``ETag`` (the quoted hex MD5): a client of the XML API
   (obstore's GCS store) reads both from every write and read.

3. **Downloads.** Suffix ranges (``Range: bytes=-N``) are rewritten to what the
   emulator understands (it ignored them and returned 200 with the whole object), and a
   range starting at/after the end of a non-empty object is 416 (was an empty 206).

4. **Listing.** ``objects.list`` honours ``maxResults`` (default and cap 1000, counting
   items and prefixes together, as GCS does), ``pageToken`` / ``nextPageToken`` and
   ``startOffset`` (inclusive); the emulator returned everything in one page and ignored
   all three.

5. **Concurrency.** The emulator serves with a single-threaded ``http.server.HTTPServer``
   (listen backlog 5). Under 64 concurrent gcsfs requests, SYNs overflow the backlog
   and clients stall for seconds in TCP SYN retransmits (measured: 64 parallel
   ``pipe_file`` ~8 s, ``cat_file`` ~15 s; with this launcher 0.1-0.2 s; the 1 s /
   3 s / 7 s steps match the kernel's SYN retry schedule). Here it runs on a
   ``ThreadingHTTPServer`` with daemon threads and a backlog of 1024 (kvstore sends 256
   requests at once); request bodies are read outside the lock and responses written
   outside it, only handler execution is serialised.

6. **Memory only, bounded.** Storage is in memory; the emulator's per-write JSON dump
   of all metadata (O(n) per write) is skipped, and deletes are hard deletes (no
   7-day soft-delete copies kept in memory).

``objects.delete`` answers 204 (the emulator said 200); cancelling a resumable session
(``DELETE`` on the session URL) answers 204.
The launcher binds ``--port`` (0 = kernel-chosen), writes the bound port to
``--port-file`` and exits when ``--parent-pid`` goes away.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import email.utils
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from functools import partial
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gcp_storage_emulator import server as gserver
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects
from gcp_storage_emulator.storage import RESUMABLE_DIR, Storage

from ._process import watch_parent, write_port_file

Handler = Callable[[Any, Any, Any], Any]

logger = logging.getLogger("kvstore.testing.servers.gcs")
LOCK = threading.RLock()
_CTX = threading.local()
RECORDS: list[dict[str, Any]] = []
MAX_RECORDS = 100_000  # keep the newest; long benchmarks must not grow memory forever
_SEQ = [0]
PRECONDITION_PARAMS = (
    "ifGenerationMatch",
    "ifGenerationNotMatch",
    "ifMetagenerationMatch",
    "ifMetagenerationNotMatch",
)
_XML_HEADERS = {
    "x-goog-if-generation-match": "ifGenerationMatch",
    "x-goog-if-metageneration-match": "ifMetagenerationMatch",
}
MAX_PAGE = 1000


class HTTPFailure(Exception):
    """Abort the current request with ``status`` (412, 304, 404, 416, 400)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# --------------------------------------------------------------------------- checks
def _request_preconditions(request: Any) -> dict[str, int]:
    pre: dict[str, int] = {}
    try:
        for name in PRECONDITION_PARAMS:
            values = request.query.get(name)
            if values:
                pre[name] = int(values[-1])
        for header, name in _XML_HEADERS.items():
            value = request.get_header(header)
            if value is not None:
                pre.setdefault(name, int(value))
    except ValueError as exc:
        raise HTTPFailure(400, f"invalid precondition value: {exc}") from exc
    return pre


def _current_preconditions() -> dict[str, int]:
    return dict(getattr(_CTX, "pre", None) or {})


def check_preconditions(
    pre: dict[str, int],
    obj: dict[str, Any] | None,
    *,
    op: str,
    bucket: str,
    name: str,
    read: bool = False,
) -> None:
    """Evaluate ``pre`` against the live object ``obj`` (None = absent); record it.

    Raises :class:`HTTPFailure` (412, or 304 for a failed ``*NotMatch`` on a read).
    """
    if not pre:
        return
    gen = int(obj["generation"]) if obj else None
    meta = int(obj.get("metageneration") or 1) if obj else None
    failed: str | None = None
    for param, want in pre.items():
        if param == "ifGenerationMatch":
            ok = obj is None if want == 0 else gen == want
        elif param == "ifGenerationNotMatch":
            ok = obj is not None if want == 0 else gen != want
        elif param == "ifMetagenerationMatch":
            ok = meta == want
        else:  # ifMetagenerationNotMatch
            ok = meta != want
        if not ok:
            failed = param
            break
    status = 200
    if failed is not None:
        status = 304 if read and failed.endswith("NotMatch") else 412
    _SEQ[0] += 1
    RECORDS.append(
        {
            "seq": _SEQ[0],
            "op": op,
            "bucket": bucket,
            "object": name,
            "preconditions": dict(pre),
            "current_generation": None if gen is None else str(gen),
            "status": status,
        }
    )
    if len(RECORDS) > MAX_RECORDS:
        del RECORDS[: len(RECORDS) - MAX_RECORDS]
    if failed is not None:
        raise HTTPFailure(
            status,
            f"At least one of the pre-conditions you specified did not hold "
            f"({failed}={pre[failed]}, current generation: {gen}).",
        )


# --------------------------------------------------------------------------- storage
class _AutoBuckets(dict[str, Any]):
    """The emulator's bucket table, creating a bucket the first time it is looked up."""

    def __init__(self, storage: Storage, items: dict[str, Any]) -> None:
        super().__init__(items)
        self._storage = storage

    def _ensure(self, name: object) -> None:
        if isinstance(name, str) and name and not dict.__contains__(self, name):
            from gcp_storage_emulator.handlers.buckets import _make_bucket_resource

            dict.__setitem__(self, name, _make_bucket_resource(name))
            self._storage._store.makedirs(name)

    def __contains__(self, name: object) -> bool:
        self._ensure(name)
        return dict.__contains__(self, name)

    def __getitem__(self, name: str) -> Any:
        self._ensure(name)
        return dict.__getitem__(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        self._ensure(name)
        return dict.get(self, name, default)


class GuardedStorage(Storage):  # type: ignore[misc]
    """In-memory emulator storage with precondition checks at the commit points (and,
    with ``auto_create_buckets``, buckets made on first use)."""

    def __init__(self, auto_create_buckets: bool = False) -> None:
        self._auto_create_buckets = auto_create_buckets
        super().__init__(use_memory_fs=True)
        self.sessions: dict[str, dict[str, int]] = {}
        self._last_generation = 0

    @property
    def buckets(self) -> dict[str, Any]:
        return self._buckets

    @buckets.setter
    def buckets(self, table: dict[str, Any]) -> None:
        auto = getattr(self, "_auto_create_buckets", False)
        self._buckets = _AutoBuckets(self, table) if auto else table

    def _write_config_to_file(self) -> None:
        """Memory-only: skip the emulator's O(n) JSON dump of all metadata per write."""

    def _bucket_soft_delete_retention_seconds(self, bucket_name: str) -> int:
        return 0  # hard deletes: keep memory bounded

    def live(self, bucket: str, name: str) -> dict[str, Any] | None:
        obj: dict[str, Any] | None = self.objects.get(bucket, {}).get(name)
        return obj

    def next_generation(self) -> int:
        self._last_generation = max(time.time_ns(), self._last_generation + 1)
        return self._last_generation

    def create_resumable_upload(self, bucket_name: str, file_name: str, file_obj: Any) -> str:
        pre = _current_preconditions()
        if bucket_name in self.buckets:
            check_preconditions(
                pre,
                self.live(bucket_name, file_name),
                op="resumable-init",
                bucket=bucket_name,
                name=file_name,
            )
        file_id: str = super().create_resumable_upload(bucket_name, file_name, file_obj)
        self.sessions[file_id] = pre
        return file_id

    def cancel_resumable(self, file_id: str) -> bool:
        if file_id not in self.resumable:
            return False
        self.delete_resumable_file_obj(file_id)
        self._delete_file(RESUMABLE_DIR, self.safe_id(file_id))
        self.sessions.pop(file_id, None)
        return True

    def create_file(
        self,
        bucket_name: str,
        file_name: str,
        content: bytes,
        file_obj: dict[str, Any],
        file_id: str | None = None,
    ) -> None:
        if bucket_name not in self.buckets:
            raise NotFound
        pre = dict(self.sessions.get(file_id, {})) if file_id else {}
        pre.update(_current_preconditions())
        try:
            check_preconditions(
                pre,
                self.live(bucket_name, file_name),
                op="write",
                bucket=bucket_name,
                name=file_name,
            )
        except HTTPFailure:
            if file_id:  # a failed final commit ends the session, as on GCS
                self.cancel_resumable(file_id)
            raise
        gen = self.next_generation()
        old = file_obj.get("generation")
        file_obj["generation"] = str(gen)
        file_obj["metageneration"] = "1"
        file_obj["id"] = f"{bucket_name}/{file_name}/{gen}"
        link = file_obj.get("mediaLink")
        if link and old:
            file_obj["mediaLink"] = link.replace(f"generation={old}", f"generation={gen}")
        super().create_file(bucket_name, file_name, content, file_obj, file_id)
        if file_id:
            self.sessions.pop(file_id, None)

    def wipe(self, keep_buckets: bool = False) -> None:
        super().wipe(keep_buckets)
        self.sessions.clear()


# --------------------------------------------------------------------------- handlers
def _fail(response: Any, exc: HTTPFailure) -> None:
    response._headers = {}
    response.status = HTTPStatus(exc.status)
    for key, value in exc.headers.items():
        response[key] = value
    if exc.status == 304:
        response._content = ""
        return
    reason = {412: "conditionNotMet", 404: "notFound", 500: "backendError"}.get(
        exc.status, "invalid"
    )
    response.json(
        {
            "error": {
                "code": exc.status,
                "message": exc.message,
                "errors": [{"domain": "global", "reason": reason, "message": exc.message}],
            }
        }
    )


def _fix_range(request: Any, size: int) -> None:
    headers = request._request_handler.headers
    value = headers.get("Range")
    if not value:
        return
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", value)
    if not match or match.groups() == ("", ""):
        return
    start, end = match.groups()
    new: str | None = value
    if size == 0:
        new = None
    elif start == "":
        if int(end) == 0:
            raise HTTPFailure(
                416, "Requested range not satisfiable", {"Content-Range": f"bytes */{size}"}
            )
        new = f"bytes={max(0, size - int(end))}-"
    elif int(start) >= size:
        raise HTTPFailure(
            416, "Requested range not satisfiable", {"Content-Range": f"bytes */{size}"}
        )
    del headers["Range"]
    if new is not None:
        headers["Range"] = new


def _before_object(request: Any, storage: GuardedStorage, pre: dict[str, int], media: bool) -> None:
    """Checks for GET/PATCH/DELETE on an existing object (absent -> handler 404s)."""
    if request.method == "GET" and request.query.get("softDeleted"):
        return
    bucket, name = request.params["bucket_name"], request.params["object_id"]
    obj = storage.live(bucket, name)
    if obj is None:
        return
    wanted = request.query.get("generation")
    if wanted and wanted[0] != obj["generation"]:
        raise HTTPFailure(404, f"No such object: {bucket}/{name}#{wanted[0]}")
    check_preconditions(
        pre,
        obj,
        op=request.method.lower(),
        bucket=bucket,
        name=name,
        read=request.method == "GET",
    )
    if media:
        _fix_range(request, len(storage.get_file(bucket, name)))


def _after_object_get(request: Any, response: Any, storage: GuardedStorage) -> None:
    if response.status not in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
        return
    obj = storage.live(request.params["bucket_name"], request.params["object_id"])
    if obj is not None:
        _object_headers(response, obj)


def _object_headers(response: Any, obj: dict[str, Any]) -> None:
    """What GCS puts on an object's answers: generations and (XML API) a quoted MD5 ETag."""
    response["x-goog-generation"] = obj["generation"]
    response["x-goog-metageneration"] = obj.get("metageneration") or "1"
    if obj.get("updated"):
        updated = datetime.datetime.fromisoformat(obj["updated"].replace("Z", "+00:00"))
        response["Last-Modified"] = email.utils.format_datetime(updated, usegmt=True)
    if obj.get("md5Hash"):
        response["ETag"] = f'"{base64.b64decode(obj["md5Hash"]).hex()}"'


def _paginate(request: Any, response: Any) -> None:
    if response.status != HTTPStatus.OK:
        return
    body = json.loads(response._content)
    query = request.query
    try:
        limit = (
            min(MAX_PAGE, max(1, int(query["maxResults"][0])))
            if "maxResults" in query
            else MAX_PAGE
        )
        token = query["pageToken"][0] if query.get("pageToken") else None
        start = query["startOffset"][0] if query.get("startOffset") else None
        after = base64.urlsafe_b64decode(token.encode()).decode() if token else None
    except (ValueError, binascii.Error) as exc:
        raise HTTPFailure(400, f"invalid maxResults/pageToken: {exc}") from exc
    entries: list[tuple[str, Any, bool]] = [(o["name"], o, True) for o in body.get("items") or []]
    entries += [(p, p, False) for p in body.get("prefixes") or []]
    entries.sort(key=lambda e: e[0])
    if start is not None:  # inclusive, as GCS
        entries = [e for e in entries if e[0] >= start]
    if after is not None:
        entries = [e for e in entries if e[0] > after]
    page, rest = entries[:limit], entries[limit:]
    out: dict[str, Any] = {
        "kind": "storage#objects",
        "prefixes": [e[1] for e in page if not e[2]],
        "items": [e[1] for e in page if e[2]],
    }
    if rest:
        out["nextPageToken"] = base64.urlsafe_b64encode(page[-1][0].encode()).decode()
    response.json(out)


def guard(handler: Handler, kind: str = "plain") -> Handler:
    """Wrap an emulator handler: read the body, then run checks + handler under LOCK."""

    def wrapped(request: Any, response: Any, storage: GuardedStorage) -> None:
        try:
            request.data  # noqa: B018 - read the body before taking the lock
        except Exception as exc:  # malformed JSON / multipart
            _fail(response, HTTPFailure(400, f"could not parse request body: {exc}"))
            return
        with LOCK:
            _CTX.pre = None
            try:
                _CTX.pre = _request_preconditions(request)
                media = handler is objects.download or (
                    handler is objects.get and request.query.get("alt") == ["media"]
                )
                if kind == "object":
                    _before_object(request, storage, _CTX.pre, media)
                handler(request, response, storage)
                if handler is objects.delete and response.status == HTTPStatus.OK:
                    response.status = HTTPStatus.NO_CONTENT  # as GCS (emulator: 200)
                read = kind == "object" and request.method == "GET"
                if read or handler is objects.xml_upload:  # (answers other than 2xx: none)
                    _after_object_get(request, response, storage)
                elif kind == "list":
                    _paginate(request, response)
            except HTTPFailure as exc:
                _fail(response, exc)
            except Exception as exc:  # an emulator bug: answer 500 instead of a reset socket
                logger.exception("handler %s failed", wrapped.__name__)
                _fail(response, HTTPFailure(500, f"emulator error: {exc!r}"))
            finally:
                _CTX.pre = None

    wrapped.__name__ = getattr(handler, "__name__", "handler")
    return wrapped


def _list_preconditions(request: Any, response: Any, storage: GuardedStorage) -> None:
    response.json({"records": RECORDS})


def _clear_preconditions(request: Any, response: Any, storage: GuardedStorage) -> None:
    RECORDS.clear()
    response.json({"records": []})


def _cancel_resumable(request: Any, response: Any, storage: GuardedStorage) -> None:
    upload_id = (request.query.get("upload_id") or [""])[0]
    if storage.cancel_resumable(upload_id):
        response.status = HTTPStatus.NO_CONTENT
    else:
        response.status = HTTPStatus.NOT_FOUND


def install() -> None:
    """Replace the emulator's routing table with guarded handlers (idempotent)."""
    if getattr(gserver, "_kvstore_guarded", False):
        return
    kinds = {
        objects.get: "object",
        objects.download: "object",
        objects.delete: "object",
        objects.patch: "object",
        objects.ls: "list",
    }
    routes: list[tuple[str, dict[str, Handler]]] = [
        (
            r"^/_kvstore/preconditions$",
            {gserver.GET: guard(_list_preconditions), gserver.DELETE: guard(_clear_preconditions)},
        )
    ]
    for regex, methods in gserver.HANDLERS:
        new = {m: guard(fn, kinds.get(fn, "plain")) for m, fn in methods.items()}
        if objects.upload_partial in methods.values():
            new[gserver.DELETE] = guard(_cancel_resumable)
        routes.append((regex, new))
    gserver.HANDLERS = tuple(routes)
    # The router falls back to ``objects.insert`` for uploads POSTed without /upload.
    objects.insert = guard(objects.insert)
    gserver._kvstore_guarded = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="gcp-storage-emulator with GCS preconditions")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    parser.add_argument(
        "--auto-create-buckets", action="store_true", help="create a bucket on first use"
    )
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if not args.verbose:  # the emulator warns on every string response
        logging.getLogger(gserver.__name__).setLevel(logging.ERROR)
    install()
    storage = GuardedStorage(auto_create_buckets=args.auto_create_buckets)
    httpd = _Server((args.host, args.port), partial(gserver.RequestHandler, storage))
    port = int(httpd.server_address[1])
    watch_parent(args.parent_pid)
    write_port_file(args.port_file, port)
    print(f"GCS emulator listening on http://{args.host}:{port}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
