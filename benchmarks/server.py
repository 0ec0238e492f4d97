"""Start a row's server pinned to one CPU, time it to its first 200 on /ready, and stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

__all__ = ["SERVER_CPU", "ServerError", "ServerProcess", "free_port", "stop_all"]

HOST = "127.0.0.1"
#: The server runs on CPU 0; the harness and wrk on CPU 1 (when the machine has two).
SERVER_CPU = 0
_LIVE: set[ServerProcess] = set()


class ServerError(RuntimeError):
    """A server did not start, or answered wrongly."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _ready_status(port: int, timeout: float) -> int | None:
    """Status code of ``GET /ready``, or None when nothing answers yet."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = sock.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    return int(parts[1])


def _pin_to_server_cpu() -> None:  # runs in the child between fork and exec
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {SERVER_CPU})


class ServerProcess:
    """One spawn of a row's server; a context manager that always stops it (and its children)."""

    def __init__(
        self, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path, port: int
    ) -> None:
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> float:
        """Spawn the server and poll /ready every 5 ms; seconds from Popen to the first 200."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # A file, for every row: a pipe nobody drains would stall a chatty server.
        with self.log_path.open("wb") as log:
            started = time.perf_counter()
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_pin_to_server_cpu,
                start_new_session=True,  # own process group: stop() reaches its children too
            )
        _LIVE.add(self)
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"exited with {self.proc.returncode} before ready: {self.tail()}")
            if _ready_status(self.port, timeout=1.0) == 200:
                self.startup_s = time.perf_counter() - started
                return self.startup_s
            time.sleep(0.005)
        raise ServerError(f"no 200 on /ready within {timeout:.0f} s: {self.tail()}")

    def describe(self) -> str:
        """Whether the server is still running, and the end of its log: for error messages."""
        if self.proc is None:
            return "not started"
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"server {state}; log: {self.tail(3)}"

    def tail(self, lines: int = 8) -> str:
        """The last lines of the server's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds."""
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=grace)
            # Workers that outlived their parent still belong to the group.
            _signal_group(proc.pid, signal.SIGKILL)
        finally:
            _LIVE.discard(self)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def stop_all() -> None:
    """Stop every server still running (on Ctrl-C or an unexpected error)."""
    for server in list(_LIVE):
        server.stop(grace=2.0)
