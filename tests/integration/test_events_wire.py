"""The wire form of both events, as the platform's queues receive them from the real broker."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from aio_pika import DeliveryMode

from metatwin_functions.events import HEALTHY_ROUTING_KEY, STARTED_ROUTING_KEY

pytestmark = pytest.mark.broker


def _check_envelope(sink: Any, message: Any, payload_type: str) -> dict[str, Any]:
    assert message.content_type == "application/json"
    assert message.delivery_mode == DeliveryMode.PERSISTENT
    body = sink.body(message)
    assert set(body) == {"correlationId", "payloadType", "payload"}
    assert body["payloadType"] == payload_type
    assert uuid.UUID(body["correlationId"]).version == 4
    payload: dict[str, Any] = body["payload"]
    return payload


async def test_started_event_has_the_contract_wire_form(
    make_settings: Any, make_service: Any, sink: Any, deployment_id: str
) -> None:
    service = make_service(make_settings())
    await service.start()
    await sink.wait_for(STARTED_ROUTING_KEY)

    [message] = sink.of_kind(STARTED_ROUTING_KEY)
    assert message.routing_key == "routing.event.metatwin-functions.function.deployment.started"
    payload = _check_envelope(sink, message, "FunctionDeploymentStartedPayload")
    assert payload == {
        "deploymentId": deployment_id,
        "functions": [
            {
                "name": "count_invoices",
                "description": "Counts all invoices",
                "args": [
                    {"name": "includePaid", "type": "bool", "required": True, "description": None}
                ],
                "returnType": "int",
            },
            {
                "name": "echo",
                "description": "Repeat a text.",
                "args": [
                    {"name": "text", "type": "str", "required": True, "description": None},
                    {"name": "times", "type": "int", "required": False, "description": None},
                ],
                "returnType": "str",
            },
        ],
    }
    assert service.started_delivered
    assert service.connected


async def test_healthy_beat_has_the_contract_wire_form(
    make_settings: Any, make_service: Any, sink: Any, deployment_id: str
) -> None:
    service = make_service(make_settings())
    await service.start()
    await sink.wait_for(HEALTHY_ROUTING_KEY)

    message = sink.of_kind(HEALTHY_ROUTING_KEY)[0]
    assert message.routing_key == "routing.event.metatwin-functions.function.deployment.healthy"
    payload = _check_envelope(sink, message, "FunctionsDeploymentHealthyPayload")
    assert payload == {"deploymentId": deployment_id, "functionNames": ["count_invoices", "echo"]}
    started = sink.body(sink.of_kind(STARTED_ROUTING_KEY)[0])
    assert sink.body(message)["correlationId"] != started["correlationId"]


async def test_started_event_with_nothing_bound_is_retried_until_a_queue_is_bound(
    make_settings: Any, make_service: Any, unbound_sink: Any, logs: pytest.LogCaptureFixture
) -> None:
    service = make_service(make_settings(retry_delay=0.1))
    await service.start()
    await asyncio.sleep(1.0)
    assert service.connected
    assert not service.started_delivered  # returned (mandatory) means not delivered
    returned = [r for r in logs.records if "returned the started event" in r.getMessage()]
    assert len(returned) == 1
    assert returned[0].levelno == logging.WARNING

    await unbound_sink.bind()
    await unbound_sink.wait_for(STARTED_ROUTING_KEY, timeout=5)
    await unbound_sink.wait_for(HEALTHY_ROUTING_KEY, timeout=3)
    assert service.started_delivered
    assert len(unbound_sink.of_kind(STARTED_ROUTING_KEY)) == 1


async def test_beats_go_out_while_the_started_event_is_still_refused(
    make_settings: Any, make_service: Any, unbound_sink: Any
) -> None:
    # Only the healthy key is bound: the started event comes back, the beat must not wait for it.
    await unbound_sink.bind_keys(["routing.event.metatwin-functions.function.deployment.healthy.#"])
    service = make_service(make_settings(retry_delay=0.2, health_check_interval=1))
    await service.start()
    await unbound_sink.wait_for(HEALTHY_ROUTING_KEY, count=2, timeout=5)
    assert not service.started_delivered

    await unbound_sink.bind()
    await unbound_sink.wait_for(STARTED_ROUTING_KEY, timeout=5)
    assert service.started_delivered
