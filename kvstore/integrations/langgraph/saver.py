"""KVStoreSaver: LangGraph's ``BaseCheckpointSaver`` on a kvstore (see the package
docstring for the layout and the costs). Both faces run the same coroutines
(:mod:`.engine`, :mod:`.maintenance`) on kvstore's own event loop: the blocking methods
wait for them, the async ones await them from the caller's loop."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from ...portal import portal
from ...sync import KVStore
from .._opening import open_store
from . import maintenance
from .engine import Engine


class KVStoreSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer over ``store`` (a blocking ``KVStore``), or over the store
    ``kvstore.open(url, **open_kwargs)`` opens (closed by :meth:`close`); in its
    ``namespace`` if one is given. ``serde``: LangGraph's serializer (default: its
    ``JsonPlusSerializer``)."""

    def __init__(
        self,
        store: KVStore | None = None,
        *,
        url: str | None = None,
        namespace: str | None = None,
        serde: SerializerProtocol | None = None,
        **open_kwargs: Any,
    ) -> None:
        super().__init__(serde=serde)
        self._root, self.store, self._owned = open_store(
            store, url, namespace, open_kwargs, binary="a checkpointer"
        )
        self._engine = Engine(self.store.aio, self.serde)

    @property
    def _core(self) -> Engine:
        # with_allowlist() clones the saver with another serde: give the clone its engine
        core = self._engine
        if core.serde is not self.serde:
            fresh = Engine(self.store.aio, self.serde)
            fresh.stored = core.stored
            core = self._engine = fresh
        return core

    def get_next_version(self, current: str | int | float | None, channel: None = None) -> str:
        """``{n:032}.{random}``: increasing in ``n``, and unique, so two writers branching
        from one checkpoint never give different values the same version (a blob is
        written once per version and never replaced)."""
        if current is None:
            n = 0
        elif isinstance(current, (int, float)):
            n = int(current)
        else:
            n = int(str(current).split(".", 1)[0])
        return f"{n + 1:032d}.{secrets.token_hex(8)}"

    # -- blocking face -----------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return portal().run(self._core.get_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        run, core = portal().run, self._core
        listing = run(core.list_start(config, filter, before, limit))
        while not listing.done:
            yield from run(core.list_next(listing))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return portal().run(self._core.put(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        portal().run(self._core.put_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        portal().run(self._core.delete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        portal().run(maintenance.delete_for_runs(self._core, run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        portal().run(maintenance.copy_thread(self._core, source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        portal().run(maintenance.prune(self._core, thread_ids, strategy))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return portal().run(self._core.delta_history(config, channels))

    # -- async face (on kvstore's loop, awaited from the caller's) ----------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await portal().arun(self._core.get_tuple(config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        run, core = portal().arun, self._core
        listing = await run(core.list_start(config, filter, before, limit))
        while not listing.done:
            for item in await run(core.list_next(listing)):
                yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await portal().arun(self._core.put(config, checkpoint, metadata, new_versions))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await portal().arun(self._core.put_writes(config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        await portal().arun(self._core.delete_thread(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await portal().arun(maintenance.delete_for_runs(self._core, run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        copy = maintenance.copy_thread(self._core, source_thread_id, target_thread_id)
        await portal().arun(copy)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await portal().arun(maintenance.prune(self._core, thread_ids, strategy))

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await portal().arun(self._core.delta_history(config, channels))

    # -- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the store if this saver opened it."""
        if self._owned:
            self._root.close()

    def __enter__(self) -> KVStoreSaver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> KVStoreSaver:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owned:
            await portal().arun(self._root.aio.close())

    def __repr__(self) -> str:
        return f"<KVStoreSaver {self.store!r}>"
