"""RabbitMQ lifecycle events: the deployment-started event and the healthy beat.

`EventsService` is the entry point: the runtime creates one per serving app (so one per Hypercorn
worker: each worker publishes its own started event and its own beats), calls ``await start()``
after the server started and ``await stop()`` on shutdown, and reads ``connected`` for ``/ready``.
A broker that is down, slow or restarting never blocks the server: events pause and resume.
"""

from __future__ import annotations

from .connection import BrokerLink, OutageLog, backoff_delay, broker_address
from .payloads import (
    HEALTHY_PAYLOAD_TYPE,
    HEALTHY_ROUTING_KEY,
    STARTED_PAYLOAD_TYPE,
    STARTED_ROUTING_KEY,
    Event,
    healthy_event,
    healthy_payload,
    started_event,
    started_payload,
)
from .publisher import EventPublisher, PublishOutcome, PublishResult
from .service import STOP_TIMEOUT, EventsService

__all__ = [
    "HEALTHY_PAYLOAD_TYPE",
    "HEALTHY_ROUTING_KEY",
    "STARTED_PAYLOAD_TYPE",
    "STARTED_ROUTING_KEY",
    "STOP_TIMEOUT",
    "BrokerLink",
    "Event",
    "EventPublisher",
    "EventsService",
    "OutageLog",
    "PublishOutcome",
    "PublishResult",
    "backoff_delay",
    "broker_address",
    "healthy_event",
    "healthy_payload",
    "started_event",
    "started_payload",
]
