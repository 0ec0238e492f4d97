"""The events' envelope and payloads, exactly as the contract spells them (no broker needed)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from pydantic import Field

from metatwin_functions.events import (
    HEALTHY_PAYLOAD_TYPE,
    HEALTHY_ROUTING_KEY,
    STARTED_PAYLOAD_TYPE,
    STARTED_ROUTING_KEY,
    healthy_event,
    healthy_payload,
    started_event,
    started_payload,
)
from metatwin_functions.registry import FunctionRegistry


def _registry() -> FunctionRegistry:
    registry = FunctionRegistry()

    @registry.function(description="Counts all invoices")
    def count_invoices(includePaid: bool) -> int:  # noqa: N803 - the contract's example
        return 0

    @registry.function("stats")
    def statistics(
        values: list[float],
        label: Annotated[str | None, Field(description="Shown in reports")] = None,
        options: dict[str, Any] | None = None,
    ) -> dict[str, float]:
        """Summarise numbers.

        More text that is not part of the description.
        """
        return {}

    @registry.function()
    def untyped(x, y=2):  # type: ignore[no-untyped-def]
        return x

    return registry


def test_routing_keys_and_payload_types_match_the_contract() -> None:
    assert STARTED_ROUTING_KEY == "routing.event.metatwin-functions.function.deployment.started"
    assert HEALTHY_ROUTING_KEY == "routing.event.metatwin-functions.function.deployment.healthy"
    assert STARTED_PAYLOAD_TYPE == "FunctionDeploymentStartedPayload"
    assert HEALTHY_PAYLOAD_TYPE == "FunctionsDeploymentHealthyPayload"


def test_started_payload_describes_every_function_in_registration_order() -> None:
    payload = started_payload("dep-42", _registry())
    assert payload == {
        "deploymentId": "dep-42",
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
                "name": "stats",
                "description": "Summarise numbers.",
                "args": [
                    {
                        "name": "values",
                        "type": "list[float]",
                        "required": True,
                        "description": None,
                    },
                    {
                        "name": "label",
                        "type": "str | None",
                        "required": False,
                        "description": "Shown in reports",
                    },
                    {
                        "name": "options",
                        "type": "dict[str, Any] | None",
                        "required": False,
                        "description": None,
                    },
                ],
                "returnType": "dict[str, float]",
            },
            {
                "name": "untyped",
                "description": "",
                "args": [
                    {"name": "x", "type": "Any", "required": True, "description": None},
                    {"name": "y", "type": "Any", "required": False, "description": None},
                ],
                "returnType": "Any",
            },
        ],
    }


def test_healthy_payload_lists_the_function_names() -> None:
    assert healthy_payload("dep-42", _registry()) == {
        "deploymentId": "dep-42",
        "functionNames": ["count_invoices", "stats", "untyped"],
    }


def test_started_event_body_is_the_contract_envelope() -> None:
    event = started_event("dep-42", _registry())
    body = json.loads(event.body())
    assert list(body) == ["correlationId", "payloadType", "payload"]
    assert body["payloadType"] == "FunctionDeploymentStartedPayload"
    assert body["payload"] == started_payload("dep-42", _registry())
    assert uuid.UUID(body["correlationId"]).version == 4
    assert body["correlationId"] == event.correlation_id
    assert event.routing_key == STARTED_ROUTING_KEY


def test_healthy_event_body_is_the_contract_envelope() -> None:
    event = healthy_event("dep-42", _registry())
    body = json.loads(event.body())
    assert body == {
        "correlationId": event.correlation_id,
        "payloadType": "FunctionsDeploymentHealthyPayload",
        "payload": {
            "deploymentId": "dep-42",
            "functionNames": ["count_invoices", "stats", "untyped"],
        },
    }
    assert event.routing_key == HEALTHY_ROUTING_KEY


def test_each_event_gets_its_own_correlation_id_and_a_retry_keeps_it() -> None:
    registry = _registry()
    first, second = healthy_event("d", registry), healthy_event("d", registry)
    assert first.correlation_id != second.correlation_id
    event = started_event("d", registry)
    assert json.loads(event.body())["correlationId"] == json.loads(event.body())["correlationId"]


def test_empty_registry_gives_empty_lists() -> None:
    registry = FunctionRegistry()
    assert started_payload("d", registry) == {"deploymentId": "d", "functions": []}
    assert healthy_payload("d", registry) == {"deploymentId": "d", "functionNames": []}


def test_body_is_utf8_json_and_keeps_non_ascii_text() -> None:
    registry = FunctionRegistry()

    @registry.function(description="Zählt Rechnungen")
    def zaehlen() -> int:
        return 0

    body = started_event("d", registry).body()
    assert "Zählt Rechnungen".encode() in body
    assert json.loads(body.decode("utf-8"))["payload"]["functions"][0]["description"] == (
        "Zählt Rechnungen"
    )
