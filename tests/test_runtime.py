"""The per-app runtime: start never waits on the broker, and says when events cannot start."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import metatwin_functions.events as events_module
from metatwin_functions import FunctionRegistry, Settings
from metatwin_functions.runtime import FunctionRuntime


def broker_settings() -> Settings:
    return Settings(
        rabbitmq_hostname="127.0.0.1",
        rabbitmq_username="user",
        rabbitmq_password="secret-password",  # type: ignore[arg-type]
        _env_file=None,  # type: ignore[call-arg]
    )


async def test_events_that_fail_to_start_are_reported_and_serving_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def __init__(self, *_: Any) -> None:
            raise RuntimeError("no broker client here")

    monkeypatch.setattr(events_module, "EventsService", Broken)
    runtime = FunctionRuntime(FunctionRegistry(), broker_settings())
    await runtime.start()
    assert runtime.state == "ready"
    for _ in range(100):
        if any("could not start" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.01)
    failures = [r for r in caplog.records if "could not start" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.ERROR
    assert "secret-password" not in caplog.text
    await runtime.stop()


async def test_stop_right_after_start_cancels_the_events_start() -> None:
    runtime = FunctionRuntime(FunctionRegistry(), broker_settings())
    await runtime.start()
    await asyncio.wait_for(runtime.stop(), timeout=6)
    assert runtime.state == "stopped"
    assert runtime.rabbitmq_connected is False
