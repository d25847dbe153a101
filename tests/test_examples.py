"""The programs in examples/ run as a user would run them, and print what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import kvstore

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# What quickstart.py and s3_quickstart.py (the same tour) print, line by line.
SYNC_TOUR = [
    "greeting: b'hello, world'",
    "visits: b'41'",
    "missing: None",
    "session ttl: 60",
    "flash: b'now you see me'",
    "flash after 300 ms: None",
    "first lock: True",
    "second lock: None",
    "lock holder: b'worker-1'",
    "mget: [b'hello, world', None, b'41']",
    "tenant greeting: b'hej'",
    "root greeting: b'hello, world'",
    "purged expired: 1",
    "keys: ['greeting', 'lock', 'session', 'visits']",
    "deleted: 4",
]


def run_example(name: str, cwd: Path, env: dict[str, str] | None = None) -> list[str]:
    """Run examples/NAME.py; returns its stdout lines after checking it exited cleanly."""
    base = {k: v for k, v in os.environ.items() if k not in ("KVSTORE_URL", "KVSTORE_CACHE")}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout.splitlines()


def test_every_example_says_how_to_run_it() -> None:
    for path in sorted(EXAMPLES.glob("*.py")):
        source = path.read_text()
        assert source.startswith('"""'), path.name
        assert f"python examples/{path.name}" in source.split('"""')[1], path.name


def test_quickstart_in_a_temporary_directory(tmp_path: Path) -> None:
    lines = run_example("quickstart.py", tmp_path)
    assert lines[0].startswith("store: file://")
    assert lines[1:] == SYNC_TOUR
    assert list(tmp_path.iterdir()) == []  # cleaned up after itself
    assert not Path(lines[0].removeprefix("store: file://")).exists()


def test_quickstart_in_the_store_named_by_kvstore_url(tmp_path: Path) -> None:
    data = tmp_path / "data"
    lines = run_example("quickstart.py", tmp_path, {"KVSTORE_URL": str(data)})
    assert lines == [f"store: file://{data}", *SYNC_TOUR]
    with kvstore.open(str(data), cache=None) as store:  # what it left behind
        assert store.keys() == []
        assert store.namespace("tenant-a").get("greeting") == b"hej"


def test_async_quickstart(tmp_path: Path) -> None:
    lines = run_example("async_quickstart.py", tmp_path)
    assert lines[0].startswith("store: file://")
    assert lines[1:9] == [
        "greeting: b'hello, world'",
        "flash after 300 ms: None",
        "first lock: True",
        "second lock: None",
        "gathered: 10 values, first b'name-0' last b'name-9'",
        "mget: [b'name-0', None, b'name-9']",
        "tenant greeting: b'hej'",
        "keys with prefix user: 10",
    ]
    assert lines[9].startswith("stats: requests = ")
    assert int(lines[9].rsplit(" ", 1)[1]) > 20
    assert list(tmp_path.iterdir()) == []


def test_s3_quickstart_needs_a_url(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "s3_quickstart.py")],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "KVSTORE_URL"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "set KVSTORE_URL" in proc.stderr


def test_s3_quickstart_against_moto(tmp_path: Path, s3_server: Any) -> None:
    prefix = f"examples-{uuid.uuid4().hex[:8]}"
    url = s3_server.url_for("kvstore-test", prefix)
    # Only the environment: no storage_options, so the endpoint must come from AWS_* vars.
    env = {**s3_server.env, "KVSTORE_URL": url}
    lines = run_example("s3_quickstart.py", tmp_path, env)
    assert lines[0] == f"store: {url} cache: local"
    assert lines[1:-1] == SYNC_TOUR
    assert lines[-1].startswith("requests: ")
    with kvstore.open(url, cache=None, storage_options=s3_server.storage_options) as store:
        assert store.namespace("tenant-a").get("greeting") == b"hej"  # really on moto


def test_s3_quickstart_without_a_cache(tmp_path: Path, s3_server: Any) -> None:
    url = s3_server.url_for("kvstore-test", f"examples-{uuid.uuid4().hex[:8]}")
    env = {**s3_server.env, "KVSTORE_URL": url, "KVSTORE_CACHE": "none"}
    lines = run_example("s3_quickstart.py", tmp_path, env)
    assert lines[0] == f"store: {url} cache: none"
    assert lines[1:-1] == SYNC_TOUR


def test_s3_quickstart_with_a_redis_cache(
    tmp_path: Path, s3_server: Any, redis_server: Any
) -> None:
    """The setup `python -m backends up` gives: moto S3 behind a real redis-server cache."""
    url = s3_server.url_for("kvstore-test", f"examples-{uuid.uuid4().hex[:8]}")
    env = {**s3_server.env, "KVSTORE_URL": url, "KVSTORE_CACHE": redis_server.url}
    lines = run_example("s3_quickstart.py", tmp_path, env)
    assert lines[0] == f"store: {url} cache: {redis_server.url}"
    assert lines[1:-1] == SYNC_TOUR
    client = redis_server.client()
    try:
        assert client.exists("kvstore:generation")  # the example really used this Redis
    finally:
        client.close()


def test_redis_server_example_runs_a_plain_redis_app_on_kvstore_serve(tmp_path: Path) -> None:
    lines = run_example("redis_server.py", tmp_path)
    assert lines == [
        "views: 2",
        "top 2: [('ada', 12.5), ('linus', 11.0)]",
        "chat: ['user: hi', 'assistant: hello! how can I help?']",
        "transaction: {'name': 'ada', 'visits': '1'}",
        "server exit status: 0",
        "from the store: b'2' 12.5",
    ]
    assert list(tmp_path.iterdir()) == []


def test_unified_storage_example_on_a_local_directory(tmp_path: Path) -> None:
    lines = run_example("unified_storage.py", tmp_path)
    assert lines[:5] == [
        "waiting: ['refund-42']",
        "thread events: 1 state: {'topic': 'refund'}",
        "trace spans: ['agent.run', 'llm.call']",
        "tokens: 812.0",
        "eval: {'correct': {'count': 1, 'mean': 1.0, 'min': 1.0, 'max': 1.0}}",
    ]
    assert lines[5:7] == ["resumer: taken 120", "resumer: none"]  # exactly one resumes it
    assert lines[7] == "stored kinds: ['artifacts', 'logs', 'records', 'sessions', 'values']"
    assert lines[8].startswith("objects: ") and lines[8].endswith("bytes > 0: True")
    assert lines[9:11] == [
        "rule: artifacts evals/datasets/ removed 2",  # 3 saves + 1: two newest kept
        "rule: values workflows/ removed 1",  # the resumed workflow, older than 1 s
    ]
    assert lines[11] == "freed objects: 1 bytes > 0: True"
    assert lines[12] == "dataset versions: [2, 3]"
