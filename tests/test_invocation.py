"""`Invoker`: the sans-IO core of a call, against a fresh registry and settings built in code."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from metatwin_functions import (
    ExecutionFailedError,
    ExecutionTimeoutError,
    FunctionRegistry,
    InvalidArgumentsError,
    Invoker,
    Settings,
    current_execution,
)
from metatwin_functions.envelope import ExecRequest

# CRBR_* variables are cleared by conftest; settings also read .env from the working directory.
pytestmark = pytest.mark.usefixtures("isolated_cwd")


@pytest.fixture
def registry() -> FunctionRegistry:
    return FunctionRegistry()


@pytest.fixture
def settings() -> Settings:
    return Settings(functions_timeout=0.5, functions_max_timeout=1)


@pytest.fixture
def invoker(registry: FunctionRegistry, settings: Settings) -> Iterator[Invoker]:
    invoker = Invoker(registry, settings)
    yield invoker
    invoker.close()


async def call(
    invoker: Invoker, name: str, args: dict[str, Any] | None = None, execution_id: str = "exec-1"
) -> tuple[Any, dict[str, Any]]:
    outcome = await invoker.invoke(ExecRequest(execution_id, name, args or {}))
    return outcome, json.loads(outcome.body)


def register_add_numbers(registry: FunctionRegistry) -> None:
    @registry.function()
    async def add_numbers(a: int, b: int) -> int:
        return a + b


# --- success ---------------------------------------------------------------------------------


async def test_success_body_follows_the_contract(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    register_add_numbers(registry)
    outcome, body = await call(invoker, "add_numbers", {"a": 5, "b": 3}, "unique-id-123")
    assert outcome.status == "success"
    assert outcome.error is None
    assert set(body) == {"success", "result", "error", "metadata"}
    assert body["success"] is True
    assert body["result"] == 8
    assert body["error"] is None
    assert body["metadata"]["executionId"] == "unique-id-123"
    assert body["metadata"]["durationMs"] >= 0
    assert (outcome.execution_id, outcome.function_name) == ("unique-id-123", "add_numbers")


async def test_empty_execution_id_is_echoed(registry: FunctionRegistry, invoker: Invoker) -> None:
    register_add_numbers(registry)
    _, body = await call(invoker, "add_numbers", {"a": 1, "b": 1}, execution_id="")
    assert body["metadata"]["executionId"] == ""


async def test_plain_def_result_is_returned(registry: FunctionRegistry, invoker: Invoker) -> None:
    @registry.function()
    def word_count(text: str) -> int:
        return len(text.split())

    _, body = await call(invoker, "word_count", {"text": "one two three"})
    assert (body["success"], body["result"]) == (True, 3)


async def test_omitted_defaults_are_applied_by_python(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    async def greet(name: str = "World", punctuation: str = "!") -> str:
        return f"Hello {name}{punctuation}"

    _, body = await call(invoker, "greet", {"name": "Ada"})
    assert body["result"] == "Hello Ada!"


async def test_var_keyword_function_receives_extra_arguments(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    async def collect(a: int, **rest: Any) -> dict[str, Any]:
        return {"a": a, "rest": rest}

    _, body = await call(invoker, "collect", {"a": "1", "x": [1], "y": None})
    assert body["result"] == {"a": 1, "rest": {"x": [1], "y": None}}


async def test_async_callable_object_is_awaited(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    class Offset:
        async def __call__(self, x: int) -> int:
            await asyncio.sleep(0)
            return x + 100

    registry.register(Offset(), name="offset")
    _, body = await call(invoker, "offset", {"x": "1"})
    assert body["result"] == 101


# --- lookup and arguments --------------------------------------------------------------------


async def test_unknown_function_is_reported_by_name(invoker: Invoker) -> None:
    outcome, body = await call(invoker, "nope", {}, "id-9")
    assert body == {
        "success": False,
        "result": None,
        "error": "Function 'nope' not found",
        "metadata": {
            "executionId": "id-9",
            "durationMs": body["metadata"]["durationMs"],
            "errorKind": "not_found",
        },
    }
    assert outcome.status == "error"


async def test_arguments_are_coerced_in_lax_mode(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    async def types(a: int, b: float, c: bool) -> list[Any]:
        return [a, type(a).__name__, b, type(b).__name__, c]

    _, body = await call(invoker, "types", {"a": "3", "b": "2.5", "c": "true"})
    assert body["result"] == [3, "int", 2.5, "float", True]


async def test_invalid_argument_is_named_in_the_error(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    register_add_numbers(registry)
    outcome, body = await call(invoker, "add_numbers", {"a": "x", "b": 1})
    assert body["success"] is False
    assert body["result"] is None
    assert body["error"].startswith("Invalid arguments for function 'add_numbers':")
    assert "'a'" in body["error"]
    assert "'b'" not in body["error"]
    assert body["metadata"]["errorKind"] == "invalid_arguments"
    assert "errorCode" not in body["metadata"]
    assert isinstance(outcome.error, InvalidArgumentsError)


async def test_missing_argument_is_named_with_the_missing_parameter_code(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    register_add_numbers(registry)
    _, body = await call(invoker, "add_numbers", {"a": 1})
    assert body["error"].startswith("Invalid arguments for function 'add_numbers':")
    assert "missing required argument 'b'" in body["error"]
    assert body["metadata"]["errorCode"] == "MTF-EXECUTION-008"
    assert body["metadata"]["errorKind"] == "invalid_arguments"


async def test_unknown_argument_is_rejected_and_named(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    register_add_numbers(registry)
    _, body = await call(invoker, "add_numbers", {"a": 1, "b": 2, "c": 3})
    assert body["success"] is False
    assert "unexpected argument 'c'" in body["error"]
    assert body["error"].startswith("Invalid arguments for function 'add_numbers':")


async def test_invalid_arguments_never_reach_the_function(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    calls: list[Any] = []

    @registry.function()
    def record(n: int) -> None:
        calls.append(n)

    await call(invoker, "record", {"n": "not a number"})
    await call(invoker, "record", {})
    assert calls == []


# --- failures --------------------------------------------------------------------------------


async def test_user_exception_is_an_execution_failure_that_keeps_the_cause(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    async def divide(a: float, b: float) -> float:
        if b == 0:
            raise ValueError("Cannot divide by zero!")
        return a / b

    outcome, body = await call(invoker, "divide", {"a": 1, "b": 0})
    assert body["success"] is False
    assert body["result"] is None
    assert body["error"] == "Function execution failed: Cannot divide by zero!"
    assert body["metadata"]["errorCode"] == "MTF-EXECUTION-003"
    assert body["metadata"]["errorKind"] == "execution_failed"
    assert outcome.status == "error"
    assert isinstance(outcome.error, ExecutionFailedError)
    assert isinstance(outcome.error.__cause__, ValueError)
    assert str(outcome.error.__cause__) == "Cannot divide by zero!"


async def test_plain_def_exception_keeps_the_cause(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    class CustomError(Exception):
        pass

    error = CustomError("from a thread")

    @registry.function()
    def fail() -> None:
        raise error

    outcome, body = await call(invoker, "fail")
    assert body["error"] == "Function execution failed: from a thread"
    assert outcome.error is not None
    assert outcome.error.__cause__ is error


async def test_exception_without_message_uses_its_type_name(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    async def fail() -> None:
        raise KeyError

    _, body = await call(invoker, "fail")
    assert body["error"] == "Function execution failed: KeyError"


async def test_system_exit_in_a_function_is_an_execution_failure(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    async def quit_async() -> None:
        sys.exit(3)

    @registry.function()
    def quit_sync() -> None:
        sys.exit("bye")

    outcome, body = await call(invoker, "quit_async")
    assert body["error"] == "Function execution failed: SystemExit(3)"
    assert body["metadata"]["errorCode"] == "MTF-EXECUTION-003"
    assert isinstance(outcome.error.__cause__, SystemExit)  # type: ignore[union-attr]
    _, body = await call(invoker, "quit_sync")
    assert body["error"] == "Function execution failed: SystemExit('bye')"


async def test_unserializable_result_is_a_failure_of_its_own_kind(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    async def opaque() -> Any:
        return {"value": object()}

    outcome, body = await call(invoker, "opaque")
    assert body["success"] is False
    assert body["result"] is None
    assert body["metadata"]["errorKind"] == "result_not_serializable"
    assert "cannot be serialized to JSON" in body["error"]
    assert "'opaque'" in body["error"]
    assert outcome.status == "error"


async def test_result_types_json_lacks_are_converted(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    import datetime as dt
    import uuid

    @registry.function()
    async def rich() -> Any:
        return {"when": dt.date(2024, 1, 2), "id": uuid.UUID(int=1), "tags": ("a",)}

    _, body = await call(invoker, "rich")
    assert body["result"] == {
        "when": "2024-01-02",
        "id": "00000000-0000-0000-0000-000000000001",
        "tags": ["a"],
    }


# --- timeouts --------------------------------------------------------------------------------


async def test_async_function_past_its_deadline_times_out_and_is_cancelled(
    registry: FunctionRegistry,
) -> None:
    cancelled = asyncio.Event()

    @registry.function()
    async def slow() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    invoker = Invoker(registry, Settings(functions_timeout=0.2, functions_max_timeout=1))
    started = time.perf_counter()
    outcome, body = await call(invoker, "slow")
    elapsed = time.perf_counter() - started

    assert body["success"] is False
    assert body["result"] is None
    assert body["error"] == "Function 'slow' execution timed out after 0.2 seconds"
    assert body["metadata"]["errorCode"] == "MTF-EXECUTION-002"
    assert body["metadata"]["errorKind"] == "timeout"
    assert outcome.status == "timeout"
    assert isinstance(outcome.error, ExecutionTimeoutError)
    assert cancelled.is_set()
    assert 0.15 <= elapsed < 2


async def test_per_function_timeout_is_used(registry: FunctionRegistry) -> None:
    @registry.function(timeout=0.1)
    async def quick_deadline() -> str:
        await asyncio.sleep(5)
        return "never"

    @registry.function()
    async def default_deadline() -> str:
        await asyncio.sleep(0.3)
        return "done"

    invoker = Invoker(registry, Settings(functions_timeout=2, functions_max_timeout=5))
    _, body = await call(invoker, "quick_deadline")
    assert body["error"] == "Function 'quick_deadline' execution timed out after 0.1 seconds"
    # The same 0.3 s of work fits the default deadline of 2 s.
    _, body = await call(invoker, "default_deadline")
    assert body["result"] == "done"


async def test_per_function_timeout_longer_than_the_default_is_honoured(
    registry: FunctionRegistry,
) -> None:
    @registry.function(timeout=2)
    async def patient() -> str:
        await asyncio.sleep(0.3)
        return "done"

    invoker = Invoker(registry, Settings(functions_timeout=0.1, functions_max_timeout=5))
    _, body = await call(invoker, "patient")
    assert body["result"] == "done"


async def test_per_function_timeout_is_capped_by_the_maximum(
    registry: FunctionRegistry,
) -> None:
    @registry.function(timeout=60)
    async def greedy() -> str:
        await asyncio.sleep(5)
        return "never"

    invoker = Invoker(registry, Settings(functions_timeout=30, functions_max_timeout=0.2))
    started = time.perf_counter()
    _, body = await call(invoker, "greedy")
    assert body["error"] == "Function 'greedy' execution timed out after 0.2 seconds"
    assert time.perf_counter() - started < 2


async def test_timeout_error_raised_by_the_function_is_an_execution_failure(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    async def upstream() -> None:
        raise TimeoutError("upstream service did not answer")

    outcome, body = await call(invoker, "upstream")
    assert outcome.status == "error"
    assert body["error"] == "Function execution failed: upstream service did not answer"
    assert body["metadata"]["errorCode"] == "MTF-EXECUTION-003"
    assert isinstance(outcome.error.__cause__, TimeoutError)  # type: ignore[union-attr]


async def test_timeout_error_from_an_inner_asyncio_timeout_is_an_execution_failure(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    async def inner_deadline() -> None:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)

    outcome, body = await call(invoker, "inner_deadline")
    assert outcome.status == "error"
    assert body["metadata"]["errorKind"] == "execution_failed"


async def test_plain_def_past_its_deadline_times_out_and_its_thread_finishes(
    registry: FunctionRegistry,
) -> None:
    finished = threading.Event()

    @registry.function()
    def blocking() -> str:
        time.sleep(1.0)
        finished.set()
        return "late"

    invoker = Invoker(registry, Settings(functions_timeout=0.1, functions_max_timeout=1))
    try:
        started = time.perf_counter()
        outcome, body = await call(invoker, "blocking")
        elapsed = time.perf_counter() - started
        assert outcome.status == "timeout"
        assert body["error"] == "Function 'blocking' execution timed out after 0.1 seconds"
        assert body["metadata"]["errorCode"] == "MTF-EXECUTION-002"
        # The response did not wait for the thread, and the thread was not killed.
        assert elapsed < 0.8
        assert not finished.is_set()
        assert await asyncio.to_thread(finished.wait, 5)
    finally:
        invoker.close()


# --- plain def execution context -------------------------------------------------------------


async def test_plain_def_runs_on_a_worker_thread_with_the_execution_context(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    def where() -> dict[str, Any]:
        execution = current_execution()
        thread = threading.current_thread()
        return {
            "main": thread is threading.main_thread(),
            "thread": thread.name,
            "execution_id": execution.execution_id if execution else None,
            "function_name": execution.function_name if execution else None,
        }

    loop_thread = threading.current_thread().name
    _, body = await call(invoker, "where", execution_id="ctx-42")
    result = body["result"]
    assert result["main"] is False
    assert result["thread"] != loop_thread
    assert result["thread"].startswith("metatwin-sync")
    assert result["execution_id"] == "ctx-42"
    assert result["function_name"] == "where"


async def test_async_function_sees_its_execution_context(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    async def who() -> str | None:
        execution = current_execution()
        return execution.execution_id if execution else None

    _, body = await call(invoker, "who", execution_id="async-7")
    assert body["result"] == "async-7"


async def test_execution_context_is_reset_after_the_call(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    register_add_numbers(registry)
    assert current_execution() is None
    await call(invoker, "add_numbers", {"a": 1, "b": 2})
    assert current_execution() is None
    await call(invoker, "missing")
    assert current_execution() is None


async def test_concurrent_calls_each_see_their_own_execution_id(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    async def who(delay: float) -> str | None:
        await asyncio.sleep(delay)
        execution = current_execution()
        return execution.execution_id if execution else None

    results = await asyncio.gather(
        *(call(invoker, "who", {"delay": 0.05 * (3 - i)}, f"id-{i}") for i in range(3))
    )
    assert [body["result"] for _, body in results] == ["id-0", "id-1", "id-2"]


# --- the thread pool -------------------------------------------------------------------------


def _register_blocking(registry: FunctionRegistry) -> None:
    @registry.function()
    def blocking(seconds: float) -> float:
        time.sleep(seconds)
        return seconds


async def test_blocking_plain_defs_run_concurrently_on_the_pool(
    registry: FunctionRegistry,
) -> None:
    _register_blocking(registry)
    invoker = Invoker(registry, Settings(functions_timeout=10, functions_max_timeout=10))
    try:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(call(invoker, "blocking", {"seconds": 0.2}, f"id-{i}") for i in range(10))
        )
        elapsed = time.perf_counter() - started
    finally:
        invoker.close()
    assert all(body["success"] for _, body in results)
    assert elapsed < 1.5


async def test_blocking_plain_defs_do_not_block_the_event_loop(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    _register_blocking(registry)
    task = asyncio.create_task(call(invoker, "blocking", {"seconds": 0.3}))
    ticks = 0
    while not task.done():
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks >= 5


async def test_single_worker_pool_serialises_blocking_calls(
    registry: FunctionRegistry,
) -> None:
    _register_blocking(registry)
    settings = Settings(functions_timeout=10, functions_max_timeout=10, functions_sync_workers=1)
    invoker = Invoker(registry, settings)
    try:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(call(invoker, "blocking", {"seconds": 0.2}) for _ in range(5))
        )
        elapsed = time.perf_counter() - started
    finally:
        invoker.close()
    assert all(body["success"] for _, body in results)
    assert elapsed >= 1.0


async def test_close_then_invoke_creates_a_new_pool(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    _register_blocking(registry)
    _, body = await call(invoker, "blocking", {"seconds": 0})
    invoker.close()
    _, body = await call(invoker, "blocking", {"seconds": 0})
    assert body["success"] is True


async def test_a_function_cancelling_itself_is_an_execution_failure(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    async def self_cancelling() -> None:
        pending: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending.cancel()
        await pending

    _, body = await call(invoker, "self_cancelling")
    assert body["success"] is False
    assert body["error"] == "Function execution failed: CancelledError"
    assert body["metadata"]["errorCode"] == "MTF-EXECUTION-003"


async def test_keyboard_interrupt_in_a_plain_def_is_an_execution_failure(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    def interrupted() -> None:
        raise KeyboardInterrupt

    _, body = await call(invoker, "interrupted")
    assert body["success"] is False
    assert body["error"] == "Function execution failed: KeyboardInterrupt"


async def test_a_function_swallowing_its_cancellation_is_still_a_timeout(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function(timeout=0.1)
    async def stubborn() -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # cleans up past the deadline, then returns anyway
        return "late"

    _, body = await call(invoker, "stubborn")
    assert body["success"] is False
    assert body["metadata"]["errorKind"] == "timeout"
    assert body["error"] == "Function 'stubborn' execution timed out after 0.1 seconds"


async def test_a_def_returning_a_coroutine_is_awaited(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    async def later() -> int:
        return 7

    @registry.function()
    def wraps_async() -> Any:
        return later()

    _, body = await call(invoker, "wraps_async")
    assert (body["success"], body["result"]) == (True, 7)


async def test_threads_past_their_deadline_are_counted_until_they_finish(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    release = threading.Event()

    @registry.function(timeout=0.05)
    def stuck() -> None:
        release.wait(5)

    _, body = await call(invoker, "stuck")
    assert body["metadata"]["errorKind"] == "timeout"
    assert invoker.threads_busy == 1
    release.set()
    for _ in range(100):
        if invoker.threads_busy == 0:
            break
        await asyncio.sleep(0.01)
    assert invoker.threads_busy == 0


async def test_a_cancellation_turned_into_another_error_at_the_deadline_is_a_timeout(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function(timeout=0.1)
    async def wraps_cancel() -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError as exc:
            raise ConnectionError("connection aborted") from exc

    _, body = await call(invoker, "wraps_cancel")
    assert body["metadata"]["errorKind"] == "timeout"


async def test_a_server_cancellation_the_function_swallows_still_cancels_the_call(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    started = asyncio.Event()

    @registry.function(timeout=5)
    async def swallows() -> str:
        started.set()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            started.clear()  # swallowed on purpose: the behaviour under test
        return "finished anyway"

    task = asyncio.ensure_future(call(invoker, "swallows"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
