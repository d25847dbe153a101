"""Quickstart: kvstore's blocking API on a local directory.

Run it (no servers needed):

    python examples/quickstart.py

It works in a fresh temporary directory that is removed at the end, or, when
``KVSTORE_URL`` is set, in that store (``KVSTORE_URL=./data python examples/quickstart.py``
leaves the data in ./data to look at; see examples/s3_quickstart.py for S3).
"""

from __future__ import annotations

import os
import tempfile
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


def main() -> None:
    url = os.environ.get("KVSTORE_URL")
    if url:
        with kvstore.open(url, cache="local") as store:
            print("store:", store.url)
            tour(store)
        return
    with (
        tempfile.TemporaryDirectory(prefix="kvstore-quickstart-") as tmp,
        kvstore.open(tmp, cache="local") as store,
    ):
        print("store:", store.url)
        tour(store)


if __name__ == "__main__":
    main()
