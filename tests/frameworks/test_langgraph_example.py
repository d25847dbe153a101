"""examples/langgraph_resume.py runs as a user would run it (LangGraph is installed only
in the frameworks env, so its test lives here, beside the saver's)."""

from __future__ import annotations

from pathlib import Path

from test_examples import run_example


def test_langgraph_resume_in_two_processes(tmp_path: Path) -> None:
    lines = run_example("langgraph_resume.py", cwd=tmp_path)
    assert lines == [
        "interrupted: ship the order? (so far: ['drafted'])",
        "checkpoints: 3",
        "waiting at: ('review',)",
        "log: ['drafted', 'reviewed: yes', 'shipped']",
        "checkpoints: 5",
        lines[-1],
    ]
    assert lines[-1].startswith("objects: ") and int(lines[-1].split()[1]) >= 5
    assert list(tmp_path.iterdir()) == []  # its temporary directory is gone
