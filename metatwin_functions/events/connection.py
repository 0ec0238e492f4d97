"""The broker link: one robust aio-pika connection, a confirming channel and the topic exchange.

aio-pika's ``connect_robust`` raises at once when the broker is down at start, and its
``fail_fast=False`` mode leaks a task under a timeout, so the *first* connect is our own loop
(bounded attempts, exponential back-off with jitter). Once connected, the robust connection
reconnects by itself; we only listen to its callbacks to keep `BrokerLink.connected` truthful and
to log an outage once, and its end once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random

from aio_pika import ExchangeType
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractRobustConnection,
)
from aio_pika.connection import make_url
from aio_pika.robust_connection import RobustConnection

from ..settings import Settings

__all__ = ["MAX_BACKOFF", "BrokerLink", "OutageLog", "backoff_delay", "broker_address"]

MAX_BACKOFF = 60.0
"""Ceiling of every retry delay, seconds."""


def backoff_delay(attempt: int, base: float, cap: float = MAX_BACKOFF) -> float:
    """Delay before retry number ``attempt`` (1-based): ``base * 2**(attempt-1)``, capped.

    Jitter ("equal jitter") picks a value between half and all of it, so workers and containers
    that lost the broker together do not come back in lock-step.
    """
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 32))
    return random.uniform(ceiling / 2, ceiling)


def broker_address(settings: Settings) -> str:
    """``host:port/vhost`` of the broker: the only way the broker is ever named in logs."""
    vhost = settings.rabbitmq_vhost
    return f"{settings.rabbitmq_hostname}:{settings.rabbitmq_port}/{vhost.lstrip('/')}"


class OutageLog:
    """Logs the start of a problem once (WARNING) and its end once (INFO)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._active = False

    @property
    def active(self) -> bool:
        """True between a reported problem and its recovery."""
        return self._active

    def problem(self, message: str, *args: object) -> None:
        """Report a problem, unless one is already reported."""
        if not self._active:
            self._active = True
            self._logger.warning(message, *args)

    def recovered(self, message: str, *args: object) -> None:
        """Report the end of the current problem, if there is one."""
        if self._active:
            self._active = False
            self._logger.info(message, *args)


class BrokerLink:
    """The connection to the broker and the exchange events are published to.

    Args:
        settings: Complete broker settings (`Settings.events_configured` is true).
        logger: Where connection problems are reported.
        outage: Shared with the beat, so one outage gives one warning.
    """

    def __init__(self, settings: Settings, logger: logging.Logger, outage: OutageLog) -> None:
        self._settings = settings
        self._logger = logger
        self._outage = outage
        self._address = broker_address(settings)
        self._connection: RobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._up = asyncio.Event()
        self._closing = False

    def __repr__(self) -> str:
        return f"BrokerLink({self._address!r}, connected={self.connected})"

    @property
    def address(self) -> str:
        """``host:port/vhost``, safe to log."""
        return self._address

    @property
    def connected(self) -> bool:
        """True when a publish can go out right now (no I/O)."""
        connection, channel = self._connection, self._channel
        return (
            self._up.is_set()
            and connection is not None
            and not connection.is_closed
            and connection.connected.is_set()
            and channel is not None
            and not channel.is_closed
        )

    @property
    def exchange(self) -> AbstractExchange | None:
        """The declared exchange while connected, else ``None``."""
        return self._exchange if self.connected else None

    async def wait_connected(self) -> None:
        """Return once the link is (again) connected."""
        while not self.connected:
            await self._up.wait()
            if not self.connected:  # the flag can lag behind the transport by a moment
                await asyncio.sleep(0.05)

    async def connect(self) -> None:
        """Connect, retrying until it works or the calling task is cancelled.

        Each attempt (TCP, AMQP handshake, channel, exchange declaration) is bounded by
        ``connection_timeout``. Between attempts the delay starts at ``retry_delay`` and doubles up
        to 60 s, with jitter. ``max_retries`` does not stop the retries (events must resume when the
        broker comes back): the first failure is a WARNING, and once ``max_retries`` retries have
        failed too, one ERROR says events stay paused; the attempts in between log at DEBUG.
        """
        settings = self._settings
        failures = 0
        while not self._closing:
            try:
                await self._connect_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = backoff_delay(failures, settings.retry_delay)
                reason = self._describe(exc)
                if failures == settings.max_retries + 1:
                    self._logger.error(
                        "RabbitMQ %s still unreachable after %d attempts (%s); events stay paused, "
                        "retrying every %.1f s at most",
                        self._address,
                        failures,
                        reason,
                        MAX_BACKOFF,
                    )
                elif failures == 1:
                    self._logger.warning(
                        "RabbitMQ %s unreachable (%s); events are paused, retrying in the "
                        "background",
                        self._address,
                        reason,
                    )
                else:
                    self._logger.debug(
                        "RabbitMQ %s attempt %d failed (%s); next in %.2f s",
                        self._address,
                        failures,
                        reason,
                        delay,
                    )
                await asyncio.sleep(delay)
            else:
                self._logger.info(
                    "Connected to RabbitMQ %s, exchange %r%s",
                    self._address,
                    settings.rabbitmq_exchange,
                    f" after {failures + 1} attempts" if failures else "",
                )
                return

    async def close(self, budget: float) -> None:
        """Close the connection within ``budget`` seconds, also in the middle of an outage."""
        self._closing = True
        self._up.clear()
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        if connection is not None:
            await _close_quietly(connection, budget)

    async def _connect_once(self) -> None:
        settings = self._settings
        password = settings.rabbitmq_password
        url = make_url(
            host=settings.rabbitmq_hostname or "",
            port=settings.rabbitmq_port,
            login=settings.rabbitmq_username or "",
            password=password.get_secret_value() if password is not None else "",
            virtualhost=settings.rabbitmq_vhost,
        )
        name = f"metatwin-functions {settings.deployment_id} pid={os.getpid()}"
        connection = RobustConnection(
            url,
            client_properties={"connection_name": name},
            reconnect_interval=self._reconnect_interval(),
        )
        timeout = settings.connection_timeout
        try:
            async with asyncio.timeout(timeout):
                await connection.connect(timeout=timeout)
                channel = connection.channel(publisher_confirms=True, on_return_raises=True)
                await channel.initialize(timeout=timeout)
                exchange = await channel.declare_exchange(
                    settings.rabbitmq_exchange, ExchangeType.TOPIC, durable=True, timeout=timeout
                )
        except BaseException:
            # Closing cancels the robust connection's own reconnect task: nothing leaks.
            await _close_quietly(connection, timeout)
            raise
        if self._closing:
            await _close_quietly(connection, timeout)
            return
        connection.close_callbacks.add(self._on_lost)
        connection.reconnect_callbacks.add(self._on_reconnected)
        self._connection, self._channel, self._exchange = connection, channel, exchange
        self._up.set()

    def _reconnect_interval(self) -> float:
        # aio-pika reconnects at a fixed interval; a fresh random one per outage spreads workers.
        return backoff_delay(1, self._settings.retry_delay)

    def _on_lost(self, connection: AbstractConnection | None, exc: BaseException | None, /) -> None:
        if self._closing or connection is not self._connection:
            return
        self._up.clear()
        if self._connection is not None:
            self._connection.reconnect_interval = self._reconnect_interval()
        self._outage.problem(
            "Lost the connection to RabbitMQ %s (%s); events are paused until it is back",
            self._address,
            self._describe(exc),
        )

    def _on_reconnected(self, connection: AbstractRobustConnection | None, /) -> None:
        if self._closing or connection is not self._connection:
            return
        self._up.set()
        self._outage.recovered("RabbitMQ %s is back; events resume", self._address)

    def _describe(self, exc: BaseException | None) -> str:
        """A one-line reason, with the password masked should a library ever echo it."""
        if exc is None:
            return "closed"
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        password = self._settings.rabbitmq_password
        secret = password.get_secret_value() if password is not None else ""
        return text.replace(secret, "******") if secret else text


async def _close_quietly(connection: RobustConnection, budget: float) -> None:
    with contextlib.suppress(Exception, TimeoutError):
        async with asyncio.timeout(budget):
            await connection.close()
