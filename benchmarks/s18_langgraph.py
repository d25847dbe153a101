"""S18: LangGraph checkpoints - bytes stored and requests per step of the same graph, with
kvstore's checkpointer (``kvstore.integrations.langgraph.KVStoreSaver``) on a local
directory against LangGraph's own SQLite checkpointer (``langgraph-checkpoint-sqlite``'s
``SqliteSaver``, the baseline) - issue 18.

The graph: a state with a channel that grows by ~30 kB every step (a list of chat turns,
``operator.add``: each version holds the whole list, as LangGraph stores it) and a big
constant channel (~300 kB: a document given at the start, never changed), one node run
10 times in a loop. Text is ``benchmarks.data``'s (real English word frequencies, not
flattering to a compressor).

* **S18.a** bytes stored after the run, KVStoreSaver / SqliteSaver: the sum of the sizes
  of the store's files (``.kvstore/`` excluded; no filesystem block rounding) against the
  SQLite database file. KVStoreSaver stores each channel version once (the constant
  once), compressed by kvstore's envelope (zstd); SqliteSaver stores every checkpoint
  whole, uncompressed.
* **S18.b** KVStoreSaver's bytes per step (kB), for the record.
* **S18.c** object-store requests per step of the run (puts of checkpoints and writes,
  and the reads the run makes), from the store's own counters.
* **S18.d** requests to load the thread on a new store (``get_state``: the newest
  checkpoint, found by one LIST, its values and writes): what a resume after a restart
  costs before the graph runs.

Wall times (median of repetitions, interleaved) are in the details: a local directory
fsyncs every object, SQLite one transaction per call.
"""

from __future__ import annotations

import importlib.util
import operator
import random
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

import kvstore

from . import data
from .harness import Context, Planned, Row, Skip, counting, log, median

ID = "S18"
TITLE = "LangGraph checkpoints: bytes and requests per step, KVStoreSaver vs SqliteSaver"

STEPS = 10
GROWTH_BYTES = 30_000
CONSTANT_BYTES = 300_000
SQLITE = "langgraph-checkpoint-sqlite's SqliteSaver, the same graph: the database file"

PLANNED = [
    Planned(
        "S18.a",
        f"bytes stored, {STEPS} steps (+30 kB/step channel, 300 kB constant): "
        "KVStoreSaver (local dir) / SqliteSaver",
        0.5,
        "<=",
        "x",
        SQLITE,
    ),
    Planned(
        "S18.b",
        "KVStoreSaver bytes stored per step (local dir)",
        None,
        "<=",
        "kB",
        SQLITE + " (per step, in details)",
    ),
    Planned(
        "S18.c",
        "KVStoreSaver object-store requests per step (the graph run)",
        10,
        "<=",
        "requests",
        "a put and a put_writes per step, each a PUT per object",
    ),
    Planned(
        "S18.d",
        "KVStoreSaver requests to load the thread on a new store (get_state)",
        6,
        "<=",
        "requests",
        "LIST + checkpoint + its values and writes",
    ),
]


def _text(rng: random.Random, size: int) -> str:
    out: list[str] = []
    total = 0
    while total < size:
        piece = data.text(rng, 200)
        out.append(piece)
        total += len(piece) + 1
    return " ".join(out)[:size]


class State(TypedDict):
    turns: Annotated[list[str], operator.add]
    document: str
    step: int


def _graph(checkpointer: Any) -> Any:
    from langgraph.graph import END, START, StateGraph

    rng = random.Random(data.SEED)
    turns = [_text(rng, GROWTH_BYTES) for _ in range(STEPS)]

    def work(state: State) -> dict[str, Any]:
        return {"turns": [turns[state["step"]]], "step": state["step"] + 1}

    def more(state: State) -> str:
        return "work" if state["step"] < STEPS else END

    builder = StateGraph(State)
    builder.add_node("work", work)
    builder.add_edge(START, "work")
    builder.add_conditional_edges("work", more)
    return builder.compile(checkpointer=checkpointer)


def _inputs() -> dict[str, Any]:
    return {"turns": [], "document": _text(random.Random(data.SEED + 1), CONSTANT_BYTES), "step": 0}


def _size(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file() and ".kvstore" not in p.parts]
    return sum(p.stat().st_size for p in files), len(files)


def _kvstore_run(directory: Path, thread: str) -> dict[str, Any]:
    from kvstore.integrations.langgraph import KVStoreSaver

    config = {"configurable": {"thread_id": thread}}
    with kvstore.open(str(directory)) as store:
        graph = _graph(KVStoreSaver(store))
        started = time.perf_counter()
        with counting(store) as spent:
            result = graph.invoke(_inputs(), config)
        wall = time.perf_counter() - started
    assert result["step"] == STEPS and len(result["turns"]) == STEPS
    with kvstore.open(str(directory)) as fresh:
        graph = _graph(KVStoreSaver(fresh))
        with counting(fresh) as loading:
            state = graph.get_state(config)
    assert state.values["step"] == STEPS
    return {"requests": spent, "load": loading, "wall": wall}


def _sqlite_run(path: Path, thread: str) -> dict[str, Any]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(str(path), check_same_thread=False)
    try:
        graph = _graph(SqliteSaver(conn))
        started = time.perf_counter()
        result = graph.invoke(_inputs(), {"configurable": {"thread_id": thread}})
        wall = time.perf_counter() - started
    finally:
        conn.close()
    assert result["step"] == STEPS
    return {"wall": wall}


def run(ctx: Context) -> list[Row]:
    missing = [
        name
        for name in ("langgraph.graph", "langgraph.checkpoint.sqlite")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise Skip(f"needs langgraph and langgraph-checkpoint-sqlite ({', '.join(missing)})")
    reps = ctx.size(1, 3)
    base = Path(tempfile.mkdtemp(prefix="s18-", dir=ctx.tmp))
    ours_walls: list[float] = []
    sqlite_walls: list[float] = []
    measured: dict[str, Any] = {}
    try:
        for rep in range(reps):  # interleaved; each on a fresh directory and database
            directory, db = base / f"kv-{rep}", base / f"cp-{rep}.sqlite"
            ours = _kvstore_run(directory, "bench")
            theirs = _sqlite_run(db, "bench")
            ours_walls.append(ours["wall"])
            sqlite_walls.append(theirs["wall"])
            if rep == 0:
                stored, objects = _size(directory)
                measured = {
                    "kv_bytes": stored,
                    "kv_objects": objects,
                    "sqlite_bytes": db.stat().st_size,
                    "requests": ours["requests"],
                    "load": ours["load"],
                }
    finally:
        shutil.rmtree(base, ignore_errors=True)
    kv, sq = measured["kv_bytes"], measured["sqlite_bytes"]
    spent, load = measured["requests"], measured["load"]
    details = {
        "steps": STEPS,
        "kvstore_bytes": kv,
        "kvstore_objects": measured["kv_objects"],
        "sqlite_bytes": sq,
        "sqlite_kB_per_step": sq / STEPS / 1000,
        "kvstore_wall_s": median(ours_walls),
        "sqlite_wall_s": median(sqlite_walls),
    }
    log(
        f"S18: KVStoreSaver {kv:,} B in {measured['kv_objects']} objects, SqliteSaver "
        f"{sq:,} B ({kv / sq:.3f}); requests {spent}; load {load}; wall "
        f"{median(ours_walls):.3f} s vs {median(sqlite_walls):.3f} s"
    )
    by_id = {p.id: p for p in PLANNED}
    return [
        by_id["S18.a"].row(kv / sq, details=details),
        by_id["S18.b"].row(kv / STEPS / 1000, details=details),
        by_id["S18.c"].row(spent["total"] / STEPS, requests=spent),
        by_id["S18.d"].row(load["total"], requests=load),
    ]


if __name__ == "__main__":  # python -m benchmarks.s18_langgraph [--quick]
    import sys

    from .runner import table

    context = Context(quick="--quick" in sys.argv, latency_ms=0.0)
    try:
        print(table(run(context)))
    finally:
        context.close()
