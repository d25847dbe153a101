"""A LangGraph graph that stops for a human, and resumes after a restart: its checkpoints
live in a kvstore (here a local directory; an s3:// URL works the same).

Run it (no servers needed; ``pip install 'kvstore[langgraph]'``):

    python examples/langgraph_resume.py

It runs the graph until it asks for approval, in one process; then a *second* process -
a fresh store, a fresh checkpointer, as after a restart or on another machine - finds the
thread where it stopped and resumes it. The two halves can also be run by hand:

    python examples/langgraph_resume.py start ./graph-data
    python examples/langgraph_resume.py resume ./graph-data
"""

from __future__ import annotations

import operator
import subprocess
import sys
import tempfile
from typing import Annotated, Any, TypedDict

import kvstore

try:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command, interrupt
except ImportError:
    sys.exit("this example needs LangGraph: pip install 'kvstore[langgraph]'")

from kvstore.integrations.langgraph import KVStoreSaver

THREAD = {"configurable": {"thread_id": "order-42"}}


class Order(TypedDict):
    log: Annotated[list[str], operator.add]
    approved: bool


def draft(state: Order) -> dict[str, Any]:
    return {"log": ["drafted"]}


def review(state: Order) -> dict[str, Any]:
    # Stops the graph: the question goes to the caller, the state to the checkpointer.
    answer = interrupt({"question": "ship the order?", "so far": state["log"]})
    return {"log": [f"reviewed: {answer}"], "approved": answer == "yes"}


def ship(state: Order) -> dict[str, Any]:
    return {"log": ["shipped" if state["approved"] else "cancelled"]}


def graph(saver: KVStoreSaver) -> Any:
    builder = StateGraph(Order)
    builder.add_node("draft", draft)
    builder.add_node("review", review)
    builder.add_node("ship", ship)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "review")
    builder.add_edge("review", "ship")
    builder.add_edge("ship", END)
    return builder.compile(checkpointer=saver)


def start(directory: str) -> None:
    with KVStoreSaver(url=directory, namespace="graphs") as saver:
        result = graph(saver).invoke({"log": [], "approved": False}, THREAD)
        question = result["__interrupt__"][0].value
        print(f"interrupted: {question['question']} (so far: {question['so far']})")
        print("checkpoints:", len(list(saver.list(THREAD))))


def resume(directory: str) -> None:
    with KVStoreSaver(url=directory, namespace="graphs") as saver:
        app = graph(saver)
        print("waiting at:", app.get_state(THREAD).next)
        result = app.invoke(Command(resume="yes"), THREAD)
        print("log:", result["log"])
        print("checkpoints:", len(list(saver.list(THREAD))))
    with kvstore.open(directory) as store:  # what is on disk: plain kvstore values
        print("objects:", len(store.namespace("graphs").keys("langgraph/")))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in ("start", "resume"):
        {"start": start, "resume": resume}[sys.argv[1]](sys.argv[2])
        return
    if len(sys.argv) != 1:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as directory:
        for step in ("start", "resume"):  # two processes: the second one is the "restart"
            subprocess.run([sys.executable, __file__, step, directory], check=True)


if __name__ == "__main__":
    main()
