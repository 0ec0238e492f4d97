"""The contract's event envelope and its payloads: started, healthy and execution completed.

Pure data, no I/O: everything here is unit-testable without a broker. Field names, payload type
names and routing keys are wire contract (see ``CONTRACT.md``, "RabbitMQ events"): the Java side
deserialises by ``payloadType``, so a typo here breaks the platform.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from ..catalog import ArgumentPayload, FunctionPayload, function_payload, functions_catalog
from ..registry import FunctionRegistry

__all__ = [
    "COMPLETED_PAYLOAD_TYPE",
    "COMPLETED_ROUTING_KEY",
    "CONTENT_TYPE",
    "HEALTHY_PAYLOAD_TYPE",
    "HEALTHY_ROUTING_KEY",
    "STARTED_PAYLOAD_TYPE",
    "STARTED_ROUTING_KEY",
    "ArgumentPayload",
    "Event",
    "EventName",
    "ExecutionCompletedPayload",
    "FunctionPayload",
    "HealthyPayload",
    "StartedPayload",
    "Trigger",
    "execution_completed_event",
    "execution_completed_payload",
    "function_payload",
    "healthy_event",
    "healthy_payload",
    "started_event",
    "started_payload",
]

_ROUTING_PREFIX = "routing.event.metatwin-functions.function.deployment"

STARTED_ROUTING_KEY = f"{_ROUTING_PREFIX}.started"
"""Routing key of the deployment-started event."""

HEALTHY_ROUTING_KEY = f"{_ROUTING_PREFIX}.healthy"
"""Routing key of the deployment-healthy beat."""

STARTED_PAYLOAD_TYPE = "FunctionDeploymentStartedPayload"
"""``payloadType`` of the started event (no ``s`` after ``Function``: the Java class name)."""

HEALTHY_PAYLOAD_TYPE = "FunctionsDeploymentHealthyPayload"
"""``payloadType`` of the healthy beat (with the ``s``: the Java class name)."""

COMPLETED_ROUTING_KEY = "routing.event.metatwin-functions.function.execution.completed"
"""Routing key of the execution-completed event."""

COMPLETED_PAYLOAD_TYPE = "FunctionExecutionCompletedPayload"
"""``payloadType`` of the execution-completed event."""

CONTENT_TYPE = "application/json"

Trigger = Literal["amqp", "schedule", "http"]
"""What started an execution, as the execution-completed event says it."""

EventName = Literal["started", "healthy", "execution_completed"]
"""An event's name in metrics."""

_KINDS: dict[str, EventName] = {
    STARTED_PAYLOAD_TYPE: "started",
    HEALTHY_PAYLOAD_TYPE: "healthy",
    COMPLETED_PAYLOAD_TYPE: "execution_completed",
}


class StartedPayload(TypedDict):
    """Payload of ``FunctionDeploymentStartedPayload``."""

    deploymentId: str
    functions: list[FunctionPayload]


class HealthyPayload(TypedDict):
    """Payload of ``FunctionsDeploymentHealthyPayload``."""

    deploymentId: str
    functionNames: list[str]


class ExecutionCompletedPayload(TypedDict):
    """Payload of ``FunctionExecutionCompletedPayload``: exactly these eight keys."""

    deploymentId: str
    executionId: str
    functionName: str
    trigger: Trigger
    success: bool
    result: Any
    error: str | None
    metadata: dict[str, Any]


def started_payload(deployment_id: str, registry: FunctionRegistry) -> StartedPayload:
    """The started payload: every registered function, in registration order."""
    return {
        "deploymentId": deployment_id,
        "functions": functions_catalog(registry),
    }


def healthy_payload(deployment_id: str, registry: FunctionRegistry) -> HealthyPayload:
    """The healthy payload: the names of the functions served right now."""
    return {"deploymentId": deployment_id, "functionNames": registry.names}


def execution_completed_payload(
    *,
    deployment_id: str,
    execution_id: str,
    function_name: str,
    trigger: Trigger,
    success: bool,
    result: Any,
    error: str | None,
    metadata: Mapping[str, Any] | None = None,
) -> ExecutionCompletedPayload:
    """The execution-completed payload: the ``/exec`` answer plus who ran what, and how.

    ``metadata`` is the answer's metadata (copied); it always carries ``executionId``. Anything
    else the platform should learn goes inside it: the payload's own keys are fixed.
    """
    meta = dict(metadata) if metadata is not None else {}
    meta.setdefault("executionId", execution_id)
    return {
        "deploymentId": deployment_id,
        "executionId": execution_id,
        "functionName": function_name,
        "trigger": trigger,
        "success": success,
        "result": result,
        "error": error,
        "metadata": meta,
    }


def _new_correlation_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Event:
    """One message ready to publish: routing key plus the contract's envelope.

    The correlation id is fixed when the event is built, so a retried started event keeps its id
    and the platform can recognise a duplicate (a lost confirmation can cause one).
    """

    routing_key: str
    payload_type: str
    payload: StartedPayload | HealthyPayload | ExecutionCompletedPayload
    correlation_id: str = field(default_factory=_new_correlation_id)

    @property
    def kind(self) -> EventName:
        """The event's name in metrics: ``started``, ``healthy`` or ``execution_completed``."""
        return _KINDS[self.payload_type]

    def envelope(self) -> dict[str, Any]:
        """The JSON object sent on the wire."""
        return {
            "correlationId": self.correlation_id,
            "payloadType": self.payload_type,
            "payload": self.payload,
        }

    def body(self) -> bytes:
        """The envelope encoded as UTF-8 JSON."""
        return json.dumps(self.envelope(), ensure_ascii=False, separators=(",", ":")).encode()


def started_event(deployment_id: str, registry: FunctionRegistry) -> Event:
    """Build the deployment-started event (a fresh correlation id)."""
    return Event(
        routing_key=STARTED_ROUTING_KEY,
        payload_type=STARTED_PAYLOAD_TYPE,
        payload=started_payload(deployment_id, registry),
    )


def healthy_event(deployment_id: str, registry: FunctionRegistry) -> Event:
    """Build one deployment-healthy beat (a fresh correlation id)."""
    return Event(
        routing_key=HEALTHY_ROUTING_KEY,
        payload_type=HEALTHY_PAYLOAD_TYPE,
        payload=healthy_payload(deployment_id, registry),
    )


def execution_completed_event(payload: ExecutionCompletedPayload) -> Event:
    """Build one execution-completed event (a fresh correlation id)."""
    return Event(
        routing_key=COMPLETED_ROUTING_KEY,
        payload_type=COMPLETED_PAYLOAD_TYPE,
        payload=payload,
    )
