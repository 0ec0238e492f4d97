"""RabbitMQ events: the deployment-started event, the healthy beat and execution completed.

`EventsService` is the entry point: the runtime creates one per serving app (so one per Hypercorn
worker: each worker publishes its own started event and its own beats), calls ``await start()``
after the server started and ``await stop()`` on shutdown, and reads ``connected`` for ``/ready``.
A broker that is down, slow or restarting never blocks the server: events pause and resume.
"""

from __future__ import annotations

from .connection import BrokerLink, OutageLog, backoff_delay, broker_address
from .payloads import (
    COMPLETED_PAYLOAD_TYPE,
    COMPLETED_ROUTING_KEY,
    HEALTHY_PAYLOAD_TYPE,
    HEALTHY_ROUTING_KEY,
    STARTED_PAYLOAD_TYPE,
    STARTED_ROUTING_KEY,
    Event,
    EventName,
    ExecutionCompletedPayload,
    Trigger,
    execution_completed_event,
    execution_completed_payload,
    healthy_event,
    healthy_payload,
    started_event,
    started_payload,
)
from .publisher import (
    EventPublisher,
    EventsObserver,
    HeaderInjector,
    PublishOutcome,
    PublishResult,
)
from .service import STOP_TIMEOUT, EventsService
from .transport import (
    BrokerConnector,
    BrokerRefusedError,
    BrokerSession,
    LinkListener,
    MessageProperties,
    NackedError,
    UnroutableError,
)

__all__ = [
    "COMPLETED_PAYLOAD_TYPE",
    "COMPLETED_ROUTING_KEY",
    "HEALTHY_PAYLOAD_TYPE",
    "HEALTHY_ROUTING_KEY",
    "STARTED_PAYLOAD_TYPE",
    "STARTED_ROUTING_KEY",
    "STOP_TIMEOUT",
    "BrokerConnector",
    "BrokerLink",
    "BrokerRefusedError",
    "BrokerSession",
    "Event",
    "EventName",
    "EventPublisher",
    "EventsObserver",
    "EventsService",
    "ExecutionCompletedPayload",
    "HeaderInjector",
    "LinkListener",
    "MessageProperties",
    "NackedError",
    "OutageLog",
    "PublishOutcome",
    "PublishResult",
    "Trigger",
    "UnroutableError",
    "backoff_delay",
    "broker_address",
    "execution_completed_event",
    "execution_completed_payload",
    "healthy_event",
    "healthy_payload",
    "started_event",
    "started_payload",
]
