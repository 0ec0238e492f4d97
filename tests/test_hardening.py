"""What an attack run found, each pinned by a test: limits and hostile input (CONTRACT.md)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from metatwin_functions import FunctionRegistry, Settings, create_app
from metatwin_functions.envelope import ExecRequest, parse_exec_request
from metatwin_functions.errors import EnvelopeError
from metatwin_functions.invocation import Invoker
from metatwin_functions.logs import configure_logging
from metatwin_functions.watchdog import LoopWatchdog


@pytest.fixture
def registry() -> FunctionRegistry:
    return FunctionRegistry()


def quick(**values: Any) -> Settings:
    values.setdefault("enable_events", False)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def invoker(registry: FunctionRegistry) -> Iterator[Invoker]:
    invoker = Invoker(
        registry, quick(functions_timeout=0.3, functions_sync_workers=2, functions_max_timeout=5)
    )
    yield invoker
    invoker.close()


async def body_of(invoker: Invoker, name: str, **args: Any) -> dict[str, Any]:
    outcome = await invoker.invoke(ExecRequest("x", name, args))
    return dict(json.loads(outcome.body))


async def test_an_async_def_that_blocks_the_loop_past_its_deadline_is_a_timeout(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function(timeout=0.1)
    async def blocker() -> str:
        time.sleep(0.3)  # noqa: ASYNC251 - the mistake under test
        return "late"

    body = await body_of(invoker, "blocker")
    assert body["success"] is False
    assert body["metadata"]["errorKind"] == "timeout"
    assert body["error"] == "Function 'blocker' execution timed out after 0.1 seconds"


async def test_a_function_blocking_the_loop_is_named_in_a_warning(
    registry: FunctionRegistry, invoker: Invoker, caplog: pytest.LogCaptureFixture
) -> None:
    @registry.function(timeout=5)
    async def sleepy_blocker() -> None:
        time.sleep(0.5)  # noqa: ASYNC251 - the mistake under test

    watchdog = LoopWatchdog(invoker.async_calls, threshold=0.2, tick=0.05)
    reported = threading.Event()
    watchdog.on_blocked = lambda name, seconds: reported.set()
    watchdog.start()
    try:
        with caplog.at_level(logging.WARNING, logger="metatwin_functions.calls"):
            await body_of(invoker, "sleepy_blocker")
            await asyncio.to_thread(reported.wait, 2)
    finally:
        await watchdog.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Function 'sleepy_blocker' has blocked the event loop" in w for w in warnings)


async def test_plain_defs_past_their_deadline_do_not_take_the_pool_slots(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    release = threading.Event()

    @registry.function()
    def stuck() -> None:
        release.wait(10)

    @registry.function()
    def quick_def() -> str:
        return "ran"

    try:
        stuck_bodies = await asyncio.gather(*(body_of(invoker, "stuck") for _ in range(3)))
        assert {b["metadata"]["errorKind"] for b in stuck_bodies} == {"timeout"}
        assert invoker.threads_abandoned == 3
        started = time.monotonic()
        answers = await asyncio.gather(*(body_of(invoker, "quick_def") for _ in range(2)))
        assert [a["result"] for a in answers] == ["ran", "ran"]
        assert time.monotonic() - started < 0.3  # not behind the stuck threads
    finally:
        release.set()
    for _ in range(100):
        if invoker.threads_abandoned == 0:
            break
        await asyncio.sleep(0.01)
    assert invoker.threads_abandoned == 0


async def test_abandoned_threads_are_bounded_by_the_hard_cap(registry: FunctionRegistry) -> None:
    invoker = Invoker(
        registry,
        quick(functions_timeout=0.2, functions_sync_workers=1, functions_max_abandoned_threads=1),
    )
    release = threading.Event()

    @registry.function()
    def stuck() -> None:
        release.wait(10)

    try:
        await asyncio.gather(*(body_of(invoker, "stuck") for _ in range(3)))
        executor = invoker._executor
        assert executor is not None
        assert len(executor._threads) <= 2  # one worker, one stand-in for an abandoned call
    finally:
        release.set()
        invoker.close()


async def test_a_result_over_the_size_limit_is_result_too_large(registry: FunctionRegistry) -> None:
    invoker = Invoker(registry, quick(functions_max_result_size=2048))

    @registry.function()
    async def big() -> str:
        return "x" * 4096

    @registry.function()
    async def small() -> str:
        return "x" * 100

    body = await body_of(invoker, "big")
    assert body["success"] is False
    assert body["result"] is None
    assert body["metadata"]["errorKind"] == "result_too_large"
    assert "above the limit of 2048 bytes" in body["error"]
    assert (await body_of(invoker, "small"))["success"] is True


def test_ids_and_names_beyond_their_limits_are_invalid_envelopes() -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse_exec_request(json.dumps({"executionId": "i" * 1025, "functionName": "f"}))
    assert caught.value.execution_id is None  # a huge id is not echoed back
    assert "longer than 1024 characters" in str(caught.value)
    with pytest.raises(EnvelopeError, match="longer than 256 characters"):
        parse_exec_request(json.dumps({"executionId": "e", "functionName": "é" * 257}))
    ok = parse_exec_request(json.dumps({"executionId": "i" * 1024, "functionName": "é" * 256}))
    assert len(ok.execution_id) == 1024


async def test_a_newline_in_a_function_name_cannot_forge_a_text_log_line(
    registry: FunctionRegistry,
) -> None:
    stream = io.StringIO()
    configure_logging(quick(), stream=stream)  # local-dev: text lines
    try:
        invoker = Invoker(registry, quick())
        forged = "nope\n2026-01-01 00:00:00,000 INFO    metatwin_functions: forged\x1b[2J"
        await invoker.invoke(ExecRequest("id\nx", forged, {}))
    finally:
        logging.getLogger().handlers.clear()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "\\n2026-01-01" in lines[0]
    assert "\\x1b[2J" in lines[0]


async def test_unicode_line_breaks_and_c1_controls_are_escaped_too(
    registry: FunctionRegistry,
) -> None:
    stream = io.StringIO()
    configure_logging(quick(), stream=stream)
    try:
        invoker = Invoker(registry, quick())
        await invoker.invoke(ExecRequest("id", "a\x85FAKE\u2028LINE\u2029X\x9b[2J", {}))
    finally:
        logging.getLogger().handlers.clear()
    text = stream.getvalue()
    assert len(text.splitlines()) == 1
    for escaped in ("\\x85", "\\u2028", "\\u2029", "\\x9b"):
        assert escaped in text


async def test_405_answers_carry_an_allow_header(registry: FunctionRegistry) -> None:
    app = create_app(registry, quick(), configure_logs=False)
    async with app.test_app():
        client = app.test_client()
        on_exec = await client.get("/exec")
        on_ready = await client.post("/ready")
    assert on_exec.status_code == on_ready.status_code == 405
    assert set(on_exec.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    assert "GET" in on_ready.headers["Allow"]
    assert (await on_exec.get_json())["metadata"]["errorKind"] == "http_error"
