"""What the ADK tests share with the processes they spawn (module-level, so it pickles):
the scripted agent, a runner over kvstore's services, a blob store that counts round
trips, and the work a second process does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from google.adk.agents.base_agent import BaseAgent
from google.adk.agents.callback_context import CallbackContext
from google.adk.agents.invocation_context import InvocationContext
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.runners import Runner
from google.adk.sessions.session import Session
from google.genai import types

import kvstore
from kvstore.blob import Blob, WrapperBlobStore
from kvstore.integrations.adk import KVStoreArtifactService, KVStoreSessionService

APP = "scripted-app"


class ScriptedAgent(BaseAgent):
    """No LLM: each turn counts itself in the session's state (and the user's, and sets a
    temp: key), saves a session artifact and a user-scoped one through a callback context
    (recorded in the event's artifact_delta), and answers with text and inline bytes."""

    async def _run_async_impl(self, ctx: InvocationContext) -> AsyncGenerator[Event, None]:
        actions = EventActions()
        context = CallbackContext(ctx, event_actions=actions)
        turn = int(context.state.get("turns", 0)) + 1
        context.state["turns"] = turn
        context.state["user:turns_total"] = int(context.state.get("user:turns_total", 0)) + 1
        context.state["app:agent"] = self.name
        context.state["temp:scratch"] = f"only during turn {turn}"
        asked = ""
        if ctx.user_content is not None and ctx.user_content.parts:
            asked = ctx.user_content.parts[0].text or ""
        report = types.Part(text=f"turn {turn}: {asked}")
        await context.save_artifact("report.txt", report, custom_metadata={"turn": turn})
        chart = types.Part.from_bytes(data=bytes([turn]) * 16, mime_type="image/png")
        await context.save_artifact("user:chart.png", chart)
        yield Event(
            invocation_id=ctx.invocation_id,
            author=self.name,
            branch=ctx.branch,
            actions=actions,
            content=types.Content(
                role="model",
                parts=[
                    types.Part(text=f"turn {turn} done"),
                    types.Part.from_bytes(data=b"\x00\x01\xfe\xff", mime_type="application/x-raw"),
                ],
            ),
        )


def runner(store: kvstore.KVStore) -> tuple[Runner, KVStoreSessionService, KVStoreArtifactService]:
    sessions = KVStoreSessionService(store)
    artifacts = KVStoreArtifactService(store)
    run = Runner(
        app_name=APP,
        agent=ScriptedAgent(name="scripted"),
        session_service=sessions,
        artifact_service=artifacts,
    )
    return run, sessions, artifacts


def turn(run: Runner, user: str, session_id: str, text: str) -> list[Event]:
    """One turn through ADK's blocking ``Runner.run`` (its own loop, in a thread)."""
    message = types.Content(role="user", parts=[types.Part(text=text)])
    return list(run.run(user_id=user, session_id=session_id, new_message=message))


def summary(store: kvstore.KVStore, user: str, session_id: str) -> dict[str, Any]:
    """What a reader of the session sees (plain data: it crosses processes)."""
    _, sessions, artifacts = runner(store)

    async def read() -> dict[str, Any]:
        session = await sessions.get_session(app_name=APP, user_id=user, session_id=session_id)
        assert session is not None
        keys = await artifacts.list_artifact_keys(app_name=APP, user_id=user, session_id=session_id)
        report = await artifacts.load_artifact(
            app_name=APP, user_id=user, session_id=session_id, filename="report.txt"
        )
        versions = await artifacts.list_artifact_versions(
            app_name=APP, user_id=user, session_id=session_id, filename="report.txt"
        )
        chart = await artifacts.load_artifact(app_name=APP, user_id=user, filename="user:chart.png")
        return {
            "state": session.state,
            "authors": [e.author for e in session.events],
            "texts": [
                p.text
                for e in session.events
                if e.content
                for p in e.content.parts or []
                if p.text is not None
            ],
            "blobs": [
                p.inline_data.data
                for e in session.events
                if e.content
                for p in e.content.parts or []
                if p.inline_data is not None
            ],
            "artifact_deltas": [e.actions.artifact_delta for e in session.events],
            "keys": keys,
            "report": report.text if report else None,
            "report_versions": [(v.version, v.custom_metadata) for v in versions],
            "chart": chart.inline_data.data if chart and chart.inline_data else None,
        }

    return asyncio.run(read())


def resume_elsewhere(url: str, options: dict[str, Any], user: str, session_id: str) -> dict:
    """In a second process: a new store on the same location reads what the first
    process's runner stored, runs one more turn, and reports both."""
    with kvstore.open(url, storage_options=options or None) as store:
        before = summary(store, user, session_id)
        run, _, _ = runner(store)
        events = turn(run, user, session_id, "and again, from another process")
        after = summary(store, user, session_id)
    return {"before": before, "turn": [e.author for e in events], "after": after}


def append_from_process(
    url: str, options: dict[str, Any], user: str, session_id: str, tag: str, barrier: Any
) -> str:
    """Read the session, wait for the other process, append one event: "won" or the
    error's type and message."""
    with kvstore.open(url, storage_options=options or None) as store:
        sessions = KVStoreSessionService(store)

        async def go() -> str:
            session = await sessions.get_session(app_name=APP, user_id=user, session_id=session_id)
            assert session is not None
            barrier.wait(timeout=60)
            event = Event(author=tag, invocation_id=f"inv-{tag}")
            event.actions.state_delta["writer"] = tag
            try:
                await sessions.append_event(session, event)
            except ValueError as exc:
                return f"{type(exc).__name__}: {exc}"
            return "won"

        return asyncio.run(go())


def new_session(store: kvstore.KVStore, user: str, session_id: str) -> Session:
    sessions = KVStoreSessionService(store)
    return asyncio.run(sessions.create_session(app_name=APP, user_id=user, session_id=session_id))


class RoundTrips(WrapperBlobStore):
    """Passes every request through and counts round trips: the times the number of
    requests in flight rises from none (requests made concurrently are one round trip)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.in_flight = 0
        self.round_trips = 0
        self.sent = 0  # bytes of every write attempted (a refused conditional one too)

    def _start(self) -> bool:
        """One more request in flight; True if it starts a round trip."""
        self.in_flight += 1
        if self.in_flight == 1:
            self.round_trips += 1
            return True
        return False

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        self._start()
        try:
            return await self.inner._get(path, head)
        finally:
            self.in_flight -= 1

    async def _get_range(self, path: str, start: int, size: int) -> Blob | None:
        self._start()
        try:
            return await self.inner._get_range(path, start, size)
        finally:
            self.in_flight -= 1

    async def _put(self, path: str, data: bytes) -> str:
        self.sent += len(data)
        self._start()
        try:
            return await self.inner._put(path, data)
        finally:
            self.in_flight -= 1

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        self.sent += len(data)
        self._start()
        try:
            return await self.inner._put_if_absent(path, data)
        finally:
            self.in_flight -= 1

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        self.sent += len(data)
        self._start()
        try:
            return await self.inner._put_if_match(path, data, tag)
        finally:
            self.in_flight -= 1

    async def _delete_many(self, paths: Sequence[str]) -> None:
        self._start()
        try:
            await self.inner._delete_many(paths)
        finally:
            self.in_flight -= 1

    def _list(self, prefix: str) -> AsyncIterator[list[str]]:
        return self._pages(self.inner._list(prefix))

    def _list_after(
        self, prefix: str, start_after: str | None, page_size: int | None
    ) -> AsyncIterator[list[str]]:
        return self._pages(self.inner._list_after(prefix, start_after, page_size))

    async def _pages(self, pages: AsyncIterator[list[str]]) -> AsyncIterator[list[str]]:
        while True:
            started = self._start()
            try:
                page = await anext(pages, None)
            finally:
                self.in_flight -= 1
            if page is None:  # the end of the listing, known from the last page: no request
                if started:
                    self.round_trips -= 1
                return
            yield page
