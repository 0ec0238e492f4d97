"""The SDK as deployed: a real server process on each runner, spoken to over HTTP."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_process import RUNNERS, ServerProcess, on

SERVE_EXAMPLES = ("-m", "metatwin_functions", "serve", "examples.simple_function")
# The line each server writes once it listens: it must come out through the SDK's handler.
LISTENING = {
    "hypercorn": ("hypercorn.error", "Running on"),
    "uvicorn": ("uvicorn.error", "Uvicorn running on"),
}


def call(name: str, execution_id: str = "it-1", /, **args: object) -> dict[str, object]:
    return {"executionId": execution_id, "functionName": name, "args": args}


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest) -> str:
    """Every serving test runs on both servers (``CRBR_FUNCTIONS_SERVER``)."""
    name: str = request.param
    return name


@pytest.fixture
def server(runner: str) -> Iterator[ServerProcess]:
    process = ServerProcess(*SERVE_EXAMPLES, env=on(runner))
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def test_cli_serves_the_examples_over_http(server: ServerProcess) -> None:
    ready = httpx.get(server.base_url + "/ready").json()
    answer = httpx.post(server.base_url + "/exec", json=call("add_numbers", a=5, b=3)).json()
    assert ready["status"] == "ready"
    assert "count_invoices" in ready["functions"]
    assert answer["success"] is True
    assert answer["result"] == 8
    assert answer["metadata"]["executionId"] == "it-1"


def test_invalid_envelope_is_422_and_a_huge_body_413_over_the_wire(server: ServerProcess) -> None:
    invalid = httpx.post(server.base_url + "/exec", content=b"not json")
    huge = httpx.post(server.base_url + "/exec", json=call("echo", message="x" * (2 * 1024 * 1024)))
    assert (invalid.status_code, invalid.headers["content-type"]) == (422, "application/json")
    assert "not valid JSON" in invalid.json()["error"]
    assert (huge.status_code, huge.headers["content-type"]) == (413, "application/json")
    assert huge.json()["success"] is False


def test_a_chunked_body_over_the_limit_is_413(server: ServerProcess) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"executionId": "chunked", "functionName": "echo", "args": {"message": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}}'

    answer = httpx.post(server.base_url + "/exec", content=chunks())
    small = httpx.post(
        server.base_url + "/exec",
        content=iter(
            [b'{"executionId": "c", "functionName": "echo", ', b'"args": {"message": "hi"}}']
        ),
    )
    assert (answer.status_code, answer.json()["success"]) == (413, False)
    assert (small.status_code, small.json()["result"]) == (200, "Echo: hi")


def test_plain_def_functions_do_not_block_the_server(server: ServerProcess) -> None:
    async def burst() -> tuple[float, float, list[dict[str, object]]]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=15) as client:
            started = time.perf_counter()
            blocking = [
                client.post("/exec", json=call("blocking_sleep", f"sync-{i}", seconds=0.5))
                for i in range(10)
            ]
            pending = asyncio.gather(*blocking)
            await asyncio.sleep(0.1)
            quick_started = time.perf_counter()
            quick = await client.post("/exec", json=call("add_numbers", a=1, b=1))
            quick_took = time.perf_counter() - quick_started
            assert quick.json()["result"] == 2
            responses = await pending
            return time.perf_counter() - started, quick_took, [r.json() for r in responses]

    took, quick_took, answers = asyncio.run(burst())
    assert all(answer["success"] for answer in answers), answers
    assert [answer["result"]["execution_id"] for answer in answers] == [
        f"sync-{i}" for i in range(10)
    ]
    # Ten 0.5 s sleeps in a row would take 5 s; on the pool they overlap.
    assert took < 4.0
    assert quick_took < 0.4


def test_sigterm_drains_calls_in_flight_and_exits_zero(server: ServerProcess) -> None:
    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=15) as client:
            in_flight = asyncio.ensure_future(
                client.post("/exec", json=call("slow_operation", "drain", seconds=1.5))
            )
            await asyncio.sleep(0.4)
            server.signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as fresh:
                ready = await fresh.get("/ready")
                refused = await fresh.post("/exec", json=call("add_numbers", a=1, b=2))
            return await in_flight, ready, refused

    finished, ready, refused = asyncio.run(scenario())
    assert finished.status_code == 200
    assert finished.json()["result"] == "Slept for 1.5 seconds"
    assert (ready.status_code, ready.json()["status"]) == (503, "draining")
    assert refused.status_code == 503
    assert refused.json()["success"] is False
    assert server.wait(timeout=10) == 0
    assert "draining" in server.output


def test_deployed_logs_are_one_json_object_per_line(runner: str) -> None:
    process = ServerProcess(*SERVE_EXAMPLES, env=on(runner, CRBR_DEPLOYMENT_ID="prod-42"))
    try:
        process.wait_ready()
        httpx.post(process.base_url + "/exec", json=call("add_numbers", "log-ok", a=1, b=2))
        httpx.post(process.base_url + "/exec", json=call("divide", "log-err", a=1, b=0))
        process.wait_for_line("log-err")
        process.signal(signal.SIGTERM)
        assert process.wait() == 0
    finally:
        process.stop()

    records = [json.loads(line) for line in process.lines if line.strip()]
    assert records, process.output
    for record in records:
        assert {"timestamp", "level", "message", "deployment_id"} <= record.keys()
        assert record["deployment_id"] == "prod-42"
        assert record["timestamp"].endswith(("Z", "+00:00"))
    server_logger, listening = LISTENING[runner]
    assert any(r["logger"] == server_logger and listening in r["message"] for r in records)
    # No access log, and no field meant for a terminal (uvicorn's colour copy of its message).
    assert not [r for r in records if r["logger"].endswith(".access")]
    assert not [r for r in records if "color_message" in r]
    ok = next(r for r in records if r.get("execution_id") == "log-ok")
    assert (ok["function_name"], ok["status"], ok["level"]) == ("add_numbers", "success", "INFO")
    assert ok["duration_ms"] >= 0
    failed = next(r for r in records if r.get("execution_id") == "log-err")
    assert (failed["status"], failed["level"]) == ("error", "ERROR")
    assert "Cannot divide by zero!" in failed["exc_info"]
    assert "Traceback" in failed["exc_info"]


def test_function_server_example_main_serves(runner: str) -> None:
    process = ServerProcess("examples/main.py", env=on(runner))
    try:
        process.wait_ready()
        answer = httpx.post(process.base_url + "/exec", json=call("multiply", x=2.5, y=4)).json()
        assert answer["result"] == 10.0
        process.signal(signal.SIGINT)
        assert process.wait() == 0
    finally:
        process.stop()


def test_mounted_app_example_serves_next_to_host_routes(runner: str) -> None:
    process = ServerProcess(
        "examples/mounted_app.py", env=on(runner), ready_path="/functions/ready"
    )
    try:
        process.wait_ready()
        host = httpx.get(process.base_url + "/").json()
        answer = httpx.post(
            process.base_url + "/functions/exec", json=call("greet", name="Ada")
        ).json()
        assert host["app"] == "my existing service"
        assert answer["result"] == "Hello, Ada!"
    finally:
        process.stop()


def test_hypercorn_command_line_serves_create_app_with_json_logs() -> None:
    process = ServerProcess(
        "hypercorn",
        "examples.asgi_app:app",
        "--bind",
        "127.0.0.1:{port}",
        # Hypercorn's command line gives its loggers a text handler of its own; sending that one
        # to /dev/null leaves the lines to the SDK's JSON handler (see README).
        "--error-logfile",
        "/dev/null",
        env={"CRBR_DEPLOYMENT_ID": "prod-hc"},
    )
    try:
        process.wait_ready()
        answer = httpx.post(process.base_url + "/exec", json=call("echo", message="hi")).json()
        assert answer["result"] == "Echo: hi"
        process.signal(signal.SIGTERM)
        assert process.wait() == 0
    finally:
        process.stop()
    records = [json.loads(line) for line in process.lines if line.strip()]
    assert all(record["deployment_id"] == "prod-hc" for record in records)
    assert sum("Running on" in record["message"] for record in records) == 1


def test_sigterm_does_not_wait_for_threads_past_their_deadline(runner: str, tmp_path: Path) -> None:
    (tmp_path / "stuck_functions.py").write_text(
        "import time\n"
        "from metatwin_functions import Function\n"
        "@Function(timeout=0.3)\n"
        "def stuck() -> None:\n"
        "    time.sleep(60)\n"
    )
    process = ServerProcess(
        "-m",
        "metatwin_functions",
        "serve",
        "stuck_functions",
        env=on(runner, PYTHONPATH=str(tmp_path)),
    )
    try:
        process.wait_ready()
        answer = httpx.post(process.base_url + "/exec", json=call("stuck"), timeout=10).json()
        assert answer["metadata"]["errorKind"] == "timeout"
        started = time.perf_counter()
        process.signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert time.perf_counter() - started < 8
    finally:
        process.stop()
    assert "still running past their deadline are abandoned" in process.output
