"""The typed helpers (kvstore.kinds): metrics, trace spans, evaluation datasets/runs/scores
and suspended workflows - on memory, local disk and a real S3 server; processes racing to
resume one workflow (exactly one gets it) and scoring one run (nothing lost); bad input
refused with nothing written; a damaged value is CorruptDataError; the same helpers over a
store reached through the HTTP service."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Target
from http_server import serving

import kvstore
from kvstore.kinds import (
    AsyncMetrics,
    Evals,
    Metrics,
    Run,
    Sample,
    Score,
    Span,
    Traces,
    Workflow,
    Workflows,
)
from kvstore.testing import request_delta, run_in_processes

BACKENDS = ["memory", "local", "seaweedfs"]
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
HOUR = 3600


@pytest.fixture(params=BACKENDS)
def store(
    request: pytest.FixtureRequest, make_target: Callable[[str], Target]
) -> Iterator[kvstore.KVStore]:
    with make_target(request.param).open(cache=kvstore.LocalCache()) as s:
        yield s


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_record_query_and_summarise(store: kvstore.KVStore) -> None:
    metrics = Metrics(store)
    first = metrics.record("latency_ms", 12, labels={"tool": "search"}, timestamp=T0)
    assert first == Sample("latency_ms", 12.0, T0, {"tool": "search"})
    metrics.record_many(
        [
            ("latency_ms", 10 + i, {"tool": "search" if i % 2 else "fetch"}, T0 + i * 600)
            for i in range(1, 12)
        ]
        + [("tokens", 500, None, T0 + 60)]
    )
    every = metrics.query("latency_ms")
    assert [s.value for s in every] == [12.0, *[10.0 + i for i in range(1, 12)]]
    assert all(s.metric == "latency_ms" for s in every)
    search = metrics.query("latency_ms", labels={"tool": "search"})
    assert [s.value for s in search] == [12.0, 11.0, 13.0, 15.0, 17.0, 19.0, 21.0]
    hour = metrics.query("latency_ms", T0, T0 + HOUR)
    assert [s.timestamp for s in hour] == [T0 + i * 600 for i in range(6)]
    assert metrics.query("tokens") == [Sample("tokens", 500.0, T0 + 60, {})]
    summary = metrics.summary("latency_ms", T0, T0 + 2 * HOUR)
    assert summary["count"] == 12 and summary["min"] == 11 and summary["max"] == 21
    assert summary["p50"] == 15 and summary["p99"] == 21 and summary["first"] == T0
    assert metrics.summary("nothing")["count"] == 0 and metrics.summary("nothing")["mean"] is None
    # a range reads only its partitions: one hour out of two
    with request_delta(store) as spent:
        assert len(metrics.query("latency_ms", T0 + HOUR, T0 + 2 * HOUR)) == 6
    assert spent.get("requests.list", 0) <= 2, dict(spent)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.record("", 1), "name"),
        (lambda m: m.record(3, 1), "name"),
        (lambda m: m.record("x", "1"), "number"),
        (lambda m: m.record("x", True), "number"),
        (lambda m: m.record("x", float("nan")), "finite"),
        (lambda m: m.record("x", 1, labels={"metric": "y"}), "metric"),
        (lambda m: m.record("x", 1, labels={"a": 1}), "label"),
        (lambda m: m.record("x", 1, timestamp="now"), "timestamp"),
        (lambda m: m.record_many([("x",)]), "sample"),
        (lambda m: m.record_many(["x1"]), "sample"),
        (lambda m: m.record_many([("ok", 1), ("x", None)]), "number"),
    ],
)
def test_metrics_refuse_bad_samples_and_write_nothing(call: Any, match: str) -> None:
    with kvstore.open(f"memory://kinds-{uuid.uuid4().hex}") as store:
        metrics = Metrics(store)
        with pytest.raises((kvstore.InvalidValueError, kvstore.ConfigurationError), match=match):
            call(metrics)
        assert metrics.query("ok") == [] and store.usage()["objects"] == 0


# -- traces ----------------------------------------------------------------------------------


def test_traces_record_spans_and_read_a_trace(store: kvstore.KVStore) -> None:
    traces = Traces(store)
    root = traces.record("t1", "agent.run", T0, T0 + 5, span_id="root", attributes={"user": "u1"})
    assert root == Span("t1", "root", "agent.run", T0, T0 + 5, None, "ok", {"user": "u1"})
    assert root.duration == 5
    moment = datetime.datetime.fromtimestamp(T0 + 1, tz=datetime.timezone.utc)
    llm = traces.record(
        "t1", "llm.call", moment, T0 + 3.25, parent_id="root", attributes={"raw": b"\x00"}
    )
    traces.record("t1", "tool.search", T0 + 3.5, T0 + 4, parent_id="root", status="error")
    traces.record("t2", "agent.run", T0 + HOUR, T0 + HOUR + 1)
    found = traces.trace("t1")
    assert [s.name for s in found] == ["agent.run", "llm.call", "tool.search"]
    assert found[1] == llm and llm.attributes == {"raw": b"\x00"} and llm.parent_id == "root"
    assert len(llm.span_id) == 16
    assert traces.trace("t1", T0 + HOUR, T0 + 2 * HOUR) == []
    assert [s.trace_id for s in traces.spans(name="agent.run")] == ["t1", "t2"]
    assert [s.name for s in traces.spans(status="error")] == ["tool.search"]
    assert len(traces.spans(T0, T0 + HOUR, limit=2)) == 2
    summary = traces.summary()
    assert summary["agent.run"]["count"] == 2 and summary["agent.run"]["max"] == 5
    assert summary["tool.search"]["errors"] == 1 and summary["llm.call"]["mean"] == 2.25
    for bad, match in [
        (lambda: traces.record("t", "x", T0 + 1, T0), "ends before"),
        (lambda: traces.record("t", "x", T0, T0, status="fine"), "status"),
        (lambda: traces.record("", "x", T0, T0), "trace_id"),
        (lambda: traces.record("t", "x", T0, T0, attributes=[1]), "attributes"),
        (lambda: traces.record("t", "x", T0, T0, attributes={"o": object()}), "JSON-like"),
        (lambda: traces.record_many(["span"]), "Span"),
        (lambda: traces.spans(status="bad"), "status"),
    ]:
        with pytest.raises(kvstore.InvalidValueError, match=match):
            bad()
    assert len(traces.spans()) == 4  # nothing of the refused spans was written


# -- evaluations -----------------------------------------------------------------------------


def test_evals_datasets_runs_and_scores(store: kvstore.KVStore) -> None:
    evals = Evals(store)
    examples = [{"q": "2+2", "a": "4"}, {"q": "capital of France", "a": "Paris", "img": b"\x89PNG"}]
    assert evals.save_dataset("arith", examples) == 0
    assert evals.save_dataset("arith", [*examples, {"q": "3*3", "a": "9"}]) == 1
    assert evals.dataset("arith", 0) == examples and len(evals.dataset("arith") or []) == 3
    assert evals.dataset("none") is None
    run = evals.start_run("arith", run_id="r1", version=0, metadata={"model": "m1"})
    assert run == Run("r1", "arith", 0, run.started, {"model": "m1"})
    assert evals.run("r1") == run and evals.run("r9") is None
    with pytest.raises(kvstore.ConflictError, match="exists"):
        evals.start_run("arith", run_id="r1")
    with pytest.raises(kvstore.NotFoundError, match="version 7"):
        evals.start_run("arith", version=7)
    with pytest.raises(kvstore.NotFoundError, match="no dataset"):
        evals.start_run("none")
    second = evals.start_run("arith", metadata={"model": "m2"})
    assert second.version == 1 and len(second.run_id) == 16
    assert [r.run_id for r in evals.runs()] == ["r1", second.run_id]
    assert evals.runs("other") == []
    evals.score("r1", 0, "exact", 1.0)
    evals.score_many(
        "r1", [(1, "exact", 0), (0, "judge", 0.75, {"why": "close"}), (1, "judge", 0.25)]
    )
    found = evals.scores("r1")
    assert [(s.example, s.metric, s.value) for s in found] == [
        (0, "exact", 1.0),
        (1, "exact", 0.0),
        (0, "judge", 0.75),
        (1, "judge", 0.25),
    ]
    assert found[2] == Score(0, "judge", 0.75, {"why": "close"}, found[2].at)
    assert [s.value for s in evals.scores("r1", metric="judge")] == [0.75, 0.25]
    assert evals.summary("r1") == {
        "exact": {"count": 2, "mean": 0.5, "min": 0.0, "max": 1.0},
        "judge": {"count": 2, "mean": 0.5, "min": 0.25, "max": 0.75},
    }
    with pytest.raises(kvstore.NotFoundError, match="start_run"):
        evals.score("r9", 0, "exact", 1)
    for bad in [(True, "m", 1), (0, "", 1), (0, "m", float("inf")), (0, "m", "1"), (0,)]:
        with pytest.raises(kvstore.InvalidValueError):
            evals.score_many("r1", [bad])
    with pytest.raises(kvstore.InvalidValueError):
        evals.save_dataset("x", "not a list")
    assert len(evals.scores("r1")) == 4 and evals.dataset("x") is None


def score_run(url: str, options: dict[str, Any], me: int, count: int, *, barrier: Any) -> int:
    """A racer: ``count`` scores of one run, one append each."""
    with kvstore.open(url, storage_options=options or None, cache=None) as store:
        evals = Evals(store)
        barrier.wait(timeout=60)
        for i in range(count):
            evals.score("shared", f"{me}-{i}", "m", i)
        return count


def resume_one(url: str, options: dict[str, Any], ids: list[str], *, barrier: Any) -> list[str]:
    """A racer: tries to resume every workflow of ``ids``; returns those it got."""
    with kvstore.open(url, storage_options=options or None, cache=None) as store:
        flows = Workflows(store)
        barrier.wait(timeout=60)
        return [i for i in ids if flows.resume(i) is not None]


@pytest.mark.parametrize("backend", ["local", "seaweedfs"])
def test_processes_racing_resume_each_workflow_once_and_score_without_loss(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    target = make_target(backend)
    ids = [f"wf-{i}" for i in range(10)]
    with target.open(cache=None) as store:
        flows = Workflows(store)
        for i in ids:
            flows.suspend(i, {"step": 3, "id": i}, reason="approval")
        evals = Evals(store)
        evals.save_dataset("d", [1, 2])
        evals.start_run("d", run_id="shared")
    racers = 4
    got = run_in_processes(
        resume_one,
        [(target.url, target.storage_options, ids) for _ in range(racers)],
        barrier=True,
        timeout=180,
    )
    taken = sorted(i for mine in got for i in mine)
    assert taken == sorted(ids), got  # each resumed by exactly one process
    run_in_processes(
        score_run,
        [(target.url, target.storage_options, me, 15) for me in range(racers)],
        barrier=True,
        timeout=180,
    )
    with target.open(cache=None) as store:
        assert Workflows(store).waiting() == []
        assert all(Workflows(store).get(i).state == "resumed" for i in ids)  # type: ignore[union-attr]
        scores = Evals(store).scores("shared")
        assert sorted(s.example for s in scores) == sorted(
            f"{m}-{i}" for m in range(racers) for i in range(15)
        )


# -- workflows -------------------------------------------------------------------------------


def test_workflows_suspend_resume_and_list_waiting(store: kvstore.KVStore) -> None:
    flows = Workflows(store)
    parked = flows.suspend("order-7", {"cart": [1, 2], "blob": b"\x01"}, reason="payment")
    assert parked.state == "waiting" and parked.context == {"cart": [1, 2], "blob": b"\x01"}
    assert parked.due and parked.resumed_at is None
    later = flows.suspend("report-1", {"page": 4}, reason="human review", resume_after=T0 + 10**9)
    assert not later.due and later.resume_after == T0 + 10**9
    with pytest.raises(kvstore.ConflictError, match="already waiting"):
        flows.suspend("order-7", {}, reason="again")
    assert [w.workflow_id for w in flows.waiting()] == ["order-7", "report-1"]
    assert [w.workflow_id for w in flows.waiting(reason="payment")] == ["order-7"]
    assert [w.workflow_id for w in flows.waiting(due_by=T0 + 10)] == ["order-7"]
    assert flows.resume("report-1", only_due=True) is None  # not due: stays waiting
    resumed = flows.resume("order-7")
    assert resumed is not None and resumed.context["cart"] == [1, 2] and resumed.state == "resumed"
    assert flows.resume("order-7") is None and flows.resume("never") is None
    got = flows.get("order-7")
    assert isinstance(got, Workflow) and got.state == "resumed" and got.resumed_at is not None
    assert 0 < store.ttl("workflows/order-7") <= 7 * 24 * 3600  # kept a week, then expires
    again = flows.suspend("order-7", {"cart": [3]}, reason="payment")  # parked once more
    assert again.state == "waiting" and flows.get("order-7") == again
    assert store.ttl("workflows/order-7") == -1  # waiting: never expires
    assert [w.workflow_id for w in flows.waiting()] == ["report-1", "order-7"]  # by suspension
    for bad, error in [
        (lambda: flows.suspend("", {}, reason="r"), kvstore.InvalidValueError),
        (lambda: flows.suspend("x", {}, reason=3), kvstore.InvalidValueError),
        (lambda: flows.suspend("x", {"o": object()}, reason="r"), kvstore.InvalidValueError),
        (
            lambda: flows.suspend("x", {}, reason="r", resume_after="soon"),
            kvstore.ConfigurationError,
        ),
        (lambda: Workflows(store, keep_resumed=0), kvstore.InvalidValueError),
    ]:
        with pytest.raises(error):
            bad()
    assert flows.get("x") is None
    store.set("workflows/broken", b"\xff not json")
    with pytest.raises(kvstore.CorruptDataError, match="broken"):
        flows.get("broken")
    store.set("workflows/broken", '{"state": "waiting"}')
    with pytest.raises(kvstore.CorruptDataError, match="broken"):
        flows.waiting()


def test_workflow_contexts_keep_dollar_keys_and_bytes_apart() -> None:
    with kvstore.open(f"memory://kinds-{uuid.uuid4().hex}", decode_responses=True) as store:
        flows = Workflows(store)
        odd = {"$bytes": "not bytes", "nested": [{"$dict": 1}, b"\xff"]}
        flows.suspend("w", odd, reason="r")
        assert flows.resume("w").context == odd  # type: ignore[union-attr]


# -- through the HTTP service ----------------------------------------------------------------


def test_the_helpers_work_through_the_service() -> None:
    def open_store() -> kvstore.AsyncKVStore:
        return kvstore.open_async(f"memory://kinds-{uuid.uuid4().hex}")

    with serving(open_store) as base, kvstore.open("kvstore+" + base + "/team") as store:
        Metrics(store).record("m", 1.5, timestamp=T0)
        assert [s.value for s in Metrics(store).query("m")] == [1.5]
        Traces(store).record("t", "s", T0, T0 + 1)
        assert [s.name for s in Traces(store).trace("t")] == ["s"]
        evals = Evals(store)
        evals.save_dataset("d", [{"q": 1}])
        evals.start_run("d", run_id="r")
        evals.score("r", 0, "m", 1)
        assert evals.summary("r")["m"]["count"] == 1
        flows = Workflows(store)
        flows.suspend("w", {"x": b"\x00"}, reason="r")
        assert flows.resume("w").context == {"x": b"\x00"}  # type: ignore[union-attr]


def test_async_helpers_share_the_blocking_ones_methods() -> None:
    import inspect

    from kvstore import kinds

    for async_cls, face in [
        (kinds.AsyncMetrics, kinds.Metrics),
        (kinds.AsyncTraces, kinds.Traces),
        (kinds.AsyncEvals, kinds.Evals),
        (kinds.AsyncWorkflows, kinds.Workflows),
    ]:
        methods = [
            n
            for n, m in vars(async_cls).items()
            if inspect.iscoroutinefunction(m) and not n.startswith("_")
        ]
        assert methods
        for name in methods:
            twin = getattr(face, name)
            assert (
                inspect.signature(twin).parameters.keys()
                == inspect.signature(getattr(async_cls, name)).parameters.keys()
            )
    assert isinstance(repr(AsyncMetrics(kvstore.open_async("memory://r"))), str)
