"""Every example file runs the way its docstring says, as a real process on a free port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from server_process import REPO, ServerProcess

# (the command as documented, the path of /ready, the example files it runs)
DOCUMENTED_RUNS = [
    (("examples/main.py",), "/ready", {"main.py", "simple_function.py"}),
    (("examples/asgi_app.py",), "/ready", {"asgi_app.py"}),
    (
        ("hypercorn", "examples.asgi_app:app", "--bind", "127.0.0.1:{port}"),
        "/ready",
        {"asgi_app.py"},
    ),
    (("examples/mounted_app.py",), "/functions/ready", {"mounted_app.py"}),
    (
        ("hypercorn", "examples.mounted_app:app", "--bind", "127.0.0.1:{port}"),
        "/functions/ready",
        {"mounted_app.py"},
    ),
    (
        ("-m", "metatwin_functions", "serve", "examples.simple_function"),
        "/ready",
        {"simple_function.py"},
    ),
    (
        ("-m", "metatwin_functions", "serve", "examples.streaming"),
        "/ready",
        {"streaming.py"},
    ),
    (
        ("-m", "metatwin_functions", "serve", "examples.versions_and_schedules"),
        "/ready",
        {"versions_and_schedules.py"},
    ),
]


# Example clients, run against a documented server by a test of their own.
CLIENTS = {"stream_consumer.py"}


@pytest.fixture(scope="module")
def installed_package(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PYTHONPATH holding only the package, as after ``pip install``: not the repository."""
    site = tmp_path_factory.mktemp("site")
    (site / "metatwin_functions").symlink_to(REPO / "metatwin_functions")
    return str(site)


# Examples that call a server rather than serve: each is run by the test named here.
CLIENT_EXAMPLES = {"amqp_client.py"}  # test_client_calls.py::test_the_client_example_runs_...


def test_every_example_file_has_a_documented_run() -> None:
    files = {path.name for path in (REPO / "examples").glob("*.py")} - {"__init__.py"}
    files -= CLIENT_EXAMPLES
    covered = set().union(*(run[2] for run in DOCUMENTED_RUNS), CLIENTS)
    assert files <= covered


@pytest.mark.parametrize(
    ("command", "ready_path"),
    [(run[0], run[1]) for run in DOCUMENTED_RUNS],
    ids=[" ".join(run[0]) for run in DOCUMENTED_RUNS],
)
def test_example_serves_as_documented(
    command: tuple[str, ...], ready_path: str, installed_package: str
) -> None:
    env = {"PYTHONPATH": installed_package}
    process = ServerProcess(*command, ready_path=ready_path, env=env)
    try:
        process.wait_ready()
        answer = httpx.get(process.base_url + ready_path).json()
        assert answer["status"] == "ready"
        assert answer["function_count"] >= 1
        process.signal(signal.SIGTERM)
        assert process.wait() == 0
    finally:
        process.stop()


def test_example_docstrings_show_the_commands_tested_here() -> None:
    docs = {path.name: path.read_text() for path in Path(REPO / "examples").glob("*.py")}
    assert "python examples/asgi_app.py" in docs["asgi_app.py"]
    assert "hypercorn examples.asgi_app:app" in docs["asgi_app.py"]
    assert "python examples/main.py" in docs["main.py"]
    assert "hypercorn examples.mounted_app:app" in docs["mounted_app.py"]
    assert "python examples/mounted_app.py" in docs["mounted_app.py"]
    assert (
        "python -m metatwin_functions serve examples.simple_function" in docs["simple_function.py"]
    )


def test_the_stream_consumer_runs_against_the_streaming_example(installed_package: str) -> None:
    server = ServerProcess(
        "-m", "metatwin_functions", "serve", "examples.streaming", env={"PYTHONPATH": "."}
    )
    try:
        server.wait_ready()
        consumer = subprocess.run(
            [sys.executable, "examples/stream_consumer.py", server.base_url],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": installed_package},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert consumer.returncode == 0, consumer.stderr
        out = consumer.stdout
        assert "'type': 'progress'" in out
        assert "'executionId': 'rows-1', 'type': 'result', 'success': True" in out
        assert "'errorKind': 'cancelled'" in out
        docs = (REPO / "examples" / "stream_consumer.py").read_text()
        assert "python examples/stream_consumer.py" in docs
        assert "python -m metatwin_functions serve examples.streaming" in docs
    finally:
        server.stop()
