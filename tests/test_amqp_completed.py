"""The completed event of an AMQP call through the events service, against the in-memory broker:
what counts as confirmed (the ack waits for it) and what only a wait or a requeue can fix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from metatwin_functions import FunctionRegistry, Settings
from metatwin_functions.amqp.completed import ServiceCompletedEvents
from metatwin_functions.events import COMPLETED_PAYLOAD_TYPE, EventsService
from metatwin_functions.testing import InMemoryBroker

ANSWER: dict[str, Any] = {
    "success": True,
    "result": 8,
    "error": None,
    "metadata": {"executionId": "e-1", "durationMs": 0.4},
}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def memory_broker() -> InMemoryBroker:
    return InMemoryBroker()


@pytest.fixture
async def service(memory_broker: InMemoryBroker) -> AsyncIterator[EventsService]:
    settings = Settings(
        deployment_id="dep-42",
        health_check_interval=3600,
        connection_timeout=0.5,
        retry_delay=0.05,
        _env_file=None,  # type: ignore[call-arg]
    )
    events = EventsService(settings, FunctionRegistry(), broker=memory_broker)
    await events.start()
    await memory_broker.wait_for("FunctionDeploymentStartedPayload")
    yield events
    await events.stop()


async def publish(completed: ServiceCompletedEvents) -> str:
    return await completed.publish(
        function_name="add_numbers", answer=ANSWER, traceparent=TRACEPARENT
    )


async def test_a_delivered_event_is_confirmed_with_the_contract_payload_and_traceparent(
    service: EventsService, memory_broker: InMemoryBroker
) -> None:
    completed = ServiceCompletedEvents(lambda: service, expected=True, patience=1)
    assert await publish(completed) == "confirmed"
    [event] = memory_broker.of_type(COMPLETED_PAYLOAD_TYPE)
    assert event.payload == {
        "deploymentId": "dep-42",
        "executionId": "e-1",
        "functionName": "add_numbers",
        "trigger": "amqp",
        "success": True,
        "result": 8,
        "error": None,
        "metadata": {"executionId": "e-1", "durationMs": 0.4},
    }
    assert event.properties.headers["traceparent"] == TRACEPARENT


async def test_an_event_no_queue_is_bound_for_counts_as_confirmed_and_is_warned_once(
    service: EventsService, memory_broker: InMemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    memory_broker.unbind("#")
    memory_broker.bind("routing.event.nothing.#")
    completed = ServiceCompletedEvents(lambda: service, expected=True, patience=1)
    assert await publish(completed) == "confirmed"
    assert await publish(completed) == "confirmed"
    assert caplog.text.count("execution completed event was not delivered") == 1


async def test_while_the_broker_is_down_the_call_waits_then_says_failed(
    service: EventsService, memory_broker: InMemoryBroker
) -> None:
    memory_broker.fail()
    completed = ServiceCompletedEvents(lambda: service, expected=True, patience=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await publish(completed) == "failed"
    assert loop.time() - started >= 0.3


async def test_an_event_waits_for_the_broker_to_come_back(
    service: EventsService, memory_broker: InMemoryBroker
) -> None:
    memory_broker.fail()
    completed = ServiceCompletedEvents(lambda: service, expected=True, patience=5)
    waiting = asyncio.create_task(publish(completed))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    memory_broker.recover()
    assert await waiting == "confirmed"
    assert len(memory_broker.of_type(COMPLETED_PAYLOAD_TYPE)) == 1


async def test_a_service_still_loading_is_waited_for() -> None:
    completed = ServiceCompletedEvents(lambda: None, expected=True, patience=0.2)
    assert await publish(completed) == "failed"


async def test_without_events_configured_there_is_nothing_to_wait_for() -> None:
    completed = ServiceCompletedEvents(lambda: None, expected=False, patience=10)
    assert await publish(completed) == "off"
