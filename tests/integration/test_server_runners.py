"""What each runner must do alike, proven on a real process: lifespan, stops, binding, imports."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from server_process import REPO, RUNNERS, ServerProcess, on

SERVE_EXAMPLES = ("-m", "metatwin_functions", "serve", "examples.simple_function")

# An app with lifespan probes and one function that naps: served by `serve`, as a user would.
PROBE_APP = """\
import asyncio
import logging

from metatwin_functions import Function, create_app, load_settings, serve
from metatwin_functions.runtime import runtimes_of

probe = logging.getLogger("probe")


@Function(timeout=60)
async def nap(seconds: float) -> str:
    probe.warning("napping")
    await asyncio.sleep(seconds)
    return "rested"


app = create_app()


@app.before_serving
async def started() -> None:
    probe.warning("lifespan started")


@app.after_serving
async def stopped() -> None:
    states = [runtime.state for runtime in runtimes_of(app).values()]
    probe.warning("lifespan stopped, runtime states %s", states)


if __name__ == "__main__":
    serve(app, load_settings())
"""


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def probe_server(tmp_path: Path, runner: str) -> ServerProcess:
    script = tmp_path / "probe_app.py"
    script.write_text(PROBE_APP)
    return ServerProcess(str(script), env=on(runner, CRBR_DEPLOYMENT_ID="prod-probe"))


def nap(seconds: float) -> dict[str, object]:
    return {"executionId": "nap-1", "functionName": "nap", "args": {"seconds": seconds}}


def json_records(process: ServerProcess) -> list[dict[str, object]]:
    return [json.loads(line) for line in process.lines if line.strip()]


def test_lifespan_starts_and_stops_the_runtime_exactly_once(runner: str, tmp_path: Path) -> None:
    process = probe_server(tmp_path, runner)
    try:
        process.wait_ready()
        answer = httpx.post(process.base_url + "/exec", json=nap(0)).json()
        process.signal(signal.SIGTERM)
        assert process.wait() == 0
    finally:
        process.stop()
    assert answer["result"] == "rested"
    messages = [str(record["message"]) for record in json_records(process)]
    assert messages.count("lifespan started") == 1
    assert messages.count("lifespan stopped, runtime states ['stopped']") == 1
    assert sum(m.startswith("Serving 1 function(s)") for m in messages) == 1


def test_a_second_signal_cancels_calls_in_flight_and_stops_at_once(
    runner: str, tmp_path: Path
) -> None:
    process = probe_server(tmp_path, runner)
    try:
        process.wait_ready()

        async def scenario() -> tuple[httpx.Response, float]:
            async with httpx.AsyncClient(base_url=process.base_url, timeout=20) as client:
                in_flight = asyncio.ensure_future(client.post("/exec", json=nap(30)))
                await asyncio.to_thread(process.wait_for_line, "napping")
                process.signal(signal.SIGTERM)
                await asyncio.to_thread(process.wait_for_line, "Draining")
                second = time.perf_counter()
                process.signal(signal.SIGTERM)
                return await in_flight, second

        answer, second = asyncio.run(scenario())
        code = process.wait(timeout=15)
        took = time.perf_counter() - second
    finally:
        process.stop()
    assert code == 0
    # Neither the drain (up to 61 s) nor the connections' grace (5 s) is waited for.
    assert took < 2.5, f"stopped {took:.1f} s after the second signal"
    assert (answer.headers["content-type"], answer.json()["success"]) == (
        "application/json",
        False,
    )
    records = json_records(process)
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL")], process.output
    assert "Traceback" not in process.output
    messages = [str(record["message"]) for record in records]
    assert "Second signal: stopping without waiting for calls in flight" in messages
    assert messages.count("lifespan stopped, runtime states ['stopped']") == 1


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read the backlog")
def test_the_listener_has_the_configured_backlog(runner: str) -> None:
    process = ServerProcess(*SERVE_EXAMPLES, env=on(runner, CRBR_FUNCTIONS_BACKLOG="777"))
    try:
        process.wait_ready()
        listening = subprocess.run(
            ["ss", "-Hltn", f"sport = :{process.port}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split()
    finally:
        process.stop()
    # ss shows a listener's backlog in its Send-Q column: LISTEN 0 777 127.0.0.1:PORT ...
    assert listening[:4] == ["LISTEN", "0", "777", f"127.0.0.1:{process.port}"]


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_binds_the_configured_ipv6_host(runner: str) -> None:
    process = ServerProcess(*SERVE_EXAMPLES, env=on(runner, CRBR_FUNCTIONS_HOST="::1"))
    process.base_url = f"http://[::1]:{process.port}"
    try:
        process.wait_ready()
        answer = httpx.post(
            process.base_url + "/exec",
            json={"executionId": "v6", "functionName": "add_numbers", "args": {"a": 1, "b": 2}},
        ).json()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{process.port}/ready")
    finally:
        process.stop()
    assert answer["result"] == 3


@pytest.mark.parametrize(
    ("flag", "env_server", "listening"),
    [
        ("uvicorn", "hypercorn", "uvicorn.error: Uvicorn running on http://127.0.0.1"),
        ("hypercorn", "uvicorn", "hypercorn.error: Running on http://127.0.0.1"),
    ],
)
def test_serve_server_flag_overrides_the_setting(
    flag: str, env_server: str, listening: str
) -> None:
    process = ServerProcess(*SERVE_EXAMPLES, "--server", flag, env=on(env_server))
    try:
        process.wait_ready()
        process.wait_for_line(listening)
    finally:
        process.stop()


def _clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("CRBR_")}


def test_uvicorn_without_its_extra_is_a_one_line_start_up_error() -> None:
    # uvicorn is installed here: None in sys.modules makes `import uvicorn` fail as if it were not.
    code = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "from metatwin_functions.cli import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "serve", "examples.simple_function", "--server", "uvicorn"],
        cwd=REPO,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: CRBR_FUNCTIONS_SERVER=uvicorn needs the uvicorn extra (uvicorn, httptools, "
        "uvloop): pip install 'metatwin-functions[uvicorn]'"
    ]


# Serves for real on the configured runner, then lists what it imported of uvicorn's stack.
IMPORTS_PROBE = """\
import asyncio
import sys

import metatwin_functions.cli
from metatwin_functions import Function, Settings, create_app, serve_async
from metatwin_functions.runtime import runtimes_of


@Function
async def ping() -> str:
    return "pong"


async def main() -> None:
    settings = Settings(functions_host="127.0.0.1", functions_port=int(sys.argv[1]))
    app = create_app(settings=settings)
    stop = asyncio.Event()
    serving = asyncio.create_task(serve_async(app, settings, stop=stop))
    for _ in range(500):
        if [r for r in runtimes_of(app).values() if r.state == "ready"]:
            break
        await asyncio.sleep(0.01)
    else:
        raise SystemExit("never ready")
    stop.set()
    await serving


asyncio.run(main())
print(sorted({m.partition(".")[0] for m in sys.modules} & {"uvicorn", "httptools", "uvloop"}))
"""


@pytest.mark.parametrize(
    ("runner_name", "imported"),
    [("hypercorn", "[]"), ("uvicorn", "['httptools', 'uvicorn', 'uvloop']")],
)
def test_a_deployment_imports_only_the_runner_it_asked_for(
    runner_name: str, imported: str, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS_PROBE, str(port)],
        cwd=tmp_path,
        env={**_clean_env(), "CRBR_FUNCTIONS_SERVER": runner_name, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == imported
