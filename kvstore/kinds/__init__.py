"""Typed helpers for what agent applications keep besides sessions - metrics, trace
spans, evaluation datasets/runs/scores, suspended workflows - each a thin model over the
store's public API (records, values, logs, artifacts), so each works on every backend and
through the HTTP service's client alike. Each has an async class taking an
``AsyncKVStore`` and its blocking twin taking a ``KVStore``, derived method by method."""

from .evals import AsyncEvals, Evals, Run, Score
from .metrics import AsyncMetrics, Metrics, Sample
from .traces import AsyncTraces, Span, Traces
from .workflows import AsyncWorkflows, Workflow, Workflows

__all__ = [
    "AsyncEvals",
    "AsyncMetrics",
    "AsyncTraces",
    "AsyncWorkflows",
    "Evals",
    "Metrics",
    "Run",
    "Sample",
    "Score",
    "Span",
    "Traces",
    "Workflow",
    "Workflows",
]
