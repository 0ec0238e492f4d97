"""`ExecConsumer`: competing consumers of the deployment's execution queue, through the pipeline.

One connection of its own (heartbeats on, a confirming channel that reports returned messages),
supervised by one task: connect (bounded, back-off with jitter), declare the topology, set the
prefetch, consume; when the connection or channel drops, the same loop connects again, so
consuming resumes when the broker is back. A plain connection and our own loop rather than
aio-pika's robust one: the loop knows at every moment whether it consumes (``/ready``), and a
drain can cancel the consumer without a reconnect restoring it behind its back.

Each message is served in a task of ours, not aio-pika's (whose tasks die with their channel): a
call in flight when the connection drops still runs to its end; its message, unsettled, comes
back from the broker and is answered from the idempotency store (or joins the running call).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from datetime import timedelta
from typing import Any

import aio_pika
from aio_pika import DeliveryMode, Message
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aio_pika.connection import make_url
from aio_pika.exceptions import PublishError

from ..events.aiopika import describe_refusal
from ..events.connection import OutageLog, backoff_delay, broker_address
from ..pipeline import CallPipeline
from ..settings import Settings
from .delivery import Delivery, posix_timestamp
from .handler import CompletedEvents, MessageHandler, ReplyResult
from .topology import declare_topology

__all__ = ["ExecConsumer"]

logger = logging.getLogger("metatwin_functions.amqp")

#: At most this many seconds a refused message waits for the consumer's cancel before it goes
#: back to the queue anyway (a drain cancels within ``CRBR_CONNECTION_TIMEOUT``).
_HOLD_LIMIT = 30.0


class ExecConsumer:
    """Consumes ``CRBR_AMQP_EXEC_QUEUE`` and serves each message through the call pipeline.

    Args:
        settings: Broker settings and the ``CRBR_AMQP_EXEC_*`` knobs.
        pipeline: The runtime's call pipeline.
        events: Where execution completed events go (acks wait for their confirmation).
    """

    def __init__(self, settings: Settings, pipeline: CallPipeline, events: CompletedEvents):
        self.settings = settings
        self.handler = MessageHandler(pipeline, events, settings.amqp_exec_max_deliveries)
        self.queue_name = settings.amqp_exec_queue_name
        self.prefetch = settings.amqp_exec_prefetch
        if 0 < settings.functions_max_concurrency < self.prefetch:
            # More messages in hand than calls allowed would answer some with 429 at once.
            self.prefetch = settings.functions_max_concurrency
        self._address = broker_address(settings)
        self._outage = OutageLog(logger)
        self._connection: AbstractConnection | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._consuming = False
        self._stopping = False
        self._lost = asyncio.Event()
        #: Which connection the close callbacks speak for: a late callback of an old one is moot.
        self._generation = 0
        self._task: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._idle: asyncio.Event | None = None
        #: Set once no consumer of ours is registered any more (its cancel confirmed, or none
        #: to cancel); messages refused meanwhile are held until then, never bounced.
        self._cancelled = asyncio.Event()
        #: Serialises cancels, so a second stop waits for the first one's confirmation.
        self._cancel_lock = asyncio.Lock()
        #: True while ``queue.consume`` is in flight: a stop then leaves the cancel to `_open`.
        self._registering = False
        self.handler.hold_refused = self._until_cancelled

    def __repr__(self) -> str:
        return f"ExecConsumer({self.queue_name!r}, consuming={self.consuming})"

    @property
    def consuming(self) -> bool:
        """True while the consumer is registered on the queue of a live connection."""
        connection = self._connection
        return self._consuming and connection is not None and not connection.is_closed

    @property
    def in_flight(self) -> int:
        """Messages being served or settled now."""
        return len(self._calls)

    def ready_state(self) -> dict[str, Any]:
        """The ``amqp_exec`` key of ``/ready``."""
        return {"enabled": True, "consuming": self.consuming, "queue": self.queue_name}

    async def start(self) -> None:
        """Start consuming in the background; returns at once, whatever the broker does."""
        if self._task is None and not self._stopping:
            self._task = asyncio.create_task(self._run(), name="metatwin-functions-amqp-exec")

    async def stop_consuming(self, timeout: float) -> None:
        """Cancel the consumer (the broker sends no more messages); calls in flight go on.

        Messages refused meanwhile (the runtime drains) go back to the queue once the broker
        confirmed the cancel, so that none comes straight back to this replica.
        """
        self._stopping = True
        async with self._cancel_lock:
            await self._cancel(timeout)

    async def _cancel(self, timeout: float) -> None:
        queue, tag, was_consuming = self._queue, self._consumer_tag, self.consuming
        self._consuming = False
        self._consumer_tag = None
        try:
            if was_consuming and queue is not None and tag is not None:
                with contextlib.suppress(Exception, TimeoutError):
                    async with asyncio.timeout(timeout):
                        await queue.cancel(tag, timeout=timeout)
                logger.info(
                    "Stopped consuming %r; finishing %d message(s) in flight",
                    self.queue_name,
                    len(self._calls),
                )
        finally:
            if not self._registering:  # else `_open` cancels the consumer it is registering
                self._cancelled.set()

    async def _until_cancelled(self) -> None:
        """Hold a refused message until no consumer of ours is registered (bounded)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_HOLD_LIMIT):
                await self._cancelled.wait()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every message in hand is settled, at most ``timeout`` s; True if so."""
        if not self._calls:
            return True
        if self._idle is None:
            self._idle = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Stop for good: no more consuming, the connection closed within ``timeout``."""
        await self.stop_consuming(min(timeout, 1.0))
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        calls = list(self._calls)
        for call in calls:  # a forced stop: unsettled, the broker redelivers them
            call.cancel()
        if calls:
            await asyncio.wait(calls, timeout=min(timeout, 1.0))
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception, TimeoutError):
                async with asyncio.timeout(timeout):
                    await connection.close()

    # -- the supervising loop ----------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                opened = await self._open()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                reason = self._describe(exc)
                self._outage.problem(
                    "AMQP execution: RabbitMQ %s unavailable (%s); not consuming %r, retrying "
                    "in the background",
                    self._address,
                    reason,
                    self.queue_name,
                )
                logger.debug("AMQP execution: attempt %d failed (%s)", failures, reason)
                await asyncio.sleep(backoff_delay(failures, self.settings.retry_delay))
                continue
            if not opened:  # a drain began while connecting
                return
            failures = 0
            self._outage.recovered("AMQP execution: RabbitMQ %s is back", self._address)
            logger.info(
                "Consuming execution queue %r (prefetch %d) on RabbitMQ %s",
                self.queue_name,
                self.prefetch,
                self._address,
            )
            await self._lost.wait()
            self._consuming = False
            if not self._stopping:
                self._outage.problem(
                    "AMQP execution: lost the connection to RabbitMQ %s; consuming resumes when "
                    "it is back (unsettled messages are redelivered)",
                    self._address,
                )
            connection, self._connection = self._connection, None
            if connection is not None and not connection.is_closed:
                with contextlib.suppress(Exception, TimeoutError):
                    async with asyncio.timeout(self.settings.connection_timeout):
                        await connection.close()

    async def _open(self) -> bool:
        """Connect, declare, consume; False (and nothing open) when a drain began meanwhile."""
        settings = self.settings
        timeout = settings.connection_timeout
        password = settings.rabbitmq_password
        url = make_url(
            host=settings.rabbitmq_hostname or "",
            port=settings.rabbitmq_port,
            login=settings.rabbitmq_username or "",
            password=password.get_secret_value() if password is not None else "",
            virtualhost=settings.rabbitmq_vhost,
            heartbeat=settings.rabbitmq_heartbeat,
        )
        name = f"metatwin-functions exec {settings.deployment_id} pid={os.getpid()}"
        connection = await aio_pika.connect(
            url, timeout=timeout, client_properties={"connection_name": name}
        )
        try:
            async with asyncio.timeout(timeout):
                channel: AbstractChannel = connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
                await channel.initialize(timeout=timeout)
                channel, queue = await declare_topology(connection, channel, settings, timeout)
                await channel.set_qos(prefetch_count=self.prefetch, timeout=timeout)
                if self._stopping:
                    await connection.close()
                    return False
                self._generation += 1
                self._lost.clear()
                on_closed = functools.partial(self._on_closed, self._generation)
                connection.close_callbacks.add(on_closed)
                channel.close_callbacks.add(on_closed)
                self._connection, self._queue = connection, queue
                self._registering = True
                try:
                    self._consumer_tag = await queue.consume(
                        functools.partial(self._on_message, channel), no_ack=False, timeout=timeout
                    )
                finally:
                    self._registering = False
                self._consuming = True
            if self._stopping:
                # A stop came while consume() was in flight: it found no consumer to cancel.
                async with self._cancel_lock:
                    await self._cancel(timeout)
            return True
        except BaseException:
            self._consuming = False
            if self._stopping:
                self._cancelled.set()
            with contextlib.suppress(Exception, TimeoutError):
                async with asyncio.timeout(timeout):
                    await connection.close()
            raise

    def _on_closed(self, generation: int, *_: object) -> None:
        if generation == self._generation:
            self._consuming = False
            self._lost.set()

    def _describe(self, exc: BaseException) -> str:
        refusal = describe_refusal(exc, self.settings)
        if refusal is not None:
            return str(refusal)
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        password = self.settings.rabbitmq_password
        secret = password.get_secret_value() if password is not None else ""
        return text.replace(secret, "******") if secret else text

    # -- messages ----------------------------------------------------------------------------

    async def _on_message(self, channel: AbstractChannel, message: AbstractIncomingMessage) -> None:
        # Served in a task of our own, so that a dropped channel does not cancel the call.
        call = asyncio.create_task(
            self._serve(channel, message), name="metatwin-functions-amqp-call"
        )
        self._calls.add(call)
        call.add_done_callback(self._call_done)

    def _call_done(self, call: asyncio.Task[None]) -> None:
        self._calls.discard(call)
        if not self._calls and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def _serve(self, channel: AbstractChannel, message: AbstractIncomingMessage) -> None:
        settle = _ChannelSettlement(channel, message, self.settings.connection_timeout)
        if self._stopping:  # arrived before the cancel was confirmed: back once it is
            await self._until_cancelled()
            await settle.requeue()
            return
        delivery = Delivery(
            body=message.body,
            reply_to=message.reply_to,
            correlation_id=message.correlation_id,
            headers=message.headers,
            expiration=_seconds(message.expiration),
            redelivered=bool(message.redelivered),
            timestamp=posix_timestamp(message.timestamp),
        )
        try:
            await self.handler.handle(delivery, settle)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("AMQP execution: a message could not be handled; requeued")
            await settle.requeue()


def _seconds(expiration: object) -> float | None:
    # aio-pika decodes the ``expiration`` property (milliseconds on the wire) to seconds.
    if isinstance(expiration, timedelta):
        return expiration.total_seconds()
    if isinstance(expiration, int | float) and not isinstance(expiration, bool):
        return float(expiration)
    return None


class _ChannelSettlement:
    """`Settlement` on the channel a message came on; every broker call bounded."""

    __slots__ = ("_channel", "_message", "_timeout")

    def __init__(
        self, channel: AbstractChannel, message: AbstractIncomingMessage, timeout: float
    ) -> None:
        self._channel = channel
        self._message = message
        self._timeout = timeout

    async def reply(self, routing_key: str, body: bytes, correlation_id: str | None) -> ReplyResult:
        message = Message(
            body,
            content_type="application/json",
            correlation_id=correlation_id,
            delivery_mode=DeliveryMode.PERSISTENT,
        )
        timeout = self._timeout
        try:
            async with asyncio.timeout(timeout):
                await self._channel.default_exchange.publish(
                    message, routing_key, mandatory=True, timeout=timeout
                )
        except PublishError:
            return "returned"
        except asyncio.CancelledError:
            raise
        except Exception:  # nacked, timed out, channel gone: not confirmed
            return "failed"
        return "confirmed"

    async def ack(self) -> bool:
        return await self._settle(self._message.ack())

    async def requeue(self) -> bool:
        return await self._settle(self._message.nack(requeue=True))

    async def dead_letter(self) -> bool:
        return await self._settle(self._message.reject(requeue=False))

    async def _settle(self, settling: Any) -> bool:
        try:
            await settling
        except asyncio.CancelledError:
            raise
        except Exception:  # the channel is gone: the broker redelivers the message
            return False
        return True
