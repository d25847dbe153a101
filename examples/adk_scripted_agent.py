"""A Google ADK agent whose sessions and artifacts live in kvstore, resumed by a second
process.

Run it (offline, no servers and no LLM; needs ``pip install 'kvstore[adk]'``):

    python examples/adk_scripted_agent.py

A scripted agent (an ADK ``BaseAgent`` that needs no model) runs two turns through ADK's
``Runner`` with ``KVStoreSessionService`` and ``KVStoreArtifactService`` on a local
directory: each turn updates the session's state (and the user's, and the app's), saves
a report artifact for the session and a chart for the user. Then a SECOND process opens
the same directory, finds the state, the events and the artifacts, and runs a third turn.
The directory is a fresh temporary one (removed at the end), or ``KVSTORE_URL`` if set -
any kvstore URL works the same (``s3://bucket/prefix``, ``gs://...``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncGenerator

from google.adk.agents.base_agent import BaseAgent
from google.adk.agents.callback_context import CallbackContext
from google.adk.agents.invocation_context import InvocationContext
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.runners import Runner
from google.genai import types

import kvstore
from kvstore.integrations.adk import KVStoreArtifactService, KVStoreSessionService

APP, USER, SESSION = "report-bot", "ann", "weekly"


class ScriptedAgent(BaseAgent):
    """Counts the turns in the state and saves an artifact each turn - no model call."""

    async def _run_async_impl(self, ctx: InvocationContext) -> AsyncGenerator[Event, None]:
        actions = EventActions()  # what this turn changes: state and artifact deltas
        context = CallbackContext(ctx, event_actions=actions)
        turn = int(context.state.get("turns", 0)) + 1
        context.state["turns"] = turn  # the session's
        context.state["user:reports"] = int(context.state.get("user:reports", 0)) + 1
        context.state["app:version"] = "1.0"
        context.state["temp:draft"] = "never stored"
        question = ""
        if ctx.user_content is not None and ctx.user_content.parts:
            question = ctx.user_content.parts[0].text or ""
        report = types.Part(text=f"report {turn}: {question}")
        await context.save_artifact("report.md", report, custom_metadata={"turn": turn})
        chart = types.Part.from_bytes(data=bytes([turn]) * 8, mime_type="image/png")
        await context.save_artifact("user:chart.png", chart)
        answer = types.Content(role="model", parts=[types.Part(text=f"wrote report {turn}")])
        yield Event(
            invocation_id=ctx.invocation_id, author=self.name, actions=actions, content=answer
        )


def ask(store: kvstore.KVStore, question: str) -> None:
    runner = Runner(
        app_name=APP,
        agent=ScriptedAgent(name="reporter"),
        session_service=KVStoreSessionService(store),
        artifact_service=KVStoreArtifactService(store),
    )
    message = types.Content(role="user", parts=[types.Part(text=question)])
    for event in runner.run(user_id=USER, session_id=SESSION, new_message=message):
        if event.content and event.content.parts:
            print(f"{event.author}: {event.content.parts[0].text}")


def show(store: kvstore.KVStore) -> None:
    sessions, artifacts = KVStoreSessionService(store), KVStoreArtifactService(store)

    async def read() -> None:
        session = await sessions.get_session(app_name=APP, user_id=USER, session_id=SESSION)
        assert session is not None
        print("state:", dict(sorted(session.state.items())))
        print("events:", [e.author for e in session.events])
        where = {"app_name": APP, "user_id": USER, "session_id": SESSION}
        print("artifacts:", await artifacts.list_artifact_keys(**where))
        report = await artifacts.load_artifact(**where, filename="report.md")
        print("latest report:", report.text if report else None)
        versions = await artifacts.list_artifact_versions(**where, filename="report.md")
        print("report versions:", [(v.version, v.custom_metadata) for v in versions])

    asyncio.run(read())


def first_process(url: str) -> None:
    with kvstore.open(url) as store:
        create = KVStoreSessionService(store).create_session(
            app_name=APP, user_id=USER, session_id=SESSION
        )
        asyncio.run(create)
        ask(store, "sales")
        ask(store, "costs")
    print("-- a second process resumes the session")
    sys.stdout.flush()
    subprocess.run([sys.executable, __file__, "--resume", url], check=True)


def second_process(url: str) -> None:
    with kvstore.open(url) as store:
        show(store)
        ask(store, "and the margin")
        show(store)


def main() -> None:
    if sys.argv[1:2] == ["--resume"]:
        second_process(sys.argv[2])
        return
    url = os.environ.get("KVSTORE_URL")
    if url:
        first_process(url)
        return
    with tempfile.TemporaryDirectory(prefix="kvstore-adk-") as directory:
        first_process(directory)


if __name__ == "__main__":
    main()
