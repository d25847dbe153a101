"""The console's pages of one thing: a value, a log (paged), artifacts and their versions,
an app's sessions and one session. Each builds its body from the request's store view
(the same public API the REST routes use) and returns it as escaped HTML
(:mod:`.console_html`); :mod:`.console` routes to them and wraps them in the page.
"""

from __future__ import annotations

from urllib.parse import quote

from ..api import AsyncKVStore
from .console_html import esc, json_text, link, pager, shown, size_text, table, ttl_text, url, when
from .errors import HttpError

LOG_PAGE = 50
"""Records per log page."""
SESSIONS_PAGE = 50
"""Sessions per page of an app's list."""
SESSION_EVENTS = 200
"""A session page shows its last this many events."""


def _bytes(found: bytes | str) -> bytes:
    return found.encode() if isinstance(found, str) else found


async def value_page(store: AsyncKVStore, ns: str | None, key: str) -> str:
    """A value: its type, TTL, size; a string's bytes (text, or hex), cut at 4 KiB."""
    (info,) = await store.key_info([key])
    if info is None:
        raise HttpError(404, "NotFoundError", f"no value at key {key!r}")
    facts = table(
        ("key", "type", "TTL", "size"),
        [(esc(key), esc(info.type), esc(ttl_text(info.pttl)), esc(size_text(info.size)))],
        "value-info",
    )
    if info.type == "string":
        found = await store.get(key)
        content = shown(b"" if found is None else _bytes(found))
        rest = link(url("/v1/values/" + quote(key, safe=""), ns=ns), "raw bytes (REST)")
    else:
        content = (
            f'<p class="note">A {esc(info.type)}: its members are read with the Redis face '
            f"(kvstore.Redis, or a Redis client of <code>kvstore serve</code>).</p>"
        )
        rest = ""
    back = link(url("/console/keys", ns=ns), "all keys")
    return f'{facts}<div id="value">{content}</div><p>{rest} {back}</p>'


async def log_page(store: AsyncKVStore, ns: str | None, key: str, start: int) -> str:
    """Records ``[start, start + 50)`` of a log (by index, as LRANGE), with links to the
    pages before and after."""
    length = await store.length(key)
    if length == 0:
        raise HttpError(404, "NotFoundError", f"no log with records at key {key!r}")
    start = max(0, min(start, length - 1))
    end = min(start + LOG_PAGE, length) - 1
    first, records = await store.range_at(key, start, end)
    rows = [
        (
            f'<span class="seq">{first + i}</span>',
            f'<span class="index">{start + i}</span>',
            shown(_bytes(r), 1024),
        )
        for i, r in enumerate(records)
    ]
    links = []
    if start > 0:
        prev = url("/console/log", ns=ns, key=key, start=max(0, start - LOG_PAGE))
        links.append((url("/console/log", ns=ns, key=key, start=0), "first", "first"))
        links.append((prev, "previous", "prev"))
    if end + 1 < length:
        links.append((url("/console/log", ns=ns, key=key, start=end + 1), "next", "next"))
        last = url("/console/log", ns=ns, key=key, start=(length - 1) // LOG_PAGE * LOG_PAGE)
        links.append((last, "last", "last"))
    summary = (
        f'<p id="log-summary">{esc(key)}: records {start}-{end} of {length} '
        f"(sequence numbers from {first})</p>"
    )
    return summary + pager(links) + table(("seq", "index", "record"), rows, "records")


async def artifacts_page(store: AsyncKVStore, ns: str | None, prefix: str) -> str:
    names = await store.artifacts.list(prefix)
    form = (
        '<form class="inline" method="get" action="/console/artifacts">'
        + (f'<input type="hidden" name="ns" value="{esc(ns)}">' if ns else "")
        + f'<input name="prefix" placeholder="prefix" value="{esc(prefix)}">'
        "<button>Filter</button></form>"
    )
    rows = [(link(url("/console/artifact", ns=ns, name=n), n),) for n in names]
    return form + f"<p>{len(names)} artifacts</p>" + table(("name",), rows, "artifacts")


async def artifact_page(store: AsyncKVStore, ns: str | None, name: str) -> str:
    """Every live version of an artifact, each with a download link (the REST route)."""
    infos = await store.artifacts.versions_info(name)
    if not infos:
        raise HttpError(404, "NotFoundError", f"no artifact {name!r}")
    path = "/v1/artifacts/" + quote(name, safe="")
    rows = [
        (
            f'<span class="version">{i.version}</span>',
            esc(i.mime_type),
            esc(size_text(i.size)),
            f"<code>{esc(i.sha256[:16])}</code>",
            esc(i.created_at.strftime("%Y-%m-%d %H:%M:%S %Z")),
            f"<pre>{json_text(i.metadata)}</pre>" if i.metadata else "",
            link(url(path, version=i.version, ns=ns), "download", **{"class": "download"}),
        )
        for i in infos
    ]
    head = ("version", "type", "size", "sha256", "created", "metadata", "")
    return f"<p>{esc(name)}: {len(infos)} versions</p>" + table(head, rows, "versions")


async def sessions_page(
    store: AsyncKVStore, ns: str | None, app: str, user: str, cursor: str | None
) -> str:
    """A form for the app (and user), and a page of its sessions."""
    form = (
        '<form class="inline" method="get" action="/console/sessions">'
        + (f'<input type="hidden" name="ns" value="{esc(ns)}">' if ns else "")
        + f'<input name="app" placeholder="app" value="{esc(app)}" required>'
        f'<input name="user" placeholder="user (all)" value="{esc(user)}">'
        "<button>List</button></form>"
    )
    if not app:
        return form + '<p class="note">Sessions are listed per app: name one.</p>'
    page = await store.sessions.list(app, user or None, SESSIONS_PAGE, cursor)
    rows = [
        (
            link(url("/console/session", ns=ns, app=app, user=s.user, id=s.id), s.id),
            esc(s.user),
            esc(s.title or ""),
            esc(s.status or ""),
            str(s.event_count),
            when(s.updated),
        )
        for s in page.sessions
    ]
    head = ("session", "user", "title", "status", "events", "updated")
    more = ""
    if page.cursor is not None:
        after = url("/console/sessions", ns=ns, app=app, user=user or None, cursor=page.cursor)
        more = pager([(after, "next", "next")])
    return form + table(head, rows, "sessions") + more


async def session_page(
    store: AsyncKVStore, ns: str | None, app: str, user: str, session_id: str
) -> str:
    """A session: its facts, merged state and last events (data and state delta)."""
    found = await store.sessions.get(app, user, session_id, recent=SESSION_EVENTS)
    if found is None:
        raise HttpError(404, "NotFoundError", f"no session {session_id!r} of {user!r} in {app!r}")
    facts = table(
        ("app", "user", "session", "title", "status", "events", "created", "updated"),
        [
            (
                esc(found.app),
                esc(found.user),
                esc(found.id),
                esc(found.title or ""),
                esc(found.status or ""),
                str(found.event_count),
                when(found.created),
                when(found.updated),
            )
        ],
        "session-info",
    )
    events = table(
        ("seq", "time", "event", "state delta"),
        [
            (
                f'<span class="seq">{e.seq}</span>',
                when(e.timestamp),
                f"<pre>{json_text(e.data)}</pre>",
                f"<pre>{json_text(e.state_delta)}</pre>" if e.state_delta else "",
            )
            for e in found.events
        ],
        "events",
    )
    shown_note = ""
    if found.event_count > len(found.events):
        shown_note = f'<p class="note">the last {len(found.events)} events shown</p>'
    back = link(url("/console/sessions", ns=ns, app=app), f"sessions of {app}")
    return (
        f'{facts}<h2>State</h2><pre id="state">{json_text(found.state)}</pre>'
        + (f"<h2>Metadata</h2><pre>{json_text(found.metadata)}</pre>" if found.metadata else "")
        + f"<h2>Events</h2>{shown_note}{events}<p>{back}</p>"
    )
