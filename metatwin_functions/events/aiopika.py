"""The real broker: an aio-pika robust connection, a confirming channel and the topic exchange.

aio-pika's ``connect_robust`` raises at once when the broker is down at start, and its
``fail_fast=False`` mode leaks a task under a timeout, so `BrokerLink` runs the *first* connect
loop itself; once a session is open, the robust connection reconnects by itself and this module
only forwards its callbacks. AMQP heartbeats (``CRBR_RABBITMQ_HEARTBEAT``) go on the connection
URL so that both sides notice a dead peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from aio_pika import DeliveryMode, ExchangeType, Message
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aio_pika.abc import AbstractRobustConnection as _RobustABC
from aio_pika.connection import make_url
from aio_pika.exceptions import DeliveryError, PublishError
from aio_pika.robust_connection import RobustConnection
from aiormq.exceptions import InvalidFrameError, ProbableAuthenticationError

from ..settings import Settings
from .transport import (
    BrokerRefusedError,
    LinkListener,
    MessageProperties,
    NackedError,
    UnroutableError,
)

__all__ = ["AioPikaConnector", "describe_refusal"]


def describe_refusal(exc: BaseException, settings: Settings) -> BrokerRefusedError | None:
    """Say what a refused connection means, or ``None`` when ``exc`` is not a refusal.

    aiormq reports a wrong password as ``ProbableAuthenticationError`` and an unknown vhost as an
    ``InvalidFrameError`` whose text holds the repr of the broker's ``Connection.Close`` (the reply
    text itself is lost), so the vhost case is recognised by that shape.
    """
    if isinstance(exc, ProbableAuthenticationError):
        return BrokerRefusedError(f"authentication refused for user {settings.rabbitmq_username}")
    if isinstance(exc, InvalidFrameError) and "Connection.OpenOk" in str(exc):
        return BrokerRefusedError(
            f"vhost {settings.rabbitmq_vhost} does not exist "
            f"(or user {settings.rabbitmq_username} may not use it)"
        )
    return None


class AioPikaConnector:
    """Opens `AioPikaSession` objects to the broker the settings name.

    Args:
        settings: Complete broker settings.
        reconnect_interval: Returns the delay before the robust connection's reconnects; called
            again at each outage, so a jittered value spreads workers that lost the broker together.
    """

    def __init__(self, settings: Settings, reconnect_interval: Callable[[], float]) -> None:
        self._settings = settings
        self._reconnect_interval = reconnect_interval
        vhost = settings.rabbitmq_vhost
        host = f"{settings.rabbitmq_hostname}:{settings.rabbitmq_port}"
        self._address = f"{host}/{vhost.lstrip('/')}"

    @property
    def address(self) -> str:
        """``host:port/vhost``."""
        return self._address

    async def open(self, listener: LinkListener, *, timeout: float) -> AioPikaSession:
        """Connect, open a confirming channel, declare the exchange; bounded by ``timeout``."""
        settings = self._settings
        password = settings.rabbitmq_password
        url = make_url(
            host=settings.rabbitmq_hostname or "",
            port=settings.rabbitmq_port,
            login=settings.rabbitmq_username or "",
            password=password.get_secret_value() if password is not None else "",
            virtualhost=settings.rabbitmq_vhost,
            heartbeat=settings.rabbitmq_heartbeat,
        )
        name = f"metatwin-functions {settings.deployment_id} pid={os.getpid()}"
        connection = RobustConnection(
            url,
            client_properties={"connection_name": name},
            reconnect_interval=self._reconnect_interval(),
        )
        try:
            async with asyncio.timeout(timeout):
                await connection.connect(timeout=timeout)
                channel = connection.channel(publisher_confirms=True, on_return_raises=True)
                await channel.initialize(timeout=timeout)
                exchange = await channel.declare_exchange(
                    settings.rabbitmq_exchange, ExchangeType.TOPIC, durable=True, timeout=timeout
                )
        except BaseException as exc:
            # Closing cancels the robust connection's own reconnect task: nothing leaks.
            await _close_quietly(connection, timeout)
            refusal = describe_refusal(exc, settings)
            if refusal is not None:
                raise refusal from None  # the cause's text may carry the broker's details only
            raise
        return AioPikaSession(connection, channel, exchange, listener, self._reconnect_interval)


class AioPikaSession:
    """An open robust connection; forwards its lost/reconnected callbacks to the listener."""

    def __init__(
        self,
        connection: RobustConnection,
        channel: AbstractChannel,
        exchange: AbstractExchange,
        listener: LinkListener,
        reconnect_interval: Callable[[], float],
    ) -> None:
        self._connection = connection
        self._reconnect_interval = reconnect_interval
        self._channel = channel
        self._exchange = exchange
        self._listener = listener
        self._closing = False
        connection.close_callbacks.add(self._on_lost)
        connection.reconnect_callbacks.add(self._on_reconnected)

    @property
    def is_open(self) -> bool:
        """True when connection and channel are both up (no I/O)."""
        connection, channel = self._connection, self._channel
        return (
            not self._closing
            and not connection.is_closed
            and connection.connected.is_set()
            and not channel.is_closed
        )

    async def publish(
        self, routing_key: str, body: bytes, properties: MessageProperties, *, timeout: float
    ) -> None:
        """Publish persistent, ``mandatory``, and wait for the confirmation (bounded)."""
        message = Message(
            body=body,
            content_type=properties.content_type,
            content_encoding=properties.content_encoding,
            delivery_mode=(
                DeliveryMode.PERSISTENT if properties.persistent else DeliveryMode.NOT_PERSISTENT
            ),
            correlation_id=properties.correlation_id,
            app_id=properties.app_id,
            headers=dict(properties.headers),
        )
        try:
            # aio-pika bounds the confirmation wait; the outer timeout also bounds waiting for a
            # channel that is being restored, which aio-pika does not.
            async with asyncio.timeout(timeout):
                await self._exchange.publish(message, routing_key, mandatory=True, timeout=timeout)
        except PublishError as exc:
            raise UnroutableError(
                f"no queue is bound to {routing_key!r} on exchange {self._exchange.name!r}"
            ) from exc
        except DeliveryError as exc:
            raise NackedError("the broker refused the message (nack)") from exc

    async def probe(self, *, timeout: float) -> None:
        """A passive declaration of the exchange: one cheap round trip on the channel."""
        async with asyncio.timeout(timeout):
            underlay = await self._channel.get_underlay_channel()
            await underlay.exchange_declare(
                exchange=self._exchange.name, passive=True, timeout=timeout
            )

    async def reset(self, reason: BaseException, *, timeout: float) -> None:
        """Close the underlying AMQP connection; the robust connection then reconnects."""
        transport = self._connection.transport
        if transport is None:
            return
        with contextlib.suppress(Exception, TimeoutError):
            async with asyncio.timeout(timeout):
                await transport.connection.close(reason)

    async def close(self, *, timeout: float) -> None:
        """Close the connection for good within ``timeout``."""
        self._closing = True
        await _close_quietly(self._connection, timeout)

    def _on_lost(self, connection: AbstractConnection | None, exc: BaseException | None, /) -> None:
        if not self._closing:
            self._connection.reconnect_interval = self._reconnect_interval()
            self._listener.on_lost(exc)

    def _on_reconnected(self, connection: _RobustABC | None, /) -> None:
        if not self._closing:
            self._listener.on_restored()


async def _close_quietly(connection: RobustConnection, budget: float) -> None:
    with contextlib.suppress(Exception, TimeoutError):
        async with asyncio.timeout(budget):
            await connection.close()
