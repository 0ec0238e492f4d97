"""The runtime and the AMQP consumer without a broker: start never waits, /ready tells the truth,
stop is bounded, and a missing setting is said once."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from metatwin_functions import FunctionRegistry, Settings
from metatwin_functions.runtime import FunctionRuntime


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(**values: Any) -> Settings:
    return Settings(_env_file=None, deployment_id="dep-7", enable_events=False, **values)  # type: ignore[call-arg]


def test_ready_has_no_amqp_key_unless_it_was_asked_for() -> None:
    assert "amqp_exec" not in FunctionRuntime(FunctionRegistry(), make_settings()).ready_payload()


async def test_enabled_without_broker_settings_says_what_is_missing_and_does_not_consume(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = FunctionRuntime(FunctionRegistry(), make_settings(amqp_exec_enabled=True))
    await runtime.start()
    try:
        assert runtime.ready_payload()["amqp_exec"] == {
            "enabled": False,
            "consuming": False,
            "queue": "metatwin-functions.exec.dep-7",
        }
        missing = "CRBR_RABBITMQ_HOSTNAME, CRBR_RABBITMQ_USERNAME, CRBR_RABBITMQ_PASSWORD"
        assert f"{missing} not set: not consuming the execution queue" in caplog.text
    finally:
        await runtime.stop()


async def test_an_unreachable_broker_neither_delays_start_nor_stop() -> None:
    settings = make_settings(
        amqp_exec_enabled=True,
        amqp_exec_queue="q-custom",
        rabbitmq_hostname="127.0.0.1",
        rabbitmq_port=closed_port(),
        rabbitmq_username="guest",
        rabbitmq_password="guest",
        retry_delay=0.05,
    )
    runtime = FunctionRuntime(FunctionRegistry(), settings)
    started = time.perf_counter()
    await runtime.start()
    assert time.perf_counter() - started < 0.05
    assert runtime.state == "ready"
    await asyncio.sleep(0.5)  # loads the consumer, which retries in the background
    assert runtime.amqp is not None
    assert runtime.ready_payload()["amqp_exec"] == {
        "enabled": True,
        "consuming": False,
        "queue": "q-custom",
    }
    assert await runtime.drain(1) is True
    stopping = time.perf_counter()
    await runtime.stop()
    assert time.perf_counter() - stopping < 1
