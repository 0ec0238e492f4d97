"""A raw AMQP caller for the execution-queue tests: publishes requests, collects every reply.

Deliberately not `metatwin_functions.client`: the tests count each reply (exactly once, or at
least once) and read its wire properties, which a client that resolves one future per call hides.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from metatwin_functions.amqp import DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, execute_routing_key

BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"


class AmqpCaller:
    """Publishes execution messages for one deployment and records the replies and dead letters."""

    def __init__(self, exchange: str, deployment_id: str, queue_name: str) -> None:
        self.exchange_name = exchange
        self.deployment_id = deployment_id
        self.queue_name = queue_name
        self.replies: list[AbstractIncomingMessage] = []
        self.dead: list[AbstractIncomingMessage] = []
        self._arrived = asyncio.Event()
        self.connection: aio_pika.abc.AbstractConnection | None = None
        self.channel: aio_pika.abc.AbstractChannel | None = None
        self.reply_queue = ""

    async def open(self) -> None:
        self.connection = await aio_pika.connect(BROKER_URL, timeout=5)
        self.channel = await self.connection.channel(publisher_confirms=True)
        await self.channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        replies = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        await replies.consume(self._on_reply, no_ack=True)
        self.reply_queue = replies.name
        dlx = await self.channel.declare_exchange(
            DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        await dead.bind(dlx)
        await dead.consume(self._on_dead, no_ack=True)

    async def close(self) -> None:
        if self.connection is not None:
            channel = await self.connection.channel()
            await channel.queue_delete(self.queue_name)
            await channel.exchange_delete(self.exchange_name)  # the test's own exchange
            if self.dead:  # the tests' dead letters must not pile up in the shared queue
                dead = await channel.declare_queue(DEAD_LETTER_QUEUE, passive=True)
                await dead.purge()
            await self.connection.close()

    async def publish(
        self,
        body: bytes | dict[str, Any],
        *,
        reply: bool = True,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        headers: dict[str, Any] | None = None,
        expiration: float | None = None,
        timestamp: float | None = None,
    ) -> str | None:
        """Publish one request (persistent, confirmed); returns its correlation id."""
        assert self.channel is not None
        payload = json.dumps(body).encode() if isinstance(body, dict) else body
        exchange = await self.channel.get_exchange(self.exchange_name, ensure=False)
        message = aio_pika.Message(
            payload,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            reply_to=reply_to if reply_to is not None else (self.reply_queue if reply else None),
            correlation_id=correlation_id,
            headers=headers,
            expiration=expiration,
            timestamp=timestamp,
        )
        await exchange.publish(message, execute_routing_key(self.deployment_id))
        return correlation_id

    async def call_many(self, count: int, function: str, args: dict[str, Any]) -> list[str]:
        """Publish ``count`` calls, correlation id = execution id; returns the ids."""
        ids = [f"x-{uuid.uuid4().hex[:10]}-{i}" for i in range(count)]
        await asyncio.gather(
            *(
                self.publish(
                    {"executionId": i, "functionName": function, "args": args}, correlation_id=i
                )
                for i in ids
            )
        )
        return ids

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        self.replies.append(message)
        self._arrived.set()

    async def _on_dead(self, message: AbstractIncomingMessage) -> None:
        deaths = (message.headers or {}).get("x-death") or [{}]
        if deaths[0].get("queue") == self.queue_name:  # type: ignore[union-attr,index]
            self.dead.append(message)
            self._arrived.set()

    async def wait_replies(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` replies have arrived."""
        await self._wait(lambda: len(self.replies) >= count, timeout)

    async def wait_answered(self, ids: list[str], timeout: float = 30.0) -> None:
        """Wait until each correlation id in ``ids`` has at least one reply."""
        wanted = set(ids)
        await self._wait(lambda: wanted <= self.replied_ids().keys(), timeout)

    async def wait_dead(self, count: int, timeout: float = 10.0) -> None:
        await self._wait(lambda: len(self.dead) >= count, timeout)

    async def _wait(self, predicate: Any, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._arrived.clear()
                await self._arrived.wait()

    def replied_ids(self) -> Counter[str]:
        return Counter(m.correlation_id or "" for m in self.replies)

    @staticmethod
    def body(message: AbstractIncomingMessage) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(message.body)
        return decoded

    async def queue_state(self) -> tuple[int, int]:
        """(messages ready, consumers) of the execution queue."""
        assert self.connection is not None
        channel = await self.connection.channel()
        try:
            queue = await channel.declare_queue(self.queue_name, passive=True)
            result = queue.declaration_result
            return result.message_count or 0, result.consumer_count or 0
        finally:
            await channel.close()
