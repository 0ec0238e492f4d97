"""`configure_logging`: JSON lines with call fields for deployments, readable text for local-dev."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from metatwin_functions import FunctionRegistry, Invoker, Settings, configure_logging
from metatwin_functions import logs as logs_module
from metatwin_functions.envelope import ExecRequest

LOGGER_NAMES = (
    "metatwin_functions",
    "hypercorn.error",
    "hypercorn.access",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "user.module",
)


# CRBR_* variables are cleared by conftest; settings also read .env from the working directory.
pytestmark = pytest.mark.usefixtures("isolated_cwd")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    root_level = root.level
    saved = {
        name: (
            logging.getLogger(name).level,
            list(logging.getLogger(name).handlers),
            logging.getLogger(name).propagate,
        )
        for name in LOGGER_NAMES
    }
    yield
    for handler in [h for h in root.handlers if isinstance(h, logs_module._SdkHandler)]:
        root.removeHandler(handler)
    root.setLevel(root_level)
    for name, (level, handlers, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]


async def run_call(
    registry: FunctionRegistry,
    name: str,
    args: dict[str, Any] | None = None,
    execution_id: str = "exec-77",
) -> None:
    invoker = Invoker(registry, Settings(functions_timeout=2, functions_max_timeout=2))
    try:
        await invoker.invoke(ExecRequest(execution_id, name, args or {}))
    finally:
        invoker.close()


def logging_registry() -> FunctionRegistry:
    registry = FunctionRegistry()
    user_logger = logging.getLogger("user.module")

    @registry.function()
    async def greet(name: str) -> str:
        user_logger.info("Greeting %s", name)
        return f"Hello {name}"

    @registry.function()
    def greet_sync(name: str) -> str:
        user_logger.info("Greeting %s from a thread", name)
        return f"Hello {name}"

    @registry.function()
    async def explode() -> None:
        raise ValueError("kaboom")

    @registry.function()
    async def handled() -> str:
        try:
            {}["missing"]
        except KeyError:
            user_logger.exception("Lookup failed")
        return "ok"

    return registry


# --- JSON ------------------------------------------------------------------------------------


def test_json_line_has_the_contract_fields_outside_a_call() -> None:
    stream = io.StringIO()
    configure_logging(Settings(deployment_id="dep-42"), stream=stream)
    logging.getLogger("user.module").warning("Plain %s", "line")

    [line] = json_lines(stream)
    assert line["message"] == "Plain line"
    assert line["level"] == "WARNING"
    assert line["deployment_id"] == "dep-42"
    assert line["logger"] == "user.module"
    assert "execution_id" not in line
    assert "function_name" not in line


def test_uvicorn_lines_are_json_without_their_terminal_colour_copy() -> None:
    stream = io.StringIO()
    configure_logging(Settings(deployment_id="dep-42"), stream=stream)
    # uvicorn logs each message twice over: the plain one, and one for its colouring formatter.
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 7, extra={"color_message": "\x1b[36m%d\x1b[0m"}
    )

    [line] = json_lines(stream)
    assert (line["logger"], line["message"]) == ("uvicorn.error", "Started server process [7]")
    assert "color_message" not in line


def test_json_timestamp_is_iso_8601_in_utc() -> None:
    stream = io.StringIO()
    configure_logging(Settings(deployment_id="dep-42"), stream=stream)
    before = datetime.now().astimezone()
    logging.getLogger("user.module").warning("tick")

    [line] = json_lines(stream)
    timestamp = datetime.fromisoformat(line["timestamp"])
    assert timestamp.utcoffset() == timedelta(0)
    assert abs(timestamp - before) < timedelta(seconds=5)


async def test_user_log_lines_in_a_call_carry_execution_id_and_function_name() -> None:
    stream = io.StringIO()
    configure_logging(Settings(deployment_id="dep-42"), stream=stream)
    await run_call(logging_registry(), "greet", {"name": "Ada"}, execution_id="exec-77")

    user_line = next(line for line in json_lines(stream) if line["logger"] == "user.module")
    assert user_line["message"] == "Greeting Ada"
    assert user_line["level"] == "INFO"
    assert user_line["execution_id"] == "exec-77"
    assert user_line["function_name"] == "greet"
    assert user_line["deployment_id"] == "dep-42"


async def test_user_log_lines_from_a_plain_def_thread_carry_the_execution_id() -> None:
    stream = io.StringIO()
    configure_logging(Settings(deployment_id="dep-42"), stream=stream)
    await run_call(logging_registry(), "greet_sync", {"name": "Bo"}, execution_id="thread-1")

    user_line = next(line for line in json_lines(stream) if line["logger"] == "user.module")
    assert user_line["message"] == "Greeting Bo from a thread"
    assert user_line["execution_id"] == "thread-1"
    assert user_line["function_name"] == "greet_sync"


async def test_finish_line_of_a_successful_call_has_status_and_duration() -> None:
    stream = io.StringIO()
    configure_logging(Settings(deployment_id="dep-42"), stream=stream)
    await run_call(logging_registry(), "greet", {"name": "Ada"})

    finish = json_lines(stream)[-1]
    assert finish["logger"] == "metatwin_functions.calls"
    assert finish["status"] == "success"
    assert isinstance(finish["duration_ms"], float)
    assert finish["duration_ms"] >= 0
    assert finish["execution_id"] == "exec-77"
    assert finish["function_name"] == "greet"


async def test_failed_call_logs_an_error_with_the_traceback() -> None:
    stream = io.StringIO()
    configure_logging(Settings(deployment_id="dep-42"), stream=stream)
    await run_call(logging_registry(), "explode", execution_id="exec-err")

    [finish] = json_lines(stream)
    assert finish["level"] == "ERROR"
    assert finish["status"] == "error"
    assert finish["message"] == "Function execution failed: kaboom"
    assert finish["execution_id"] == "exec-err"
    assert finish["function_name"] == "explode"
    assert "Traceback (most recent call last)" in finish["exc_info"]
    assert "ValueError: kaboom" in finish["exc_info"]
    assert "explode" in finish["exc_info"]


async def test_timed_out_call_logs_status_timeout() -> None:
    registry = FunctionRegistry()

    @registry.function(timeout=0.05)
    async def sleepy() -> None:
        import asyncio

        await asyncio.sleep(1)

    stream = io.StringIO()
    configure_logging(Settings(deployment_id="dep-42"), stream=stream)
    await run_call(registry, "sleepy")

    [finish] = json_lines(stream)
    assert finish["status"] == "timeout"
    assert finish["level"] == "ERROR"
    assert finish["function_name"] == "sleepy"


async def test_user_logger_exception_carries_exc_info() -> None:
    stream = io.StringIO()
    configure_logging(Settings(deployment_id="dep-42"), stream=stream)
    await run_call(logging_registry(), "handled")

    user_line = next(line for line in json_lines(stream) if line["logger"] == "user.module")
    assert user_line["level"] == "ERROR"
    assert "KeyError: 'missing'" in user_line["exc_info"]
    assert user_line["execution_id"] == "exec-77"


def test_json_line_keeps_non_ascii_text_readable() -> None:
    stream = io.StringIO()
    configure_logging(Settings(deployment_id="dep-42"), stream=stream)
    logging.getLogger("user.module").warning("Grüße")
    assert "Grüße" in stream.getvalue()
    assert json_lines(stream)[0]["message"] == "Grüße"


def test_each_record_is_exactly_one_line_even_with_newlines_in_the_message() -> None:
    stream = io.StringIO()
    configure_logging(Settings(deployment_id="dep-42"), stream=stream)
    logging.getLogger("user.module").warning("first\nsecond")
    [line] = json_lines(stream)
    assert line["message"] == "first\nsecond"


# --- text for local-dev ----------------------------------------------------------------------


async def test_local_dev_logs_readable_text_with_the_execution_id() -> None:
    stream = io.StringIO()
    configure_logging(Settings(deployment_id="local-dev"), stream=stream)
    await run_call(logging_registry(), "greet", {"name": "Ada"}, execution_id="exec-txt")

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    for line in lines:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
    user_line, finish = lines
    assert "INFO" in user_line
    assert "user.module: Greeting Ada" in user_line
    assert "execution_id='exec-txt'" in user_line
    assert "greet" in user_line
    assert "status=success" in finish


def test_local_dev_line_outside_a_call_has_no_call_suffix() -> None:
    stream = io.StringIO()
    configure_logging(Settings(), stream=stream)
    logging.getLogger("user.module").warning("plain")
    [line] = stream.getvalue().splitlines()
    assert line.endswith("user.module: plain")
    assert "execution_id" not in line


async def test_local_dev_error_includes_the_traceback_text() -> None:
    stream = io.StringIO()
    configure_logging(Settings(), stream=stream)
    await run_call(logging_registry(), "explode")
    text = stream.getvalue()
    assert "Function execution failed: kaboom" in text
    assert "Traceback (most recent call last)" in text
    assert "ValueError: kaboom" in text


# --- server loggers, levels, reconfiguration -------------------------------------------------


def test_hypercorn_error_lines_come_out_in_the_same_json_format() -> None:
    hypercorn_logger = logging.getLogger("hypercorn.error")
    own_stream = io.StringIO()
    hypercorn_logger.addHandler(logging.StreamHandler(own_stream))
    hypercorn_logger.propagate = False

    stream = io.StringIO()
    configure_logging(Settings(deployment_id="dep-42"), stream=stream)
    hypercorn_logger.info("Running on http://0.0.0.0:8000")

    [line] = json_lines(stream)
    assert line["logger"] == "hypercorn.error"
    assert line["message"] == "Running on http://0.0.0.0:8000"
    assert line["deployment_id"] == "dep-42"
    assert line["level"] == "INFO"
    assert own_stream.getvalue() == ""  # Hypercorn's own handler is gone


def test_hypercorn_lines_in_local_dev_are_text() -> None:
    stream = io.StringIO()
    configure_logging(Settings(), stream=stream)
    logging.getLogger("hypercorn.error").info("Running")
    assert "hypercorn.error: Running" in stream.getvalue()


def test_configuring_twice_does_not_duplicate_lines() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(Settings(deployment_id="dep-42"), stream=first)
    configure_logging(Settings(deployment_id="dep-43"), stream=second)
    logging.getLogger("user.module").warning("once")
    logging.getLogger("hypercorn.error").warning("server once")

    assert first.getvalue() == ""
    lines = json_lines(second)
    assert [line["message"] for line in lines] == ["once", "server once"]
    assert {line["deployment_id"] for line in lines} == {"dep-43"}
    installed = [h for h in logging.getLogger().handlers if isinstance(h, logs_module._SdkHandler)]
    assert len(installed) == 1


def test_configuring_keeps_handlers_it_did_not_install() -> None:
    foreign = logging.NullHandler()
    logging.getLogger().addHandler(foreign)
    try:
        configure_logging(Settings(deployment_id="dep-42"), stream=io.StringIO())
        assert foreign in logging.getLogger().handlers
    finally:
        logging.getLogger().removeHandler(foreign)


def test_function_log_level_filters_user_lines() -> None:
    stream = io.StringIO()
    configure_logging(
        Settings(deployment_id="dep-42", functions_log_level="WARNING"), stream=stream
    )
    logging.getLogger("user.module").info("hidden")
    logging.getLogger("user.module").warning("shown")
    assert [line["message"] for line in json_lines(stream)] == ["shown"]


def test_server_log_level_is_separate_from_the_function_log_level() -> None:
    stream = io.StringIO()
    configure_logging(
        Settings(deployment_id="dep-42", functions_log_level="DEBUG", uvicorn_log_level="ERROR"),
        stream=stream,
    )
    logging.getLogger("hypercorn.error").warning("server warning hidden")
    logging.getLogger("user.module").debug("user debug shown")
    assert [line["message"] for line in json_lines(stream)] == ["user debug shown"]
