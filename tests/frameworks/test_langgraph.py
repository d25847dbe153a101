"""LangGraph's checkpointer on kvstore (:mod:`kvstore.integrations.langgraph`): the
conformance suite LangGraph publishes for checkpointers (``langgraph-checkpoint-
conformance``: every base and extended capability) on memory, local disk and a real S3
server (SeaweedFS), on the async face and - through a thin async-over-sync wrapper - on
the blocking face; then the saver's own contract: requests per call, bad input refused
with nothing written, namespaces and thread ids kept apart, values stored once, writers
in two processes, a real graph interrupted and resumed after a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from conftest import Target
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES, Capability
from langgraph.checkpoint.conformance.report import ProgressCallbacks
from langgraph.checkpoint.conformance.spec import (
    test_copy_thread,
    test_delete_for_runs,
    test_delete_thread,
    test_get_tuple,
    test_list,
    test_prune,
    test_put,
    test_put_writes,
)

import kvstore
from kvstore.integrations.langgraph import KVStoreSaver

BACKENDS = ["memory", "local", "seaweedfs"]

# How many tests the installed suite has per capability (so a silently skipped or empty
# suite fails here rather than passing).
SUITE_SIZES = {
    Capability.PUT: len(test_put.ALL_PUT_TESTS),
    Capability.PUT_WRITES: len(test_put_writes.ALL_PUT_WRITES_TESTS),
    Capability.GET_TUPLE: len(test_get_tuple.ALL_GET_TUPLE_TESTS),
    Capability.LIST: len(test_list.ALL_LIST_TESTS),
    Capability.DELETE_THREAD: len(test_delete_thread.ALL_DELETE_THREAD_TESTS),
    Capability.DELETE_FOR_RUNS: len(test_delete_for_runs.ALL_DELETE_FOR_RUNS_TESTS),
    Capability.COPY_THREAD: len(test_copy_thread.ALL_COPY_THREAD_TESTS),
    Capability.PRUNE: len(test_prune.ALL_PRUNE_TESTS),
}


class BlockingFace(BaseCheckpointSaver[str]):
    """The conformance suite calls the async methods; this runs each on the saver's
    *blocking* twin in a worker thread, so the suite checks the blocking face too."""

    def __init__(self, inner: KVStoreSaver) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.inner.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        def everything() -> list[CheckpointTuple]:
            return list(self.inner.list(config, filter=filter, before=before, limit=limit))

        for item in await asyncio.to_thread(everything):
            yield item

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return await asyncio.to_thread(self.inner.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await asyncio.to_thread(self.inner.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.inner.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.inner.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.inner.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.inner.prune, thread_ids, strategy=strategy)


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, make_target: Callable[[str], Target]) -> Target:
    return make_target(request.param)


@pytest.mark.parametrize("capability", sorted(ALL_CAPABILITIES, key=lambda c: c.value))
@pytest.mark.parametrize("face", ["async", "blocking"])
async def test_conformance(target: Target, face: str, capability: Capability) -> None:
    """One capability of LangGraph's conformance suite (``validate()``, the suite's own
    runner), on one backend and face: detected, every test run, none failed or skipped."""
    opened: list[kvstore.KVStore] = []

    @checkpointer_test(name=f"KVStoreSaver[{target.backend},{face}]")
    async def factory() -> AsyncGenerator[BaseCheckpointSaver[Any], None]:
        store = target.open(cache=kvstore.LocalCache())
        opened.append(store)
        saver = KVStoreSaver(store)
        yield saver if face == "async" else BlockingFace(saver)
        store.close()

    errors: list[str] = []

    def on_result(cap: str, name: str, passed: bool, error: str | None) -> None:
        if not passed:
            errors.append(f"{cap}.{name}:\n{error}")

    report = await validate(
        factory,
        capabilities={capability.value},
        progress=ProgressCallbacks(on_test_result=on_result),
    )
    result = report.results[capability.value]
    assert result.detected, f"{capability.value} not detected on {type(KVStoreSaver)}"
    assert result.tests_failed == 0 and not errors, "\n".join(errors)
    assert result.tests_skipped == 0
    assert result.tests_passed == SUITE_SIZES[capability] > 0
    assert result.passed is True
    assert opened, "the factory was never used"


# -- the saver's own contract --------------------------------------------------------------

from langgraph.checkpoint.conformance.test_utils import (  # noqa: E402
    generate_checkpoint,
    generate_config,
    generate_metadata,
)

from kvstore.testing import request_delta  # noqa: E402


def _chain(
    saver: KVStoreSaver,
    thread: str,
    steps: int,
    *,
    ns: str = "",
    constant: str = "c" * 1000,
    run_id: str | None = None,
    writes: bool = True,
) -> list[RunnableConfig]:
    """``steps`` checkpoints on one thread, each the child of the one before, with a
    channel that changes every step and one that never does; versions as LangGraph makes
    them (``saver.get_next_version``), a pending write on each."""
    stored: list[RunnableConfig] = []
    parent: RunnableConfig | None = None
    versions: dict[str, Any] = {}
    for i in range(steps):
        config = generate_config(thread, checkpoint_ns=ns)
        if parent is not None:
            config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
        new = {"step": saver.get_next_version(versions.get("step"), None)}
        if i == 0:
            new["constant"] = saver.get_next_version(None, None)
        versions.update(new)
        cp = generate_checkpoint(
            channel_values={"step": i, "constant": constant}, channel_versions=dict(versions)
        )
        extra = {"run_id": run_id} if run_id else {}
        parent = saver.put(config, cp, generate_metadata(step=i, **extra), new)
        if writes:
            saver.put_writes(parent, [("step", i + 1)], f"task-{i}")
        stored.append(parent)
    return stored


def _config(thread: str, ns: str = "") -> RunnableConfig:
    # (generate_config takes "" for "make one up")
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}


def _objects(store: kvstore.KVStore, prefix: str = "langgraph/") -> list[str]:
    return list(store.keys(prefix))


@pytest.mark.parametrize("cache", [None, "local"])
def test_what_saver_calls_cost(make_target: Callable[[str], Target], cache: str | None) -> None:
    """Requests per call on a real S3 server (SeaweedFS), a thread of 10 checkpoints."""
    target = make_target("seaweedfs")
    with target.open(cache=kvstore.LocalCache() if cache else None) as store:
        saver = KVStoreSaver(store)
        configs = _chain(saver, "t", 9)
        head = saver.get_tuple(configs[-1])
        assert head is not None
        config = dict(configs[-1])
        versions = dict(head.checkpoint["channel_versions"])
        new = {"step": saver.get_next_version(versions["step"], None)}
        cp = generate_checkpoint(
            channel_values={"step": 9, "constant": "c" * 1000},
            channel_versions={**versions, **new},
        )
        with request_delta(store) as put:
            last = saver.put(config, cp, generate_metadata(step=9), new)
        # the new value of "step" (set-if-absent), then the checkpoint; "constant" is
        # not written again
        assert put == {"requests.put_if_absent": 1, "requests.put": 1}, put
        with request_delta(store) as put_writes:
            saver.put_writes(last, [("a", 1), ("b", 2)], "task-x")
        assert put_writes == {"requests.put_if_absent": 2}, put_writes
        with request_delta(store) as again:  # a retried call: kept once, a GET to be sure
            saver.put_writes(last, [("a", 1), ("b", 2)], "task-x")
        assert again == {"requests.put_if_absent": 2, "requests.get": 2}, again
        with request_delta(store) as by_id:
            got = saver.get_tuple(last)
        assert got is not None and got.checkpoint["channel_values"]["step"] == 9
        assert len(got.pending_writes or []) == 2
        # checkpoint + LIST of its writes; then 2 values + 2 writes (cached: "constant",
        # read above by get_tuple)
        assert by_id == {"requests.get": 4 if cache else 5, "requests.list": 1}, by_id
        with request_delta(store) as latest:
            again = saver.get_tuple(generate_config("t"))
        assert again is not None and again.config == got.config
        if cache:  # immutable objects: the newest is found by a LIST, the rest is cached
            assert latest == {"requests.list": 1}, latest
        else:
            assert latest == {"requests.get": 5, "requests.list": 1}, latest
        with request_delta(store) as listing:
            every = list(saver.list(generate_config("t")))
        assert [t.metadata["step"] for t in every] == list(range(9, -1, -1))
        assert listing.get("requests.list") == 1, listing
        if not cache:  # 10 checkpoints, 11 values (one of them shared by all), 11 writes
            assert listing == {"requests.get": 32, "requests.list": 1}, listing
        with request_delta(store) as first:
            assert len(list(saver.list(generate_config("t"), limit=1))) == 1
        assert first.get("requests.list") == 1 and first.get("requests.get", 0) <= 5, first
        with request_delta(store) as deleted:
            saver.delete_thread("t")
        # a LIST and one bulk delete: 10 checkpoints, their values and writes
        assert deleted == {"requests.list": 1, "requests.delete_many": 1}, deleted
        assert sum(deleted.values()) <= 5
        assert _objects(store) == []
        assert saver.get_tuple(generate_config("t")) is None


def test_a_channel_value_is_stored_once(target: Target) -> None:
    """A value that does not change is one object whatever the number of steps; a
    changing one is an object per version; nothing else grows with the values."""
    big = "x" * 300_000
    with target.open(cache=None) as store:
        saver = KVStoreSaver(store)
        _chain(saver, "t", 10, constant=big)
        objects = _objects(store)
        constant = [k for k in objects if "/b//constant/" in k]
        step = [k for k in objects if "/b//step/" in k]
        checkpoints = [k for k in objects if "/c//" in k and k.count("/") == 5]
        assert len(constant) == 1 and len(step) == 10 and len(checkpoints) == 10
        assert len(objects) == 1 + 10 + 10 + 10  # + one pending write per checkpoint
        for config in saver.list(generate_config("t")):
            assert config.checkpoint["channel_values"]["constant"] == big


def test_bad_input_is_refused_and_nothing_is_written(target: Target) -> None:
    with target.open(cache=None) as store:
        saver = KVStoreSaver(store)
        cp = generate_checkpoint(channel_values={"a": 1}, channel_versions={"a": 1})
        md = generate_metadata()
        with pytest.raises(ValueError, match="thread_id"):
            saver.put({"configurable": {}}, cp, md, {"a": 1})  # type: ignore[typeddict-item]
        with pytest.raises(ValueError, match="configurable"):
            saver.put({}, cp, md, {"a": 1})
        with pytest.raises(TypeError, match="thread_id must be a str"):
            saver.put({"configurable": {"thread_id": 1.5}}, cp, md, {"a": 1})
        with pytest.raises(TypeError, match="config must be"):
            saver.put("t", cp, md, {"a": 1})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="uuid"):
            saver.put(generate_config("t"), {**cp, "id": "not-a-uuid"}, md, {"a": 1})
        with pytest.raises(TypeError, match="not msgpack serializable"):
            bad = generate_checkpoint(channel_values={"a": object()}, channel_versions={"a": 1})
            saver.put(generate_config("t"), bad, md, {"a": 1})
        with pytest.raises(TypeError, match="not msgpack serializable"):
            saver.put(generate_config("t"), cp, {**md, "x": object()}, {"a": 1})  # type: ignore[typeddict-unknown-key]
        with pytest.raises(TypeError, match="new_versions"):
            saver.put(generate_config("t"), cp, md, None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="channel version"):
            saver.put(generate_config("t"), {**cp, "channel_versions": {"a": [1]}}, md, {})
        with pytest.raises(ValueError, match="checkpoint_id"):
            saver.put_writes(generate_config("t"), [("a", 1)], "task")
        good = generate_config("t", checkpoint_id=cp["id"])
        with pytest.raises(TypeError, match=r"\(channel, value\) pair"):
            saver.put_writes(good, ["a"], "task")  # type: ignore[list-item]
        with pytest.raises(TypeError, match="task_id"):
            saver.put_writes(good, [("a", 1)], 7)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not msgpack serializable"):
            saver.put_writes(good, [("a", 1), ("b", object())], "task")
        with pytest.raises(TypeError, match="a str"):
            saver.put(generate_config("t"), {**cp, "channel_versions": {1: 1}}, md, {1: 1})
        long_channel = {"a": 1, "b" * 1100: 2}
        with pytest.raises(kvstore.InvalidKeyError):
            saver.put(
                generate_config("t"),
                {**cp, "channel_values": long_channel, "channel_versions": {"a": 1, "b" * 1100: 1}},
                md,
                {"a": 1, "b" * 1100: 1},
            )
        with pytest.raises(kvstore.InvalidKeyError):
            saver.put_writes(good, [("a", 1)], "t" * 1100)
        assert _objects(store) == []  # nothing written by any of them
        with pytest.raises(TypeError, match="filter"):
            list(saver.list(generate_config("t"), filter="source"))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="limit"):
            list(saver.list(generate_config("t"), limit="1"))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="strategy"):
            saver.prune(["t"], strategy="everything")
        with pytest.raises(TypeError, match="thread_ids"):
            saver.prune("t")
        with pytest.raises(TypeError, match="run_ids"):
            saver.delete_for_runs("run")
        with pytest.raises(TypeError, match="thread_id"):
            saver.delete_thread(None)  # type: ignore[arg-type]
        # a malformed id addresses nothing: no checkpoint, no error
        assert saver.get_tuple(generate_config("t", checkpoint_id="nope")) is None
        assert _objects(store) == []


def test_construction(tmp_path: Any) -> None:
    with KVStoreSaver(url=str(tmp_path), cache=None, namespace="graphs") as saver:
        saver.put(generate_config("t"), generate_checkpoint(), generate_metadata(), {})
    with kvstore.open(str(tmp_path), cache=None) as again:
        assert len(_objects(again.namespace("graphs"))) == 1
        assert KVStoreSaver(again, namespace="graphs").get_tuple(generate_config("t"))
        with pytest.raises(TypeError, match="not both"):
            KVStoreSaver(again, url=str(tmp_path))
    with pytest.raises(TypeError, match="decode_responses"):
        KVStoreSaver(url=str(tmp_path), cache=None, decode_responses=True)
    astore = kvstore.open_async(str(tmp_path), cache=None)
    with pytest.raises(TypeError, match=r"kvstore\.KVStore"):
        KVStoreSaver(astore)  # type: ignore[arg-type]
    asyncio.run(astore.close())


def test_threads_namespaces_and_stores_are_kept_apart(target: Target) -> None:
    """Thread ids and checkpoint namespaces that are prefixes of one another, or hold
    the escape characters, never see each other's checkpoints; nor do two savers in
    two kvstore namespaces of one store."""
    threads = ["a", "a/b", "a%", "a%2Fb", "a/", "", "/", "ü/%"]
    with target.open(cache=kvstore.LocalCache()) as root:
        saver = KVStoreSaver(root)
        for thread in threads:
            for ns in ["", "x", "x/y", "x%"]:
                cp = generate_checkpoint(
                    channel_values={"who": f"{thread}|{ns}"}, channel_versions={"who": 1}
                )
                saver.put(_config(thread, ns), cp, generate_metadata(), {"who": 1})
        for thread in threads:
            every = list(saver.list({"configurable": {"thread_id": thread}}))
            assert sorted(t.checkpoint["channel_values"]["who"] for t in every) == sorted(
                f"{thread}|{ns}" for ns in ["", "x", "x/y", "x%"]
            )
            for ns in ["", "x", "x/y", "x%"]:
                got = saver.get_tuple(_config(thread, ns))
                assert got is not None
                assert got.checkpoint["channel_values"]["who"] == f"{thread}|{ns}"
                assert len(list(saver.list(_config(thread, ns)))) == 1
        assert len(list(saver.list(None))) == len(threads) * 4
        saver.delete_thread("a")
        assert saver.get_tuple(_config("a")) is None
        for thread in threads[1:]:
            assert len(list(saver.list({"configurable": {"thread_id": thread}}))) == 4

        one, two = KVStoreSaver(root, namespace="one"), KVStoreSaver(root, namespace="two")
        one.put(generate_config("t"), generate_checkpoint(), generate_metadata(step=1), {})
        assert two.get_tuple(generate_config("t")) is None
        assert saver.get_tuple(generate_config("t")) is None
        two.put(generate_config("t"), generate_checkpoint(), generate_metadata(step=2), {})
        one.delete_thread("t")
        got = two.get_tuple(generate_config("t"))
        assert got is not None and got.metadata["step"] == 2


def test_prune_copy_and_runs_remove_what_no_checkpoint_needs(target: Target) -> None:
    with target.open(cache=kvstore.LocalCache()) as store:
        saver = KVStoreSaver(store)
        _chain(saver, "p", 10)
        saver.copy_thread("p", "q")
        saver.prune(["p"])
        kept = _objects(store, "langgraph/t/p/")
        # the newest checkpoint, its write, the two values it uses
        assert len(kept) == 4, kept
        got = saver.get_tuple(generate_config("p"))
        assert got is not None and got.checkpoint["channel_values"]["step"] == 9
        assert len(list(saver.list(generate_config("q")))) == 10  # the copy is whole
        saver.delete_thread("p")
        copied = list(saver.list(generate_config("q")))
        assert [t.checkpoint["channel_values"]["step"] for t in copied] == list(range(9, -1, -1))

        first = _chain(saver, "r", 3, run_id="run-1")
        config = dict(first[-1])
        _chain_from(saver, config, 2, run_id="run-2")
        saver.delete_for_runs(["run-1"])
        left = list(saver.list(generate_config("r")))
        assert [t.metadata["run_id"] for t in left] == ["run-2", "run-2"]
        for t in left:  # their values survive the removal of run-1's checkpoints
            assert t.checkpoint["channel_values"]["constant"] == "c" * 1000
        assert not any("run-1" in k for k in _objects(store))
        saver.delete_for_runs(["run-2"])
        assert _objects(store, "langgraph/t/r/") == []
        assert _objects(store, "langgraph/r/") == []


def _chain_from(
    saver: KVStoreSaver, parent: RunnableConfig, steps: int, run_id: str
) -> list[RunnableConfig]:
    head = saver.get_tuple(parent)
    assert head is not None
    versions = dict(head.checkpoint["channel_versions"])
    values = dict(head.checkpoint["channel_values"])
    out = []
    for _ in range(steps):
        new = {"step": saver.get_next_version(versions["step"], None)}
        versions.update(new)
        values["step"] += 1
        cp = generate_checkpoint(channel_values=dict(values), channel_versions=dict(versions))
        parent = saver.put(parent, cp, generate_metadata(step=values["step"], run_id=run_id), new)
        out.append(parent)
    return out


def _write_chain(
    url: str, options: dict[str, Any], thread: str, steps: int, barrier: Any
) -> list[str]:
    """In a child process: ``steps`` checkpoints on ``thread``; their ids."""
    store = kvstore.open(url, storage_options=options or None, cache=None)
    saver = KVStoreSaver(store)
    barrier.wait()
    configs = _chain(saver, thread, steps, constant=f"from {thread}")
    store.close()
    return [c["configurable"]["checkpoint_id"] for c in configs]


def _write_shared(
    url: str, options: dict[str, Any], me: str, steps: int, barrier: Any
) -> list[str]:
    """In a child process: a chain of ``steps`` checkpoints on the thread "shared"
    whose values name this writer."""
    store = kvstore.open(url, storage_options=options or None, cache=None)
    saver = KVStoreSaver(store)
    barrier.wait()
    ids = []
    parent: RunnableConfig | None = None
    versions: dict[str, Any] = {}
    for i in range(steps):
        config = generate_config("shared")
        if parent is not None:
            config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
        new = {"v": saver.get_next_version(versions.get("v"), None)}
        versions.update(new)
        cp = generate_checkpoint(channel_values={"v": f"{me}-{i}"}, channel_versions=dict(versions))
        parent = saver.put(config, cp, generate_metadata(step=i, writer=me), new)
        saver.put_writes(parent, [("v", f"{me}-{i}")], f"{me}-task")
        ids.append(parent["configurable"]["checkpoint_id"])
    store.close()
    return ids


def test_two_processes_write_checkpoints_without_loss(make_target: Callable[[str], Target]) -> None:
    from kvstore.testing import run_in_processes

    target = make_target("seaweedfs")
    options = target.storage_options
    apart = run_in_processes(
        _write_chain,
        [(target.url, options, "one", 8), (target.url, options, "two", 8)],
        barrier=True,
    )
    shared = run_in_processes(
        _write_shared,
        [(target.url, options, "w1", 8), (target.url, options, "w2", 8)],
        barrier=True,
    )
    with target.open(cache=None) as store:
        saver = KVStoreSaver(store)
        for thread, ids in zip(["one", "two"], apart, strict=True):
            listed = list(saver.list(generate_config(thread)))
            assert [t.checkpoint["id"] for t in listed] == ids[::-1]
            assert all(
                t.checkpoint["channel_values"]["constant"] == f"from {thread}" for t in listed
            )
        listed = list(saver.list(generate_config("shared")))
        assert sorted(t.checkpoint["id"] for t in listed) == sorted(shared[0] + shared[1])
        for t in listed:  # each checkpoint reads its own writer's values, never the other's
            me, step = t.metadata["writer"], t.metadata["step"]
            assert t.checkpoint["channel_values"] == {"v": f"{me}-{step}"}
            assert [w[2] for w in t.pending_writes or []] == [f"{me}-{step}"]
        newest = saver.get_tuple(generate_config("shared"))
        assert newest is not None and newest.checkpoint["id"] == max(shared[0] + shared[1])


# -- real graphs ---------------------------------------------------------------------------

import operator  # noqa: E402
from typing import Annotated, TypedDict  # noqa: E402

from langgraph.channels import DeltaChannel  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.types import Command, interrupt  # noqa: E402


class Review(TypedDict):
    log: Annotated[list[str], operator.add]
    approved: bool


def _review_graph() -> StateGraph[Review]:
    def draft(state: Review) -> dict[str, Any]:
        return {"log": ["drafted"]}

    def review(state: Review) -> dict[str, Any]:
        answer = interrupt({"question": "publish?", "log": state["log"]})
        return {"log": [f"reviewed: {answer}"], "approved": answer == "yes"}

    def publish(state: Review) -> dict[str, Any]:
        return {"log": ["published" if state["approved"] else "shelved"]}

    builder = StateGraph(Review)
    builder.add_node("draft", draft)
    builder.add_node("review", review)
    builder.add_node("publish", publish)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "review")
    builder.add_edge("review", "publish")
    builder.add_edge("publish", END)
    return builder


@pytest.mark.parametrize("face", ["blocking", "async"])
async def test_a_graph_interrupted_resumes_after_a_restart(target: Target, face: str) -> None:
    """A StateGraph stops at an interrupt; the process "restarts" (a new store and a
    new saver); the thread resumes where it stopped, with its history."""
    config: RunnableConfig = {"configurable": {"thread_id": "review-1"}}
    with target.open(cache=kvstore.LocalCache()) as store:
        graph = _review_graph().compile(checkpointer=KVStoreSaver(store))
        if face == "async":
            first = await graph.ainvoke({"log": [], "approved": False}, config)
        else:
            first = graph.invoke({"log": [], "approved": False}, config)
        assert first["log"] == ["drafted"]
        assert first["__interrupt__"][0].value["question"] == "publish?"
    with target.open(cache=kvstore.LocalCache()) as store:  # after the restart
        graph = _review_graph().compile(checkpointer=KVStoreSaver(store))
        state = graph.get_state(config)
        assert state.next == ("review",)
        assert state.tasks[0].interrupts[0].value["question"] == "publish?"
        if face == "async":
            done = await graph.ainvoke(Command(resume="yes"), config)
        else:
            done = graph.invoke(Command(resume="yes"), config)
        assert done["log"] == ["drafted", "reviewed: yes", "published"]
        assert done["approved"] is True
        history = list(graph.get_state_history(config))
        assert [h.metadata["step"] for h in history] == sorted(
            (h.metadata["step"] for h in history), reverse=True
        )
        assert history[0].values["log"] == done["log"] and history[0].next == ()
        # time travel: fork the interrupted state with an edit; the fork is the newest
        paused = next(h for h in history if h.next == ("review",))
        forked = graph.update_state(paused.config, {"log": ["edited"]})
        assert forked["configurable"]["checkpoint_id"] > done_id(history)
        assert graph.get_state(config).values["log"] == ["drafted", "edited"]
        assert graph.get_state(config).next == ("review",)


def done_id(history: list[Any]) -> str:
    return str(history[0].config["configurable"]["checkpoint_id"])


def _concat(state: list[int], writes: Sequence[list[int]]) -> list[int]:
    out = list(state)
    for w in writes:
        out.extend(w)
    return out


class Counting(TypedDict):
    seen: Annotated[list[int], DeltaChannel(_concat, snapshot_frequency=3)]
    n: int


def _counting_graph() -> StateGraph[Counting]:
    def tick(state: Counting) -> dict[str, Any]:
        return {"seen": [state["n"]], "n": state["n"] + 1}

    def more(state: Counting) -> str:
        return "tick" if state["n"] < 7 else END  # ends between two snapshots

    builder = StateGraph(Counting)
    builder.add_node("tick", tick)
    builder.add_edge(START, "tick")
    builder.add_conditional_edges("tick", more)
    return builder


def test_delta_channels_rebuild_from_history_and_survive_prune(target: Target) -> None:
    """A DeltaChannel stores a snapshot every 3 updates and writes in between: the saver's
    ancestor walk (get_delta_channel_history) rebuilds it as LangGraph's own in-memory
    saver does, before and after keep_latest pruning, in a fresh store."""
    config: RunnableConfig = {"configurable": {"thread_id": "d"}}
    reference = _counting_graph().compile(checkpointer=InMemorySaver())
    expected = reference.invoke({"seen": [], "n": 0}, config)
    with target.open(cache=None) as store:
        saver = KVStoreSaver(store)
        got = _counting_graph().compile(checkpointer=saver).invoke({"seen": [], "n": 0}, config)
        assert got == expected == {"seen": list(range(7)), "n": 7}
        head = saver.get_tuple(config)
        assert head is not None and "seen" not in head.checkpoint["channel_values"]
        ours = saver.get_delta_channel_history(config=config, channels=["seen", "n"])
        default = BaseCheckpointSaver.get_delta_channel_history(
            saver, config=config, channels=["seen", "n"]
        )
        assert ours == default and ours["seen"]["writes"]
        saver.prune(["d"])
        remaining = list(saver.list(config))
        # the head and its ancestors back to the last snapshot (steps 7, 6, 5)
        assert [t.metadata["step"] for t in remaining] == [7, 6, 5]
        assert "seen" in remaining[-1].checkpoint["channel_values"]
    with target.open(cache=None) as store:
        graph = _counting_graph().compile(checkpointer=KVStoreSaver(store))
        assert graph.get_state(config).values == expected


async def test_async_face_and_a_clone_with_another_serde(target: Target) -> None:
    """The async twins of the extras; ``with_allowlist`` (LangGraph's strict msgpack
    mode) clones the saver with another serde, and the clone reads what the saver wrote."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    with target.open(cache=kvstore.LocalCache()) as store:
        saver = KVStoreSaver(store, serde=JsonPlusSerializer(allowed_msgpack_modules=None))
        configs = _chain(saver, "t", 4)
        ours = await saver.aget_delta_channel_history(config=configs[-1], channels=["step"])
        assert ours == saver.get_delta_channel_history(config=configs[-1], channels=["step"])
        assert ours["step"] == {"writes": [("task-2", "step", 3)], "seed": 2}
        clone = saver.with_allowlist([("some.module", "Thing")])
        assert isinstance(clone, KVStoreSaver) and clone.serde is not saver.serde
        got = await clone.aget_tuple(generate_config("t"))
        assert got is not None and got.checkpoint["channel_values"]["step"] == 3
        firsts = [t async for t in clone.alist(generate_config("t"), limit=2)]
        assert [t.metadata["step"] for t in firsts] == [3, 2]
        older = [t async for t in saver.alist(generate_config("t"), before=configs[1])]
        assert [t.metadata["step"] for t in older] == [0]


async def test_the_latest_checkpoint_is_one_list_away_however_long_the_thread() -> None:
    """Ids are stored inverted, so the first key a listing returns is the newest: a
    thread of 2,500 checkpoints (3 pages of a listing) is resumed with one LIST."""
    with kvstore.open("memory://latest-" + str(id(object())), cache=None) as store:
        saver = KVStoreSaver(store)
        ids = []
        for i in range(2500):
            cp = generate_checkpoint()
            await saver.aput(generate_config("long"), cp, generate_metadata(step=i), {})
            ids.append(cp["id"])
        with request_delta(store) as spent:
            got = await saver.aget_tuple(generate_config("long"))
        assert got is not None and got.checkpoint["id"] == ids[-1] == max(ids)
        assert spent == {"requests.list": 1, "requests.get": 1}, spent
        with request_delta(store) as listing:
            assert len([t async for t in saver.alist(generate_config("long"))]) == 2500
        assert listing["requests.list"] == 3, listing


def test_what_the_extras_cost(make_target: Callable[[str], Target]) -> None:
    """copy_thread, prune, delete_for_runs and the DeltaChannel walk on SeaweedFS."""
    target = make_target("seaweedfs")
    with target.open(cache=None) as store:
        saver = KVStoreSaver(store)
        configs = _chain(saver, "t", 10, run_id="r1")
        with request_delta(store) as copy:
            saver.copy_thread("t", "u")
        # 32 objects (10 checkpoints, 10 writes, 11 values, a run note) + the run index
        assert copy == {"requests.list": 1, "requests.get": 32, "requests.put": 33}, copy
        with request_delta(store) as prune:
            saver.prune(["t"])
        # the newest checkpoint read (with one more: the first window), one bulk delete
        assert prune == {"requests.list": 1, "requests.get": 2, "requests.delete_many": 1}
        _chain_from(saver, dict(configs[-1]), 3, run_id="r2")
        with request_delta(store) as runs:
            saver.delete_for_runs(["r2"])
        # the run's index, the thread; its 4 checkpoints; one bulk delete
        assert runs == {"requests.list": 2, "requests.get": 4, "requests.delete_many": 1}
        with request_delta(store) as walk:
            history = saver.get_delta_channel_history(
                config=generate_config("u"), channels=["step"]
            )
        assert history["step"]["seed"] == 8
        # the namespace; the head and its parent (a window of 2); the parent's write, seed
        assert walk == {"requests.list": 1, "requests.get": 4}, walk
