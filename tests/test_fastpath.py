"""The raw-ASGI /exec endpoint and the Quart view feed one pipeline and answer alike."""

from __future__ import annotations

import asyncio
import json
import logging
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
def quick_settings() -> Settings:
    return Settings(
        deployment_id="test-deployment",
        enable_events=False,
        functions_timeout=2,
        functions_max_timeout=5,
        functions_body_timeout=0.3,
        idempotency_ttl=0,  # the same executionId is sent through both transports
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
async def app(registry: FunctionRegistry, quick_settings: Settings) -> AsyncIterator[Quart]:
    application = create_app(registry, quick_settings, configure_logs=False, url_prefix="/fn")
    async with application.test_app():
        yield application


@pytest.fixture
async def quart_only(registry: FunctionRegistry, quick_settings: Settings) -> AsyncIterator[Quart]:
    application = create_app(
        registry, quick_settings, configure_logs=False, url_prefix="/fn", fast_exec=False
    )
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
    b'{"executionId": "' + b"i" * 1025 + b'", "functionName": "add_numbers"}',
    b'{"executionId": "f", "functionName": "' + b"f" * 257 + b'"}',
    b"x" * 2_000_000,
]


async def answer(client: Client, body: bytes) -> tuple[int, str, dict[str, Any]]:
    response = await client.post("/fn/exec", data=body)
    payload = json.loads(await response.get_data())
    payload.get("metadata", {}).pop("durationMs", None)
    return response.status_code, response.content_type, payload


async def test_fast_path_answers_exactly_like_the_quart_view(app: Quart, quart_only: Quart) -> None:
    inner = InnerCalls(app)
    fast = [await answer(app.test_client(), body) for body in REQUESTS]
    assert inner.count == 0, "the raw-ASGI endpoint should have answered every call"
    assert not isinstance(quart_only.asgi_app, ExecFastPath)
    slow = [await answer(quart_only.test_client(), body) for body in REQUESTS]
    assert fast == slow
    statuses = [status for status, _, _ in fast]
    assert statuses == [200, 200, 200, 200, 200, 422, 422, 422, 422, 422, 413]


async def test_unrelated_signal_receivers_do_not_move_exec_off_the_endpoint(app: Quart) -> None:
    from quart import request_started

    async def on_started(sender: Any, **_: Any) -> None:
        return None

    inner = InnerCalls(app)
    request_started.connect(on_started)
    try:
        status, _, payload = await answer(app.test_client(), REQUESTS[0])
    finally:
        request_started.disconnect(on_started)
    assert (status, payload["result"]) == (200, 5)
    assert inner.count == 0


async def test_functions_see_the_app_context_on_the_fast_path(app: Quart) -> None:
    inner = InnerCalls(app)
    response = await app.test_client().post(
        "/fn/exec", json={"executionId": "x", "functionName": "which_app"}
    )
    assert (await response.get_json())["result"] == app.name
    assert inner.count == 0


async def test_request_hooks_apply_to_exec_only_when_quart_serves_it(
    app: Quart, quart_only: Quart
) -> None:
    for application in (app, quart_only):

        @application.after_request
        async def tag(response: Any) -> Any:
            response.headers["X-Hook"] = "ran"
            return response

    body = {"executionId": "h", "functionName": "add_numbers", "args": {"a": 1, "b": 1}}
    fast = await app.test_client().post("/fn/exec", json=body)
    slow = await quart_only.test_client().post("/fn/exec", json=body)
    assert "X-Hook" not in fast.headers  # documented: the endpoint is in front of Quart
    assert slow.headers["X-Hook"] == "ran"
    assert (await fast.get_json())["result"] == (await slow.get_json())["result"] == 2


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


# --- raw ASGI: the fast path against the Quart app it wraps, message by message ---------------

BODY = b'{"executionId": "raw", "functionName": "add_numbers", "args": {"a": 1, "b": 2}}'


def http_scope(path: str = "/fn/exec", root_path: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": root_path,
        "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "extensions": {},
        **extra,
    }


async def drive(
    asgi: Any, scope: dict[str, Any], chunks: list[bytes], *, finish: bool = True
) -> tuple[int | None, list[tuple[bytes, bytes]], bytes]:
    """Send ``chunks`` as the body (the last one ends it when ``finish``); then never again."""
    messages = [
        {"type": "http.request", "body": chunk, "more_body": not (finish and i == len(chunks) - 1)}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []
    answered = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        # A client that sends nothing more, and hangs up once it has its answer (as servers
        # report it: Quart 0.23 returns only after http.disconnect).
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            answered.set()

    async with asyncio.timeout(5):
        await asgi(scope, receive, send)
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if start is None:
        return None, [], body
    return start["status"], list(start["headers"]), body


def names_and_types(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(name, b"" if name == b"content-length" else value) for name, value in headers]


def without_duration(body: bytes) -> Any:
    payload = json.loads(body)
    payload.get("metadata", {}).pop("durationMs", None)
    return payload


@pytest.mark.parametrize(
    ("label", "chunks", "finish"),
    [
        ("one message", [BODY], True),
        ("several messages", [BODY[:10], BODY[10:40], BODY[40:]], True),
        ("an empty last message", [BODY, b""], True),
        ("a body that never ends", [BODY[:10]], False),
        ("a body that never starts", [], False),
        ("over the limit in pieces", [b"x" * 700_000, b"x" * 700_000], True),
    ],
)
async def test_raw_asgi_answers_match_quart(
    app: Quart, label: str, chunks: list[bytes], finish: bool
) -> None:
    fast = app.asgi_app
    assert isinstance(fast, ExecFastPath)
    fast_status, fast_headers, fast_body = await drive(fast, http_scope(), chunks, finish=finish)
    slow_status, slow_headers, slow_body = await drive(
        fast.asgi_app, http_scope(), chunks, finish=finish
    )
    assert fast_status == slow_status, label
    # durationMs makes the lengths differ by a digit now and then: compare the rest exactly.
    assert names_and_types(fast_headers) == names_and_types(slow_headers), label
    assert dict(fast_headers)[b"content-length"] == str(len(fast_body)).encode()
    assert without_duration(fast_body) == without_duration(slow_body), label
    expected = {
        "a body that never ends": 408,
        "a body that never starts": 408,
        "over the limit in pieces": 413,
    }.get(label, 200)
    assert fast_status == expected


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (http_scope("/api/fn/exec", root_path="/api"), 200),
        (http_scope("/fn/exec", root_path="/api"), 404),  # a path outside the root path
        (http_scope("/api", root_path="/api"), 404),
    ],
)
async def test_root_path_is_treated_as_quart_does(
    app: Quart, scope: dict[str, Any], expected: int
) -> None:
    fast = app.asgi_app
    assert isinstance(fast, ExecFastPath)
    status, _, _ = await drive(fast, scope, [BODY])
    slow_status, _, _ = await drive(fast.asgi_app, scope, [BODY])
    assert status == slow_status == expected


async def test_a_client_gone_before_its_body_gets_no_answer_and_no_error(app: Quart) -> None:
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await app.asgi_app(http_scope(), receive, send)
    assert sent == []


async def test_a_send_that_fails_is_not_an_error(
    app: Quart, caplog: pytest.LogCaptureFixture
) -> None:
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()
        delivered = True
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: Any) -> None:
        raise OSError("connection reset")

    await app.asgi_app(http_scope(), receive, send)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
