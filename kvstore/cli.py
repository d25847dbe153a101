"""The ``kvstore`` command: redis-cli-style access to a store, and a narrated demo.

    kvstore --url s3://bucket/app set greeting hello --ex 60
    kvstore --url s3://bucket/app get greeting
    kvstore append chat '{"role": "user", "content": "hi"}'
    kvstore range chat -5 -1
    kvstore session ls support-bot alice
    kvstore session export support-bot -o bot.jsonl
    kvstore demo

Every subcommand is one row of :data:`COMMANDS`; a store command is a small function from
(store, arguments) to a :class:`~kvstore.commands_cli.Reply` (:mod:`kvstore.commands_cli`),
the ``session`` commands are in :mod:`kvstore.cli_sessions`, the demo is :mod:`kvstore.demo`,
and :func:`main` does the rest (parsing, opening and closing the store, writing bytes to
stdout, turning errors into one line on stderr).

Exit status: 0 success; 1 a "no" answer (``get`` of a missing key, ``set`` whose nx/xx
condition was not met, ``expire``/``persist`` that changed nothing); 2 an error or bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any

from . import DEFAULT_URL, __version__
from .cli_operations import (
    _du,
    _keygen,
    _maintain,
    _rekey,
    _retention_ls,
    _retention_rm,
    _retention_set,
)
from .cli_sessions import _session_export, _session_ls, _session_rm, _session_show
from .commands_cli import (
    NIL,
    PROG,
    Runner,
    _append,
    _artifact_delete,
    _artifact_info,
    _artifact_list,
    _artifact_load,
    _artifact_save,
    _artifact_versions,
    _compact,
    _delete,
    _expire,
    _fsck,
    _get,
    _keys,
    _length,
    _mget,
    _persist,
    _purge,
    _purge_expired,
    _range,
    _set,
    _stats,
    _store_command,
    _trim,
    _ttl,
)
from .demo import _demo
from .errors import KVStoreError
from .resp.cli import ARGUMENTS as _SERVE
from .resp.cli import serve as _serve

# -- the command table and the parser ----------------------------------------------------------


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    run: Runner | None
    arguments: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = ()
    subcommands: tuple[Command, ...] = ()


def arg(*flags: str, **options: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return flags, options


_KEY = arg("key", help="a key (at most 1024 bytes in UTF-8)")
_KEYS = arg("keys", nargs="+", metavar="KEY")
_PREFIX = arg("prefix", nargs="?", default="", help="only keys starting with PREFIX")
_LOG = arg("key", help="the log's key (a log is stored apart from a value of that key)")
_ARTIFACT = arg("name", help="the artifact's name")
_VERSION = arg("--version", help="a version number (default: the latest)")
_APP = arg("app", metavar="APP", help="the app")
_USER = arg("user", metavar="USER", help="the user")
_SESSION = arg("id", metavar="ID", help="the session id")
_JSON = arg("--json", action="store_true", help="print JSON (times ISO-8601 UTC; bytes as $bytes)")
_PROGRESS = (
    arg(
        "--progress",
        action="store_const",
        const=True,
        default=None,
        help="show a progress line on stderr (default: when stderr is a terminal)",
    ),
    arg("--no-progress", dest="progress", action="store_const", const=False, help="don't"),
)

COMMANDS: tuple[Command, ...] = (
    Command(
        "get",
        "print a value (raw bytes + newline); exit 1 if missing",
        _store_command(_get),
        (_KEY,),
    ),
    Command(
        "set",
        "store a value; prints OK, or exits 1 if the --nx/--xx condition is not met",
        _store_command(_set),
        (
            _KEY,
            arg("value", help="the value; '-' reads it (as bytes) from stdin"),
            arg("--ex", type=int, metavar="S", help="expire after S seconds"),
            arg("--px", type=int, metavar="MS", help="expire after MS milliseconds"),
            arg("--nx", action="store_true", help="only if the key does not exist (atomic)"),
            arg("--xx", action="store_true", help="only if the key exists"),
            arg("--keepttl", action="store_true", help="keep the key's current TTL"),
        ),
    ),
    Command("del", "delete keys; prints how many existed", _store_command(_delete), (_KEYS,)),
    Command("keys", "list keys, one per line, sorted", _store_command(_keys), (_PREFIX,)),
    Command(
        "mget",
        f"print one line per key: the value, or {NIL.decode()} if missing",
        _store_command(_mget),
        (_KEYS,),
    ),
    Command(
        "ttl", "print the TTL in seconds (-1: none, -2: no such key)", _store_command(_ttl), (_KEY,)
    ),
    Command(
        "expire",
        "set a TTL; prints 1, or 0 and exits 1 if the key is missing",
        _store_command(_expire),
        (_KEY, arg("seconds", type=int, help="seconds to live; <= 0 deletes the key")),
    ),
    Command(
        "persist",
        "remove a TTL; prints 1, or 0 and exits 1 if there was none",
        _store_command(_persist),
        (_KEY,),
    ),
    Command(
        "purge-expired",
        "delete expired values for good; prints how many",
        _store_command(_purge_expired),
        (_PREFIX,),
    ),
    Command(
        "purge",
        "delete for good what no read can see: expired values, and the objects of deleted "
        "or trimmed log records once 10 minutes old; prints what it deleted",
        _store_command(_purge),
        (_PREFIX,),
    ),
    Command(
        "append",
        "append records to a log; prints its new length",
        _store_command(_append),
        (
            _LOG,
            arg("values", nargs="+", metavar="VALUE", help="a record; '-' reads one from stdin"),
        ),
    ),
    Command(
        "range",
        "print a log's records START..END (inclusive, negative from the end), one per line",
        _store_command(_range),
        (
            _LOG,
            arg("start", nargs="?", default="0", metavar="START", help="first index (default 0)"),
            arg("end", nargs="?", default="-1", metavar="END", help="last index (default -1)"),
        ),
    ),
    Command(
        "len", "print how many records a log holds (0: none)", _store_command(_length), (_LOG,)
    ),
    Command(
        "trim",
        "drop a log's records before START (negative: keep the last -START); prints the new length",
        _store_command(_trim),
        (_LOG, arg("start", metavar="START", help="the first index to keep")),
    ),
    Command(
        "compact",
        "merge a log's old chunks into segments; prints how many objects it removed",
        _store_command(_compact),
        (_LOG,),
    ),
    Command(
        "fsck",
        "check every object (read and verified); --repair marks a log's lost records as lost",
        _store_command(_fsck),
        (arg("--repair", action="store_true", help="mark missing or damaged log records lost"),),
    ),
    Command(
        "serve",
        "serve the Redis protocol on the store (any Redis client; SIGTERM stops it)",
        _serve,
        _SERVE,
    ),
    Command(
        "artifact",
        "versioned artifacts: save, load, info, versions, ls, rm",
        None,
        subcommands=(
            Command(
                "save",
                "store a new version of a file (streamed); prints its version number",
                _store_command(_artifact_save),
                (
                    _ARTIFACT,
                    arg("source", metavar="FILE", help="the file to store; '-' reads stdin"),
                    arg("--mime", help="its media type (default: guessed from FILE's name)"),
                    arg("--meta", metavar="JSON", help="metadata: a JSON object"),
                ),
            ),
            Command(
                "load",
                "write a version (default: the latest) to stdout or a file; exit 1 if missing",
                _artifact_load,
                (
                    _ARTIFACT,
                    _VERSION,
                    arg("-o", "--output", metavar="FILE", help="write here instead of stdout"),
                ),
            ),
            Command(
                "info",
                "print a version's size, type, sha256, time and metadata as JSON",
                _store_command(_artifact_info),
                (_ARTIFACT, _VERSION),
            ),
            Command(
                "versions",
                "print an artifact's versions, one per line",
                _store_command(_artifact_versions),
                (_ARTIFACT,),
            ),
            Command(
                "ls",
                "list artifact names, one per line, sorted",
                _store_command(_artifact_list),
                (arg("prefix", nargs="?", default="", help="only names starting with PREFIX"),),
            ),
            Command(
                "rm",
                "delete one version, or all; prints how many were removed",
                _store_command(_artifact_delete),
                (_ARTIFACT, arg("--version", help="only this version")),
            ),
        ),
    ),
    Command(
        "session",
        "agent sessions (store.sessions): ls, show, rm, export",
        None,
        subcommands=(
            Command(
                "ls",
                "list sessions, one per line: user, id, events, created, updated, title, status "
                "(tab-separated); one page, the next page's cursor on stderr",
                _store_command(_session_ls),
                (
                    _APP,
                    arg("user", nargs="?", metavar="USER", help="only this user's (default: all)"),
                    arg("--limit", metavar="N", help="sessions per page, 1-1000 (default 100)"),
                    arg("--cursor", metavar="C", help="start after this (from 'next page:')"),
                    arg("--all", action="store_true", help="every page (default 1000 a page)"),
                    _JSON,
                ),
            ),
            Command(
                "show",
                "print a session: its fields, merged state and events (seq, time, data, delta); "
                "exit 1 if there is none",
                _store_command(_session_show),
                (
                    _APP,
                    _USER,
                    _SESSION,
                    arg("--recent", metavar="N", help="only the last N events"),
                    arg("--after", metavar="SEQ", help="only the events after SEQ"),
                    _JSON,
                ),
            ),
            Command(
                "rm",
                "delete a session, a user's sessions, or (--all-users) the app's; prints how "
                "many; exit 1 if the one session did not exist",
                _session_rm,
                (
                    _APP,
                    arg("user", nargs="?", metavar="USER", help="the user"),
                    arg("id", nargs="?", metavar="ID", help="only this session"),
                    arg("--all-users", action="store_true", help="delete the whole app"),
                    *_PROGRESS,
                ),
            ),
            Command(
                "export",
                "print sessions with their events as JSON lines (one session, a user's or the "
                'app\'s); bytes in events and state as {"$bytes": BASE64}, times ISO-8601 UTC',
                _session_export,
                (
                    _APP,
                    arg("user", nargs="?", metavar="USER", help="only this user's"),
                    arg("id", nargs="?", metavar="ID", help="only this session"),
                    arg("-o", "--output", metavar="FILE", help="write here instead of stdout"),
                    *_PROGRESS,
                ),
            ),
        ),
    ),
    Command("stats", "print the store's URL and request counters as JSON", _store_command(_stats)),
    Command(
        "retention",
        "the retention policy of the store (rules kept in the bucket; applied by maintain)",
        None,
        subcommands=(
            Command(
                "ls",
                "print the rules: kind, prefix, limits",
                _store_command(_retention_ls),
                (_JSON,),
            ),
            Command(
                "set",
                "add or replace the rule for KIND and --prefix; prints the policy",
                _store_command(_retention_set),
                (
                    arg("kind", choices=("values", "logs", "artifacts", "records")),
                    arg("--prefix", default="", help="only keys or names starting with PREFIX"),
                    arg(
                        "--max-age",
                        metavar="AGE",
                        help="seconds, or with a unit: 90m, 12h, 30d, 2w",
                    ),
                    arg("--max-count", metavar="N", type=int, help="logs: keep the last N records"),
                    arg(
                        "--max-versions", metavar="N", type=int, help="artifacts: keep the newest N"
                    ),
                ),
            ),
            Command(
                "rm",
                "remove the rule for KIND and --prefix; exit 1 if there was none",
                _store_command(_retention_rm),
                (
                    arg("kind", choices=("values", "logs", "artifacts", "records")),
                    arg("--prefix", default="", help="the rule's prefix"),
                ),
            ),
        ),
    ),
    Command(
        "maintain",
        "apply the retention policies (this store and its namespaces), purge what no read "
        "sees, and print what was freed; safe to run from several processes at once",
        _store_command(_maintain),
        (
            arg("--json", action="store_true", help="print the report as JSON"),
            arg(
                "--keep-expired",
                action="store_true",
                help="skip expired values (finding them costs a ranged GET of every value)",
            ),
            *_PROGRESS,
        ),
    ),
    Command(
        "rekey",
        "seal every object under the key ring's primary key (--key-file or $KVSTORE_KEYS); "
        "a writer meanwhile is never overwritten; run again to finish a stopped run",
        _store_command(_rekey),
        (
            arg("--seal-plaintext", action="store_true", help="seal plaintext objects too"),
            *_PROGRESS,
        ),
    ),
    Command(
        "keygen",
        "print a new random AES-256 key as ID:BASE64 (a $KVSTORE_KEYS entry) or --json (a "
        "key file)",
        _keygen,
        (
            arg("id", nargs="?", default="k1", help="the key's id (default k1)"),
            arg("--json", action="store_true", help="print a key file"),
        ),
    ),
    Command(
        "du",
        "print the objects and bytes the store holds, per namespace and kind (values, logs, "
        "lists, artifacts, sessions, records), from listings alone (no object is read)",
        _store_command(_du),
        (
            arg("--prefix", help="only keys and names starting with PREFIX (no namespaces)"),
            arg("--json", action="store_true", help="print the report as JSON"),
        ),
    ),
    Command("demo", "a narrated tour in a temporary directory (or --url DIR, empty)", _demo),
)

_EPILOG = f"""\
exit status: 0 ok; 1 a "no" answer (get: missing key, set: --nx/--xx not met,
expire/persist: nothing changed, session show/export/rm: no such session); 2 an error
(one line on stderr; --debug for a traceback).
mget prints {NIL.decode()} for a missing key, so a stored value "{NIL.decode()}", or one with a
newline, is ambiguous there: use get for such values. range prints one record per line, so
records holding newlines are ambiguous there too. Negative indices need no "--":
  kvstore range chat -5 -1
"""


def _global_options(late: bool) -> argparse.ArgumentParser:
    """The options every subcommand takes, before it or (``late``) after it. After it they
    default to SUPPRESS so they do not overwrite what was given before."""
    p = argparse.ArgumentParser(add_help=False)

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if late else value

    p.add_argument(
        "--url",
        default=default(None),
        help=f"where the store lives (default: $KVSTORE_URL, else {DEFAULT_URL}): a directory, "
        "file://, memory://, s3://bucket/prefix, gs://bucket/prefix, any fsspec URL",
    )
    p.add_argument(
        "--cache",
        default=default(os.environ.get("KVSTORE_CACHE") or "local"),
        help="none, local (in-process) or a redis://, rediss://, unix:// or redis+cluster:// "
        "URL (default: $KVSTORE_CACHE, else local)",
    )
    p.add_argument(
        "--key-file",
        default=default(None),
        metavar="PATH",
        help="an encrypted store's key ring, JSON (default: $KVSTORE_KEY_FILE, else the keys "
        "in $KVSTORE_KEYS, else none: not encrypted)",
    )
    p.add_argument(
        "--storage-option",
        action="append",
        dest="late_storage_option" if late else "storage_option",
        default=[],
        metavar="KEY=VALUE",
        help="passed to fsspec (repeatable); VALUE is parsed as JSON when it parses",
    )
    p.add_argument("--debug", action="store_true", default=default(False), help="show tracebacks")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A Redis-style key-value store over object storage.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_global_options(late=False)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    late = _global_options(late=True)
    for command in COMMANDS:
        _add_command(subparsers, command, late)
    return parser


def _add_command(subparsers: Any, command: Command, late: argparse.ArgumentParser) -> None:
    sub = subparsers.add_parser(
        command.name, help=command.summary, description=command.summary, parents=[late]
    )
    for flags, options in command.arguments:
        sub.add_argument(*flags, **options)
    if command.subcommands:
        nested = sub.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        for child in command.subcommands:
            _add_command(nested, child, late)
    else:
        sub.set_defaults(run=command.run)


def main(argv: list[str] | None = None) -> int:
    """Run the ``kvstore`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    out = sys.stdout.buffer
    try:
        status: int = args.run(args, out)
        out.flush()
        return status
    except BrokenPipeError:  # `kvstore keys | head`: the reader left; not worth a message
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (KVStoreError, OSError, ValueError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"{PROG}: error: {exc or type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


__all__ = ["COMMANDS", "Command", "build_parser", "main"]
