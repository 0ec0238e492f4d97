"""The broker objects of execution over RabbitMQ: names, queue arguments and their declaration.

The execution queue is a durable **quorum** queue (replicated, and it counts deliveries, which is
how a message that keeps failing is recognised), bound to the events exchange with the deployment's
command routing key. Its dead-letter exchange is a durable fanout with one durable queue, shared by
every deployment of the vhost: a dead message's ``x-death`` header names the queue it came from.

Quorum queue arguments cannot change once declared: a queue that exists with other arguments (made
by hand, by another version, or by ``rabbitmq/definitions.json``) is used as it is, with a WARNING.
"""

from __future__ import annotations

import logging
from typing import Any

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue
from aiormq.exceptions import ChannelPreconditionFailed

from ..settings import Settings

__all__ = [
    "COMMAND_ROUTING_PREFIX",
    "DEAD_LETTER_EXCHANGE",
    "DEAD_LETTER_QUEUE",
    "declare_topology",
    "execute_routing_key",
    "queue_arguments",
]

COMMAND_ROUTING_PREFIX = "routing.command.metatwin-functions.function.execute"
DEAD_LETTER_EXCHANGE = "metatwin-functions.exec.dlx"
DEAD_LETTER_QUEUE = "metatwin-functions.exec.dead"

logger = logging.getLogger("metatwin_functions.amqp")


def execute_routing_key(deployment_id: str) -> str:
    """``routing.command.metatwin-functions.function.execute.<deploymentId>``."""
    return f"{COMMAND_ROUTING_PREFIX}.{deployment_id}"


def queue_arguments(settings: Settings) -> dict[str, Any]:
    """Arguments of the execution queue.

    The consumer itself dead-letters a message redelivered more than
    ``CRBR_AMQP_EXEC_MAX_DELIVERIES`` times (after answering it); the broker's delivery limit, one
    higher, is the backstop for a message whose call kills every replica it reaches.
    """
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-delivery-limit": settings.amqp_exec_max_deliveries + 1,
    }


async def declare_topology(
    connection: AbstractConnection, channel: AbstractChannel, settings: Settings, timeout: float
) -> tuple[AbstractChannel, AbstractQueue]:
    """Declare the exchanges, the dead-letter queue and the execution queue; bind it.

    Returns the channel to consume on (a new one when the queue had to be declared passively,
    since a refused declaration closes its channel) and the queue.
    """
    await channel.declare_exchange(
        settings.rabbitmq_exchange, ExchangeType.TOPIC, durable=True, timeout=timeout
    )
    dlx = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, ExchangeType.FANOUT, durable=True, timeout=timeout
    )
    dead = await channel.declare_queue(DEAD_LETTER_QUEUE, durable=True, timeout=timeout)
    await dead.bind(dlx, routing_key="", timeout=timeout)
    name = settings.amqp_exec_queue_name
    try:
        queue = await channel.declare_queue(
            name, durable=True, arguments=queue_arguments(settings), timeout=timeout
        )
    except ChannelPreconditionFailed as exc:
        logger.warning(
            "Queue %r exists with other arguments than %s (%s): using it as it is; without a "
            "quorum queue's delivery count and dead-letter exchange, messages that keep failing "
            "are not dead-lettered",
            name,
            queue_arguments(settings),
            exc.args[0] if exc.args else exc,
        )
        channel = await _reopen(connection, channel, timeout)
        queue = await channel.declare_queue(name, passive=True, timeout=timeout)
    await queue.bind(
        settings.rabbitmq_exchange, execute_routing_key(settings.deployment_id), timeout=timeout
    )
    return channel, queue


async def _reopen(
    connection: AbstractConnection, closed: AbstractChannel, timeout: float
) -> AbstractChannel:
    channel = connection.channel(publisher_confirms=True, on_return_raises=True)
    await channel.initialize(timeout=timeout)
    return channel
