"""Run a real server process on a free loopback port and collect its output."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
RUNNERS = ("hypercorn", "uvicorn")


def on(runner: str, **env: str) -> dict[str, str]:
    """The environment that serves on ``runner`` (``CRBR_FUNCTIONS_SERVER``), plus ``env``."""
    return {"CRBR_FUNCTIONS_SERVER": runner, **env}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server started as a child process; its stdout and stderr lines land in ``lines``."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, ready_path: str = "/ready"):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ready_path = ready_path
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("CRBR_")
        }
        environment.update(
            {
                "CRBR_FUNCTIONS_HOST": "127.0.0.1",
                "CRBR_FUNCTIONS_PORT": str(self.port),
                "CRBR_ENABLE_EVENTS": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        environment.update(env or {})
        command = [a.replace("{port}", str(self.port)) for a in args]
        if command[0] != "hypercorn":
            command = [sys.executable, *command]
        else:
            command[0] = str(Path(sys.executable).with_name("hypercorn"))
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.output}")
            try:
                if httpx.get(self.base_url + self.ready_path, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.output}")

    def wait_for_line(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no line with {text!r} after {timeout} s:\n{self.output}")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        code = self.process.wait(timeout)
        self._close()
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._close()

    def _close(self) -> None:
        self._reader.join(timeout=5)
        if self.process.stdout is not None and not self.process.stdout.closed:
            self.process.stdout.close()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)
