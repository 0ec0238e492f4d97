"""Shared helpers of the in-memory events unit tests (no broker, no network)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from metatwin_functions.events import EventsService
from metatwin_functions.registry import FunctionRegistry
from metatwin_functions.settings import Settings
from metatwin_functions.testing import InMemoryBroker

LOGGER = "test.metatwin.events.unit"


def fast_settings(**overrides: Any) -> Settings:
    """Settings with intervals in tens of milliseconds (below what validation allows, on purpose:
    the unit tests compress time, the integration tests keep the real bounds)."""
    base = Settings(  # type: ignore[call-arg]
        _env_file=None,
        deployment_id="dep-unit",
        enable_events=True,
        max_retries=2,
    )
    values: dict[str, Any] = {
        "health_check_interval": 0.05,
        "connection_timeout": 0.2,
        "retry_delay": 0.01,
        "rabbitmq_heartbeat": 0,
    }
    values.update(overrides)
    return base.model_copy(update=values)


def make_registry() -> FunctionRegistry:
    registry = FunctionRegistry()

    @registry.function(description="Adds two numbers")
    def add_numbers(a: int, b: int = 1) -> int:
        return a + b

    return registry


def make_service(
    broker: InMemoryBroker, settings: Settings | None = None, **kwargs: Any
) -> EventsService:
    return EventsService(
        settings if settings is not None else fast_settings(),
        make_registry(),
        logging.getLogger(LOGGER),
        broker=broker,
        **kwargs,
    )


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> float:
    """Seconds until ``predicate()`` holds; fails the test after ``timeout``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        assert loop.time() - start < timeout, "did not happen in time"
        await asyncio.sleep(0.005)
    return loop.time() - start


def messages(records: list[logging.LogRecord], level: int) -> list[str]:
    return [r.getMessage() for r in records if r.name == LOGGER and r.levelno == level]
