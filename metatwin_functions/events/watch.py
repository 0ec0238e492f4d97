"""Print the lifecycle events as they arrive: ``python -m metatwin_functions.events.watch``.

A development aid. It reads the same ``CRBR_RABBITMQ_*`` settings as the server, binds a temporary
exclusive queue to the exchange with the platform's binding keys, and prints one line per event
(routing key, then the JSON envelope) until Ctrl+C. It never consumes from the platform's queues.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from ..settings import Settings, load_settings
from .connection import broker_address

__all__ = ["BINDING_KEYS", "main", "watch"]

BINDING_KEYS = (
    "routing.event.metatwin-functions.function.deployment.started.#",
    "routing.event.metatwin-functions.function.deployment.healthy.#",
)
"""The binding keys of the platform's queues (see ``rabbitmq/definitions.json``)."""


async def watch(settings: Settings) -> None:
    """Print every event published to the settings' exchange until cancelled."""
    missing = settings.missing_rabbitmq_settings
    if missing:
        raise SystemExit(f"Set {', '.join(missing)} to watch events")
    password = settings.rabbitmq_password
    connection = await aio_pika.connect(
        host=settings.rabbitmq_hostname or "",
        port=settings.rabbitmq_port,
        login=settings.rabbitmq_username or "",
        password=password.get_secret_value() if password is not None else "",
        virtualhost=settings.rabbitmq_vhost,
        timeout=settings.connection_timeout,
    )
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            settings.rabbitmq_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in BINDING_KEYS:
            await queue.bind(exchange, key)
        print(
            f"Watching {broker_address(settings)} exchange {exchange.name!r} (Ctrl+C to stop)",
            file=sys.stderr,
        )
        async with queue.iterator(no_ack=True) as messages:
            async for message in messages:
                print(_describe(message), flush=True)


def _describe(message: AbstractIncomingMessage) -> str:
    try:
        body = json.dumps(json.loads(message.body), ensure_ascii=False)
    except ValueError:
        body = repr(message.body)
    return f"{message.routing_key} {body}"


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m metatwin_functions.events.watch",
        description="Print metatwin-functions lifecycle events from RabbitMQ (CRBR_* settings).",
    )
    parser.add_argument("--exchange", help="exchange to watch (default CRBR_RABBITMQ_EXCHANGE)")
    args = parser.parse_args(argv)
    overrides = {"rabbitmq_exchange": args.exchange} if args.exchange else {}
    settings = load_settings(**overrides)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch(settings))


if __name__ == "__main__":
    main()
