"""Google ADK's services on kvstore (:mod:`kvstore.integrations.adk`): the project's own
contract tests, written from ADK 2.13's interfaces (``BaseArtifactService``,
``BaseSessionService``) and its documented behaviour - ADK publishes no test suite - on
memory, local disk and a real S3 server (SeaweedFS). Where ADK's in-process services
define a behaviour (missing things, refused input, state scopes), the same calls run on
``InMemoryArtifactService``/``InMemorySessionService`` and on kvstore's, and must agree."""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import os
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import adk_helpers
import pytest
from adk_helpers import APP, RoundTrips
from conftest import Target
from google.adk.artifacts.in_memory_artifact_service import InMemoryArtifactService
from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.input_validation_error import InputValidationError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import GetSessionConfig
from google.adk.sessions.in_memory_session_service import InMemorySessionService
from google.adk.sessions.session import Session
from google.genai import types

import kvstore
from kvstore.integrations.adk import KVStoreArtifactService, KVStoreSessionService
from kvstore.integrations.adk.sessions import STALE_MESSAGE
from kvstore.stats import Stats
from kvstore.testing import request_delta, run_in_processes

BACKENDS = ["memory", "local", "seaweedfs"]
SHARED = ["local", "seaweedfs"]  # seen by a second process (memory:// is per process)


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, make_target: Callable[[str], Target]) -> Target:
    return make_target(request.param)


@pytest.fixture
def store(target: Target) -> Iterator[kvstore.KVStore]:
    with target.open(cache=kvstore.LocalCache()) as opened:
        yield opened


@pytest.fixture
def artifacts(store: kvstore.KVStore) -> KVStoreArtifactService:
    return KVStoreArtifactService(store)


@pytest.fixture
def sessions(store: kvstore.KVStore) -> KVStoreSessionService:
    return KVStoreSessionService(store)


def adk_stale_message() -> str:
    """DatabaseSessionService's message for a stale append, read from ADK's source (the
    module needs SQLAlchemy to import, which the frameworks env does not install)."""
    spec = importlib.util.find_spec("google.adk.sessions.database_session_service")
    assert spec is not None and spec.origin is not None
    with open(spec.origin, encoding="utf-8") as source:
        tree = ast.parse(source.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_STALE_SESSION_ERROR_MESSAGE" for t in node.targets
        ):
            return str(ast.literal_eval(node.value))
    raise AssertionError("ADK's stale-session message not found")


def text(value: str) -> types.Part:
    return types.Part(text=value)


def blob(data: bytes, mime: str = "image/png") -> types.Part:
    return types.Part.from_bytes(data=data, mime_type=mime)


# -- artifacts ---------------------------------------------------------------------------------


async def test_every_artifact_method_in_session_and_user_scope(
    artifacts: KVStoreArtifactService,
) -> None:
    a = {"app_name": APP, "user_id": "u1"}
    assert (
        await artifacts.save_artifact(
            **a, session_id="s1", filename="notes.txt", artifact=text("v0")
        )
        == 0
    )
    assert (
        await artifacts.save_artifact(
            **a,
            session_id="s1",
            filename="notes.txt",
            artifact=text("v1"),
            custom_metadata={"source": "test", "n": [1, 2]},
        )
        == 1
    )
    image = types.Part(
        inline_data=types.Blob(data=b"\x89PNG\x00\xff", mime_type="image/png", display_name="c")
    )
    assert (
        await artifacts.save_artifact(
            **a, session_id="s1", filename="img/chart.png", artifact=image
        )
        == 0
    )
    # user-scoped: the "user:" prefix, any session (or none)
    assert (
        await artifacts.save_artifact(
            **a,
            session_id="s1",
            filename="user:profile.json",
            artifact=blob(b"{}", "application/json"),
        )
        == 0
    )
    assert (
        await artifacts.save_artifact(
            **a, filename="user:profile.json", artifact=blob(b'{"a":1}', "application/json")
        )
        == 1
    )
    link = types.Part(
        file_data=types.FileData(file_uri="gs://b/o.pdf", mime_type="application/pdf")
    )
    assert (
        await artifacts.save_artifact(**a, session_id="s1", filename="doc.pdf", artifact=link) == 0
    )

    load = artifacts.load_artifact
    assert await load(**a, session_id="s1", filename="notes.txt") == text("v1")
    assert await load(**a, session_id="s1", filename="notes.txt", version=0) == text("v0")
    assert await load(**a, session_id="s1", filename="img/chart.png") == image
    assert await load(**a, session_id="s1", filename="doc.pdf") == link
    assert await load(**a, filename="user:profile.json") == blob(b'{"a":1}', "application/json")
    assert await load(**a, session_id="s2", filename="user:profile.json", version=0) == blob(
        b"{}", "application/json"
    )
    assert await load(**a, session_id="s2", filename="notes.txt") is None  # another session

    keys = ["doc.pdf", "img/chart.png", "notes.txt", "user:profile.json"]
    assert await artifacts.list_artifact_keys(**a, session_id="s1") == keys
    assert await artifacts.list_artifact_keys(**a, session_id="s2") == ["user:profile.json"]
    assert await artifacts.list_artifact_keys(**a) == ["user:profile.json"]
    assert await artifacts.list_artifact_keys(app_name=APP, user_id="u2", session_id="s1") == []

    assert await artifacts.list_versions(**a, session_id="s1", filename="notes.txt") == [0, 1]
    assert await artifacts.list_versions(**a, filename="user:profile.json") == [0, 1]
    infos = await artifacts.list_artifact_versions(**a, session_id="s1", filename="notes.txt")
    assert [(i.version, i.mime_type, i.custom_metadata) for i in infos] == [
        (0, "text/plain", {}),
        (1, "text/plain", {"source": "test", "n": [1, 2]}),
    ]
    assert infos[0].create_time <= infos[1].create_time
    latest = await artifacts.get_artifact_version(**a, session_id="s1", filename="notes.txt")
    assert latest is not None and latest.version == 1
    assert latest.custom_metadata == {"source": "test", "n": [1, 2]}
    first = await artifacts.get_artifact_version(
        **a, session_id="s1", filename="notes.txt", version=0
    )
    assert first is not None and first.custom_metadata == {}
    pdf = await artifacts.get_artifact_version(**a, session_id="s1", filename="doc.pdf")
    assert pdf is not None and pdf.mime_type == "application/pdf"

    # the canonical URI is ADK's artifact:// reference: saved as file_data, it loads the data
    ref = types.Part(file_data=types.FileData(file_uri=first.canonical_uri))
    await artifacts.save_artifact(**a, session_id="s1", filename="alias.txt", artifact=ref)
    assert await load(**a, session_id="s1", filename="alias.txt") == text("v0")

    assert await artifacts.delete_artifact(**a, session_id="s1", filename="notes.txt") is None
    assert await load(**a, session_id="s1", filename="notes.txt") is None
    assert await artifacts.list_versions(**a, session_id="s1", filename="notes.txt") == []
    assert "notes.txt" not in await artifacts.list_artifact_keys(**a, session_id="s1")
    await artifacts.delete_artifact(**a, filename="user:profile.json")
    assert await artifacts.list_artifact_keys(**a) == []


async def test_references_rewinds_and_nested_names(artifacts: KVStoreArtifactService) -> None:
    a = {"app_name": APP, "user_id": "u", "session_id": "s"}
    await artifacts.save_artifact(**a, filename="a", artifact=text("A"))
    await artifacts.save_artifact(**a, filename="a/b", artifact=text("AB"))
    assert await artifacts.list_versions(**a, filename="a") == [0]  # not a/b's
    assert await artifacts.list_artifact_keys(**a) == ["a", "a/b"]
    # a rewind saves an empty octet-stream blob: it loads as absent, versions stay
    tomb = types.Part(inline_data=types.Blob(mime_type="application/octet-stream", data=b""))
    assert await artifacts.save_artifact(**a, filename="a", artifact=tomb) == 1
    assert await artifacts.load_artifact(**a, filename="a") is None
    assert await artifacts.load_artifact(**a, filename="a", version=0) == text("A")
    # references out of the user's scope are refused; a cycle ends in a clear error
    foreign = "artifact://apps/other/users/u/sessions/s/artifacts/a/versions/0"
    with pytest.raises(InputValidationError, match="same app and user"):
        await artifacts.save_artifact(
            **a, filename="r", artifact=types.Part(file_data=types.FileData(file_uri=foreign))
        )
    me = "artifact://apps/scripted-app/users/u/sessions/s/artifacts/loop/versions/0"
    await artifacts.save_artifact(
        **a, filename="loop", artifact=types.Part(file_data=types.FileData(file_uri=me))
    )
    with pytest.raises(InputValidationError, match="maximum recursion depth"):
        await artifacts.load_artifact(**a, filename="loop")


async def _outcome(call: Awaitable[Any]) -> Any:
    """A call's result, or its error's type (what the differential test compares)."""
    try:
        result = await call
    except Exception as exc:
        return ("error", type(exc).__name__)
    if isinstance(result, list):
        return [_plain(r) for r in result]
    return _plain(result)


def _plain(value: Any) -> Any:
    """An ArtifactVersion without what differs by design (the URI, the time)."""
    if hasattr(value, "canonical_uri"):
        return (value.version, value.mime_type, value.custom_metadata)
    return value


async def test_artifacts_behave_as_adks_in_memory_service(
    artifacts: KVStoreArtifactService,
) -> None:
    ours, theirs = artifacts, InMemoryArtifactService()
    scenario: list[tuple[str, dict[str, Any]]] = [
        ("load_artifact", {"filename": "none.txt", "session_id": "s"}),
        ("list_versions", {"filename": "none.txt", "session_id": "s"}),
        ("list_artifact_versions", {"filename": "none.txt", "session_id": "s"}),
        ("get_artifact_version", {"filename": "none.txt", "session_id": "s"}),
        ("delete_artifact", {"filename": "none.txt", "session_id": "s"}),
        ("list_artifact_keys", {"session_id": "s"}),
        ("save_artifact", {"filename": "f.txt", "session_id": "s", "artifact": text("x")}),
        (
            "save_artifact",
            {
                "filename": "f.txt",
                "session_id": "s",
                "artifact": {"inlineData": {"data": "AAE=", "mimeType": "a/b"}},
                "custom_metadata": {"k": "v"},
            },
        ),
        ("save_artifact", {"filename": "f.txt", "artifact": text("no session")}),
        ("save_artifact", {"filename": "g", "session_id": "s", "artifact": types.Part()}),
        ("save_artifact", {"filename": "f.txt", "session_id": "../s", "artifact": text("x")}),
        ("load_artifact", {"filename": "f.txt", "session_id": "s"}),
        ("load_artifact", {"filename": "f.txt", "session_id": "s", "version": 0}),
        ("load_artifact", {"filename": "f.txt", "session_id": "s", "version": 7}),
        ("load_artifact", {"filename": "f.txt", "session_id": "s", "version": -1}),
        ("load_artifact", {"filename": "f.txt"}),
        ("get_artifact_version", {"filename": "f.txt", "session_id": "s", "version": 1}),
        ("get_artifact_version", {"filename": "f.txt", "session_id": "s", "version": 9}),
        ("list_artifact_versions", {"filename": "f.txt", "session_id": "s"}),
        ("list_versions", {"filename": "f.txt", "session_id": "s"}),
        ("list_artifact_keys", {"session_id": "s"}),
        ("list_artifact_keys", {"session_id": "other"}),
        ("list_artifact_keys", {"session_id": "/abs"}),
        ("delete_artifact", {"filename": "f.txt", "session_id": "s"}),
        ("load_artifact", {"filename": "f.txt", "session_id": "s"}),
        ("list_versions", {"filename": "f.txt", "session_id": "s"}),
    ]
    for method, kwargs in scenario:
        call = {"app_name": APP, "user_id": "u", **kwargs}
        mine = await _outcome(getattr(ours, method)(**call))
        adks = await _outcome(getattr(theirs, method)(**call))
        assert mine == adks, (method, kwargs, mine, adks)


async def test_a_deleted_artifact_keeps_counting_versions(
    artifacts: KVStoreArtifactService,
) -> None:
    """The one deviation from ADK's services: a version number is never reused, so a
    save after delete_artifact continues the numbering (ADK's restart at 0)."""
    a = {"app_name": APP, "user_id": "u", "session_id": "s", "filename": "f"}
    await artifacts.save_artifact(**a, artifact=text("x"))
    await artifacts.save_artifact(**a, artifact=text("y"))
    await artifacts.delete_artifact(**a)
    assert await artifacts.save_artifact(**a, artifact=text("z")) == 2
    assert await artifacts.list_versions(**a) == [2]
    assert await artifacts.load_artifact(**a) == text("z")


async def test_bad_artifact_input_is_refused_and_nothing_is_written(
    artifacts: KVStoreArtifactService, store: kvstore.KVStore
) -> None:
    a = {"app_name": APP, "user_id": "u", "session_id": "s"}
    with pytest.raises(TypeError, match="metadata"):
        await artifacts.save_artifact(
            **a, filename="f", artifact=text("x"), custom_metadata={"when": object()}
        )
    with pytest.raises(InputValidationError, match="custom_metadata must be a dict"):
        await artifacts.save_artifact(**a, filename="f", artifact=text("x"), custom_metadata=["no"])  # type: ignore[arg-type]
    with pytest.raises(InputValidationError, match="filename"):
        await artifacts.save_artifact(**a, filename="", artifact=text("x"))
    with pytest.raises(InputValidationError, match="user_id"):
        await artifacts.save_artifact(
            app_name=APP, user_id="", session_id="s", filename="f", artifact=text("x")
        )
    with pytest.raises(kvstore.InvalidKeyError):
        await artifacts.save_artifact(**a, filename="x" * 2000, artifact=text("x"))
    # (ADK's in-memory service keeps such a part; its GCS service refuses it, as kvstore's)
    with pytest.raises(InputValidationError, match="must contain data"):
        await artifacts.save_artifact(
            **a, filename="f", artifact=types.Part(inline_data=types.Blob(mime_type="a/b"))
        )
    with pytest.raises(InputValidationError, match="version must be an int"):
        await artifacts.load_artifact(**a, filename="f", version="1")  # type: ignore[arg-type]
    assert store.artifacts.list() == []


async def test_a_session_or_user_deleted_takes_its_artifacts(
    store: kvstore.KVStore,
    artifacts: KVStoreArtifactService,
    sessions: KVStoreSessionService,
) -> None:
    a = {"app_name": APP, "user_id": "u"}
    for sid in ("s1", "s2"):
        await sessions.create_session(**a, session_id=sid)
        await artifacts.save_artifact(**a, session_id=sid, filename="f", artifact=text(sid))
    await artifacts.save_artifact(**a, filename="user:mine", artifact=text("u"))
    await sessions.delete_session(**a, session_id="s1")
    assert await artifacts.load_artifact(**a, session_id="s1", filename="f") is None
    assert await artifacts.list_artifact_keys(**a, session_id="s2") == ["f", "user:mine"]
    assert store.sessions.delete_user(APP, "u") == 1
    assert await artifacts.list_artifact_keys(**a, session_id="s2") == []
    assert store.artifacts.list() == []


async def test_version_listing_downloads_no_data(target: Target) -> None:
    size = 200 << 10
    with target.open(cache=kvstore.LocalCache()) as writer:
        service = KVStoreArtifactService(writer)
        a = {"app_name": APP, "user_id": "u", "session_id": "s", "filename": "big.bin"}
        for i in range(10):
            data = bytes([i]) * size
            await service.save_artifact(
                **a, artifact=blob(data, "application/x-data"), custom_metadata={"i": i}
            )
    with target.open(cache=kvstore.LocalCache()) as reader:  # cold
        service = KVStoreArtifactService(reader)
        with request_delta(reader, prefix="") as spent:
            infos = await service.list_artifact_versions(**a)
        assert [(i.version, i.custom_metadata) for i in infos] == [(i, {"i": i}) for i in range(10)]
        assert spent.get("bytes_read", 0) < 10 * 4096, spent  # the manifests' heads only
        assert spent.get("requests.list", 0) == 1, spent
        with request_delta(reader, prefix="") as one:
            got = await service.get_artifact_version(**a, version=3)
        assert got is not None and got.custom_metadata == {"i": 3}
        assert one.get("bytes_read", 0) < 4096, one
        assert one.get("requests.list", 0) == 0, one  # (cached: the manifest's info)
        assert await service.list_versions(**a) == list(range(10))


async def test_concurrent_saves_get_distinct_versions_and_send_each_byte_once(
    target: Target,
) -> None:
    """8 savers, each with its own store (as 8 processes would), save different bytes at
    once: 8 versions, each loading its own bytes; the data crosses the wire once per save
    (the raw object), whatever races for version numbers were lost (manifests only).
    Bytes sent are counted below the store: every write's body, refused ones included."""
    size = 256 << 10
    counted = [_counted(target) for _ in range(8)]
    stores, blobs = [s for s, _ in counted], [b for _, b in counted]
    try:
        services = [KVStoreArtifactService(s) for s in stores]
        a = {"app_name": APP, "user_id": "u", "session_id": "s", "filename": "out.bin"}
        datas = [os.urandom(size) for _ in range(8)]
        before = [s.stats() for s in stores]
        sent_before = [b.sent for b in blobs]
        versions = await asyncio.gather(
            *(
                svc.save_artifact(**a, artifact=blob(d, "application/x-data"))
                for svc, d in zip(services, datas, strict=True)
            )
        )
        assert sorted(versions) == list(range(8))
        for v, d in zip(versions, datas, strict=True):
            got = await services[0].load_artifact(**a, version=v)
            assert got is not None and got.inline_data is not None and got.inline_data.data == d

        def spent(name: str) -> int:
            return sum(
                s.stats().get(name, 0) - b.get(name, 0) for s, b in zip(stores, before, strict=True)
            )

        sent = sum(b.sent - was for b, was in zip(blobs, sent_before, strict=True))
        assert spent("requests.put") == 8  # one PUT of each save's data
        claims = spent("requests.put_if_absent")  # manifests: one per attempt, < 4 KiB each
        assert 8 * size < sent < 8 * size + claims * 4096, (sent, claims)
        # A lost race, made certain: a saver that learned version 8 was next finds it
        # taken; it sends its manifest again - not its data.
        await services[1].save_artifact(**a, artifact=blob(os.urandom(size), "a/b"))
        was = blobs[0].sent
        with request_delta(stores[0], prefix="") as one:
            v = await services[0].save_artifact(**a, artifact=blob(os.urandom(size), "a/b"))
        conflicts = one.get("artifacts.claim_conflicts", 0)
        assert v == 9 and conflicts >= 1, one  # it knew its own version (< 8): 8 was taken
        assert one["requests.put"] == 1, one
        assert size < blobs[0].sent - was < size + (1 + conflicts) * 4096, one
    finally:
        for s in stores:
            s.close()


# -- sessions ----------------------------------------------------------------------------------


def _paragraph(seed: int) -> str:
    """About 400 characters of text that compresses as prose does, not better."""
    rng = random.Random(seed)
    words = ["the", "agent", "weather", "report", "shows", "a", "tool", "call", "for", "user"]
    return " ".join(rng.choice(words) + str(rng.randrange(1000)) for _ in range(55))


def _event(author: str, delta: dict[str, Any] | None = None, **fields: Any) -> Event:
    return Event(
        invocation_id=fields.pop("invocation_id", "inv-1"),
        author=author,
        actions=EventActions(state_delta=dict(delta or {})),
        **fields,
    )


async def test_sessions_create_get_list_delete(sessions: KVStoreSessionService) -> None:
    created = await sessions.create_session(
        app_name=APP,
        user_id="u1",
        session_id="s1",
        state={"topic": "billing", "app:model": "m1", "user:name": "Ann", "temp:x": 1},
    )
    assert created.id == "s1" and created.events == []
    assert created.state == {"topic": "billing", "app:model": "m1", "user:name": "Ann"}
    generated = await sessions.create_session(app_name=APP, user_id="u1")
    assert generated.id and generated.id != "s1"
    with pytest.raises(AlreadyExistsError):
        await sessions.create_session(app_name=APP, user_id="u1", session_id="s1")
    other = await sessions.create_session(app_name=APP, user_id="u2", session_id="s1")
    assert other.state == {"app:model": "m1"}  # the app's state, not u1's

    got = await sessions.get_session(app_name=APP, user_id="u1", session_id="s1")
    assert got is not None and got.state == created.state
    assert got.last_update_time == pytest.approx(created.last_update_time)
    assert await sessions.get_session(app_name=APP, user_id="u1", session_id="nope") is None
    assert await sessions.get_session(app_name="other", user_id="u1", session_id="s1") is None

    mine = (await sessions.list_sessions(app_name=APP, user_id="u1")).sessions
    assert sorted(s.id for s in mine) == sorted(["s1", generated.id])
    assert all(s.events == [] and s.state["user:name"] == "Ann" for s in mine)
    every = (await sessions.list_sessions(app_name=APP)).sessions
    assert sorted((s.user_id, s.id) for s in every) == sorted(
        [("u1", "s1"), ("u1", generated.id), ("u2", "s1")]
    )
    assert every == sorted(every, key=lambda s: (s.last_update_time, s.user_id, s.id))
    assert (await sessions.list_sessions(app_name=APP, user_id="nobody")).sessions == []
    assert await sessions.get_user_state(app_name=APP, user_id="u1") == {"name": "Ann"}
    assert await sessions.get_user_state(app_name=APP, user_id="nobody") == {}

    assert await sessions.delete_session(app_name=APP, user_id="u1", session_id="s1") is None
    assert await sessions.get_session(app_name=APP, user_id="u1", session_id="s1") is None
    await sessions.delete_session(app_name=APP, user_id="u1", session_id="s1")  # no error
    assert await sessions.get_session(app_name=APP, user_id="u2", session_id="s1") is not None


async def test_events_round_trip_everything_adk_stores(sessions: KVStoreSessionService) -> None:
    session = await sessions.create_session(app_name=APP, user_id="u", session_id="s")
    call = types.FunctionCall(id="fc-1", name="lookup", args={"q": "x", "n": 2})
    events = [
        _event("user", content=types.Content(role="user", parts=[types.Part(text="hi")])),
        _event(
            "agent",
            {"count": 1, "user:seen": True, "app:v": [1, {"a": None}], "temp:t": "gone"},
            invocation_id="inv-2",
            branch="root.agent",
            content=types.Content(
                role="model",
                parts=[
                    types.Part(text="see", thought=True, thought_signature=b"\x01\xff"),
                    types.Part.from_bytes(data=bytes(range(256)), mime_type="image/png"),
                    types.Part(function_call=call),
                ],
            ),
            long_running_tool_ids={"fc-1", "fc-0"},
            custom_metadata={"k": [1, 2]},
        ),
    ]
    events[1].actions.artifact_delta["report.txt"] = 3
    events[1].actions.transfer_to_agent = "other"
    events[1].actions.escalate = True
    for event in events:
        returned = await sessions.append_event(session, event)
        assert returned is event
    assert "temp:t" not in events[1].actions.state_delta  # trimmed, as ADK's base does
    assert session.state["temp:t"] == "gone"  # ... and kept in the caller's session
    assert session.events == events
    got = await sessions.get_session(app_name=APP, user_id="u", session_id="s")
    assert got is not None
    assert [e.model_dump() for e in got.events] == [e.model_dump() for e in events]
    assert got.events == events
    assert got.state == {"count": 1, "user:seen": True, "app:v": [1, {"a": None}]}
    assert got.last_update_time == pytest.approx(session.last_update_time)
    # a partial (streaming) event is not stored, as ADK's services
    partial = _event("agent", {"count": 99}, partial=True)
    assert await sessions.append_event(session, partial) is partial
    again = await sessions.get_session(app_name=APP, user_id="u", session_id="s")
    assert again is not None and len(again.events) == 2 and again.state["count"] == 1


async def test_state_scopes_across_sessions_and_users(sessions: KVStoreSessionService) -> None:
    s1 = await sessions.create_session(app_name=APP, user_id="ann", session_id="s1")
    await sessions.append_event(
        s1, _event("a", {"k": 1, "user:lang": "fr", "app:ver": 2, "temp:tmp": 3})
    )
    s2 = await sessions.create_session(app_name=APP, user_id="ann", session_id="s2")
    assert s2.state == {"user:lang": "fr", "app:ver": 2}
    bob = await sessions.create_session(app_name=APP, user_id="bob", session_id="s1")
    assert bob.state == {"app:ver": 2}
    await sessions.append_event(bob, _event("b", {"app:ver": 3, "user:lang": "de"}))
    got = await sessions.get_session(app_name=APP, user_id="ann", session_id="s1")
    assert got is not None and got.state == {"k": 1, "user:lang": "fr", "app:ver": 3}
    assert got.events[0].actions.state_delta == {"k": 1, "user:lang": "fr", "app:ver": 2}
    other_app = await sessions.create_session(app_name="other", user_id="ann")
    assert other_app.state == {}


async def test_get_session_config(sessions: KVStoreSessionService) -> None:
    session = await sessions.create_session(app_name=APP, user_id="u", session_id="s")
    for i in range(6):
        await sessions.append_event(session, _event(f"a{i}", {"i": i}, timestamp=1000.0 + i))
    get = sessions.get_session
    last = 5

    async def authors(config: GetSessionConfig | None) -> list[str]:
        got = await get(app_name=APP, user_id="u", session_id="s", config=config)
        assert got is not None and got.state["i"] == last
        return [e.author for e in got.events]

    assert await authors(None) == [f"a{i}" for i in range(6)]
    assert await authors(GetSessionConfig(num_recent_events=2)) == ["a4", "a5"]
    assert await authors(GetSessionConfig(num_recent_events=0)) == []
    assert await authors(GetSessionConfig(num_recent_events=99)) == [f"a{i}" for i in range(6)]
    assert await authors(GetSessionConfig(after_timestamp=1003.0)) == ["a3", "a4", "a5"]
    assert await authors(GetSessionConfig(after_timestamp=1003.0, num_recent_events=2)) == [
        "a4",
        "a5",
    ]
    assert await authors(GetSessionConfig(after_timestamp=2000.0)) == []
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        GetSessionConfig(num_recent_events=-1)
    # a session read with few events still appends after the last stored one
    few = await get(
        app_name=APP, user_id="u", session_id="s", config=GetSessionConfig(num_recent_events=1)
    )
    assert few is not None
    await sessions.append_event(few, _event("a6", {"i": 6}))
    last = 6
    assert await authors(GetSessionConfig(num_recent_events=1)) == ["a6"]


async def test_sessions_behave_as_adks_in_memory_service(
    sessions: KVStoreSessionService,
) -> None:
    async def script(service: Any) -> list[Any]:
        out: list[Any] = []
        s = await service.create_session(
            app_name=APP,
            user_id="u",
            session_id="s",
            state={"a": 1, "user:b": 2, "app:c": 3, "temp:d": 4},
        )
        out.append(s.state)
        t = await service.create_session(app_name=APP, user_id="v", session_id="t")
        out.append(t.state)
        ev = _event("x", {"a": 5, "user:b": 6, "temp:e": 7}, id="e1", timestamp=5.0)
        await service.append_event(s, ev)
        out.append((dict(s.state), [e.id for e in s.events], ev.actions.state_delta))
        got = await service.get_session(app_name=APP, user_id="u", session_id="s")
        out.append((got.state, [(e.id, e.author, e.actions.state_delta) for e in got.events]))
        out.append(await service.get_session(app_name=APP, user_id="u", session_id="zz"))
        listed = await service.list_sessions(app_name=APP)
        out.append(
            sorted(
                (x.user_id, x.id, tuple(sorted(x.state)), len(x.events)) for x in listed.sessions
            )
        )
        listed = await service.list_sessions(app_name=APP, user_id="u")
        out.append([(x.id, x.state) for x in listed.sessions])
        out.append((await service.list_sessions(app_name="nope")).sessions)
        out.append(await service.get_user_state(app_name=APP, user_id="u"))
        try:
            await service.create_session(app_name=APP, user_id="u", session_id="s")
        except Exception as exc:
            out.append(type(exc).__name__)
        ghost = Session(app_name=APP, user_id="u", id="ghost")
        try:
            await service.append_event(ghost, _event("x"))
        except Exception as exc:
            out.append(type(exc).__name__)
        await service.delete_session(app_name=APP, user_id="u", session_id="s")
        await service.delete_session(app_name=APP, user_id="u", session_id="s")
        out.append(await service.get_session(app_name=APP, user_id="u", session_id="s"))
        out.append(await service.get_user_state(app_name=APP, user_id="u"))
        return out

    assert await script(sessions) == await script(InMemorySessionService())


async def test_a_stale_session_is_refused_and_nothing_is_written(
    sessions: KVStoreSessionService,
) -> None:
    await sessions.create_session(app_name=APP, user_id="u", session_id="s")
    key = {"app_name": APP, "user_id": "u", "session_id": "s"}
    first = await sessions.get_session(**key)
    second = await sessions.get_session(**key)
    assert first is not None and second is not None
    await sessions.append_event(first, _event("first", {"who": "first"}))
    with pytest.raises(StaleSessionError) as refused:
        await sessions.append_event(second, _event("second", {"who": "second", "user:x": 1}))
    assert isinstance(refused.value, ValueError)
    assert str(refused.value) == STALE_MESSAGE == adk_stale_message()
    got = await sessions.get_session(**key)
    assert got is not None and [e.author for e in got.events] == ["first"]
    assert got.state == {"who": "first"}
    assert second.events == []  # the refused event is not in the caller's session either
    # the winner goes on; the loser reloads and goes on
    await sessions.append_event(first, _event("first-again"))
    with pytest.raises(StaleSessionError):
        await sessions.append_event(got, _event("late"))
    fresh = await sessions.get_session(**key)
    assert fresh is not None
    await sessions.append_event(fresh, _event("reloaded"))
    final = await sessions.get_session(**key)
    assert final is not None
    assert [e.author for e in final.events] == ["first", "first-again", "reloaded"]


async def test_racing_appends_to_one_session_have_one_winner(
    sessions: KVStoreSessionService,
) -> None:
    await sessions.create_session(app_name=APP, user_id="u", session_id="s")
    key = {"app_name": APP, "user_id": "u", "session_id": "s"}
    copies = [await sessions.get_session(**key) for _ in range(6)]

    async def append(i: int) -> str:
        session = copies[i]
        assert session is not None
        try:
            await sessions.append_event(session, _event(f"w{i}", {"w": i}))
        except StaleSessionError:
            return "stale"
        return "won"

    outcomes = await asyncio.gather(*(append(i) for i in range(6)))
    assert sorted(outcomes) == ["stale"] * 5 + ["won"]
    got = await sessions.get_session(**key)
    assert got is not None and len(got.events) == 1
    assert got.state == {"w": outcomes.index("won")}


async def test_a_session_not_read_through_the_service_is_checked_by_its_last_event(
    sessions: KVStoreSessionService,
) -> None:
    await sessions.create_session(app_name=APP, user_id="u", session_id="s")
    built = Session(app_name=APP, user_id="u", id="s")  # no marker: nothing stored yet
    await sessions.append_event(built, _event("a", id="e-a"))
    copy = Session(app_name=APP, user_id="u", id="s", events=[_event("a", id="e-a")])
    await sessions.append_event(copy, _event("b", id="e-b"))  # its last event is the last
    behind = Session(app_name=APP, user_id="u", id="s", events=[_event("a", id="e-a")])
    with pytest.raises(StaleSessionError):
        await sessions.append_event(behind, _event("c"))
    got = await sessions.get_session(app_name=APP, user_id="u", session_id="s")
    assert got is not None and [e.id for e in got.events] == ["e-a", "e-b"]


async def test_bad_session_input_is_refused_and_nothing_is_written(
    sessions: KVStoreSessionService, store: kvstore.KVStore
) -> None:
    with pytest.raises(ValueError, match="state must hold JSON-serializable"):
        await sessions.create_session(app_name=APP, user_id="u", state={"f": object()})
    with pytest.raises(kvstore.ConfigurationError, match="app"):
        await sessions.create_session(app_name="", user_id="u")
    with pytest.raises(kvstore.ConfigurationError, match="user"):
        await sessions.create_session(app_name=APP, user_id="u" * 300)
    assert (await sessions.list_sessions(app_name=APP)).sessions == []
    session = await sessions.create_session(app_name=APP, user_id="u", session_id="s")
    bad = _event("x", {"ok": 1})
    bad.actions.state_delta["f"] = lambda: None
    with pytest.raises(ValueError, match="JSON-serializable"):
        await sessions.append_event(session, bad)
    assert session.events == [] and session.state == {}
    got = await sessions.get_session(app_name=APP, user_id="u", session_id="s")
    assert got is not None and got.events == [] and got.state == {}
    await sessions.append_event(session, _event("x", {"ok": 1}))  # the session is not stale
    assert store.sessions.get(APP, "u", "s").last_seq == 0  # type: ignore[union-attr]


def test_built_from_a_url_a_service_owns_and_closes_its_store(tmp_path: object) -> None:
    sessions = KVStoreSessionService(url=str(tmp_path), cache=None, namespace="agents")
    artifacts = KVStoreArtifactService(url=str(tmp_path), cache=None, namespace="agents")
    asyncio.run(sessions.create_session(app_name=APP, user_id="u", session_id="s"))
    saved = artifacts.save_artifact(
        app_name=APP, user_id="u", session_id="s", filename="f", artifact=text("x")
    )
    assert asyncio.run(saved) == 0
    sessions.close()
    artifacts.close()
    with kvstore.open(str(tmp_path), cache=None) as again:
        view = again.namespace("agents")
        assert view.sessions.get(APP, "u", "s") is not None
        assert view.artifacts.list() == [view.sessions.artifact_name(APP, "u", "s", "f")]
        shared = KVStoreSessionService(again)
        shared.close()  # not its store: still open
        assert again.sessions.get(APP, "u", "s") is None  # (outside the namespace)
        with pytest.raises(TypeError, match="not both"):
            KVStoreSessionService(again, url=str(tmp_path))
        with pytest.raises(TypeError, match=r"kvstore\.KVStore"):
            KVStoreArtifactService(again.aio)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="inline_max"):
            KVStoreArtifactService(again, inline_max=-1)


# -- a real ADK Runner, resumed elsewhere ------------------------------------------------------


def test_a_runner_with_a_scripted_agent_is_resumed_by_a_second_process(target: Target) -> None:
    with target.open(cache=kvstore.LocalCache()) as store:
        run, _, _ = adk_helpers.runner(store)
        adk_helpers.new_session(store, "ann", "chat")
        for i in range(2):
            events = adk_helpers.turn(run, "ann", "chat", f"question {i}")
            assert [e.author for e in events] == ["scripted"]
        seen = adk_helpers.summary(store, "ann", "chat")
    assert seen["state"] == {"turns": 2, "user:turns_total": 2, "app:agent": "scripted"}
    if target.backend in SHARED:
        (resumed,) = run_in_processes(
            adk_helpers.resume_elsewhere,
            [(target.url, target.storage_options, "ann", "chat")],
        )
    else:  # memory:// lives in this process: a new store on it
        resumed = adk_helpers.resume_elsewhere(target.url, target.storage_options, "ann", "chat")
    assert resumed["before"] == seen
    assert seen["authors"] == ["user", "scripted"] * 2
    assert seen["texts"] == ["question 0", "turn 1 done", "question 1", "turn 2 done"]
    assert seen["blobs"] == [b"\x00\x01\xfe\xff"] * 2
    assert seen["artifact_deltas"] == [{}, {"report.txt": 0, "user:chart.png": 0}] * 1 + [
        {},
        {"report.txt": 1, "user:chart.png": 1},
    ]
    assert seen["keys"] == ["report.txt", "user:chart.png"]
    assert seen["report"] == "turn 2: question 1"
    assert seen["report_versions"] == [(0, {"turn": 1}), (1, {"turn": 2})]
    assert seen["chart"] == bytes([2]) * 16
    after = resumed["after"]
    assert resumed["turn"] == ["scripted"]
    assert after["state"] == {"turns": 3, "user:turns_total": 3, "app:agent": "scripted"}
    assert after["authors"] == ["user", "scripted"] * 3
    assert after["report"] == "turn 3: and again, from another process"


@pytest.mark.parametrize("backend", ["seaweedfs"])
def test_two_processes_appending_to_one_stale_session_have_one_winner(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    target = make_target(backend)
    with target.open() as store:
        adk_helpers.new_session(store, "u", "s")
    outcomes = run_in_processes(
        adk_helpers.append_from_process,
        [(target.url, target.storage_options, "u", "s", tag) for tag in ("p1", "p2")],
        barrier=True,
    )
    assert sorted(o.split(":")[0] for o in outcomes) == ["StaleSessionError", "won"], outcomes
    loser = next(o for o in outcomes if o != "won")
    assert loser == f"StaleSessionError: {STALE_MESSAGE}"
    winner = ["p1", "p2"][outcomes.index("won")]
    with target.open() as store:
        got = store.sessions.get(APP, "u", "s")
    assert got is not None and [e.data["author"] for e in got.events] == [winner]
    assert got.state == {"writer": winner}


# -- what the calls cost -----------------------------------------------------------------------


def _counted(target: Target) -> tuple[kvstore.KVStore, RoundTrips]:
    blob = RoundTrips(target.blob_store(stats=Stats()))
    # (heads and state live 1 s in a default LocalCache: 600 s here, so "warm" is warm
    # however slow the machine)
    return kvstore.open(blob, cache=kvstore.LocalCache(ttl=600)), blob


@pytest.mark.parametrize("backend", ["local", "seaweedfs"])
def test_what_the_adk_calls_cost(backend: str, make_target: Callable[[str], Target]) -> None:
    """Requests and round trips (requests in flight together count once) on a new store
    (cold) and again on the same one (warm): get_session of 200 events, list_sessions of
    100 sessions. The figures are the core's (kvstore.sessions), reported as they are."""
    target = make_target(backend)
    with target.open(cache=kvstore.LocalCache()) as writer:
        service = KVStoreSessionService(writer)

        async def build() -> None:
            session = await service.create_session(
                app_name=APP, user_id="u", session_id="big", state={"user:name": "Ann"}
            )
            for i in range(200):  # a model's reply of a paragraph each (~700 bytes stored)
                reply = types.Content(role="model", parts=[types.Part(text=_paragraph(i))])
                await service.append_event(session, _event("agent", {"i": i}, content=reply))
            for i in range(100):
                await service.create_session(app_name=APP, user_id="lister", session_id=f"s{i:03d}")

        asyncio.run(build())
    store, trips = _counted(target)
    with store:
        service = KVStoreSessionService(store)
        key = {"app_name": APP, "user_id": "u", "session_id": "big"}
        with request_delta(store) as cold:
            before = trips.round_trips
            got = asyncio.run(service.get_session(**key))
            cold_trips = trips.round_trips - before
        assert got is not None and len(got.events) == 200 and got.state["i"] == 199
        # head + app state + user state, in one round trip: the head's copy of the latest
        # events holds all 200 (kvstore.sessions.model.RECENT_BYTES)
        assert cold == {"requests.get": 3} and cold_trips == 1, (cold, cold_trips)
        with request_delta(store) as warm:
            assert asyncio.run(service.get_session(**key)) is not None
        assert sum(warm.values()) == 0, warm

        with request_delta(store) as listing:
            before = trips.round_trips
            page = asyncio.run(service.list_sessions(app_name=APP, user_id="lister"))
            list_trips = trips.round_trips - before
        assert len(page.sessions) == 100
        # one LIST, the 100 heads and the user's state (the app's is cached: get_session)
        assert listing == {"requests.list": 1, "requests.get": 101}, listing
        assert list_trips <= 2, list_trips  # the LIST; then the heads and the state at once
        with request_delta(store) as again:
            before = trips.round_trips
            asyncio.run(service.list_sessions(app_name=APP, user_id="lister"))
            again_trips = trips.round_trips - before
        assert again == {"requests.list": 1} and again_trips == 1, (again, again_trips)
