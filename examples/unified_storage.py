"""One store for everything an agent application keeps, on a local directory: a workflow
suspended for approval and resumed (by a second process, exactly once), conversation
threads, trace spans, metrics, an evaluation over a dataset, what the store holds, and a
cleanup by retention rules kept in the bucket that says what it freed.

    python examples/unified_storage.py [DIRECTORY]

Without DIRECTORY it uses a new temporary one. The same code runs on S3 or GCS by its URL
(``s3://bucket/prefix``), or through the HTTP service (``kvstore+http://host:8084/ns``).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import kvstore
from kvstore.kinds import Evals, Metrics, Traces, Workflows

RESUMER = """
import sys, kvstore
from kvstore.kinds import Workflows
with kvstore.open(sys.argv[1]) as store:
    taken = Workflows(store).resume("refund-42")
    print("taken" if taken else "none", taken.context["amount"] if taken else "")
"""


def main(url: str) -> None:
    with kvstore.open(url) as store:
        # 1. A workflow waits for a person: parked with what it needs to go on.
        flows = Workflows(store)
        flows.suspend("refund-42", {"amount": 120, "step": "approve"}, reason="approval")
        print("waiting:", [w.workflow_id for w in flows.waiting(reason="approval")])

        # 2. Conversation threads: a session per thread, events appended.
        store.sessions.create("support", "ana", "thread-1", state={"topic": "refund"})
        store.sessions.append_event("support", "ana", "thread-1", {"author": "ana", "text": "hi"})
        thread = store.sessions.get("support", "ana", "thread-1")
        assert thread is not None
        print("thread events:", len(thread.events), "state:", thread.state)

        # 3. Traces and metrics of the run.
        traces, metrics = Traces(store), Metrics(store)
        now = time.time()
        traces.record("run-1", "agent.run", now - 2, now, span_id="root")
        traces.record("run-1", "llm.call", now - 2, now - 0.5, parent_id="root")
        metrics.record("tokens", 812, labels={"model": "small"})
        print("trace spans:", [s.name for s in traces.trace("run-1", now - 60, now + 60)])
        print("tokens:", metrics.summary("tokens", now - 60, now + 60)["sum"])

        # 4. An evaluation: a dataset, a run over it, scores, a summary.
        evals = Evals(store)
        evals.save_dataset("refunds", [{"q": "refund 120?", "a": "approve"}])
        run = evals.start_run("refunds", run_id="eval-1")
        evals.score(run.run_id, 0, "correct", 1.0)
        print("eval:", evals.summary("eval-1"))

    # 5. Another process resumes the workflow: exactly one caller gets it.
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", RESUMER, url], capture_output=True, text=True, check=True
        )
        print("resumer:", out.stdout.strip())

    with kvstore.open(url) as store:
        # 6. What the store holds, from listings alone; then a cleanup by retention rules
        #    kept in the bucket (every process applies the same): two dataset versions at
        #    most, and resumed workflows gone after a second.
        usage = store.usage()
        print("stored kinds:", sorted(usage["kinds"]))
        print("objects:", usage["objects"], "bytes > 0:", usage["bytes"] > 0)
        evals = Evals(store)
        for version in range(3):
            evals.save_dataset("refunds", [{"q": f"refund {version}?", "a": "approve"}])
        store.set_retention("artifacts", "evals/datasets/", max_versions=2)
        store.set_retention("values", "workflows/", max_age=1)
        time.sleep(1.5)
        report = store.maintain()
        for rule in report["rules"]:
            print("rule:", rule["kind"], rule["prefix"], "removed", rule["removed"])
        print(
            "freed objects:", report["freed"]["objects"], "bytes > 0:", report["freed"]["bytes"] > 0
        )
        print("dataset versions:", store.artifacts.versions("evals/datasets/refunds"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="kvstore-unified-"))
