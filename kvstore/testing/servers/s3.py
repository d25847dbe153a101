"""A moto S3 server in a subprocess, for boto3 / s3fs / aiobotocore clients.

Why a subprocess: s3fs talks through aiobotocore (aiohttp), which moto's in-process
``mock_aws`` cannot intercept, so tests need a real HTTP endpoint.

Guarantees
----------
* Listens on ``127.0.0.1`` on a kernel-chosen free port (or ``port=``).
* **Requests are linearizable**: the launcher (:mod:`kvstore.testing.servers._moto_main`) runs every
  request under one lock, so ``PutObject`` with ``If-None-Match: *`` / ``If-Match``
  is atomic as on real S3 (stock moto checks-then-acts in a threaded server, letting
  two racing conditional PUTs both succeed).
* After :meth:`MotoS3Server.start` (and :meth:`~MotoS3Server.reset`,
  :meth:`~kvstore.testing.servers._process.LauncherProcess.restart`) the buckets given to the
  constructor exist and are empty. All state is in memory.
* Credentials are the dummies ``testing``/``testing``, region ``us-east-1``.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable
from typing import Any

from ._process import LauncherProcess

__all__ = ["MotoS3Server", "S3Endpoint"]

ACCESS_KEY = "testing"
SECRET_KEY = "testing"


class S3Endpoint:
    """The client side of a local S3 server: s3fs options, boto3 environment and client,
    ``s3://`` URLs. A server class sets ``access_key``, ``secret_key``, ``region`` and
    ``buckets`` and provides ``endpoint_url``."""

    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str
    buckets: tuple[str, ...]
    endpoint_url: Any  # a property of the server class

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options: ``fsspec.filesystem("s3", **storage_options)``."""
        return {
            "endpoint_url": self.endpoint_url,
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"region_name": self.region},
        }

    @property
    def env(self) -> dict[str, str]:
        """Environment for boto3/botocore-based clients (not applied to os.environ)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    def url_for(self, bucket: str | None = None, prefix: str = "") -> str:
        """``s3://bucket/prefix`` (bucket defaults to the first configured one)."""
        bucket = bucket or self.buckets[0]
        prefix = prefix.strip("/")
        return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"

    def client(self, **kwargs: Any) -> Any:
        """A new boto3 S3 client for this server (``botocore.client.S3``)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            **kwargs,
        )


class MotoS3Server(S3Endpoint, LauncherProcess):
    """moto S3 on loopback; ``with MotoS3Server() as s3: s3.storage_options``."""

    name = "moto-s3"
    module = "kvstore.testing.servers._moto_main"

    def __init__(
        self,
        buckets: Iterable[str] = ("kvstore-test",),
        port: int | None = None,
        *,
        region: str = "us-east-1",
        auto_create_buckets: bool = False,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
    ) -> None:
        super().__init__(port, startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self.buckets: tuple[str, ...] = tuple(buckets)
        self.region = region
        self.auto_create_buckets = auto_create_buckets
        """Create a bucket the first time a request names it (no set-up in tests)."""

    def _launcher_args(self) -> list[str]:
        return ["--auto-create-buckets"] if self.auto_create_buckets else []

    # ------------------------------------------------------------ state
    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (no error if it already exists)."""
        client = self.client()
        try:
            kwargs: dict[str, Any] = {"Bucket": name}
            if self.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            client.create_bucket(**kwargs)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        finally:
            client.close()

    def reset(self) -> None:
        """Wipe all moto state (``POST /moto-api/reset``), then recreate the
        constructor's buckets, i.e. return to the state right after :meth:`start`."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
        for bucket in self.buckets:
            self.create_bucket(bucket)

    def start(self) -> MotoS3Server:
        """Start the server and create the configured buckets."""
        super().start()
        try:
            for bucket in self.buckets:
                self.create_bucket(bucket)
        except BaseException:
            self.stop()
            raise
        return self
