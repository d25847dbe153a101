"""gcp-storage-emulator in a subprocess, patched to behave like GCS where kvstore cares.

The launcher (:mod:`kvstore.testing.servers._gcs_main`, whose docstring lists every patch) adds what
the stock emulator lacks: enforced, atomic ``ifGenerationMatch`` /
``ifGenerationNotMatch`` / ``ifMetageneration*`` preconditions (412), strictly
increasing generations stamped at commit, ``x-goog-generation`` headers, suffix
ranges, ``maxResults``/``pageToken`` pagination, and a threaded server that does not
stall under concurrent clients. Storage is in memory only.

Guarantees
----------
* Listens on ``127.0.0.1`` on a kernel-chosen free port (or ``port=``).
* After :meth:`GCSEmulator.start` (and :meth:`~GCSEmulator.reset`,
  :meth:`~kvstore.testing.servers._process.LauncherProcess.restart`) the constructor's buckets exist
  and are empty.
* ``start()`` sets ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` in ``os.environ``
  (gcsfs otherwise probes bucket layouts the emulator does not implement).
* :meth:`GCSEmulator.preconditions` returns every precondition the server evaluated,
  so tests can prove a client actually sent one.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

from ._process import BackendError, LauncherProcess

__all__ = ["GCSEmulator"]

GCSFS_ENV = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}


class GCSEmulator(LauncherProcess):
    """GCS emulator on loopback; ``with GCSEmulator() as gcs: gcs.storage_options``."""

    name = "gcs"
    module = "kvstore.testing.servers._gcs_main"

    def __init__(
        self,
        buckets: Iterable[str] = ("kvstore-test",),
        port: int | None = None,
        *,
        project: str = "test",
        verbose: bool = False,
        auto_create_buckets: bool = False,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
    ) -> None:
        super().__init__(port, startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self.buckets: tuple[str, ...] = tuple(buckets)
        self.project = project
        self.verbose = verbose
        self.auto_create_buckets = auto_create_buckets
        """Create a bucket the first time a request names it (no set-up in tests)."""

    def _launcher_args(self) -> list[str]:
        return [
            *(["--verbose"] if self.verbose else []),
            *(["--auto-create-buckets"] if self.auto_create_buckets else []),
        ]

    # ------------------------------------------------------------ client config
    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/gcsfs options: ``fsspec.filesystem("gcs", **storage_options)``."""
        return {"endpoint_url": self.endpoint_url, "token": "anon", "project": self.project}

    @property
    def env(self) -> dict[str, str]:
        """Environment for GCS clients (google-cloud-storage honours
        ``STORAGE_EMULATOR_HOST``; gcsfs needs the HNS switch off)."""
        return {
            "STORAGE_EMULATOR_HOST": self.endpoint_url,
            "GOOGLE_CLOUD_PROJECT": self.project,
            **GCSFS_ENV,
        }

    def url_for(self, bucket: str | None = None, prefix: str = "") -> str:
        """``gs://bucket/prefix`` (bucket defaults to the first configured one)."""
        bucket = bucket or self.buckets[0]
        prefix = prefix.strip("/")
        return f"gs://{bucket}/{prefix}" if prefix else f"gs://{bucket}"

    # ------------------------------------------------------------ HTTP helpers
    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.endpoint_url}{path}", data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise BackendError(f"{method} {path} -> HTTP {exc.code}: {exc.read()[:500]!r}") from exc
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (no error if it already exists)."""
        buckets = self._request("GET", f"/storage/v1/b?project={self.project}") or {}
        if any(b.get("name") == name for b in buckets.get("items") or []):
            return
        self._request("POST", f"/storage/v1/b?project={self.project}", {"name": name})

    def preconditions(self) -> list[dict[str, Any]]:
        """Every precondition evaluated so far, oldest first. Each record has keys
        ``seq, op ("write"|"resumable-init"|"get"|"patch"|"delete"), bucket, object,
        preconditions ({"ifGenerationMatch": 0, ...}), current_generation, status``
        (200 = held, 412/304 = failed)."""
        records: list[dict[str, Any]] = self._request("GET", "/_kvstore/preconditions")["records"]
        return records

    def clear_preconditions(self) -> None:
        """Forget the recorded preconditions."""
        self._request("DELETE", "/_kvstore/preconditions")

    def reset(self) -> None:
        """Delete all buckets and objects, clear the precondition log, and recreate
        the constructor's buckets (the state right after :meth:`start`)."""
        self._request("GET", "/wipe")
        self.clear_preconditions()
        for bucket in self.buckets:
            self.create_bucket(bucket)

    def start(self) -> GCSEmulator:
        """Start the emulator, set the gcsfs env switch, create the buckets."""
        os.environ.update(GCSFS_ENV)
        super().start()
        try:
            for bucket in self.buckets:
                self.create_bucket(bucket)
        except BaseException:
            self.stop()
            raise
        return self
