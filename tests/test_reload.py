"""``metatwin-functions serve --reload``: development only, restarts on a change of the code."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from metatwin_functions.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
MODULE = """
from metatwin_functions import Function


@Function(description="Adds two numbers together")
async def add_numbers(a: int, b: int) -> int:
    return a + b
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_functions(url: str, wanted: str, process: subprocess.Popen[str]) -> list[str]:
    deadline = time.monotonic() + 30
    functions: list[str] = []
    while time.monotonic() < deadline:
        assert process.poll() is None, "the reloader exited"
        try:
            functions = httpx.get(url, timeout=1).json()["functions"]
        except (httpx.HTTPError, ValueError, KeyError):
            functions = []
        if wanted in functions:
            return functions
        time.sleep(0.2)
    raise AssertionError(f"{wanted!r} never served; last /ready functions: {functions}")


def test_reload_is_never_on_by_default() -> None:
    assert build_parser().parse_args(["serve", "my_functions"]).reload is False


def test_without_watchfiles_reload_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setitem(sys.modules, "watchfiles", None)
    with pytest.raises(SystemExit, match=r"metatwin-functions\[reload\]"):
        main(["serve", "--reload", "examples.simple_function"])


def test_a_change_to_the_module_restarts_the_server_with_it(tmp_path: Path) -> None:
    (tmp_path / "my_functions.py").write_text(MODULE)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRBR_")}
    env.update(PYTHONPATH=str(ROOT), CRBR_ENABLE_EVENTS="false")
    process = subprocess.Popen(
        [sys.executable, "-m", "metatwin_functions", "serve", "--reload", "my_functions",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/ready"
        assert wait_for_functions(url, "add_numbers", process) == ["add_numbers"]
        (tmp_path / "my_functions.py").write_text(
            MODULE + '\n\n@Function(description="Doubles")\nasync def double(x: int) -> int:\n'
            "    return 2 * x\n"
        )
        assert wait_for_functions(url, "double", process) == ["add_numbers", "double"]
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate(timeout=10)
    assert "--reload (development only)" in output
    assert "Changed: my_functions.py; restarting" in output
