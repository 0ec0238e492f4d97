"""Fixtures for tests against the real RabbitMQ broker on 127.0.0.1:5672 (guest/guest).

Without a broker these tests are skipped, except under ``CI=true`` where a missing broker is a
failure: CI must not pass by skipping. Every test gets its own exchange and deployment id and
reads messages through its own exclusive queue, so tests never see each other's events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from metatwin_functions.events import EventsService
from metatwin_functions.registry import FunctionRegistry
from metatwin_functions.settings import Settings

try:  # tests/integration is a plain directory today; keep working if it becomes a package
    from .tcp_proxy import ProxyMode, TcpProxy
except ImportError:
    from tcp_proxy import ProxyMode, TcpProxy  # type: ignore[no-redef]

BROKER_HOST = "127.0.0.1"
BROKER_PORT = 5672
BROKER_URL = f"amqp://guest:guest@{BROKER_HOST}:{BROKER_PORT}/"
# The platform's own binding keys (rabbitmq/definitions.json): they must route both events.
PLATFORM_BINDINGS = (
    "routing.event.metatwin-functions.function.deployment.started.#",
    "routing.event.metatwin-functions.function.deployment.healthy.#",
)


@pytest.fixture(scope="session")
def broker() -> str:
    """The broker's URL; skips (or fails under ``CI=true``) when nothing listens."""
    try:
        socket.create_connection((BROKER_HOST, BROKER_PORT), timeout=2).close()
    except OSError as exc:
        reason = f"RabbitMQ is not reachable on {BROKER_HOST}:{BROKER_PORT} ({exc})"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{reason}; CI=true requires the broker")
        pytest.skip(reason)
    return BROKER_URL


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def exchange_name(unique: str) -> str:
    return f"test.metatwin-events.{unique}"


@pytest.fixture
def deployment_id(unique: str) -> str:
    return f"dep-{unique}"


@pytest.fixture
def registry() -> FunctionRegistry:
    registry = FunctionRegistry()

    @registry.function(description="Counts all invoices")
    def count_invoices(includePaid: bool) -> int:  # noqa: N803 - the platform's example
        return 0

    @registry.function()
    async def echo(text: str, times: int = 1) -> str:
        """Repeat a text."""
        return text * times

    return registry


@pytest.fixture
def make_settings(exchange_name: str, deployment_id: str) -> Callable[..., Settings]:
    """Settings pointing at the real broker, with fast retries; keyword overrides win."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "deployment_id": deployment_id,
            "rabbitmq_hostname": BROKER_HOST,
            "rabbitmq_port": BROKER_PORT,
            "rabbitmq_username": "guest",
            "rabbitmq_password": "guest",
            "rabbitmq_exchange": exchange_name,
            "enable_events": True,
            "health_check_interval": 1,
            "connection_timeout": 2,
            "max_retries": 3,
            "retry_delay": 0.1,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
async def make_service(
    registry: FunctionRegistry,
) -> AsyncIterator[Callable[[Settings], EventsService]]:
    """Build services that are stopped after the test, whatever happened."""
    services: list[EventsService] = []

    def make(settings: Settings) -> EventsService:
        service = EventsService(settings, registry, logging.getLogger("test.metatwin.events"))
        services.append(service)
        return service

    yield make
    for service in services:
        await service.stop()


class EventSink:
    """An exclusive queue bound to a test exchange, collecting every event published there."""

    def __init__(self, exchange_name: str) -> None:
        self.exchange_name = exchange_name
        self.messages: list[AbstractIncomingMessage] = []
        self._arrived = asyncio.Event()
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None

    async def open(self, *, bind: bool = True) -> None:
        self._connection = await aio_pika.connect(BROKER_URL, timeout=5)
        channel = await self._connection.channel()
        self._exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await self._queue.consume(self._on_message, no_ack=True)
        if bind:
            await self.bind()

    async def bind(self) -> None:
        await self.bind_keys(PLATFORM_BINDINGS)

    async def bind_keys(self, routing_keys: Iterable[str]) -> None:
        assert self._queue is not None
        for routing_key in routing_keys:
            await self._queue.bind(self.exchange_name, routing_key)

    async def close(self) -> None:
        if self._exchange is not None:
            await self._exchange.delete()
        if self._connection is not None:
            await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.messages.append(message)
        self._arrived.set()

    def of_kind(self, routing_key: str) -> list[AbstractIncomingMessage]:
        return [m for m in self.messages if m.routing_key == routing_key]

    async def wait_for(self, routing_key: str, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``count`` messages with ``routing_key`` have arrived."""
        async with asyncio.timeout(timeout):
            while len(self.of_kind(routing_key)) < count:
                self._arrived.clear()
                await self._arrived.wait()

    @staticmethod
    def body(message: AbstractIncomingMessage) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(message.body)
        return decoded


@pytest.fixture
async def sink(broker: str, exchange_name: str) -> AsyncIterator[EventSink]:
    """A bound sink on the test's exchange (deleted afterwards)."""
    sink = EventSink(exchange_name)
    await sink.open()
    yield sink
    await sink.close()


@pytest.fixture
async def unbound_sink(broker: str, exchange_name: str) -> AsyncIterator[EventSink]:
    """A sink whose queue is not bound yet: the exchange routes nothing until ``bind()``."""
    sink = EventSink(exchange_name)
    await sink.open(bind=False)
    yield sink
    await sink.close()


@pytest.fixture
async def proxy(broker: str) -> AsyncIterator[TcpProxy]:
    """A TCP proxy to the broker, forwarding until the test says otherwise."""
    proxy = TcpProxy(BROKER_HOST, BROKER_PORT)
    await proxy.start(ProxyMode.FORWARD)
    yield proxy
    await proxy.close()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """``caplog`` capturing DEBUG and up from every logger (read ``logs.records`` in the test)."""
    caplog.set_level(logging.DEBUG)
    return caplog


async def _eventually(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(step)
    return True


@pytest.fixture
def eventually() -> Callable[[Callable[[], bool], float], Awaitable[bool]]:
    """``await eventually(predicate, timeout)``: poll until true; returns the last value."""
    return _eventually
