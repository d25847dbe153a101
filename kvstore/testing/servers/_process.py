"""Shared process plumbing for the local service stand-ins.

Guarantees
----------
* Every server is started in its **own process group** (``start_new_session=True``),
  so signals sent by :class:`ManagedProcess` reach the server and anything it forked
  (e.g. a redis ``BGSAVE`` child), and a Ctrl-C in the parent's terminal is not
  delivered to the server directly.
* stdout and stderr of the server go to ``<workdir>/server.log``; start-up failures
  raise :class:`BackendError` quoting the last lines of that log.
* :meth:`ManagedProcess.stop` sends SIGTERM (plus SIGCONT, in case the server is
  paused), waits ``stop_timeout`` seconds, then SIGKILLs the group. It is idempotent.
* Every started process is registered for an ``atexit`` clean-up, so a normal
  interpreter exit (including pytest finishing or failing) leaves no orphan server.
  On Linux, processes started from the main thread additionally get
  ``PR_SET_PDEATHSIG=SIGKILL``, so they also die if the parent is SIGKILLed.
  The Python launchers (``_moto_main``, ``_gcs_main``) also watch their parent pid.
* Nothing ever listens on anything but ``127.0.0.1``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

__all__ = [
    "HOST",
    "BackendError",
    "LauncherProcess",
    "ManagedProcess",
    "free_port",
    "free_port_pair",
    "read_port_file",
    "wait_for_port",
    "watch_parent",
    "write_port_file",
]

HOST = "127.0.0.1"

_T = TypeVar("_T", bound="ManagedProcess")


class BackendError(RuntimeError):
    """A local backend could not be started or did not behave."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    There is an unavoidable window between this call and the server binding the
    port; callers that auto-pick a port should retry on "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port_pair(offset: int = 10000, attempts: int = 200) -> int:
    """Return a free port ``p`` such that ``p + offset`` is also free and < 65536.

    Used for redis cluster nodes, whose cluster bus listens on ``port + 10000``.
    """
    for _ in range(attempts):
        port = free_port()
        if port + offset < 65536 and _port_is_free(port + offset):
            return port
    raise BackendError(f"could not find a free port pair (offset {offset})")


def wait_for_port(
    host: str,
    port: int,
    timeout: float = 10.0,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Block until a TCP connect to ``host:port`` succeeds.

    Raises :class:`TimeoutError` after ``timeout`` seconds, or :class:`BackendError`
    as soon as ``alive()`` (if given) returns False.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if alive is not None and not alive():
            raise BackendError(f"process exited before {host}:{port} accepted connections")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{host}:{port} did not accept connections within {timeout}s")
        time.sleep(0.05)


def read_port_file(path: Path, timeout: float, alive: Callable[[], bool]) -> int:
    """Wait for a launcher to write its bound port into ``path`` and return it."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(path.read_text().strip())
        if not alive():
            raise BackendError("process exited before reporting its port")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no port reported in {path} within {timeout}s")
        time.sleep(0.05)


def write_port_file(path: Path, port: int) -> None:
    """Atomically publish ``port`` in ``path`` (used by the launchers)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(str(port))
    tmp.replace(path)


def watch_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Start a daemon thread that hard-exits this process once ``parent_pid`` is gone."""

    def _loop() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(0)

    if parent_pid > 0:
        threading.Thread(target=_loop, name="watch-parent", daemon=True).start()


# --------------------------------------------------------------------------- atexit
_LIVE: set[ManagedProcess] = set()
_LIVE_LOCK = threading.Lock()


def _cleanup_all() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.stop(timeout=2.0)


atexit.register(_cleanup_all)


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn that asks Linux to SIGKILL the child when its parent dies.

    Only used from the main thread: PDEATHSIG fires when the *thread* that forked
    exits, which would kill servers started from short-lived worker threads.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    sigkill = int(signal.SIGKILL)

    def _preexec() -> None:
        prctl(pr_set_pdeathsig, sigkill)

    return _preexec


class ManagedProcess:
    """Base class: one server subprocess with a private work directory.

    Subclasses implement :meth:`_command` and :meth:`_wait_ready`; they may override
    :meth:`_child_env`. ``start()`` returns ``self`` so ``X().start()`` chains, and the
    object is a context manager (``with RedisServer() as r:``) that stops on exit.
    """

    name = "process"

    def __init__(self, *, startup_timeout: float = 30.0, stop_timeout: float = 5.0) -> None:
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log_handle: int | None = None

    # ------------------------------------------------------------ to implement
    def _command(self) -> Sequence[str]:
        raise NotImplementedError

    def _wait_ready(self, timeout: float) -> None:
        raise NotImplementedError

    def _child_env(self) -> dict[str, str] | None:
        return None

    # ------------------------------------------------------------ state
    @property
    def workdir(self) -> Path:
        """Private temporary directory (log file, data); removed by :meth:`stop`."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"backends-{self.name}-"))
        return self._workdir

    @property
    def log_path(self) -> Path:
        """Path of the server's combined stdout/stderr log."""
        return self.workdir / "server.log"

    @property
    def pid(self) -> int | None:
        """PID of the server process, or None if it was never started / was stopped."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True if the process exists and has not exited (it may be paused)."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server log ('' if there is none)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------ lifecycle
    def _spawn(self) -> None:
        if self.running:
            raise BackendError(f"{self.name} is already running (pid {self.pid})")
        cmd = list(self._command())
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.workdir),
                env=self._child_env(),
                start_new_session=True,
                preexec_fn=_pdeathsig_preexec(),
            )
        with _LIVE_LOCK:
            _LIVE.add(self)

    def start(self: _T) -> _T:
        """Start the server and block until it is ready to serve requests.

        Raises :class:`BackendError` (with the log tail) if it exits or is not ready
        within ``startup_timeout`` seconds; the half-started process is killed.
        """
        self._spawn()
        try:
            self._wait_ready(self.startup_timeout)
        except Exception as exc:
            self._terminate(timeout=1.0)
            raise BackendError(
                f"{self.name} failed to start: {exc}\n--- last lines of {self.log_path} ---\n"
                f"{self.log_tail()}"
            ) from exc
        return self

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def _terminate(self, timeout: float | None = None) -> None:
        """SIGTERM the process group, then SIGKILL after ``timeout``; reap it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            self._signal(signal.SIGCONT)  # a SIGSTOPped process cannot act on SIGTERM
            try:
                proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait(5.0)
        else:
            self._signal(signal.SIGKILL)  # leftover children of a dead leader, if any
        self._proc = None

    def stop(self, timeout: float | None = None) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and delete its work directory.

        Idempotent; safe to call on a killed or never-started instance.
        """
        self._terminate(timeout)
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def kill(self) -> None:
        """SIGKILL the server immediately (for fault-injection tests).

        The work directory is kept, so a subclass ``restart()`` can bring it back.
        """
        if self._proc is None:
            return
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(5.0)

    def pause(self) -> None:
        """SIGSTOP the server: connections stay open but nothing is answered."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused server."""
        self._signal(signal.SIGCONT)

    def __enter__(self: _T) -> _T:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {state}>"


_PACKAGE_PARENT = str(Path(__file__).resolve().parents[3])  # the directory holding kvstore/


class LauncherProcess(ManagedProcess):
    """A ``python -m kvstore.testing.servers.<launcher>`` HTTP server.

    The launcher binds ``--port`` (0 = kernel-chosen, so no port race), publishes the
    bound port in a file, and exits if this process dies. :meth:`restart` reuses the
    previously bound port.
    """

    module = ""

    def __init__(
        self, port: int | None = None, *, startup_timeout: float = 30.0, stop_timeout: float = 5.0
    ) -> None:
        super().__init__(startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self._requested_port = port or 0
        self._port: int | None = None

    @property
    def _port_file(self) -> Path:
        return self.workdir / "port"

    @property
    def port(self) -> int:
        """The bound TCP port (only known once started)."""
        if self._port is None:
            raise BackendError(f"{self.name} has not been started")
        return self._port

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    def _launcher_args(self) -> list[str]:
        return []

    def _command(self) -> list[str]:
        return [
            sys.executable, "-m", self.module,
            "--host", HOST,
            "--port", str(self._requested_port),
            "--port-file", str(self._port_file),
            "--parent-pid", str(os.getpid()),
            *self._launcher_args(),
        ]  # fmt: skip

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _spawn(self) -> None:
        self._port_file.unlink(missing_ok=True)
        super()._spawn()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        port = read_port_file(self._port_file, timeout, lambda: self.running)
        wait_for_port(HOST, port, max(0.1, deadline - time.monotonic()), lambda: self.running)
        self._port = port

    def restart(self: _T) -> _T:
        """Stop (even if paused/killed) and start again on the same port; state is lost."""
        assert isinstance(self, LauncherProcess)
        self._terminate()
        if self._port is not None:
            self._requested_port = self._port
        return self.start()
