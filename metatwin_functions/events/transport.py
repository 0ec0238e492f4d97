"""The seam between the events code and a broker: what `BrokerLink` needs from one.

`BrokerLink` (retries, outage logs, the liveness watchdog) and `EventPublisher` (confirm, bounded
wait, outcome) never touch aio-pika directly: they talk to a `BrokerConnector` that opens a
`BrokerSession`. `AioPikaConnector` (module ``aiopika``) is the real RabbitMQ;
`metatwin_functions.testing.InMemoryBroker` is the stand-in for fast tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "BrokerConnector",
    "BrokerRefusedError",
    "BrokerSession",
    "LinkListener",
    "MessageProperties",
    "NackedError",
    "UnroutableError",
]


@dataclass(frozen=True, slots=True)
class MessageProperties:
    """The AMQP properties every event carries (persistent JSON, see the contract)."""

    correlation_id: str
    content_type: str = "application/json"
    content_encoding: str = "utf-8"
    persistent: bool = True
    app_id: str = "metatwin-functions"
    headers: Mapping[str, str] = field(default_factory=dict)


class UnroutableError(Exception):
    """The broker returned a ``mandatory`` message: no queue is bound for its routing key."""


class NackedError(Exception):
    """The broker refused the message (Basic.Nack)."""


class BrokerRefusedError(ConnectionError):
    """The broker answered and refused the connection for a reason retries do not fix by
    themselves (a wrong password, a vhost that does not exist). ``str()`` is safe to log."""


class LinkListener(Protocol):
    """What a session tells the link about the connection after it opened."""

    def on_lost(self, exc: BaseException | None, /) -> None:
        """The connection dropped; the session is reconnecting by itself."""

    def on_restored(self) -> None:
        """The session reconnected (channel and exchange restored): publishes work again."""


class BrokerSession(Protocol):
    """One open connection with a confirming channel and the declared exchange."""

    @property
    def is_open(self) -> bool:
        """True when the transport believes it can publish right now (no I/O)."""

    async def publish(
        self, routing_key: str, body: bytes, properties: MessageProperties, *, timeout: float
    ) -> None:
        """Publish ``mandatory`` and wait for the confirmation.

        Raises:
            UnroutableError: returned by the broker.
            NackedError: refused by the broker.
            TimeoutError: no confirmation within ``timeout``.
        """

    async def probe(self, *, timeout: float) -> None:
        """One round trip to the broker; raises `TimeoutError` when it does not answer."""

    async def reset(self, reason: BaseException, *, timeout: float) -> None:
        """Drop the connection (it stopped answering) so that it reconnects from scratch."""

    async def close(self, *, timeout: float) -> None:
        """Close for good, within ``timeout``; never raises."""


class BrokerConnector(Protocol):
    """Opens sessions to one broker."""

    @property
    def address(self) -> str:
        """How the broker is named in logs (never with credentials)."""

    async def open(self, listener: LinkListener, *, timeout: float) -> BrokerSession:
        """Connect, open a confirming channel and declare the exchange, within ``timeout``.

        Raises:
            BrokerRefusedError: the broker refused (credentials, vhost); said clearly.
            Exception: anything else that makes the broker unreachable right now.
        """
