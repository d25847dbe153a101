"""A Node.js client from the npm registry (ioredis) against ``kvstore serve``.

``tests/clients/ioredis_script.js`` is an ordinary ioredis program - strings, hashes,
lists, sets, errors, a pipeline, MULTI/EXEC (with a queued error and a WATCH conflict),
pub/sub and SCAN - run by Node against a server these tests start on a free loopback port,
over RESP3 (ioredis's default) and RESP2. What it wrote is then read back with the Python
library from the same location.

ioredis is installed with npm at test time into a cache directory reused across runs
(``$KVSTORE_NODE_CACHE``, default ``<tmp>/kvstore-node``); no Node code is kept in this
repository but the script. Without Node.js, or without the npm registry and a cached copy,
the tests are skipped saying which (``.ci/run`` installs Node.js where it is missing).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import Target
from test_resp_server import serving

import kvstore

IOREDIS = "ioredis@6"
SCRIPT = Path(__file__).parent / "clients" / "ioredis_script.js"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js (node and npm) is not installed on this machine")
    default = Path(tempfile.gettempdir()) / "kvstore-node"
    root = Path(os.environ.get("KVSTORE_NODE_CACHE") or default)
    modules = root / "node_modules"
    if not (modules / "ioredis" / "package.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(root), IOREDIS],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            pytest.skip(f"npm could not install {IOREDIS} into {root}: {done.stderr[-500:]}")
    return modules


def run_script(modules: Path, port: int, protocol: int, password: str = "") -> dict[str, object]:
    done = subprocess.run(
        ["node", str(SCRIPT), str(port), str(protocol), *([password] if password else [])],
        env={**os.environ, "NODE_PATH": str(modules)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"ioredis script failed:\n{done.stderr}\n{done.stdout}"
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


CHECKED = ["strings", "hashes", "lists", "sets", "errors"]
CHECKED += ["pipeline", "transactions", "pubsub", "scan"]


def expect_written(lib: kvstore.KVStore, keys: object) -> None:
    """What the Node program wrote is in the store, read through the library."""
    face = kvstore.Redis(store=lib)
    assert face.get("node:greeting") == b"hello world"
    assert face.get("node:binary") == bytes([0, 255, 10, 13, 0x80])
    assert face.hgetall("node:user") == {b"name": b"ada", b"visits": b"3"}
    assert face.lrange("node:chat", 0, -1) == [b"b", b"c"]
    assert face.get("node:counter") == b"3"
    assert face.get("node:p:99") == b"99"
    assert not face.exists("node:never")
    assert sorted(k.decode() for k in face.scan_iter(match="node:*")) == keys


@pytest.mark.parametrize("protocol", [3, 2])
def test_ioredis_script_on_local_disk(node_modules: Path, tmp_path: Path, protocol: int) -> None:
    with serving(kvstore.open_async(str(tmp_path), cache=None)) as server:
        result = run_script(node_modules, server.port, protocol)
    assert result["checked"] == CHECKED and result["protocol"] == protocol
    with kvstore.open(str(tmp_path), cache=None) as lib:
        expect_written(lib, result["keys"])


def test_ioredis_script_on_a_real_s3_server_with_a_password(
    node_modules: Path, make_target: object
) -> None:
    target: Target = make_target("seaweedfs")  # type: ignore[operator]
    with serving(target.open_async(cache=None), requirepass="node-secret") as server:
        result = run_script(node_modules, server.port, 3, password="node-secret")
    assert result["checked"] == CHECKED
    with target.open(cache=None) as lib:
        expect_written(lib, result["keys"])
