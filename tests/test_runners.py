"""The runners in-process: their configuration from the settings, and a serve-and-stop on each."""

from __future__ import annotations

import asyncio
import socket
import sys

import httpx
import pytest

from metatwin_functions import ConfigurationError, FunctionRegistry, FunctionServer, Settings
from metatwin_functions.app import create_app
from metatwin_functions.runners import load_runner
from metatwin_functions.runners.hypercorn import hypercorn_config
from metatwin_functions.runners.shutdown import CallGuard
from metatwin_functions.runners.uvicorn import uvicorn_config
from metatwin_functions.runtime import runtimes_of
from metatwin_functions.server import serve_async

MISSING_EXTRA = (
    "CRBR_FUNCTIONS_SERVER=uvicorn needs the uvicorn extra (uvicorn, httptools, uvloop): "
    "pip install 'metatwin-functions[uvicorn]'"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_hypercorn_config_binds_with_our_backlog_and_no_access_log() -> None:
    config = hypercorn_config(Settings(functions_host="::1", functions_port=9001, _env_file=None))
    assert config.bind == ["[::1]:9001"]
    assert config.backlog == 2048
    assert config.accesslog is None
    assert config.graceful_timeout == 5


def test_uvicorn_config_binds_with_our_backlog_httptools_and_no_log_set_up() -> None:
    settings = Settings(
        functions_host="127.0.0.1", functions_port=9002, functions_backlog=77, _env_file=None
    )
    config = uvicorn_config(
        CallGuard(create_app(settings=settings, configure_logs=False)), settings
    )
    assert (config.host, config.port, config.backlog) == ("127.0.0.1", 9002, 77)
    assert (config.http, config.lifespan, config.interface) == ("httptools", "on", "asgi3")
    assert config.log_config is None
    assert config.access_log is False
    assert config.proxy_headers is False
    assert config.timeout_graceful_shutdown == 5


def test_uvicorn_without_its_extra_is_a_configuration_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(ConfigurationError) as raised:
        load_runner("uvicorn")
    assert str(raised.value) == MISSING_EXTRA


def test_function_server_start_without_the_extra_raises_before_serving(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setitem(sys.modules, "httptools", None)
    server = FunctionServer(
        FunctionRegistry(), settings.model_copy(update={"functions_server": "uvicorn"})
    )
    with pytest.raises(ConfigurationError, match=r"metatwin-functions\[uvicorn\]"):
        server.start()
    assert runtimes_of(server.app) == {}


def test_an_unknown_runner_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="choose hypercorn or uvicorn"):
        load_runner("gunicorn")


@pytest.mark.parametrize("runner", ["hypercorn", "uvicorn"])
async def test_serve_async_serves_until_stop_then_stops_the_runtime(
    runner: str, settings: Settings
) -> None:
    registry = FunctionRegistry()

    @registry.function()
    async def double(x: int) -> int:
        return 2 * x

    port = free_port()
    config = settings.model_copy(
        update={"functions_server": runner, "functions_host": "127.0.0.1", "functions_port": port}
    )
    app = create_app(registry, config, configure_logs=False)
    stop = asyncio.Event()
    serving = asyncio.create_task(serve_async(app, config, registry, stop=stop))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        for _ in range(200):
            try:
                if (await client.get("/ready")).status_code == 200:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.02)
        answer = (await client.post("/exec", json=call("double", x=21))).json()
    stop.set()
    await asyncio.wait_for(serving, 10)
    assert answer["result"] == 42
    assert [runtime.state for runtime in runtimes_of(app).values()] == ["stopped"]


def call(name: str, **args: object) -> dict[str, object]:
    return {"executionId": "unit", "functionName": name, "args": args}
