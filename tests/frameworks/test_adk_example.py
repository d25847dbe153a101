"""examples/adk_scripted_agent.py runs as a user would run it (here, where google-adk is
installed: the frameworks env) and prints what it promises: a Runner's two turns, then a
second process that finds the state, the events and the artifacts, and takes a third."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "examples" / "adk_scripted_agent.py"

EXPECTED = [
    "reporter: wrote report 1",
    "reporter: wrote report 2",
    "-- a second process resumes the session",
    "state: {'app:version': '1.0', 'turns': 2, 'user:reports': 2}",
    "events: ['user', 'reporter', 'user', 'reporter']",
    "artifacts: ['report.md', 'user:chart.png']",
    "latest report: report 2: costs",
    "report versions: [(0, {'turn': 1}), (1, {'turn': 2})]",
    "reporter: wrote report 3",
    "state: {'app:version': '1.0', 'turns': 3, 'user:reports': 3}",
    "events: ['user', 'reporter', 'user', 'reporter', 'user', 'reporter']",
    "artifacts: ['report.md', 'user:chart.png']",
    "latest report: report 3: and the margin",
    "report versions: [(0, {'turn': 1}), (1, {'turn': 2}), (2, {'turn': 3})]",
]


def run(env: dict[str, str], cwd: Path) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("KVSTORE_URL", "KVSTORE_CACHE")}
    path = os.pathsep.join(p for p in (str(ROOT), base.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=cwd,
        env={**base, "PYTHONPATH": path, **env},  # this checkout's kvstore
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout.splitlines()


def test_the_example_in_a_temporary_directory(tmp_path: Path) -> None:
    assert run({}, tmp_path) == EXPECTED
    assert list(tmp_path.iterdir()) == []  # it cleaned up after itself


def test_the_example_leaves_its_data_in_kvstore_url(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run({"KVSTORE_URL": str(data)}, tmp_path) == EXPECTED
    import kvstore

    with kvstore.open(str(data), cache=None) as store:
        session = store.sessions.get("report-bot", "ann", "weekly")
        assert session is not None and session.last_seq == 5
        assert session.state == {"turns": 3, "user:reports": 3, "app:version": "1.0"}
        assert len(store.artifacts.list()) == 2
