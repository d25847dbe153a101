"""The ``kvstore`` command: every subcommand's output and exit status, errors as one line.

Most tests call ``kvstore.cli.main([...])`` in-process and capture stdout as bytes; a few
run the real ``python -m kvstore`` and the installed ``kvstore`` console script.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import kvstore
from kvstore import cli, commands_cli, demo
from kvstore.cli import main
from kvstore.keys import encode_name


@dataclass
class Result:
    status: int
    out: bytes
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.decode().splitlines()


class CLI:
    """Runs ``main`` against one store directory and captures what it printed."""

    def __init__(self, capsys: pytest.CaptureFixture[bytes], root: Path) -> None:
        self.capsys = capsys
        self.root = root
        self.url = str(root)

    def __call__(self, *args: str) -> Result:
        return self.raw("--url", self.url, *args)

    def raw(self, *argv: str) -> Result:
        self.capsys.readouterr()  # drop anything printed before
        status = main(list(argv))
        captured = self.capsys.readouterr()
        return Result(status, captured.out, captured.err.decode())

    def object_file(self, key: str) -> Path:
        return self.root / "kv" / encode_name(key)


@pytest.fixture
def run(capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path) -> CLI:
    return CLI(capsysbinary, tmp_path / "store")


def assert_error(result: Result, *fragments: str) -> None:
    """Exit 2, nothing on stdout, exactly one line on stderr naming the problem."""
    assert result.status == 2
    assert result.out == b""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("kvstore: error: ")
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0]


def flip_byte(path: Path, offset: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# -- values ------------------------------------------------------------------------------------


def test_set_prints_ok_and_get_prints_the_value(run: CLI) -> None:
    assert run("set", "greeting", "hello") == Result(0, b"OK\n", "")
    assert run("get", "greeting") == Result(0, b"hello\n", "")


def test_get_missing_key_prints_nothing_and_exits_1(run: CLI) -> None:
    assert run("get", "nobody") == Result(1, b"", "")


def test_set_dash_reads_bytes_from_stdin(run: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"\x00\xff binary\nwith newline\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(payload)))
    assert run("set", "blob", "-").out == b"OK\n"
    assert run("get", "blob").out == payload + b"\n"
    with kvstore.open(run.url, cache=None) as store:
        assert store.get("blob") == payload


def test_set_value_is_stored_as_the_shell_gave_it(run: CLI) -> None:
    run("set", "word", "grüße")
    assert run("get", "word").out == "grüße\n".encode()


def test_set_nx_does_not_overwrite(run: CLI) -> None:
    assert run("set", "lock", "first", "--nx").out == b"OK\n"
    result = run("set", "lock", "second", "--nx")
    assert result.status == 1
    assert result.out == b""
    assert result.err == "kvstore: not set: key 'lock' already exists (--nx)\n"
    assert run("get", "lock").out == b"first\n"


def test_set_xx_needs_an_existing_key(run: CLI) -> None:
    result = run("set", "ghost", "x", "--xx")
    assert (result.status, result.out) == (1, b"")
    assert "does not exist (--xx)" in result.err
    assert run("get", "ghost").status == 1
    run("set", "ghost", "one")
    assert run("set", "ghost", "two", "--xx").out == b"OK\n"
    assert run("get", "ghost").out == b"two\n"


def test_set_ex_px_and_keepttl(run: CLI) -> None:
    run("set", "session", "a", "--ex", "100")
    assert run("ttl", "session").out == b"100\n"
    run("set", "session", "b", "--keepttl")
    assert run("ttl", "session").out == b"100\n"
    assert run("get", "session").out == b"b\n"
    run("set", "flash", "x", "--px", "50")
    time.sleep(0.1)
    assert run("get", "flash").status == 1


def test_set_rejects_nx_with_xx(run: CLI) -> None:
    assert_error(run("set", "k", "v", "--nx", "--xx"), "mutually exclusive")


def test_del_prints_how_many_existed(run: CLI) -> None:
    run("set", "a", "1")
    run("set", "b", "2")
    assert run("del", "a", "b", "missing") == Result(0, b"2\n", "")
    assert run("get", "a").status == 1
    assert run("del", "a").out == b"0\n"


def test_keys_one_per_line_sorted_and_by_prefix(run: CLI) -> None:
    for key in ("user:2", "user:1", "order:9", "user:10"):
        run("set", key, "x")
    assert run("keys").lines == ["order:9", "user:1", "user:10", "user:2"]
    assert run("keys", "user:1").lines == ["user:1", "user:10"]
    assert run("keys", "nothing") == Result(0, b"", "")


def test_mget_prints_nil_for_missing_keys(run: CLI) -> None:
    run("set", "a", "alpha")
    run("set", "c", "gamma")
    assert run("mget", "a", "b", "c") == Result(0, b"alpha\n(nil)\ngamma\n", "")


def test_ttl_of_missing_and_persistent_keys(run: CLI) -> None:
    assert run("ttl", "nobody").out == b"-2\n"
    run("set", "forever", "x")
    assert run("ttl", "forever") == Result(0, b"-1\n", "")


def test_expire_and_persist(run: CLI) -> None:
    run("set", "k", "v")
    assert run("expire", "k", "30") == Result(0, b"1\n", "")
    assert run("ttl", "k").out == b"30\n"
    assert run("persist", "k") == Result(0, b"1\n", "")
    assert run("ttl", "k").out == b"-1\n"
    assert run("persist", "k") == Result(1, b"0\n", "")  # no TTL to remove
    assert run("expire", "missing", "30") == Result(1, b"0\n", "")
    assert run("expire", "k", "0").out == b"1\n"  # <= 0 deletes, like Redis
    assert run("get", "k").status == 1


def test_purge_expired_removes_only_expired_values(run: CLI) -> None:
    run("set", "old", "x", "--px", "20")
    run("set", "old2", "x", "--px", "20")
    run("set", "young", "x", "--ex", "60")
    time.sleep(0.05)
    assert run("keys").lines == ["old", "old2", "young"]  # listed until purged
    assert run("purge-expired", "old2") == Result(0, b"1\n", "")
    assert run("purge-expired") == Result(0, b"1\n", "")
    assert run("keys").lines == ["young"]


def test_purge_reports_what_it_deleted(run: CLI) -> None:
    run("set", "old", "x", "--px", "20")
    run("append", "log", "a", "b")
    run("del", "log")
    time.sleep(0.05)
    # The expired value goes; the deleted log's chunks are young (kept 10 minutes).
    assert run("purge") == Result(0, b"expired: 1\nlog_objects: 0\n", "")


def test_stats_prints_json(run: CLI) -> None:
    result = run("stats")
    assert result.status == 0
    stats = json.loads(result.out)
    assert stats["url"] == f"file://{run.root}"
    assert stats["requests"] == 0
    assert stats["cache"]["kind"] == "local"
    assert json.loads(run.raw("--cache", "none", "--url", run.url, "stats").out)["cache"] == {
        "kind": "none"
    }


# -- logs ----------------------------------------------------------------------------------------


def test_append_prints_the_new_length(run: CLI) -> None:
    assert run("append", "chat", "one") == Result(0, b"1\n", "")
    assert run("append", "chat", "two", "three") == Result(0, b"3\n", "")
    assert run("len", "chat") == Result(0, b"3\n", "")
    assert run("get", "chat").status == 1  # a log is not a value
    with kvstore.open(run.url, cache=None) as store:
        assert store.range("chat") == [b"one", b"two", b"three"]


def test_range_prints_one_record_per_line(run: CLI) -> None:
    run("append", "chat", *(f"m{i}" for i in range(6)), "grüße")
    assert run("range", "chat") == Result(0, "m0\nm1\nm2\nm3\nm4\nm5\ngrüße\n".encode(), "")
    assert run("range", "chat", "2").lines == ["m2", "m3", "m4", "m5", "grüße"]
    assert run("range", "chat", "1", "2") == Result(0, b"m1\nm2\n", "")
    assert run("range", "chat", "5", "99").lines == ["m5", "grüße"]  # clamped, like LRANGE
    assert run("range", "chat", "4", "2") == Result(0, b"", "")
    assert run("range", "nobody") == Result(0, b"", "")


def test_range_takes_negative_indices(run: CLI) -> None:
    run("append", "chat", "a", "b", "c", "d", "e", "f")
    assert run("range", "chat", "-5", "-1") == Result(0, b"b\nc\nd\ne\nf\n", "")
    assert run("range", "chat", "-2") == Result(0, b"e\nf\n", "")
    assert run("range", "chat", "--", "-3", "-2") == Result(0, b"d\ne\n", "")
    assert run("range", "chat", "0", "-4").lines == ["a", "b", "c"]
    assert run("range", "chat", "-99", "0").lines == ["a"]
    # global options still work after negative indices
    assert run.raw("range", "chat", "-1", "-1", "--url", run.url, "--cache", "none").lines == ["f"]


def test_append_dash_reads_one_record_from_stdin(run: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"\x00\xff binary\nwith newline"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(payload)))
    assert run("append", "blobs", "before", "-", "after") == Result(0, b"3\n", "")
    assert run("range", "blobs", "1", "1").out == payload + b"\n"
    with kvstore.open(run.url, cache=None) as store:
        assert store.range("blobs") == [b"before", payload, b"after"]


def test_append_dash_only_once(run: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"x")))
    assert_error(run("append", "chat", "-", "-"), "only one VALUE can be '-'")
    assert run("len", "chat").out == b"0\n"


def test_len_of_a_missing_log_is_0(run: CLI) -> None:
    run("set", "value", "x")
    assert run("len", "nobody") == Result(0, b"0\n", "")
    assert run("len", "value") == Result(0, b"0\n", "")  # a value is not a log


def test_trim_prints_the_new_length(run: CLI) -> None:
    run("append", "chat", "a", "b", "c", "d", "e")
    assert run("trim", "chat", "1") == Result(0, b"4\n", "")
    assert run("range", "chat").lines == ["b", "c", "d", "e"]
    assert run("trim", "chat", "-2") == Result(0, b"2\n", "")  # keep the last two
    assert run("range", "chat").lines == ["d", "e"]
    assert run("append", "chat", "f").out == b"3\n"
    assert run("trim", "chat", "0").out == b"3\n"
    assert run("trim", "chat", "10") == Result(0, b"0\n", "")
    assert run("len", "chat").out == b"0\n"
    assert run("keys").out == b""


def test_compact_prints_the_objects_removed(run: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    for record in ("a", "b", "c"):
        run("append", "chat", record)  # one chunk each
    assert run("compact", "chat") == Result(0, b"0\n", "")  # young chunks are left alone
    # Chunk ages are the object store's (file mtimes here): no client clock can make
    # them old, so the age limit is lowered instead.
    monkeypatch.setattr(kvstore.logs.limits, "MIN_AGE_MS", 0)
    assert run("compact", "chat") == Result(0, b"2\n", "")  # all but the tail chunk
    assert run("range", "chat").lines == ["a", "b", "c"]
    assert run("compact", "nobody") == Result(0, b"0\n", "")


def test_logs_show_in_keys_and_del_removes_them(run: CLI) -> None:
    run("append", "chat:1", "hi")
    run("set", "user:1", "ada")
    assert run("keys").lines == ["chat:1", "user:1"]
    assert run("del", "chat:1") == Result(0, b"1\n", "")
    assert run("range", "chat:1") == Result(0, b"", "")
    assert run("keys").lines == ["user:1"]


def test_log_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["append", "chat"], ["range"], ["trim", "chat"], ["len"], ["range", "k", "-x"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert "usage: kvstore" in capsys.readouterr().err


# -- global options ----------------------------------------------------------------------------


def test_global_options_after_the_subcommand(run: CLI, tmp_path: Path) -> None:
    other = str(tmp_path / "other")
    assert run.raw("set", "k", "v", "--url", other, "--cache", "none").out == b"OK\n"
    assert run.raw("get", "k", "--url", other).out == b"v\n"
    assert run("get", "k").status == 1  # the default store did not get it


def test_url_from_environment(run: CLI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KVSTORE_URL", str(tmp_path / "from-env"))
    assert run.raw("set", "k", "v").out == b"OK\n"
    assert (tmp_path / "from-env" / "kv").is_dir()
    assert run.raw("--url", str(tmp_path / "from-env"), "get", "k").out == b"v\n"


def test_memory_url(run: CLI) -> None:
    assert run.raw("--url", "memory://cli-test", "set", "k", "v").out == b"OK\n"
    assert run.raw("--url", "memory://cli-test", "get", "k").out == b"v\n"


def test_storage_options_parse_json_values() -> None:
    parsed = commands_cli._storage_options(
        ["a=1", "b=text", "c=false", 'd={"k": [1]}', "e=", "f=x=y"]
    )
    assert parsed == {"a": 1, "b": "text", "c": False, "d": {"k": [1]}, "e": "", "f": "x=y"}


def test_storage_options_reach_the_store(run: CLI) -> None:
    # fsync is the one option a local directory takes; anything else is refused by name.
    assert run("--storage-option", "fsync=false", "set", "k", "v").out == b"OK\n"
    assert_error(run("--storage-option", "region=eu", "get", "k"), "region")
    assert_error(run("get", "k", "--storage-option", "region=eu"), "region")


def test_cache_values() -> None:
    assert commands_cli._cache("none") is None
    assert commands_cli._cache("local") == "local"
    assert commands_cli._cache("redis://localhost:6379/0") == "redis://localhost:6379/0"


def test_help_documents_nil_and_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "(nil)" in text
    assert "exit status" in text
    for command in cli.COMMANDS:
        assert command.name in text


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["frobnicate"], ["get"], ["set", "k", "v", "--ex", "soon"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert "usage: kvstore" in capsys.readouterr().err


# -- errors: one line on stderr, exit 2 --------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["get", "k" * 1025], ["1024 bytes"]),
        (["--url", "nope://x", "get", "k"], ["unknown storage protocol 'nope'"]),
        (["--cache", "bogus", "get", "k"], ["--cache", "'bogus'"]),
        (["--cache", "redis://host:notaport/0", "get", "k"], ["bad Redis URL"]),
        (["--storage-option", "novalue", "get", "k"], ["KEY=VALUE", "'novalue'"]),
        (["set", "k", "v", "--ex", "0"], ["ex must be positive"]),
        (["range", "chat", "x"], ["START must be an integer", "'x'"]),
        (["range", "chat", "0", "1.5"], ["END must be an integer", "'1.5'"]),
        (["range", "chat", "--", "-1e3"], ["START must be an integer", "'-1e3'"]),
        (["trim", "chat", "first"], ["START must be an integer", "'first'"]),
    ],
    ids=[
        "long-key",
        "bad-url",
        "bad-cache",
        "bad-redis-url",
        "bad-option",
        "ex-zero",
        "range-bad-start",
        "range-bad-end",
        "range-float-start",
        "trim-bad-start",
    ],
)
def test_errors_are_one_line(run: CLI, argv: list[str], fragments: list[str]) -> None:
    assert_error(run(*argv), *fragments)


def test_corrupted_object_is_one_line_and_del_repairs_it(run: CLI) -> None:
    run("set", "fragile", "precious data")
    flip_byte(run.object_file("fragile"))
    result = run("get", "fragile")
    assert_error(result, "checksum mismatch", "'fragile'")
    assert "kv/fragile~" in result.err
    assert_error(run("mget", "fragile"), "checksum mismatch")
    assert run("del", "fragile") == Result(0, b"1\n", "")
    assert run("get", "fragile").status == 1


def test_unreadable_object_is_one_line(run: CLI) -> None:
    run("set", "k", "v")
    path = run.object_file("k")
    path.unlink()
    path.symlink_to(path)  # a symlink loop: unreadable, even for root
    assert_error(run("--cache", "none", "get", "k"), "get", "kv/k~", "symbolic links")


def test_debug_shows_the_traceback(run: CLI) -> None:
    result = run("--debug", "get", "k" * 1025)
    assert result.status == 2
    assert result.out == b""
    assert result.err.startswith("Traceback (most recent call last):")
    assert "InvalidKeyError" in result.err
    last = result.err.splitlines()[-1]
    assert last == "kvstore: error: key is 1025 bytes long; the limit is 1024 bytes"
    assert "Traceback" in run("get", "k" * 1025, "--debug").err  # after the subcommand too


# -- demo ----------------------------------------------------------------------------------------


def test_demo_narrates_every_chapter_and_cleans_up(run: CLI) -> None:
    result = run.raw("demo")
    assert result.status == 0, result.err
    text = result.out.decode()
    lines = text.splitlines()
    assert len(lines) <= 66
    for number, chapter in enumerate(demo.DEMO_CHAPTERS, 1):
        assert f"{number}. {chapter.__doc__}" in lines
    assert "store.get('greeting')  ->  b'hello, object storage'" in text
    assert "store.get('session:42')  ->  None" in text  # expired
    assert "store.set('lock:report', 'worker-2', nx=True)  ->  None" in text
    assert "raises CorruptDataError: checksum mismatch (key 'fragile'" in text
    assert "   ns/tenant-a~/kv/greeting~" in lines
    assert "store.artifacts.load('report.md', version=0).text  ->  '# Q3\\nRevenue up.'" in text
    titles = [line for line in lines if line[:1].isdigit()]
    assert titles[5:10] == [
        "6. Keys by prefix: one LIST request per 1000 keys",
        "7. Session history: an append log",
        "8. Artifacts: numbered immutable versions",
        "9. Agent sessions: events, and state in three scopes",
        "10. On disk: a value per object (kv/), a directory per log (log/) and artifact (art/)",
    ]
    log = lines[lines.index(titles[6]) + 1 : lines.index(titles[7])]
    assert log[0].endswith('\'{"role": "user", "content": "Two at 8?"}\')  ->  2')
    assert "   store.length('chat')  ->  4" in log
    assert any(line.endswith("->  ['system', 'user', 'assistant', 'user']") for line in log)
    assert (
        '   store.range(\'chat\', -2, -1)  ->  [b\'{"role": "assistant", "content": '
        '"Booked for 8 pm."}\', b\'{"role": "user", "content": "Thanks!"}\']'
    ) in log
    zero, two, three = (f"{n:020d}" for n in (0, 2, 3))
    assert log[-1] == f"   on disk, one object per append: log/chat~/c/{zero}, c/{two}, c/{three}"
    assert "   log/chat~/  (3 objects)" in lines
    artifacts = lines[lines.index(titles[7]) + 1 : lines.index(titles[8])]
    assert artifacts[0].endswith("->  0") and artifacts[1].endswith("->  1")
    assert artifacts[-1] == f"   on disk, one object per version: art/report.md~/{zero}, {1:020d}"
    assert "   art/report.md~/  (2 objects)" in lines
    sessions = lines[lines.index(titles[8]) + 1 : lines.index(titles[9])]
    assert sessions[1].endswith("expect_last=s.last_seq).seq  ->  0")
    assert sessions[3].startswith("     raises StaleSessionError: session 'table-42'")
    assert sessions[4].endswith(
        "->  {'party': 2, 'time': '20:00', 'app:city': 'Lyon', 'user:name': 'Ada'}"
    )
    root = Path(lines[0].split(" in ", 1)[1].split(" (cache")[0])
    assert root.name.startswith("kvstore-demo-")
    assert not root.exists()
    assert lines[-1] == "Done; the demo store is removed."


def test_demo_in_a_named_directory_keeps_it(run: CLI, tmp_path: Path) -> None:
    target = tmp_path / "demo"
    result = run.raw("demo", "--url", str(target))
    assert result.status == 0, result.err
    assert result.out.decode().splitlines()[-1] == f"Done; the demo store is kept in {target}."
    with kvstore.open(str(target), cache=None) as store:
        assert store.get("greeting") == b"hello, object storage"
        assert store.get("fragile") is None  # the demo removed its corrupted object
        assert len(store.range("chat")) == 4
        assert json.loads(store.range("chat", -1)[0]) == {"role": "user", "content": "Thanks!"}
    assert_error(run.raw("demo", "--url", str(target)), "empty or new directory")
    assert_error(run.raw("demo", "--url", "memory://demo"), "local directory")


def test_demo_chapters_are_a_list_later_features_extend(
    run: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def chapter_extra(tour: demo.Tour) -> None:
        """Extra: a chapter added later"""
        tour.do("store.set('extra', 1)")
        tour.do("missing = store.get('nope')")
        tour.do("missing is None")

    monkeypatch.setattr(demo, "DEMO_CHAPTERS", [demo.DEMO_CHAPTERS[0], chapter_extra])
    result = run.raw("demo")
    assert result.status == 0
    assert result.out.decode().splitlines()[5:9] == [
        "2. Extra: a chapter added later",
        "   store.set('extra', 1)  ->  True",
        "   missing = store.get('nope')",
        "   missing is None  ->  True",
    ]


# -- real processes ------------------------------------------------------------------------------


def _console_script() -> list[str]:
    beside = Path(sys.executable).with_name("kvstore")
    found = str(beside) if beside.exists() else shutil.which("kvstore")
    if found is None:
        pytest.skip("the kvstore console script is not installed")
    return [found]


def _run(argv: list[str], cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "KVSTORE_URL"}
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, timeout=60, check=False, **kwargs
    )  # type: ignore[call-overload]


def test_python_m_kvstore_demo(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = _run([sys.executable, "-m", "kvstore", "demo"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    assert b"raises CorruptDataError" in proc.stdout
    assert proc.stdout.endswith(b"Done; the demo store is removed.\n")
    assert time.monotonic() - started < 15
    assert list(tmp_path.iterdir()) == []  # nothing left in the working directory


def test_console_script(tmp_path: Path) -> None:
    script = _console_script()
    url = str(tmp_path / "store")
    assert _run([*script, "--url", url, "set", "k", "-"], tmp_path, input=b"\x01\x02").stdout == (
        b"OK\n"
    )
    got = _run([*script, "--url", url, "get", "k"], tmp_path)
    assert (got.returncode, got.stdout) == (0, b"\x01\x02\n")
    missing = _run([*script, "--url", url, "get", "nope"], tmp_path)
    assert (missing.returncode, missing.stdout, missing.stderr) == (1, b"", b"")
    bad = _run([*script, "--url", "nope://x", "get", "k"], tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.count(b"\n") == 1
    assert bad.stderr.startswith(b"kvstore: error: unknown storage protocol")


def test_default_url_is_relative_to_the_working_directory(tmp_path: Path) -> None:
    proc = _run([sys.executable, "-m", "kvstore", "set", "k", "v"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / kvstore.DEFAULT_URL / "kv").is_dir()


# -- sessions (the rest: tests/test_cli_sessions.py) ---------------------------------------------


def test_session_help_lists_its_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["session", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in ("ls", "show", "rm", "export"):
        assert name in text
    with pytest.raises(SystemExit) as exit_info:
        main(["session", "export", "--help"])
    assert '{"$bytes": BASE64}' in capsys.readouterr().out


def test_session_commands_in_a_real_process(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    with kvstore.open(url, cache=None) as store:
        store.sessions.create("bot", "alice", "s1")
        store.sessions.append_event("bot", "alice", "s1", {"blob": b"\x00"})
    kv = [sys.executable, "-m", "kvstore", "--url", url, "session"]
    exported = _run([*kv, "export", "bot"], tmp_path)
    assert (exported.returncode, exported.stderr) == (0, b"")  # no progress: not a terminal
    assert json.loads(exported.stdout)["events"][0]["data"] == {"blob": {"$bytes": "AA=="}}
    guarded = _run([*kv, "rm", "bot"], tmp_path)
    assert guarded.returncode == 2
    assert guarded.stderr.startswith(b"kvstore: error: session rm bot would delete the whole app")
    removed = _run([*kv, "rm", "bot", "--all-users"], tmp_path)
    assert (removed.returncode, removed.stdout) == (0, b"1\n")
