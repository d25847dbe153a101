"""Launcher for a moto S3 server, run as ``python -m kvstore.testing.servers._moto_main``.

Why not ``moto_server``?
    moto's stock server (``moto.server.main`` / ``ThreadedMotoServer``) evaluates
    ``If-None-Match: *`` and ``If-Match`` on ``PutObject`` (and multipart completion)
    as check-then-act inside a *threaded* werkzeug server, so two concurrent
    conditional PUTs of the same key can both succeed. Real S3 makes conditional
    writes atomic, and kvstore relies on that for compare-and-swap.

What this launcher changes
    It serves ``DomainDispatcherApplication(create_backend_app)`` (the exact app
    ``moto_server`` serves, with moto's ``MotoRequestHandler``) through
    :class:`SerializingMiddleware`, which runs **every request under one lock**.
    Each request's body is read *before* taking the lock and the response body is
    materialised *inside* it, so socket I/O with slow clients happens outside the
    lock while the state transition (check + write) is linearizable, as on S3.
    The server stays threaded (daemon threads, listen backlog 128), so concurrent
    clients are accepted promptly; they just execute one at a time.

Other behaviour
    * Binds ``--host`` (127.0.0.1) on ``--port`` (0 = let the kernel pick) and writes
      the bound port to ``--port-file`` (atomically, via rename) once listening.
    * Exits when its parent process (``--parent-pid``) goes away.
    * State is in memory only; ``POST /moto-api/reset`` wipes it.
    * ``--auto-create-buckets``: a bucket is created the first time a request names it
      (:class:`AutoBuckets`, inside the lock).
"""

from __future__ import annotations

import argparse
import io
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ._process import watch_parent, write_port_file

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SerializingMiddleware:
    """WSGI middleware that runs the wrapped app for one request at a time."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.lock = threading.Lock()

    @staticmethod
    def _read_body(environ: dict[str, Any]) -> bytes:
        stream = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH")
        if length:
            return bytes(stream.read(int(length)))
        if environ.get("wsgi.input_terminated"):  # chunked: werkzeug de-chunks to EOF
            return bytes(stream.read())
        return b""

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["wsgi.input"] = io.BytesIO(self._read_body(environ))
        with self.lock:
            result = self.app(environ, start_response)
            try:
                chunks = list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return chunks


class AutoBuckets:
    """WSGI middleware that creates a bucket the first time a request names it (path-style
    addressing, as botocore uses for an IP endpoint): a test then needs no bucket set-up.
    ``POST /moto-api/reset`` forgets them with the rest of moto's state."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.known: set[str] = set()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "/")
        if path.startswith("/moto-api/reset"):
            self.known.clear()
        bucket = path.lstrip("/").split("/", 1)[0]
        creating = environ.get("REQUEST_METHOD") == "PUT" and path.rstrip("/") == f"/{bucket}"
        unknown = bool(bucket) and not bucket.startswith("moto-api") and bucket not in self.known
        if unknown and not creating:
            refused = self._create(environ, bucket)
            if refused is not None:  # e.g. a name S3 does not allow: its error, not a 404
                status, headers, body = refused
                start_response(status, headers)
                return [body]
        if unknown:
            self.known.add(bucket)
        return self.app(environ, start_response)

    def _create(
        self, environ: dict[str, Any], bucket: str
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """Create ``bucket``: None if it exists now (made, or already there), else moto's
        answer refusing it."""
        create = {
            key: value
            for key, value in environ.items()
            if not key.startswith("HTTP_") or key == "HTTP_HOST"
        }
        create.update(
            REQUEST_METHOD="PUT",
            PATH_INFO=f"/{bucket}",
            QUERY_STRING="",
            CONTENT_LENGTH="0",
            CONTENT_TYPE="",
        )
        create["wsgi.input"] = io.BytesIO(b"")
        answer: list[tuple[str, list[tuple[str, str]]]] = []

        def start(status: str, headers: Any, exc_info: Any = None) -> None:
            answer.append((status, list(headers)))

        result = self.app(create, start)
        body = b"".join(result)
        close = getattr(result, "close", None)
        if close is not None:
            close()
        status, headers = answer[-1] if answer else ("500 Internal Server Error", [])
        if status.startswith("2") or b"BucketAlreadyOwnedByYou" in body:
            return None
        return status, headers, body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto S3 server with linearizable requests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument(
        "--auto-create-buckets", action="store_true", help="create a bucket on first use"
    )
    args = parser.parse_args(argv)

    from moto.moto_server import werkzeug_app
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    # moto < 5.2 has its own handler; 5.2 removed it (werkzeug's default is used then).
    handler: Any = getattr(werkzeug_app, "MotoRequestHandler", None)

    moto_app: WSGIApp = DomainDispatcherApplication(create_backend_app)
    if args.auto_create_buckets:
        moto_app = AutoBuckets(moto_app)
    app = SerializingMiddleware(moto_app)
    server = make_server(args.host, args.port, app, threaded=True, request_handler=handler)
    port = int(server.server_port)
    os.environ["MOTO_PORT"] = str(port)  # moto builds some URLs from it
    watch_parent(args.parent_pid)
    write_port_file(args.port_file, port)
    print(f"moto S3 listening on http://{args.host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
