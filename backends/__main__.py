"""``python -m backends up``: run local Redis, S3 (moto), GCS stand-ins - and, asked for,
SeaweedFS (a real S3 server: ``--only seaweedfs``) and ``kvstore serve`` (the Redis
protocol on the first object store started - S3, SeaweedFS, GCS - or on a temporary
directory, cached by the Redis started, else in-process: ``--only seaweedfs,redis,serve``)
- until Ctrl-C.

Prints the URLs, copy-pasteable ``export`` lines and a ``kvstore.open(...)`` snippet,
then waits. Ctrl-C or SIGTERM stops every server it started; if one of them dies
unexpectedly, the others are stopped and the exit status is 1.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from kvstore.testing.servers import (
    BackendError,
    GCSEmulator,
    KVStoreServer,
    MotoS3Server,
    RedisCluster,
    RedisServer,
    SeaweedFS,
)

SERVICES = ("redis", "s3", "gcs", "seaweedfs", "serve")
DEFAULT_SERVICES = ("redis", "s3", "gcs")  # SeaweedFS: 120-600 MB, only when asked for


def _parse_only(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(names) - set(SERVICES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown service(s) {unknown or value!r}; choose from {','.join(SERVICES)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m backends",
        description="Start real local stand-ins for kvstore's services "
        "(redis-server, moto S3, GCS emulator) on 127.0.0.1.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up",
        help="start the services, print how to use them, wait for Ctrl-C",
        description="Start the services, print URLs / exports / a kvstore.open() snippet, "
        "and keep them running until Ctrl-C or SIGTERM.",
    )
    up.add_argument(
        "--only",
        type=_parse_only,
        default=list(DEFAULT_SERVICES),
        metavar="LIST",
        help="comma-separated subset of redis,s3,gcs,seaweedfs,serve (default: redis,s3,gcs)",
    )
    up.add_argument(
        "--bucket", default="kvstore-test", help="bucket to create (default: %(default)s)"
    )
    up.add_argument(
        "--prefix", default="demo", help="prefix used in the snippet (default: %(default)s)"
    )
    up.add_argument(
        "--redis-cluster",
        type=int,
        default=0,
        metavar="N",
        help="also start an N-master redis cluster (default: no cluster)",
    )
    return parser


def _print_usage(
    redis: RedisServer | None,
    cluster: RedisCluster | None,
    s3: MotoS3Server | None,
    gcs: GCSEmulator | None,
    seaweed: SeaweedFS | None,
    serve: KVStoreServer | None,
    bucket: str,
    prefix: str,
) -> None:
    out: list[str] = ["", "backends are up (Ctrl-C to stop):"]
    if redis:
        out.append(f"  redis          {redis.url}")
    if cluster:
        out.append(f"  redis cluster  {cluster.url}  ({len(cluster.nodes)} masters)")
    if s3:
        out.append(f"  s3 (moto)      {s3.endpoint_url}   bucket {s3.url_for(bucket)}")
    if gcs:
        out.append(f"  gcs emulator   {gcs.endpoint_url}   bucket {gcs.url_for(bucket)}")
    if seaweed:
        out.append(f"  s3 (seaweedfs) {seaweed.endpoint_url}   bucket {seaweed.url_for(bucket)}")
    if serve:
        out.append(
            f"  kvstore serve  {serve.url}   on {serve.store_url} (cache: {serve.cache})"
            f"   e.g. redis-cli -p {serve.port}"
        )
    env: dict[str, str] = {}
    store = s3 or seaweed or gcs
    if store:
        env["KVSTORE_URL"] = store.url_for(bucket, prefix)  # read by kvstore.open(None)
    if redis:
        env["REDIS_URL"] = redis.url
        env["KVSTORE_CACHE"] = redis.url  # read by the examples and the CLI's --cache default
    for server in (s3 or seaweed, gcs):  # one S3 endpoint in the environment
        if server:
            env.update(server.env)
    if env:
        out += ["", "# shell"]
        out += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    cache = repr(redis.url) if redis else '"local"'
    out += ["", "# python", "import kvstore"]
    for label, server in (("s3", s3), ("gcs", gcs), ("seaweedfs", seaweed)):
        if server:
            out.append(
                f"{label}_store = kvstore.open({server.url_for(bucket, prefix)!r}, "
                f"cache={cache}, storage_options={server.storage_options!r})"
            )
    if not (s3 or gcs or seaweed):
        out.append(f'store = kvstore.open("memory://{prefix}", cache={cache})')
    print("\n".join(out), flush=True)


def _serve(
    store: MotoS3Server | SeaweedFS | GCSEmulator | None,
    redis: RedisServer | None,
    bucket: str,
    prefix: str,
) -> KVStoreServer:
    """``kvstore serve`` on the object store started (a temporary directory without one),
    cached by the Redis started (in-process without one)."""
    cache = redis.url if redis else "local"
    if store is None:
        server = KVStoreServer("", cache=cache)
        server.store_url = str(server.workdir / "data")
    else:
        url = store.url_for(bucket, f"{prefix}-serve")
        server = KVStoreServer(url, cache=cache, storage_options=store.storage_options)
    return server.start()


def up(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    only: Sequence[str] = args.only
    redis: RedisServer | None = None
    cluster: RedisCluster | None = None
    s3: MotoS3Server | None = None
    gcs: GCSEmulator | None = None
    seaweed: SeaweedFS | None = None
    serve: KVStoreServer | None = None
    status = 0
    try:
        if "redis" in only:
            redis = RedisServer().start()
            if args.redis_cluster:
                cluster = RedisCluster(masters=args.redis_cluster).start()
        if "s3" in only:
            s3 = MotoS3Server(buckets=(args.bucket,)).start()
        if "gcs" in only:
            gcs = GCSEmulator(buckets=(args.bucket,)).start()
        if "seaweedfs" in only:
            seaweed = SeaweedFS(buckets=(args.bucket,)).start()
        if "serve" in only:
            serve = _serve(s3 or seaweed or gcs, redis, args.bucket, args.prefix)
        _print_usage(redis, cluster, s3, gcs, seaweed, serve, args.bucket, args.prefix)
        procs = [p for p in (redis, s3, gcs, seaweed, serve) if p]
        procs += cluster.nodes if cluster else []
        while not stop.wait(1.0):
            dead = [p for p in procs if not p.running]
            if dead:
                for p in dead:
                    print(
                        f"{p.name} exited unexpectedly; log tail:\n{p.log_tail()}", file=sys.stderr
                    )
                status = 1
                break
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # no second Ctrl-C mid-shutdown
        for server in (serve, seaweed, gcs, s3, cluster, redis):
            if server is not None:
                server.stop()
        print("backends stopped", file=sys.stderr, flush=True)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "up":
        return up(args)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
