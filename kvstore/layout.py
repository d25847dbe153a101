"""The object layout as code: every object path the store writes, built and parsed here.

The table (docs/architecture.md, "Layout"; the README's twin) and this module say the same
thing; no other module formats or slices an object path.

==================================================  ===========================================
path (below the store root)                         object
==================================================  ===========================================
``{base}kv/{enc(key)}``                             one value (an envelope)
``{base}log/{enc(key)}/c/{first:020d}``             log chunk: records ``[first, first + n)``
``{base}log/{enc(key)}/s/{first:020d}-{end:020d}``  log segment: records ``[first, end)``
``{base}log/{enc(key)}/m/{mark:020d}``              log mark: records below ``mark`` are gone
``{base}log/{enc(key)}/lost/{first}-{end}``         records ``[first, end)`` were lost (fsck)
``{base}art/{enc(name)}/{version:020d}``            artifact version's manifest (or tombstone)
``{base}art/{enc(name)}/{version:020d}.deleted``    marks a deleted version (never reused)
``{base}artpart/{enc(name)}/{upload}/{i:06d}``      part ``i`` of a large artifact's upload
``{base}artpart/{enc(name)}/{upload}/raw``          a raw artifact's data, byte for byte (no
                                                    envelope: what a presigned URL serves)
``{base}list/{enc(key)}/{inc}/log/items~/…``       a Redis list's records: a log (above) per
                                                    incarnation ``inc`` named by the list's
                                                    value object (type ``list``)
``{base}list/{enc(key)}/{inc}/gone``                that incarnation was deleted (DEL): all
                                                    its objects go once old
``{base}meta/kv/{enc(name)}``                        a view's settings (``retention``: its policy)
``{base}ses/{enc(app)}/app``                         an app's state (``app:`` keys)
``{base}ses/{enc(app)}/user/{enc(user)}``           a user's state in an app (``user:`` keys)
``{base}ses/{enc(app)}/head/{enc(user)}/{enc(id)}`` a session's head: metadata, session state
``{base}ses/{enc(app)}/ev/{enc(user)}/{enc(id)}/``  a session's events: a log (above) per
``{inc}/log/events~/…``                             incarnation ``inc`` named by the head
``{base}`` = ``""`` or ``ns/{enc(ns)}/`` (nested)   a namespace: the same layout inside
==================================================  ===========================================

Names that are cache keys only (no object has them): a log's plan ``{log dir}plan``, an
artifact's latest-version pointer ``{art dir}latest`` and a version's info
``{art dir}{version:020d}.info``.

``enc`` is :func:`kvstore.keys.encode_name`: reversible, prefix-preserving, confined.
"""

from __future__ import annotations

from dataclasses import dataclass

from .keys import decode_name, encode_name, encode_prefix

SEQ_DIGITS = 20
VERSION_DIGITS = 20
PART_DIGITS = 6
UPLOAD_ID_CHARS = 24  # secrets.token_hex(12)
DELETED_SUFFIX = ".deleted"
RAW_LEAF = "raw"
"""The name of a raw artifact's object in its upload's directory (beside where parts go)."""

VALUES = "kv/"
LOGS = "log/"
ARTIFACTS = "art/"
PARTS = "artpart/"
NAMESPACES = "ns/"
LISTS = "list/"
SESSIONS = "ses/"
RECORDS = "rec/"
META = "meta/"
SESSION_EVENTS_KEY = "events"
"""The key of a session's event log inside its incarnation's layout."""
LIST_LOG_KEY = "items"
GONE_LEAF = "gone"
"""The leaf of a deleted incarnation's marker, beside its ``log/`` directory."""
"""The key of a list's log inside its incarnation's layout."""
INCARNATION_CHARS = 16  # secrets.token_hex(8)
STORE_ID = ".kvstore/id"
"""The store's random id (32 hex digits), made on first use with a shared cache: the cache
keys of two stores that merely share a name (a path, a bucket) never meet."""


KINDS = ("values", "logs", "lists", "artifacts", "sessions", "records", "internal", "foreign")
"""What :meth:`Layout.kind_of` tells objects apart by (``store.usage``): a Redis list's
records are ``lists`` (its head, naming their incarnation, is a value), an artifact's
parts and raw data ``artifacts``, the store's id, the precondition probe's objects and a
view's settings (its retention policy) ``internal``."""
PREFIXABLE_AREAS = (VALUES, LOGS, LISTS, ARTIFACTS, PARTS, SESSIONS, RECORDS)
"""The areas whose next path segment is an encoded key or name: listing ``area +
encode_prefix(p)`` finds the objects of every key or name starting with ``p``."""
_KIND_OF_AREA = {
    VALUES: "values",
    LOGS: "logs",
    LISTS: "lists",
    ARTIFACTS: "artifacts",
    PARTS: "artifacts",
    SESSIONS: "sessions",
    RECORDS: "records",
    ".kvstore/": "internal",
    META: "internal",
}


def is_incarnation(name: str) -> bool:
    """Whether ``name`` can be an incarnation id (a list's, a session's)."""
    return len(name) == INCARNATION_CHARS and name.isalnum()


def seq(n: int) -> str:
    """A log sequence number as it appears in object names (zero-padded: sorts in order)."""
    return f"{n:0{SEQ_DIGITS}d}"


# -- log objects: names relative to the log's directory ------------------------------------


@dataclass(frozen=True, slots=True)
class Chunk:
    """``c/{first}``: records from ``first`` on, as many as its header says."""

    first: int
    name: str


@dataclass(frozen=True, slots=True)
class Segment:
    """``s/{first}-{end}``: records ``[first, end)`` merged by compaction."""

    first: int
    end: int
    name: str


@dataclass(frozen=True, slots=True)
class Mark:
    """``m/{at}``: records below ``at`` are gone (trim, delete)."""

    at: int
    name: str


@dataclass(frozen=True, slots=True)
class Lost:
    """``lost/{first}-{end}``: records ``[first, end)`` were lost (their object vanished or
    was damaged) and ``fsck --repair`` said so; reading them raises, the rest reads."""

    first: int
    end: int
    name: str


def lost_name(first: int, end: int) -> str:
    return f"lost/{seq(first)}-{seq(end)}"


def chunk_name(first: int) -> str:
    return f"c/{seq(first)}"


def segment_name(first: int, end: int) -> str:
    return f"s/{seq(first)}-{seq(end)}"


def mark_name(at: int) -> str:
    return f"m/{seq(at)}"


def parse_log_name(name: str) -> Chunk | Segment | Mark | Lost | None:
    """The log object a name (relative to the log directory) denotes; None if foreign."""
    kind, _, rest = name.partition("/")
    try:
        if kind == "c" and len(rest) == SEQ_DIGITS:
            return Chunk(int(rest), name)
        if kind in ("s", "lost"):
            a, _, b = rest.partition("-")
            if len(a) == SEQ_DIGITS and len(b) == SEQ_DIGITS and int(a) < int(b):
                return (Segment if kind == "s" else Lost)(int(a), int(b), name)
        elif kind == "m" and len(rest) == SEQ_DIGITS:
            return Mark(int(rest), name)
    except ValueError:
        pass
    return None


def is_segment_name(name: str) -> bool:
    return name.startswith("s/")


def is_lost_name(name: str) -> bool:
    return name.startswith("lost/")


# -- artifact objects ------------------------------------------------------------------------


def version_name(version: int) -> str:
    return f"{version:0{VERSION_DIGITS}d}"


def parse_version_leaf(leaf: str) -> tuple[int, bool] | None:
    """(version, is the deleted marker) of a name in an artifact's directory; None if
    foreign."""
    number, dot, suffix = leaf.partition(".")
    if len(number) != VERSION_DIGITS or not number.isdigit():
        return None
    if not dot:
        return int(number), False
    if dot + suffix == DELETED_SUFFIX:
        return int(number), True
    return None


class Layout:
    """The paths of one store view (the root, or a namespace), relative to the store root.

    Cheap to make; :meth:`namespace` gives a nested view's layout. Paths take validated
    keys (str); encoding is remembered for hot keys (see :func:`encode_name`).
    """

    __slots__ = ("base",)

    def __init__(self, base: str = "") -> None:
        self.base = base

    @staticmethod
    def key_of(encoded: str) -> str:
        """The key (or name) an encoded path segment stands for; ValueError if foreign."""
        return decode_name(encoded)

    def namespace(self, name: str) -> Layout:
        return Layout(f"{self.base}{NAMESPACES}{encode_name(name, 'namespace')}/")

    @property
    def namespace_area(self) -> str:
        return self.base + NAMESPACES

    def split_namespace_path(self, path: str) -> tuple[str, str] | None:
        """(name of the child namespace, the listing position just past every path inside
        it) of a path below :attr:`namespace_area`; None if foreign."""
        encoded, sep, _ = path[len(self.namespace_area) :].partition("~/")
        if not sep:
            return None
        try:
            name = decode_name(encoded + "~")
        except ValueError:
            return None
        return name, f"{self.namespace_area}{encoded}~/\U0010ffff"

    def kind_of(self, path: str) -> tuple[tuple[str, ...], str, str | None]:
        """What an object ``path`` below :attr:`base` is, from its name alone: (the
        namespaces it lies in below this view, outermost first; its kind, one of
        :data:`KINDS` - ``foreign`` for what kvstore does not write; the item it belongs
        to, or None). An item is what a user counts: a value, a log, a list, an artifact
        name (its versions' manifests), a session (its head), a collection of records;
        their other objects (chunks, parts, events, state) have the item of their
        directory or None."""
        rest, names = path[len(self.base) :], list[str]()
        while rest.startswith(NAMESPACES):
            encoded, sep, rest = rest[len(NAMESPACES) :].partition("~/")
            try:
                name = decode_name(encoded + "~")
            except ValueError:
                name = ""
            if not sep or not name:  # no namespace has an empty name (``ns/~/``)
                return tuple(names), "foreign", None
            names.append(name)
        area, _, inner = rest.partition("/")
        kind = _KIND_OF_AREA.get(area + "/", "foreign")
        if area == ".kvstore" and (names or self.base):  # .kvstore/ is the root's alone
            kind = "foreign"
        encoded, sep, leaf = inner.partition("~/")
        if kind == "values":
            try:
                decode_name(inner)
            except ValueError:  # a name no key encodes to (``kv/README``)
                return tuple(names), "foreign", None
            item: str | None = rest
        elif kind == "sessions":
            item = rest if leaf.startswith("head/") else None
        elif kind in ("internal", "foreign") or not sep or area + "/" == PARTS:
            item = None
        else:
            item = f"{area}/{encoded}~/"
        return tuple(names), kind, item

    def list_log(self, key: str, incarnation: str) -> Layout:
        """The layout inside which one incarnation of the list ``key`` keeps its records,
        as the log :data:`LIST_LOG_KEY`. A list deleted and pushed again gets a new
        incarnation, so a push that raced the delete can never reach the new list."""
        if not is_incarnation(incarnation):
            raise ValueError(f"not a list incarnation: {incarnation!r}")
        return Layout(f"{self.base}{LISTS}{encode_name(key)}/{incarnation}/")

    @staticmethod
    def gone_marker(incarnation_layout: Layout) -> str:
        """The object that says an incarnation (of a list) was deleted: its objects can all
        go once old (:mod:`kvstore.logs.incarnations`)."""
        return incarnation_layout.base + GONE_LEAF

    @property
    def list_area(self) -> str:
        return self.base + LISTS

    def list_logs(self, path: str) -> tuple[str, str] | None:
        """(key, incarnation) of a path below the list area; None if foreign."""
        encoded, sep, rest = path[len(self.list_area) :].partition("~/")
        incarnation, slash, _ = rest.partition("/")
        if not sep or not slash or not is_incarnation(incarnation):
            return None
        try:
            return decode_name(encoded + "~"), incarnation
        except ValueError:
            return None

    # records

    def meta(self) -> Layout:
        """The store view holding this view's own settings as values (its retention
        policy, :mod:`kvstore.operations.retention`): ``{base}meta/``."""
        return Layout(f"{self.base}{META}")

    def records(self, name: str) -> Layout:
        """The store view one collection of records keeps (kvstore.records): its span as
        a value, a log per partition."""
        return Layout(f"{self.base}{RECORDS}{encode_name(name, 'records')}/")

    @property
    def records_area(self) -> str:
        return self.base + RECORDS

    def split_records_path(self, path: str) -> str | None:
        """The collection a path below the records area belongs to; None if foreign."""
        encoded, sep, _ = path[len(self.records_area) :].partition("~/")
        if not sep:
            return None
        try:
            return decode_name(encoded + "~")
        except ValueError:
            return None

    # sessions

    def session_app(self, app: str) -> str:
        """The directory of everything one app's sessions keep."""
        return f"{self.base}{SESSIONS}{encode_name(app, 'app')}/"

    def app_state(self, app: str) -> str:
        return self.session_app(app) + "app"

    def user_state(self, app: str, user: str) -> str:
        return f"{self.session_app(app)}user/{encode_name(user, 'user')}"

    def user_states(self, app: str) -> str:
        return self.session_app(app) + "user/"

    def session_head(self, app: str, user: str, session_id: str) -> str:
        return f"{self.session_heads(app, user)}{encode_name(session_id, 'session id')}"

    def session_heads(self, app: str, user: str | None = None) -> str:
        """The listing prefix of the heads of one user's sessions (or all the app's)."""
        below = "" if user is None else encode_name(user, "user") + "/"
        return f"{self.session_app(app)}head/{below}"

    def parse_session_head(self, app: str, path: str) -> tuple[str, str] | None:
        """(user, session id) of a head path listed below :meth:`session_heads`; None if
        foreign."""
        rest = path[len(self.session_heads(app)) :]
        user, sep, session_id = rest.partition("~/")
        if not sep:
            return None
        try:
            return decode_name(user + "~"), decode_name(session_id)
        except ValueError:
            return None

    def session_events(self, app: str, user: str, session_id: str, incarnation: str) -> Layout:
        """The layout inside which one incarnation of a session keeps its events, as the
        log :data:`SESSION_EVENTS_KEY`. A session deleted and created again gets a new
        incarnation: an append that raced the delete can never reach the new session."""
        if not is_incarnation(incarnation):
            raise ValueError(f"not a session incarnation: {incarnation!r}")
        return Layout(f"{self.session_events_area(app, user, session_id)}{incarnation}/")

    def parse_session_events(self, app: str, path: str) -> tuple[str, str] | None:
        """(user, session id) of a path below :meth:`session_events_area` of the app;
        None if foreign."""
        rest = path[len(self.session_events_area(app)) :]
        user, sep, more = rest.partition("~/")
        session_id, sep2, _ = more.partition("~/")
        if not sep or not sep2:
            return None
        try:
            return decode_name(user + "~"), decode_name(session_id + "~")
        except ValueError:
            return None

    @property
    def session_area(self) -> str:
        return self.base + SESSIONS

    def parse_session_object(self, path: str) -> tuple[str, ...] | None:
        """What a path below :attr:`session_area` is: ``("app", app)``, ``("user", app,
        user)``, ``("head", app, user, id)`` or ``("events", app, user, id,
        incarnation)``; None if foreign."""
        encoded, sep, rest = path[len(self.session_area) :].partition("~/")
        if not sep:
            return None
        try:
            app = decode_name(encoded + "~")
            if rest == "app":
                return ("app", app)
            kind, _, rest = rest.partition("/")
            if kind == "user":
                return ("user", app, decode_name(rest))
            if kind == "head":
                found = self.parse_session_head(app, path)
                return None if found is None else ("head", app, *found)
            if kind == "ev":
                owner = self.parse_session_events(app, path)
                inner = path[len(self.session_events_area(app)) :].split("~/", 2)
                incarnation = inner[2].split("/", 1)[0] if len(inner) == 3 else ""
                if owner is None or not is_incarnation(incarnation):
                    return None
                return ("events", app, *owner, incarnation)
        except ValueError:
            return None
        return None

    def session_events_area(
        self, app: str, user: str | None = None, session_id: str | None = None
    ) -> str:
        """The prefix of the events of one session (every incarnation), one user's
        sessions, or all the app's."""
        path = f"{self.session_app(app)}ev/"
        if user is not None:
            path += encode_name(user, "user") + "/"
            if session_id is not None:
                path += encode_name(session_id, "session id") + "/"
        return path

    # values

    def value(self, key: str) -> str:
        return f"{self.base}{VALUES}{encode_name(key)}"

    @property
    def value_area(self) -> str:
        return self.base + VALUES

    def value_prefix(self, prefix: object) -> str:
        return self.value_area + encode_prefix(prefix)

    def value_key(self, path: str) -> str:
        """The key of a value path from a listing (ValueError if foreign)."""
        return decode_name(path[len(self.value_area) :])

    # logs

    def log_dir(self, key: str) -> str:
        return f"{self.base}{LOGS}{encode_name(key)}/"

    @property
    def log_area(self) -> str:
        return self.base + LOGS

    def log_prefix(self, prefix: object) -> str:
        return self.log_area + encode_prefix(prefix)

    def split_log_path(self, path: str) -> tuple[str, str] | None:
        """(encoded key, object name in the log directory) of a path below the log area;
        None if it is not inside a log directory."""
        encoded, sep, rest = path[len(self.log_area) :].partition("~/")
        return (encoded + "~", rest) if sep else None

    @staticmethod
    def log_plan_key(log_dir: str) -> str:
        return log_dir + "plan"  # a cache key only; no object has this name

    def longest_log_path(self, key: str) -> str:
        """The longest object path a log can have (a segment), for the name-length check."""
        return self.log_dir(key) + segment_name(0, 0)

    # artifacts

    def artifact_dir(self, name: str) -> str:
        return f"{self.base}{ARTIFACTS}{encode_name(name, 'artifact name')}/"

    @property
    def artifact_area(self) -> str:
        return self.base + ARTIFACTS

    def artifact_prefix(self, prefix: object) -> str:
        return self.artifact_area + encode_prefix(prefix)

    @staticmethod
    def version(artifact_dir: str, version: int) -> str:
        return artifact_dir + version_name(version)

    @staticmethod
    def deleted_marker(artifact_dir: str, version: int) -> str:
        return artifact_dir + version_name(version) + DELETED_SUFFIX

    def part(self, artifact_dir: str, upload: str, index: int) -> str:
        """Part ``index`` of an upload, beside the name's manifest directory:
        ``{base}art/{enc}/`` -> ``{base}artpart/{enc}/{upload}/{index:06d}``."""
        encoded = artifact_dir[len(self.artifact_area) : -1]
        return f"{self.base}{PARTS}{encoded}/{upload}/{index:0{PART_DIGITS}d}"

    def raw(self, artifact_dir: str, upload: str) -> str:
        """A raw artifact's object (its data as given, no envelope), beside where an
        upload's parts go: ``{base}artpart/{enc}/{upload}/raw``."""
        encoded = artifact_dir[len(self.artifact_area) : -1]
        return f"{self.base}{PARTS}{encoded}/{upload}/{RAW_LEAF}"

    @property
    def upload_area(self) -> str:
        return self.base + PARTS

    def split_upload_path(self, path: str) -> tuple[str, str] | None:
        """(upload id, leaf: a part's index or ``raw``) of a path below
        :attr:`upload_area`; None if it is not an upload's object kvstore writes."""
        rest = path[len(self.upload_area) :].rsplit("/", 2)
        if len(rest) != 3 or len(rest[1]) != UPLOAD_ID_CHARS or not rest[0].endswith("~"):
            return None
        upload, leaf = rest[1], rest[2]
        if leaf == RAW_LEAF or (len(leaf) == PART_DIGITS and leaf.isdigit()):
            return upload, leaf
        return None

    @staticmethod
    def latest_pointer_key(artifact_dir: str) -> str:
        return artifact_dir + "latest"  # a cache key only; no object has this name

    @staticmethod
    def version_info_key(version_path: str) -> str:
        """The cache key of a version's info (its manifest's header and metadata)."""
        return version_path + ".info"  # a cache key only; no object has this name

    def split_artifact_path(self, path: str) -> tuple[str, str]:
        """(encoded name, leaf) of a path below the artifact area."""
        encoded, _, leaf = path[len(self.artifact_area) :].rpartition("/")
        return encoded, leaf

    def longest_artifact_paths(self, name: str) -> tuple[str, str]:
        """The longest paths an artifact can have (deleted marker, a part), for the check."""
        directory = self.artifact_dir(name)
        return (
            self.deleted_marker(directory, 0),
            self.part(directory, "0" * UPLOAD_ID_CHARS, 0),
        )
