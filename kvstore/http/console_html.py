"""The console's HTML, built as strings: every value put into a page goes through
:func:`esc` (:func:`html.escape`, quotes included) - keys, values, records, event data and
namespace names are the callers' bytes and may be hostile. Links are built by :func:`url`
(query parameters %-encoded, then escaped for the attribute). No script is ever emitted,
and every page is sent with a Content-Security-Policy that forbids scripts: an escaping
mistake could not run code either.
"""

from __future__ import annotations

import datetime
import html
import json
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from fastapi.responses import HTMLResponse

SHOWN_BYTES = 4096
"""A value or record is shown up to this many bytes; the page says what was cut."""

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}
header a{color:#cfe0ff;text-decoration:none}header .brand{font-weight:600;color:#fff}
main{padding:12px 16px;max-width:1200px}
table{border-collapse:collapse;background:#fff;margin:8px 0}
th,td{border:1px solid #d8dbe2;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#fff;border:1px solid #d8dbe2;padding:8px;white-space:pre-wrap;
word-break:break-all;max-height:480px;overflow:auto;margin:4px 0}
.note{color:#6a7180;font-size:12px}.error{color:#a4161a;font-weight:600}
.panel{background:#fff;border:1px solid #d8dbe2;padding:8px 12px;margin:8px 0}
.pager a{margin-right:12px}nav.crumbs{margin:4px 0 8px}
form.inline{display:inline-flex;gap:6px;align-items:center;margin:6px 0}
"""


def esc(value: object) -> str:
    """Text for HTML (an element's content or a quoted attribute)."""
    return html.escape(str(value), quote=True)


def url(path: str, **query: object) -> str:
    """A link: ``path`` (already %-encoded) with the non-None query parameters, escaped."""
    pairs = [(k, str(v)) for k, v in query.items() if v is not None]
    return esc(path + ("?" + urlencode(pairs, quote_via=quote) if pairs else ""))


def link(href: str, text: object, **attrs: str) -> str:
    extra = "".join(f' {name}="{esc(value)}"' for name, value in attrs.items())
    return f'<a href="{href}"{extra}>{esc(text)}</a>'


def table(head: Sequence[str], rows: Iterable[Sequence[str]], ident: str = "") -> str:
    """A table; ``rows`` are cells of HTML already escaped (use :func:`esc`)."""
    attr = f' id="{esc(ident)}"' if ident else ""
    out = [f"<table{attr}><thead><tr>"]
    out += [f"<th>{esc(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def shown(data: bytes | str, limit: int = SHOWN_BYTES) -> str:
    """Bytes as escaped text if they are UTF-8, else as hex; cut at ``limit`` bytes with
    a note saying how many there were."""
    raw = data.encode() if isinstance(data, str) else data
    part = raw[:limit]
    try:
        text, kind = part.decode("utf-8"), "text"
    except UnicodeDecodeError as exc:
        if len(raw) > limit and exc.start >= limit - 3:  # a character cut in two at the end
            text, kind = part[: exc.start].decode("utf-8"), "text"
        else:
            text, kind = part.hex(" "), "hex"
    note = f"{len(raw)} bytes, shown as {kind}"
    if len(raw) > limit:
        note += f"; only the first {limit} shown"
    return f'<pre class="{kind}">{esc(text)}</pre><div class="note">{esc(note)}</div>'


def json_text(value: Any) -> str:
    """A JSON-like value (bytes as ``{"$base64": ...}``), indented, escaped."""

    def default(found: Any) -> Any:
        if isinstance(found, (bytes, bytearray)):
            import base64

            return {"$base64": base64.b64encode(found).decode()}
        return repr(found)

    return esc(json.dumps(value, indent=2, sort_keys=True, default=default, ensure_ascii=False))


def when(seconds: float) -> str:
    """A Unix time as UTC text (escaped)."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return esc(moment.strftime("%Y-%m-%d %H:%M:%S UTC"))


def ttl_text(pttl: int) -> str:
    if pttl == -1:
        return "none"
    if pttl < 1000:
        return f"{pttl} ms"
    return f"{pttl / 1000:.0f} s"


def size_text(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def crumbs(ns: str | None) -> str:
    """The namespace path as links: the root, then each level."""
    parts = [] if not ns else ns.split("/")
    out = [link(url("/"), "(root)")]
    for i, part in enumerate(parts):
        out.append(link(url("/", ns="/".join(parts[: i + 1])), part))
    return '<nav class="crumbs">namespace: ' + " / ".join(out) + "</nav>"


def page(
    title: str,
    body: str,
    *,
    ns: str | None = None,
    status: int = 200,
    who: str | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A whole page: the header with the console's sections for ``ns``, then ``body``."""
    sections = [
        link(url("/", ns=ns), "Overview"),
        link(url("/console/keys", ns=ns), "Keys"),
        link(url("/console/artifacts", ns=ns), "Artifacts"),
        link(url("/console/sessions", ns=ns), "Sessions"),
    ]
    signed = ""
    if who is not None:
        signed = (
            f'<span class="note">token {esc(who)}</span>'
            '<form class="inline" method="post" action="/console/logout">'
            '<button type="submit">Sign out</button></form>'
        )
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)} - kvstore</title><style>{STYLE}</style></head><body>"
        f'<header><span class="brand">kvstore</span>{"".join(sections)}{signed}</header>'
        f"<main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(text, status, headers={**HEADERS, **(headers or {})})


def error_page(status: int, kind: str, message: str, ns: str | None = None) -> HTMLResponse:
    body = f'<p class="error" id="error">{esc(kind)}: {esc(message)}</p>'
    return page(f"Error {status}", body, ns=ns, status=status)


def pager(links: Iterable[tuple[str, str, str]]) -> str:
    """``(href, text, id)`` links in a row (href already built by :func:`url`)."""
    items = [link(href, text, id=ident) for href, text, ident in links]
    return '<div class="pager">' + "".join(items) + "</div>" if items else ""
