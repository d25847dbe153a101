"""A Redis app, unchanged but for its URL, on kvstore serve.

    python examples/redis_server.py

Starts ``kvstore serve`` on a free loopback port over a temporary directory (or the store
named by ``$KVSTORE_URL``), runs a plain redis-py application against it - a page counter,
a leaderboard, a chat history in a list, a MULTI/EXEC - stops the server with SIGTERM, and
reads what the app wrote with the kvstore library: the data is in the store, not in the
server. Any Redis client in any language would do the same (redis-cli -p PORT ...).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import redis

import kvstore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"kvstore serve exited with {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("kvstore serve did not start")


def app(url: str) -> None:
    """The application: plain redis-py, nothing kvstore about it but the URL."""
    r = redis.Redis.from_url(url, decode_responses=True)
    r.incr("page:/home:views")
    r.incr("page:/home:views")
    print("views:", r.get("page:/home:views"))
    r.zadd("leaderboard", {"ada": 12.5, "grace": 9, "linus": 11})
    print("top 2:", r.zrevrange("leaderboard", 0, 1, withscores=True))
    r.rpush("chat:42", "user: hi", "assistant: hello! how can I help?")
    print("chat:", r.lrange("chat:42", 0, -1))
    with r.pipeline(transaction=True) as tx:  # MULTI/EXEC on one key: atomic
        tx.hset("user:1", mapping={"name": "ada", "visits": 0}).hincrby("user:1", "visits")
        tx.hgetall("user:1")
        print("transaction:", tx.execute()[-1])
    r.close()


def main() -> None:
    url = os.environ.get("KVSTORE_URL")
    scratch = None if url else tempfile.mkdtemp(prefix="kvstore-serve-")
    store_url = url or scratch or ""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "kvstore", "--url", store_url, "--cache", "none", "serve",
         "--port", str(port)],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(port, server)
        app(f"redis://127.0.0.1:{port}/0")
    finally:
        server.send_signal(signal.SIGTERM)  # graceful: running commands finish first
        server.wait(30)
    print("server exit status:", server.returncode)
    with kvstore.open(store_url, cache=None) as store:  # the library reads the same data
        face = kvstore.Redis(store=store)
        print("from the store:", store.get("page:/home:views"), face.zscore("leaderboard", "ada"))
        face.delete("page:/home:views", "leaderboard", "chat:42", "user:1")
    if scratch:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
