"""Publishing one event with a bounded wait for the broker's confirmation.

A publish never raises and never hangs: it returns a `PublishResult` saying whether the broker
confirmed the message, returned it (nothing bound), or could not be reached in time.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

from aio_pika import DeliveryMode, Message
from aio_pika.exceptions import DeliveryError, PublishError

from .connection import BrokerLink
from .payloads import CONTENT_TYPE, Event

__all__ = ["EventPublisher", "PublishOutcome", "PublishResult"]


class PublishOutcome(enum.Enum):
    """What happened to one publish."""

    DELIVERED = "delivered"
    """The broker routed the message to at least one queue and confirmed it (Basic.Ack)."""

    UNROUTED = "unrouted"
    """The broker returned the message: no queue is bound for its routing key (``mandatory``)."""

    NOT_CONNECTED = "not_connected"
    """Nothing was sent: the link is down."""

    FAILED = "failed"
    """Sent or attempted, but not confirmed: a nack, a timeout or the connection dropped."""


@dataclass(frozen=True, slots=True)
class PublishResult:
    """The outcome of one publish and a one-line reason, safe to log."""

    outcome: PublishOutcome
    detail: str = ""

    @property
    def delivered(self) -> bool:
        """True when the broker confirmed and routed the message."""
        return self.outcome is PublishOutcome.DELIVERED


class EventPublisher:
    """Publishes events to the link's exchange: persistent JSON, ``mandatory``, confirmed.

    Args:
        link: The broker link.
        timeout: Bound on one publish including the broker's confirmation, seconds.
        app_id: The AMQP ``app_id`` property (informative only).
    """

    def __init__(self, link: BrokerLink, timeout: float, app_id: str = "metatwin-functions"):
        self._link = link
        self._timeout = timeout
        self._app_id = app_id

    async def publish(self, event: Event) -> PublishResult:
        """Publish ``event`` and wait (bounded) for the broker's answer; never raises."""
        exchange = self._link.exchange
        if exchange is None:
            return PublishResult(PublishOutcome.NOT_CONNECTED, "not connected")
        message = Message(
            body=event.body(),
            content_type=CONTENT_TYPE,
            content_encoding="utf-8",
            delivery_mode=DeliveryMode.PERSISTENT,
            correlation_id=event.correlation_id,
            app_id=self._app_id,
        )
        try:
            # aio-pika bounds the confirmation wait; the outer timeout also bounds waiting for a
            # channel that is being restored, which aio-pika does not.
            async with asyncio.timeout(self._timeout):
                await exchange.publish(
                    message, event.routing_key, mandatory=True, timeout=self._timeout
                )
        except PublishError:
            return PublishResult(
                PublishOutcome.UNROUTED,
                f"no queue is bound to {event.routing_key!r} on exchange {exchange.name!r}",
            )
        except DeliveryError:
            return PublishResult(PublishOutcome.FAILED, "the broker refused the message (nack)")
        except TimeoutError:
            return PublishResult(
                PublishOutcome.FAILED, f"no confirmation within {self._timeout:g} s"
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return PublishResult(PublishOutcome.FAILED, text)
        return PublishResult(PublishOutcome.DELIVERED)
