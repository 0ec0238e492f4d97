"""The execution completed event, the observer hook and message headers (in-memory broker)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from metatwin_functions.events import (
    COMPLETED_PAYLOAD_TYPE,
    COMPLETED_ROUTING_KEY,
    HEALTHY_PAYLOAD_TYPE,
    STARTED_PAYLOAD_TYPE,
    execution_completed_payload,
)
from metatwin_functions.testing import InMemoryBroker
from metatwin_functions.testing.broker import topic_matches

from .events_support import fast_settings, make_service

CALL: dict[str, Any] = {
    "execution_id": "e-1",
    "function_name": "add_numbers",
    "trigger": "amqp",
    "success": True,
    "result": 8,
    "error": None,
    "metadata": {"executionId": "e-1", "durationMs": 0.4},
}


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def event_published(self, event: str, result: str) -> None:
        self.seen.append((event, result))


def test_payload_has_exactly_the_eight_contract_keys() -> None:
    payload = execution_completed_payload(deployment_id="dep-42", **CALL)
    assert payload == {
        "deploymentId": "dep-42",
        "executionId": "e-1",
        "functionName": "add_numbers",
        "trigger": "amqp",
        "success": True,
        "result": 8,
        "error": None,
        "metadata": {"executionId": "e-1", "durationMs": 0.4},
    }


def test_payload_metadata_always_echoes_the_execution_id_and_is_a_copy() -> None:
    metadata = {"errorKind": "timeout"}
    payload = execution_completed_payload(
        deployment_id="d", **{**CALL, "success": False, "metadata": metadata}
    )
    assert payload["metadata"] == {"errorKind": "timeout", "executionId": "e-1"}
    assert metadata == {"errorKind": "timeout"}
    assert execution_completed_payload(deployment_id="d", **{**CALL, "metadata": None})[
        "metadata"
    ] == {"executionId": "e-1"}


async def test_completed_event_is_confirmed_with_the_contract_envelope_and_properties() -> None:
    broker = InMemoryBroker()
    recorder = Recorder()
    service = make_service(
        broker,
        fast_settings(health_check_interval=60),
        observer=recorder,
        header_injector=lambda headers: headers.update(traceparent="00-injected-01", x="1"),
    )
    await service.start()
    await broker.wait_for(STARTED_PAYLOAD_TYPE)
    delivered = await service.publish_execution_completed(
        **CALL, headers={"traceparent": "00-explicit-01"}
    )
    await service.stop()

    assert delivered is True
    [event] = broker.of_type(COMPLETED_PAYLOAD_TYPE)
    assert event.routing_key == COMPLETED_ROUTING_KEY
    assert set(event.envelope) == {"correlationId", "payloadType", "payload"}
    assert event.payload == execution_completed_payload(deployment_id="dep-unit", **CALL)
    assert event.properties.correlation_id == event.correlation_id
    assert event.properties.content_type == "application/json"
    assert event.properties.persistent
    assert dict(event.properties.headers) == {"traceparent": "00-explicit-01", "x": "1"}
    started = broker.of_type(STARTED_PAYLOAD_TYPE)[0]
    assert dict(started.properties.headers) == {"traceparent": "00-injected-01", "x": "1"}
    assert ("execution_completed", "delivered") in recorder.seen


async def test_observer_hears_every_outcome_and_last_healthy_timestamp_follows_beats() -> None:
    broker = InMemoryBroker(
        bindings=[
            "routing.event.metatwin-functions.function.deployment.#",
            "routing.event.metatwin-functions.function.execution.#",
        ]
    )
    recorder = Recorder()
    service = make_service(broker, observer=recorder)
    assert service.last_healthy_timestamp is None
    await service.start()
    await broker.wait_for(HEALTHY_PAYLOAD_TYPE, count=2)
    stamp = service.last_healthy_timestamp
    assert stamp is not None
    assert abs(time.time() - stamp) < 1

    broker.nack()
    assert await service.publish_execution_completed(**CALL) is False
    broker.nack(False)
    broker.unbind("routing.event.metatwin-functions.function.execution.#")
    assert await service.publish_execution_completed(**CALL) is False
    broker.fail()
    assert await service.publish_execution_completed(**CALL) is False
    await service.stop()

    assert recorder.seen[0] == ("started", "delivered")
    assert ("healthy", "delivered") in recorder.seen
    assert recorder.seen[-3:] == [
        ("execution_completed", "failed"),
        ("execution_completed", "unroutable"),
        ("execution_completed", "failed"),
    ]


async def test_the_result_tells_unroutable_from_not_confirmed() -> None:
    broker = InMemoryBroker(bindings=["routing.event.metatwin-functions.function.#"])
    service = make_service(broker)
    await service.start()
    await broker.wait_for(HEALTHY_PAYLOAD_TYPE)
    assert await service.publish_execution_completed_result(**CALL) == "delivered"
    broker.nack()
    assert await service.publish_execution_completed_result(**CALL) == "failed"
    broker.nack(False)
    broker.unbind("routing.event.metatwin-functions.function.#")
    assert await service.publish_execution_completed_result(**CALL) == "unroutable"
    await service.stop()


async def test_completed_publish_is_bounded_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = InMemoryBroker()
    service = make_service(broker, fast_settings(connection_timeout=0.05))
    assert await service.publish_execution_completed(**CALL) is False, "not started yet"
    await service.start()
    await broker.wait_for(STARTED_PAYLOAD_TYPE)

    not_json = await service.publish_execution_completed(**{**CALL, "result": object()})
    assert not_json is False
    broker.delay(1.0)
    loop = asyncio.get_running_loop()
    before = loop.time()
    assert await service.publish_execution_completed(**CALL) is False
    assert loop.time() - before < 0.3
    await service.stop()
    assert await service.publish_execution_completed(**CALL) is False, "stopped"
    assert not broker.of_type(COMPLETED_PAYLOAD_TYPE)


async def test_broken_observer_or_injector_never_stops_an_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def event_published(self, event: str, result: str) -> None:
            raise RuntimeError("metrics bug")

    def injector(headers: dict[str, str]) -> None:
        raise RuntimeError("tracing bug")

    broker = InMemoryBroker()
    service = make_service(broker, observer=Broken(), header_injector=injector)
    await service.start()
    await broker.wait_for(HEALTHY_PAYLOAD_TYPE)
    assert await service.publish_execution_completed(**CALL) is True
    await service.stop()
    assert any("observer failed" in r.getMessage() for r in caplog.records)


async def test_events_without_a_broker_publish_nothing_and_say_false(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    from metatwin_functions.events import EventsService
    from metatwin_functions.registry import FunctionRegistry

    service = EventsService(fast_settings(), FunctionRegistry())  # no broker settings at all
    assert not service.enabled
    await service.start()
    assert await service.publish_execution_completed(**CALL) is False
    await service.stop()
    assert service.last_healthy_timestamp is None
    assert any("CRBR_RABBITMQ" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("a.b.c", "a.b.c", True),
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.c", False),
        ("a.#", "a", True),
        ("a.#", "a.b.c", True),
        ("#.c", "a.b.c", True),
        ("a.#.c", "a.c", True),
        ("a.#.c", "a.b.b.c", True),
        ("a.b", "a.b.c", False),
        ("#", "anything.at.all", True),
    ],
)
def test_in_memory_bindings_follow_amqp_topic_rules(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


async def test_wait_for_times_out_when_too_few_events_arrive() -> None:
    broker = InMemoryBroker()
    assert "published=0" in repr(broker)
    with pytest.raises(TimeoutError):
        await broker.wait_for(STARTED_PAYLOAD_TYPE, timeout=0.02)


async def test_a_malformed_call_is_logged_and_answered_false_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = InMemoryBroker()
    service = make_service(broker)
    await service.start()
    await broker.wait_for(STARTED_PAYLOAD_TYPE)
    bad: Any = ["not", "a", "mapping"]
    assert await service.publish_execution_completed(**{**CALL, "metadata": bad}) is False
    await service.stop()
    assert any("not published" in r.getMessage() for r in caplog.records)
