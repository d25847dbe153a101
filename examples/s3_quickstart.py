"""S3 quickstart: the same code as quickstart.py, against S3 (here: a local moto server).

Run it:

    python -m backends up --only s3,redis   # in another terminal; prints `export` lines
    export KVSTORE_URL=s3://kvstore-test/demo AWS_ACCESS_KEY_ID=... \\
           AWS_SECRET_ACCESS_KEY=... AWS_DEFAULT_REGION=... AWS_ENDPOINT_URL_S3=http://127.0.0.1:PORT
    python examples/s3_quickstart.py

Nothing S3-specific is in the code: the URL comes from ``KVSTORE_URL``, and s3fs (through
botocore) takes the credentials, region and endpoint from the standard ``AWS_*`` environment
variables - ``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``) points it at moto; leave it
unset for real S3. No ``storage_options`` are needed; pass
``storage_options={"endpoint_url": ...}`` to ``kvstore.open`` if you prefer explicit
configuration. The cache is ``KVSTORE_CACHE`` if set (``none``, ``local``, or a Redis URL
such as the ``redis://127.0.0.1:PORT/0`` that ``python -m backends up`` prints), else the
in-process cache.
"""

from __future__ import annotations

import os
import sys
import time

import kvstore


def tour(store: kvstore.KVStore) -> None:
    # Values: str, bytes, int and float go in; bytes come out (like redis-py).
    store.set("greeting", "hello, world")
    store.set("visits", 41)
    print("greeting:", store.get("greeting"))
    print("visits:", store.get("visits"))
    print("missing:", store.get("no-such-key"))

    # TTL: ex= seconds, px= milliseconds. An expired value is gone at once.
    store.set("session", "token-123", ex=60)
    print("session ttl:", store.ttl("session"))
    store.set("flash", "now you see me", px=200)
    print("flash:", store.get("flash"))
    time.sleep(0.3)
    print("flash after 300 ms:", store.get("flash"))

    # nx: create only if missing - an atomic conditional create, safe across machines.
    print("first lock:", store.set("lock", "worker-1", nx=True))
    print("second lock:", store.set("lock", "worker-2", nx=True))
    print("lock holder:", store.get("lock"))

    # mget: several keys in one concurrent batch; None where a key is missing.
    print("mget:", store.mget(["greeting", "no-such-key", "visits"]))

    # A namespace is a view of the same store whose keys live apart.
    tenant = store.namespace("tenant-a")
    tenant.set("greeting", "hej")
    print("tenant greeting:", tenant.get("greeting"))
    print("root greeting:", store.get("greeting"))

    # keys() lists what is stored, which may include expired values not purged yet.
    print("purged expired:", store.purge_expired())
    print("keys:", store.keys())
    print("deleted:", store.delete("greeting", "visits", "session", "lock"))


def main() -> int:
    url = os.environ.get("KVSTORE_URL")
    if not url:
        print(
            "set KVSTORE_URL (e.g. s3://kvstore-test/demo) and the AWS_* variables that "
            "`python -m backends up --only s3` prints",
            file=sys.stderr,
        )
        return 2
    cache = os.environ.get("KVSTORE_CACHE") or "local"
    with kvstore.open(url, cache=cache) as store:
        print("store:", store.url, "cache:", cache)
        tour(store)
        print("requests:", store.stats()["requests"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
