"""Attacks on the typed helpers (kvstore.kinds): exact round trips of what each takes (the
JSON codec's ``$bytes``/``$dict`` escapes, deep nesting, big ints, odd floats, unicode) on
stores with and without ``decode_responses``; bad input refused with a kvstore error and
nothing written; a damaged stored value (or a foreign record in their collections) is
CorruptDataError, never TypeError/KeyError/AttributeError or wrong data; processes racing
to park one workflow or start one run (exactly one wins); summaries on edge cases; the
blocking twins' signatures and docstrings."""

from __future__ import annotations

import asyncio
import datetime
import inspect
import json
import math
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Target

import kvstore
from kvstore import kinds
from kvstore.kinds import Evals, Metrics, Span, Traces, Workflows
from kvstore.kinds._json import MAX_DEPTH
from kvstore.testing import run_in_processes

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
HOUR = 3600
BAD = (kvstore.InvalidValueError, kvstore.ConfigurationError)


def fresh(decode: bool = False) -> kvstore.KVStore:
    return kvstore.open(f"memory://attack-{uuid.uuid4().hex}", decode_responses=decode)


@pytest.fixture(params=[False, True], ids=["bytes", "decode_responses"])
def store(request: pytest.FixtureRequest) -> Iterator[kvstore.KVStore]:
    with fresh(request.param) as s:
        yield s


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"$k": value}
    return value


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (-0.0 is not 0.0, 1 is not 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


# What the helpers must give back exactly (after JSON's own normalisation: none needed here).
ODD_VALUES: list[Any] = [
    {"$bytes": "not bytes"},
    {"$dict": {"$bytes": b"\x00"}},
    {"$dict": 1},
    {"$x": {"$y": {"$z": []}}},
    {"$bytes": b"real bytes under a $ key"},
    {"$bytes": "x", "other": b"\xff"},  # two keys: no escape needed
    [b"", b"\x00\xff" * 100, {"b": b"\x80"}, [b"deep"]],
    {},
    [{}, {"": {}}, {"$": {}}],
    "é 𝄞 \u2028 \x00 end",
    {"ключ": "值", "emoji 🎉": ["\x7f"]},
    10**300,
    -(2**70),
    2**63,
    [0.1, -0.0, 5e-324, 1.7976931348623157e308, -1e-300, 1.0, 0],
    [True, False, None, ""],
    {"$dict": {"a": 1, "b": 2}},
    nested(MAX_DEPTH - 3),  # inside a dataset's list and a run's metadata: just fits
    {"$a": {"$b": {"$c": {"$d": {"$e": b"deep"}}}}},
]


def _ids(values: list[Any]) -> list[str]:
    return [f"v{i}" for i in range(len(values))]


# -- (1) exact round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ODD_VALUES, ids=_ids(ODD_VALUES))
def test_workflow_contexts_and_eval_values_round_trip_exactly(
    store: kvstore.KVStore, value: Any
) -> None:
    flows = Workflows(store)
    parked = flows.suspend("w", value, reason="r")
    assert same(parked.context, value)
    assert same(flows.get("w").context, value)  # type: ignore[union-attr]
    assert same(flows.waiting()[0].context, value)
    assert same(flows.resume("w").context, value)  # type: ignore[union-attr]
    assert same(flows.get("w").context, value)  # type: ignore[union-attr]
    evals = Evals(store)
    evals.save_dataset("d", [value, value])
    assert same(evals.dataset("d"), [value, value])
    run = evals.start_run("d", run_id="r", metadata={"m": value})
    assert same(run.metadata, {"m": value}) and same(evals.run("r").metadata, {"m": value})  # type: ignore[union-attr]
    evals.score("r", "ex", "m", -1.5, details=value)
    (score,) = evals.scores("r")
    assert same(score.details, value) and score.example == "ex" and score.value == -1.5


def test_every_level_escaped_still_reads_back() -> None:
    value: Any = b"x"
    for _ in range(MAX_DEPTH - 2):  # each level a one-key '$' dict: twice as deep as JSON
        value = {"$": value}
    with fresh(decode=True) as store:
        flows = Workflows(store)
        flows.suspend("w", value, reason="r")
        assert same(flows.get("w").context, value)  # type: ignore[union-attr]


def test_what_start_run_returns_is_what_run_reads_and_runs_list_in_start_order() -> None:
    with fresh() as store:
        evals = Evals(store)
        evals.save_dataset("d", [1])
        run = evals.start_run("d", run_id="zz", metadata={"t": (1, b"\x00")})
        assert run == evals.run("zz") and run.metadata == {"t": [1, b"\x00"]}
        ids = [evals.start_run("d").run_id for _ in range(20)]  # back to back, random ids
        assert [r.run_id for r in evals.runs()] == ["zz", *ids]


def test_the_json_is_readable_text_on_a_decoding_store() -> None:
    with fresh(decode=True) as store:
        Workflows(store).suspend("w", {"b": b"\x00", "u": "é"}, reason="r")
        text = store.get("workflows/w")
        assert isinstance(text, str) and json.loads(text)["context"]["b"] == {"$bytes": "AA=="}


SPAN_VALUES = [v for v in ODD_VALUES if not (isinstance(v, int) and abs(v) >= 2**63)]


@pytest.mark.parametrize("value", SPAN_VALUES, ids=_ids(SPAN_VALUES))
def test_span_attributes_and_metric_values_round_trip(store: kvstore.KVStore, value: Any) -> None:
    traces = Traces(store)
    span = traces.record("t", "n", T0, T0 + 0.001, span_id="s", attributes={"a": value})
    (found,) = traces.trace("t", T0, T0 + 1)
    assert found == span and same(found.attributes, {"a": value})
    assert found.duration == 0.001  # to the millisecond, not float seconds' difference


@pytest.mark.parametrize(
    "value", [0.1, -0.0, 5e-324, 1.7976931348623157e308, -7, 2**53, 10**300, 1e-300]
)
def test_metric_values_come_back_as_the_same_float(store: kvstore.KVStore, value: float) -> None:
    metrics = Metrics(store)
    sample = metrics.record("m", value, timestamp=T0 + 0.0005, labels={"é": "𝄞"})
    (found,) = metrics.query("m", T0, T0 + 1)
    assert found == sample and repr(found.value) == repr(float(value))
    assert found.labels == {"é": "𝄞"} and found.timestamp == sample.timestamp


def test_span_attributes_refuse_ints_records_cannot_hold_and_write_nothing() -> None:
    # Span attributes are record data (msgpack): 64-bit ints at most - refused clearly.
    with fresh() as store:
        with pytest.raises(kvstore.InvalidValueError):
            Traces(store).record("t", "n", T0, T0, attributes={"big": 2**64})
        assert store.usage()["objects"] == 0


# -- (2) bad input: a kvstore error, nothing written --------------------------------------------


def _circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


METRICS_BAD: list[Callable[[Metrics], Any]] = [
    lambda m: m.record("x", 10**400),
    lambda m: m.record("x", -(10**400)),
    lambda m: m.record("x", float("inf")),
    lambda m: m.record("x", float("-inf")),
    lambda m: m.record("x", None),
    lambda m: m.record("x", 1, labels="host"),  # type: ignore[arg-type]
    lambda m: m.record("x", 1, labels=[("a", "b")]),  # type: ignore[arg-type]
    lambda m: m.record("x", 1, labels=5),  # type: ignore[arg-type]
    lambda m: m.record("x", 1, labels={"a": "b" * 257}),
    lambda m: m.record("x", 1, labels={"a": None}),  # type: ignore[dict-item]
    lambda m: m.record("x" * 257, 1),
    lambda m: m.record(None, 1),  # type: ignore[arg-type]
    lambda m: m.record("x", 1, timestamp=-1),
    lambda m: m.record("x", 1, timestamp=253_402_300_800),  # year 10000
    lambda m: m.record("x", 1, timestamp=float("nan")),
    lambda m: m.record("x", 1, timestamp=True),
    lambda m: m.record(
        "x", 1, timestamp=datetime.datetime(1969, 12, 31, tzinfo=datetime.timezone.utc)
    ),
    lambda m: m.record("x", 1, labels={f"l{i}": "v" for i in range(64)}),  # + metric: 65
    lambda m: m.query("x", labels="a"),  # type: ignore[arg-type]
    lambda m: m.record_many(5),  # type: ignore[arg-type]
    lambda m: m.record_many(None),  # type: ignore[arg-type]
    lambda m: m.record_many("ab"),  # type: ignore[arg-type]
    lambda m: m.record_many([("ok", 1, None, T0), ("ok", 1, None, -5)]),
    lambda m: m.record_many([("ok", 1, None, T0), ("ok", 2, None, T0 + HOUR, "extra")]),
    lambda m: m.record_many([("ok", 1, None, T0), ("ok", 2, {"k": 1})]),
]


@pytest.mark.parametrize("call", METRICS_BAD, ids=_ids(METRICS_BAD))  # type: ignore[arg-type]
def test_bad_samples_are_refused_and_write_nothing(call: Callable[[Metrics], Any]) -> None:
    with fresh() as store:
        metrics = Metrics(store)
        with pytest.raises(BAD):
            call(metrics)
        assert store.usage()["objects"] == 0 and metrics.query("ok") == []


def _span(**changes: Any) -> Span:
    fields: dict[str, Any] = {
        "trace_id": "t",
        "span_id": "s",
        "name": "n",
        "start": T0,
        "end": T0 + 1,
        "parent_id": None,
        "status": "ok",
        "attributes": {},
    }
    fields.update(changes)
    return Span(**fields)


TRACES_BAD: list[Callable[[Traces], Any]] = [
    lambda t: t.record("t", "n", T0, T0 + 1, span_id=""),
    lambda t: t.record("t", "n", T0, T0 + 1, span_id=5),  # type: ignore[arg-type]
    lambda t: t.record("t", "n", T0, T0 + 1, attributes=[]),  # type: ignore[arg-type]
    lambda t: t.record("t", "n", T0, T0 + 1, attributes=0),  # type: ignore[arg-type]
    lambda t: t.record("t", "n", T0, T0 + 1, attributes={"x": float("nan")}),
    lambda t: t.record("t", "n", T0, T0 + 1, attributes={"x": [float("inf")]}),
    lambda t: t.record("t", "n", T0, T0 + 1, attributes={1: "a"}),  # type: ignore[dict-item]
    lambda t: t.record("t", "n", T0, T0 + 1, attributes={"deep": nested(MAX_DEPTH + 5)}),
    lambda t: t.record("t", "n", T0, T0 + 1, attributes={"loop": _circular()}),
    lambda t: t.record("t", "n", float("inf"), T0),
    lambda t: t.record("t", "n", T0, 253_402_300_800),
    lambda t: t.record("t", "n", T0 + 0.002, T0 + 0.001),  # ends 1 ms before it starts
    lambda t: t.record("t", "", T0, T0),
    lambda t: t.record("t", "n" * 257, T0, T0),
    lambda t: t.record("t" * 257, "n", T0, T0),
    lambda t: t.record("t", "n", T0, T0, parent_id=""),
    lambda t: t.record("t", "n", T0, T0, parent_id=5),  # type: ignore[arg-type]
    lambda t: t.record("t", "n", T0, T0, status=None),  # type: ignore[arg-type]
    lambda t: t.record_many(5),  # type: ignore[arg-type]
    lambda t: t.record_many([_span(), _span(end=T0 - 1)]),
    lambda t: t.record_many([_span(), _span(start=T0 + HOUR, status="ERROR")]),
    lambda t: t.record_many([_span(), _span(attributes={"b": object()})]),
]


@pytest.mark.parametrize("call", TRACES_BAD, ids=_ids(TRACES_BAD))  # type: ignore[arg-type]
def test_bad_spans_are_refused_and_write_nothing(call: Callable[[Traces], Any]) -> None:
    with fresh() as store:
        traces = Traces(store)
        with pytest.raises(BAD):
            call(traces)
        assert store.usage()["objects"] == 0 and traces.spans() == []


EVALS_BAD: list[Callable[[Evals], Any]] = [
    lambda e: e.save_dataset("x", [float("nan")]),
    lambda e: e.save_dataset("x", [{"loop": _circular()}]),
    lambda e: e.save_dataset("x", [nested(MAX_DEPTH + 1)]),
    lambda e: e.save_dataset("x", 5),  # type: ignore[arg-type]
    lambda e: e.save_dataset("x", {"a": 1}),  # type: ignore[arg-type]
    lambda e: e.save_dataset("", [1]),
    lambda e: e.save_dataset("x" * 257, [1]),
    lambda e: e.start_run("d", run_id="r2", version=True),  # type: ignore[arg-type]
    lambda e: e.start_run("d", run_id="r2", version=1.0),  # type: ignore[arg-type]
    lambda e: e.start_run("d", run_id="r2", version=-1),
    lambda e: e.start_run("d", run_id="r2", metadata=[1]),  # type: ignore[arg-type]
    lambda e: e.start_run("d", run_id="r2", metadata={"x": float("nan")}),
    lambda e: e.start_run("d", run_id="r2", metadata={1: "a"}),  # type: ignore[dict-item]
    lambda e: e.start_run("d", run_id=""),
    lambda e: e.start_run("d", run_id=5),  # type: ignore[arg-type]
    lambda e: e.start_run("d", run_id="r" * 257),
    lambda e: e.score("r", 0, "m", 10**400),
    lambda e: e.score("r", 0, "m", float("nan")),
    lambda e: e.score("r", 0, "m", True),
    lambda e: e.score("r", 1.5, "m", 1),  # type: ignore[arg-type]
    lambda e: e.score("r", None, "m", 1),  # type: ignore[arg-type]
    lambda e: e.score("r", 0, "m", 1, details=float("inf")),
    lambda e: e.score("r", 0, "m", 1, details={"loop": _circular()}),
    lambda e: e.score("r", 0, "m" * 257, 1),
    lambda e: e.score("r", 0, 5, 1),  # type: ignore[arg-type]
    lambda e: e.score_many("r", 5),  # type: ignore[arg-type]
    lambda e: e.score_many("r", None),  # type: ignore[arg-type]
    lambda e: e.score_many("r", [(0, "m", 1), (1, "m", 1, None, "extra")]),
    lambda e: e.score_many("r", [(0, "m", 1), (1, "m", 1, {"b": object()})]),
]


@pytest.mark.parametrize("call", EVALS_BAD, ids=_ids(EVALS_BAD))  # type: ignore[arg-type]
def test_bad_eval_input_is_refused_and_writes_nothing(call: Callable[[Evals], Any]) -> None:
    with fresh() as store:
        evals = Evals(store)
        evals.save_dataset("d", [1])
        evals.save_dataset("d", [2])
        evals.start_run("d", run_id="r")
        before = store.usage()
        with pytest.raises(BAD):
            call(evals)
        assert store.usage() == before
        assert evals.scores("r") == [] and [r.run_id for r in evals.runs()] == ["r"]


WORKFLOWS_BAD: list[Callable[[Workflows], Any]] = [
    lambda w: w.suspend("w", float("nan"), reason="r"),
    lambda w: w.suspend("w", {"x": [float("-inf")]}, reason="r"),
    lambda w: w.suspend("w", _circular(), reason="r"),
    lambda w: w.suspend("w", nested(MAX_DEPTH + 1), reason="r"),
    lambda w: w.suspend("w", {("t",): 1}, reason="r"),
    lambda w: w.suspend("w", {1}, reason="r"),
    lambda w: w.suspend("w" * 513, 1, reason="r"),
    lambda w: w.suspend("é" * 512, 1, reason="r"),  # 512 chars, too long a key
    lambda w: w.suspend(5, 1, reason="r"),  # type: ignore[arg-type]
    lambda w: w.suspend("", 1, reason="r"),
    lambda w: w.suspend("w", 1, reason=None),  # type: ignore[arg-type]
    lambda w: w.suspend("w", 1, reason="r", resume_after=float("inf")),
    lambda w: w.suspend("w", 1, reason="r", resume_after=-1),
    lambda w: w.suspend("w", 1, reason="r", resume_after="soon"),
    lambda w: kinds.AsyncWorkflows(w._core.store, keep_resumed=10**20),
    lambda w: kinds.AsyncWorkflows(w._core.store, keep_resumed=-1),
    lambda w: kinds.AsyncWorkflows(w._core.store, keep_resumed=True),
    lambda w: kinds.AsyncWorkflows(w._core.store, keep_resumed=float("nan")),
    lambda w: kinds.AsyncWorkflows(w._core.store, keep_resumed=float("inf")),
    lambda w: kinds.AsyncWorkflows(w._core.store, name=5),  # type: ignore[arg-type]
    lambda w: kinds.AsyncWorkflows(w._core.store, name=""),
    lambda w: w.waiting(reason=5),  # type: ignore[arg-type]
    lambda w: w.resume(""),
    lambda w: w.waiting(due_by="x"),
]


@pytest.mark.parametrize("call", WORKFLOWS_BAD, ids=_ids(WORKFLOWS_BAD))  # type: ignore[arg-type]
def test_bad_workflow_input_is_refused_and_writes_nothing(call: Callable[[Workflows], Any]) -> None:
    with fresh() as store:
        flows = Workflows(store)
        with pytest.raises(BAD):
            call(flows)
        assert store.usage()["objects"] == 0


def test_the_longest_keep_resumed_taken_works() -> None:
    from kvstore.kinds.workflows import MAX_KEEP

    with fresh() as store:
        flows = Workflows(store, keep_resumed=MAX_KEEP)
        flows.suspend("w", 1, reason="r")
        assert flows.resume("w").state == "resumed"  # type: ignore[union-attr]
        assert store.ttl("workflows/w") > 0
        half = Workflows(store, keep_resumed=0.5)
        half.suspend("h", 1, reason="r")
        assert half.resume("h") is not None and 0 < store.pttl("workflows/h") <= 500


# -- (3) damaged stored values: CorruptDataError naming them -----------------------------------

GOOD_WORKFLOW = {
    "state": "waiting",
    "context": {"x": 1},
    "reason": "r",
    "suspended_at": T0 * 1000,
    "resume_after": None,
}


def _workflow(**changes: Any) -> str:
    found: dict[str, Any] = {**GOOD_WORKFLOW, **changes}
    return json.dumps({k: v for k, v in found.items() if v is not ...})


DAMAGED_WORKFLOWS: list[str | bytes] = [
    b"\xff\xfe not json",
    "",
    "not json",
    "[1, 2]",
    '"a string"',
    "null",
    "5",
    "[" * 100_000 + "]" * 100_000,
    '{"$dict": {"a": 1}}',
    _workflow(state=5),
    _workflow(state="bogus"),
    _workflow(state=None),
    _workflow(state=...),
    _workflow(reason=5),
    _workflow(reason=...),
    _workflow(context=...),
    _workflow(suspended_at="x"),
    _workflow(suspended_at=True),
    _workflow(suspended_at=None),
    _workflow(suspended_at=-1),
    _workflow(suspended_at=1e300),
    _workflow(suspended_at=10**400),
    _workflow(resume_after="x"),
    _workflow(resume_after=[1]),
    _workflow(resumed_at={"a": 1}),
    _workflow(context={"$bytes": "!!"}),
    _workflow(context={"$bytes": 5}),
    _workflow(context={"$dict": 3}),
    _workflow(context={"$dict": {"a": 1, "b": 2}}),
    _workflow().replace(f"{T0 * 1000}", "NaN"),
    _workflow().replace(f"{T0 * 1000}", "Infinity"),
]


@pytest.mark.parametrize("raw", DAMAGED_WORKFLOWS, ids=_ids(DAMAGED_WORKFLOWS))  # type: ignore[arg-type]
def test_a_damaged_workflow_is_corrupt_data_and_is_never_overwritten(
    store: kvstore.KVStore, raw: str | bytes
) -> None:
    flows = Workflows(store)
    store.set("workflows/bad", raw)

    def stored() -> Any:
        try:
            return store.get("workflows/bad"), store.ttl("workflows/bad")
        except kvstore.ResponseDecodeError:  # not text: the helpers' own reads say corrupt
            return "not text", store.ttl("workflows/bad")

    before = stored()
    for call in [
        lambda: flows.get("bad"),
        lambda: flows.resume("bad"),
        lambda: flows.resume("bad", only_due=True),
        lambda: flows.suspend("bad", 1, reason="r"),
        lambda: flows.waiting(),
    ]:
        with pytest.raises(kvstore.CorruptDataError, match="bad"):
            call()
    assert stored() == before  # nothing written over it


GOOD_RUN = {"dataset": "d", "version": 0, "started": T0 + 0.5, "metadata": {}}

DAMAGED_RUNS = [
    "not json",
    "[]",
    "null",
    json.dumps({**GOOD_RUN, "started": "x"}),
    json.dumps({**GOOD_RUN, "started": None}),
    json.dumps({**GOOD_RUN, "version": "x"}),
    json.dumps({**GOOD_RUN, "version": True}),
    json.dumps({**GOOD_RUN, "version": -1}),
    json.dumps({**GOOD_RUN, "version": 1.5}),
    json.dumps({**GOOD_RUN, "dataset": 5}),
    json.dumps({**GOOD_RUN, "metadata": 5}),
    json.dumps({**GOOD_RUN, "metadata": None}),
    json.dumps({k: v for k, v in GOOD_RUN.items() if k != "metadata"}),
    json.dumps(GOOD_RUN).replace(str(T0 + 0.5), "NaN"),
]


@pytest.mark.parametrize("raw", DAMAGED_RUNS, ids=_ids(DAMAGED_RUNS))
def test_a_damaged_run_is_corrupt_data(store: kvstore.KVStore, raw: str) -> None:
    evals = Evals(store)
    evals.save_dataset("d", [1])
    evals.start_run("d", run_id="good")
    store.set("evals/runs/bad", raw)
    with pytest.raises(kvstore.CorruptDataError, match="bad"):
        evals.run("bad")
    with pytest.raises(kvstore.CorruptDataError, match="bad"):
        evals.runs()


DAMAGED_SCORES = [
    "x",
    '"abcde"',
    '{"a": 1}',
    "[1, 2, 3, 4, 5, 6]",
    '[0, "m", 1.0, null]',  # the helper writes five fields
    '["x", 5, "v", null, "t"]',
    '[true, "m", 1.0, null, 1]',
    '[1.5, "m", 1.0, null, 1]',
    '[0, "m", NaN, null, 1]',
    '[0, "m", "1", null, 1]',
    '[0, "m", 1, null, "t"]',
    '[0, "m", 1, {"$bytes": "?"}, 1]',
]


@pytest.mark.parametrize("raw", DAMAGED_SCORES, ids=_ids(DAMAGED_SCORES))
def test_a_damaged_score_is_corrupt_data(store: kvstore.KVStore, raw: str) -> None:
    evals = Evals(store)
    evals.save_dataset("d", [1])
    evals.start_run("d", run_id="r")
    evals.score("r", 0, "m", 1)
    store.append("evals/scores/r", raw)
    for call in [lambda: evals.scores("r"), lambda: evals.summary("r")]:
        with pytest.raises(kvstore.CorruptDataError, match="'r'"):
            call()


def test_a_damaged_dataset_is_corrupt_data(store: kvstore.KVStore) -> None:
    evals = Evals(store)
    for raw in [b"\xff", b"{}", b'[{"$bytes": 1}]', b"[" * 50_000]:
        store.artifacts.save("evals/datasets/bad", raw)
        with pytest.raises(kvstore.CorruptDataError, match="bad"):
            evals.dataset("bad")


FOREIGN_SAMPLES = ["x", {"a": 1}, None, True, [1.0], b"1"]  # (NaN: records refuse it)


@pytest.mark.parametrize("data", FOREIGN_SAMPLES, ids=_ids(FOREIGN_SAMPLES))
def test_a_foreign_record_among_samples_is_corrupt_data(store: kvstore.KVStore, data: Any) -> None:
    metrics = Metrics(store)
    metrics.record("m", 1, timestamp=T0)
    store.records("metrics", "hour").append(data, timestamp=T0 + 1, labels={"metric": "m"})
    for call in [lambda: metrics.query("m"), lambda: metrics.summary("m", T0, T0 + HOUR)]:
        with pytest.raises(kvstore.CorruptDataError, match="metrics"):
            call()


GOOD_SPAN = {"id": "s", "end": (T0 + 1) * 1000, "parent": None, "attributes": {}}
SPAN_LABELS = {"trace": "t", "span": "n", "status": "ok"}
FOREIGN_SPANS: list[tuple[Any, dict[str, str]]] = [
    ("x", SPAN_LABELS),
    (None, SPAN_LABELS),
    ([1, 2], SPAN_LABELS),
    ({**GOOD_SPAN, "end": "x"}, SPAN_LABELS),
    ({**GOOD_SPAN, "end": 1.5}, SPAN_LABELS),
    ({**GOOD_SPAN, "id": 5}, SPAN_LABELS),
    ({**GOOD_SPAN, "parent": 5}, SPAN_LABELS),
    ({**GOOD_SPAN, "attributes": None}, SPAN_LABELS),
    ({**GOOD_SPAN, "attributes": [1]}, SPAN_LABELS),
    ({k: v for k, v in GOOD_SPAN.items() if k != "end"}, SPAN_LABELS),
    (GOOD_SPAN, {"trace": "t", "status": "ok"}),
    (GOOD_SPAN, {"trace": "t", "span": "n", "status": "fine"}),
    (GOOD_SPAN, {"trace": "t", "span": "n"}),
]


@pytest.mark.parametrize(("data", "labels"), FOREIGN_SPANS, ids=_ids(FOREIGN_SPANS))
def test_a_foreign_record_among_spans_is_corrupt_data(
    store: kvstore.KVStore, data: Any, labels: dict[str, str]
) -> None:
    traces = Traces(store)
    traces.record("t", "n", T0, T0 + 1)
    store.records("traces", "hour").append(data, timestamp=T0 + 1, labels=labels)
    for call in [lambda: traces.trace("t"), lambda: traces.spans(), lambda: traces.summary()]:
        with pytest.raises(kvstore.CorruptDataError, match="traces"):
            call()


# -- (4) races between processes ---------------------------------------------------------------


def park(url: str, options: dict[str, Any], me: int, ids: list[str], *, barrier: Any) -> list[str]:
    """A racer: tries to suspend every workflow of ``ids``; returns those it parked (any
    other outcome must be ConflictError)."""
    with kvstore.open(url, storage_options=options or None, cache=None) as store:
        flows = Workflows(store)
        barrier.wait(timeout=60)
        won = []
        for i in ids:
            try:
                parked = flows.suspend(i, {"by": me}, reason="race")
            except kvstore.ConflictError:
                continue
            assert parked.context == {"by": me}
            won.append(i)
        return won


def start(url: str, options: dict[str, Any], me: int, ids: list[str], *, barrier: Any) -> list[str]:
    """A racer: tries to start every run of ``ids``; returns those it started."""
    with kvstore.open(url, storage_options=options or None, cache=None) as store:
        evals = Evals(store)
        barrier.wait(timeout=60)
        won = []
        for i in ids:
            try:
                evals.start_run("d", run_id=i, metadata={"by": me})
            except kvstore.ConflictError:
                continue
            won.append(i)
        return won


@pytest.mark.parametrize("backend", ["local", "seaweedfs"])
def test_processes_racing_to_park_a_workflow_or_start_a_run_exactly_one_wins(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    target = make_target(backend)
    fresh_ids = [f"new-{i}" for i in range(6)]
    resumed_ids = [f"old-{i}" for i in range(6)]  # parked again: the compare-and-swap path
    with target.open(cache=None) as store:
        flows = Workflows(store)
        for i in resumed_ids:
            flows.suspend(i, {"by": -1}, reason="before")
            assert flows.resume(i) is not None
        Evals(store).save_dataset("d", [1])
    racers = 4
    calls = [(target.url, target.storage_options, me, fresh_ids + resumed_ids) for me in range(4)]
    got = run_in_processes(park, calls, barrier=True, timeout=180)
    assert sorted(i for mine in got for i in mine) == sorted(fresh_ids + resumed_ids), got
    run_ids = [f"run-{i}" for i in range(6)]
    started = run_in_processes(
        start,
        [(target.url, target.storage_options, me, run_ids) for me in range(racers)],
        barrier=True,
        timeout=180,
    )
    assert sorted(i for mine in started for i in mine) == sorted(run_ids), started
    with target.open(cache=None) as store:
        flows = Workflows(store)
        for me, mine in enumerate(got):  # the stored context is the winner's
            for i in mine:
                assert flows.get(i).context == {"by": me}  # type: ignore[union-attr]
        assert len(flows.waiting(reason="race")) == 12
        evals = Evals(store)
        for me, mine in enumerate(started):
            for i in mine:
                assert evals.run(i).metadata == {"by": me}  # type: ignore[union-attr]


# -- (5) summaries on edge cases ---------------------------------------------------------------


def test_metric_summaries_on_edge_cases(store: kvstore.KVStore) -> None:
    metrics = Metrics(store)
    metrics.record("one", -2.5, timestamp=T0)
    assert metrics.summary("one", T0, T0 + 1) == {
        "count": 1,
        "sum": -2.5,
        "min": -2.5,
        "max": -2.5,
        "mean": -2.5,
        "p50": -2.5,
        "p90": -2.5,
        "p99": -2.5,
        "first": T0,
        "last": T0,
    }
    metrics.record_many([("same", 0.1, None, T0 + i) for i in range(7)])
    same_summary = metrics.summary("same", T0, T0 + HOUR)
    assert same_summary["mean"] == 0.1 and same_summary["sum"] == math.fsum([0.1] * 7)
    assert same_summary["p50"] == same_summary["p99"] == same_summary["min"] == 0.1
    # negative values, written out of order: nearest rank on the sorted values
    values = [-(i % 70) - 1 for i in range(70)]  # -1 .. -70
    metrics.record_many([("neg", v, None, T0 + HOUR - i) for i, v in enumerate(values)])
    neg = metrics.summary("neg", T0, T0 + HOUR + 1)
    ordered = sorted(values)
    assert neg["count"] == 70 and neg["min"] == -70 and neg["max"] == -1
    assert neg["p50"] == ordered[34] and neg["p90"] == ordered[62] and neg["p99"] == ordered[69]
    assert neg["mean"] == -35.5 and neg["first"] == T0 + HOUR - 69 and neg["last"] == T0 + HOUR
    metrics.record_many([("two", v, None, T0) for v in (5, -5)])
    two = metrics.summary("two", T0, T0 + 1)
    assert two["p50"] == -5 and two["p90"] == 5 and two["mean"] == 0 and two["first"] == T0


def test_trace_and_eval_summaries_on_edge_cases(store: kvstore.KVStore) -> None:
    traces = Traces(store)
    traces.record("t", "instant", T0, T0)  # zero duration
    traces.record("t", "instant", T0 + 1, T0 + 1, status="error")
    traces.record("t", "one", T0, T0 + 0.25)
    summary = traces.summary(T0, T0 + HOUR)
    assert summary["instant"] == {"count": 2, "errors": 1, "mean": 0, "p50": 0, "p99": 0, "max": 0}
    assert summary["one"] == {
        "count": 1,
        "errors": 0,
        "mean": 0.25,
        "p50": 0.25,
        "p99": 0.25,
        "max": 0.25,
    }
    assert traces.summary(T0 + HOUR, T0 + 2 * HOUR) == {}
    evals = Evals(store)
    evals.save_dataset("d", [1])
    evals.start_run("d", run_id="r")
    assert evals.summary("r") == {} and evals.scores("r") == []
    evals.score_many("r", [(0, "neg", -3), (1, "neg", -1), (2, "same", 0.1), (3, "same", 0.1)])
    assert evals.summary("r") == {
        "neg": {"count": 2, "mean": -2.0, "min": -3.0, "max": -1.0},
        "same": {"count": 2, "mean": 0.1, "min": 0.1, "max": 0.1},
    }
    assert all(isinstance(s.value, float) for s in evals.scores("r"))


# -- the blocking twins ------------------------------------------------------------------------

PAIRS = [
    (kinds.AsyncMetrics, kinds.Metrics),
    (kinds.AsyncTraces, kinds.Traces),
    (kinds.AsyncEvals, kinds.Evals),
    (kinds.AsyncWorkflows, kinds.Workflows),
]


@pytest.mark.parametrize(("async_cls", "face"), PAIRS, ids=[p[1].__name__ for p in PAIRS])
def test_blocking_twins_have_the_async_signatures_and_docstrings(
    async_cls: type, face: type
) -> None:
    public = {
        n: m
        for n, m in vars(async_cls).items()
        if inspect.iscoroutinefunction(m) and not n.startswith("_")
    }
    assert public
    assert {n for n in vars(face) if not n.startswith("_")} == set(public)
    for name, method in public.items():
        twin = getattr(face, name)
        assert not inspect.iscoroutinefunction(twin)
        assert inspect.signature(twin) == inspect.signature(method), name
        assert twin.__doc__ == method.__doc__ and method.__doc__, name
    made = inspect.signature(face.__init__).parameters  # type: ignore[misc]
    core = inspect.signature(async_cls.__init__).parameters  # type: ignore[misc]
    assert [(p.name, p.kind, p.default) for p in made.values()] == [
        (p.name, p.kind, p.default) for p in core.values()
    ]


def test_the_async_classes_round_trip_too() -> None:
    async def main() -> None:
        store = kvstore.open_async(f"memory://attack-{uuid.uuid4().hex}", decode_responses=True)
        try:
            flows = kinds.AsyncWorkflows(store)
            await flows.suspend("w", {"$bytes": b"\x00"}, reason="r")
            resumed = await flows.resume("w")
            assert resumed is not None and resumed.context == {"$bytes": b"\x00"}
            metrics = kinds.AsyncMetrics(store)
            await metrics.record("m", -1, timestamp=T0)
            assert (await metrics.summary("m", T0, T0 + 1))["mean"] == -1
        finally:
            await store.close()

    asyncio.run(main())


# -- outside kinds ----------------------------------------------------------------------------


def test_records_refuse_non_finite_floats_as_data() -> None:
    with fresh() as store, pytest.raises(kvstore.InvalidValueError):
        store.records("r").append({"x": float("nan")}, timestamp=T0)
