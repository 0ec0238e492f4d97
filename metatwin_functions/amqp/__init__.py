"""Execution over RabbitMQ: the deployment's execution queue, consumed through the call pipeline.

`ExecConsumer` is what the runtime starts when ``CRBR_AMQP_EXEC_ENABLED=true``; this package
imports aio-pika, so the runtime loads it (in a thread) only then.
"""

from __future__ import annotations

from .completed import ServiceCompletedEvents
from .consumer import ExecConsumer
from .delivery import Delivery
from .handler import (
    CompletedEvents,
    Disposition,
    EventResult,
    MessageHandler,
    ReplyResult,
    Settlement,
)
from .topology import (
    COMMAND_ROUTING_PREFIX,
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    execute_routing_key,
    queue_arguments,
)

__all__ = [
    "COMMAND_ROUTING_PREFIX",
    "DEAD_LETTER_EXCHANGE",
    "DEAD_LETTER_QUEUE",
    "CompletedEvents",
    "Delivery",
    "Disposition",
    "EventResult",
    "ExecConsumer",
    "MessageHandler",
    "ReplyResult",
    "ServiceCompletedEvents",
    "Settlement",
    "execute_routing_key",
    "queue_arguments",
]
