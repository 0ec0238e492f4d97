"""The ASGI fast path for /exec answers exactly as the Quart view does, and steps aside when not."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart, current_app, g
from quart.typing import TestClientProtocol as Client

from metatwin_functions import FunctionRegistry, Settings, create_app
from metatwin_functions.fastpath import ExecFastPath


@pytest.fixture
def registry() -> FunctionRegistry:
    functions = FunctionRegistry()

    @functions.function()
    async def add_numbers(a: int, b: int) -> int:
        return a + b

    @functions.function()
    async def which_app() -> str:
        g.seen = True
        return str(current_app.name)

    @functions.function()
    def fail() -> None:
        raise RuntimeError("boom")

    return functions


class InnerCalls:
    """Counts the requests the fast path hands on to Quart."""

    def __init__(self, app: Quart) -> None:
        fast = app.asgi_app
        assert isinstance(fast, ExecFastPath)
        self.count = 0
        inner = fast.asgi_app

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.count += 1
            await inner(scope, receive, send)

        fast.asgi_app = counting


@pytest.fixture
async def app(registry: FunctionRegistry, settings: Settings) -> AsyncIterator[Quart]:
    application = create_app(registry, settings, configure_logs=False, url_prefix="/fn")
    async with application.test_app():
        yield application


REQUESTS: list[bytes] = [
    b'{"executionId": "a", "functionName": "add_numbers", "args": {"a": 2, "b": "3"}}',
    b'{"executionId": "", "functionName": "add_numbers", "args": {"a": "x"}}',
    b'{"executionId": "c", "functionName": "nope"}',
    b'{"executionId": "d", "functionName": "fail"}',
    b'{"executionId": "e", "functionName": "add_numbers", "args": {"a": 1, "b": 2, "c": 3}}',
    b"not json",
    b"[]",
    b'{"functionName": 3}',
    b"x" * 2_000_000,
]


async def answer(client: Client, body: bytes) -> tuple[int, str, dict[str, Any]]:
    response = await client.post("/fn/exec", data=body)
    payload = json.loads(await response.get_data())
    payload.get("metadata", {}).pop("durationMs", None)
    return response.status_code, response.content_type, payload


async def test_fast_path_answers_exactly_like_the_quart_view(app: Quart) -> None:
    client = app.test_client()
    inner = InnerCalls(app)
    fast = [await answer(client, body) for body in REQUESTS]
    assert inner.count == 0, "the fast path should have answered every call"

    @app.before_request
    async def noop() -> None:
        return None

    slow = [await answer(client, body) for body in REQUESTS]
    assert inner.count == len(REQUESTS), "a request hook must send every call through Quart"
    assert fast == slow
    assert [status for status, _, _ in fast] == [200, 200, 200, 200, 200, 422, 422, 422, 413]


async def test_functions_see_the_app_context_on_the_fast_path(app: Quart) -> None:
    inner = InnerCalls(app)
    response = await app.test_client().post(
        "/fn/exec", json={"executionId": "x", "functionName": "which_app"}
    )
    assert (await response.get_json())["result"] == app.name
    assert inner.count == 0


async def test_request_hooks_and_signals_still_run_for_exec(app: Quart) -> None:
    from quart import request_finished

    seen: list[str] = []

    @app.after_request
    async def tag(response: Any) -> Any:
        response.headers["X-Hook"] = "ran"
        return response

    async def on_finished(sender: Any, **_: Any) -> None:
        seen.append("finished")

    request_finished.connect(on_finished, app)
    try:
        response = await app.test_client().post(
            "/fn/exec",
            json={"executionId": "h", "functionName": "add_numbers", "args": {"a": 1, "b": 1}},
        )
    finally:
        request_finished.disconnect(on_finished, app)
    assert response.headers["X-Hook"] == "ran"
    assert seen == ["finished"]
    assert (await response.get_json())["result"] == 2


async def test_other_routes_and_methods_go_to_quart(app: Quart) -> None:
    inner = InnerCalls(app)
    client = app.test_client()
    assert (await client.get("/fn/ready")).status_code == 200
    assert (await client.post("/fn/ready")).status_code == 405
    assert (await client.post("/exec", json={})).status_code == 404
    assert inner.count == 3


async def test_a_host_app_can_opt_in_to_the_fast_path(
    registry: FunctionRegistry, settings: Settings
) -> None:
    from metatwin_functions import functions_blueprint

    host = Quart("host")
    host.register_blueprint(functions_blueprint(registry, settings), url_prefix="/functions")
    ExecFastPath.install(host)
    inner = InnerCalls(host)
    async with host.test_app():
        response = await host.test_client().post(
            "/functions/exec",
            json={"executionId": "o", "functionName": "add_numbers", "args": {"a": 2, "b": 5}},
        )
        assert (await response.get_json())["result"] == 7
    assert inner.count == 0
