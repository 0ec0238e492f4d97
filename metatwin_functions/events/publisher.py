"""Publishing one event with a bounded wait for the broker's confirmation.

A publish never raises and never hangs: it returns a `PublishResult` saying whether the broker
confirmed the message, returned it (nothing bound), or could not be reached in time. A confirmation
that does not come in time also tells the link the broker may be partitioned away.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from .connection import BrokerLink
from .payloads import CONTENT_TYPE, Event, EventName
from .transport import MessageProperties, NackedError, UnroutableError

__all__ = [
    "EventPublisher",
    "EventsObserver",
    "HeaderInjector",
    "PublishOutcome",
    "PublishResult",
]

ResultName = Literal["delivered", "failed", "unroutable"]
HeaderInjector = Callable[[dict[str, str]], None]
"""Adds headers (e.g. ``traceparent``) to an event's AMQP headers, in place."""

_log = logging.getLogger(__name__)


class EventsObserver(Protocol):
    """Told the outcome of every publish (for metrics)."""

    def event_published(self, event: EventName, result: ResultName) -> None:
        """``event`` is ``started``, ``healthy`` or ``execution_completed``; ``result`` is
        ``delivered``, ``failed`` or ``unroutable``. Must not block or raise."""


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


_RESULT_NAMES: dict[PublishOutcome, ResultName] = {
    PublishOutcome.DELIVERED: "delivered",
    PublishOutcome.UNROUTED: "unroutable",
    PublishOutcome.NOT_CONNECTED: "failed",
    PublishOutcome.FAILED: "failed",
}


def result_name(outcome: PublishOutcome) -> ResultName:
    """The metrics' (and callers') name of ``outcome``: delivered, unroutable or failed."""
    return _RESULT_NAMES[outcome]


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
        observer: Told every outcome.
        header_injector: Adds headers to every event (trace context).
    """

    def __init__(
        self,
        link: BrokerLink,
        timeout: float,
        app_id: str = "metatwin-functions",
        *,
        observer: EventsObserver | None = None,
        header_injector: HeaderInjector | None = None,
    ) -> None:
        self._link = link
        self._timeout = timeout
        self._app_id = app_id
        self._observer = observer
        self._header_injector = header_injector

    async def publish(
        self, event: Event, headers: Mapping[str, str] | None = None
    ) -> PublishResult:
        """Publish ``event`` and wait (bounded) for the broker's answer; never raises.

        ``headers`` go into the message's AMQP headers, over what the header injector adds.
        """
        result = await self._publish(event, headers)
        if self._observer is not None:
            try:
                self._observer.event_published(event.kind, _RESULT_NAMES[result.outcome])
            except Exception:  # a metrics bug must not stop the events
                _log.exception("The events observer failed")
        return result

    async def _publish(self, event: Event, headers: Mapping[str, str] | None) -> PublishResult:
        session = self._link.session
        if session is None:
            return PublishResult(PublishOutcome.NOT_CONNECTED, "not connected")
        sent = self._link.clock()
        try:
            properties = MessageProperties(
                correlation_id=event.correlation_id,
                content_type=CONTENT_TYPE,
                app_id=self._app_id,
                headers=self._headers(headers),
            )
            await session.publish(
                event.routing_key, event.body(), properties, timeout=self._timeout
            )
        except UnroutableError as exc:
            self._link.note_answer()
            return PublishResult(PublishOutcome.UNROUTED, str(exc))
        except NackedError as exc:
            self._link.note_answer()
            return PublishResult(PublishOutcome.FAILED, str(exc))
        except TimeoutError:
            detail = f"no confirmation within {self._timeout:g} s"
            self._link.suspect(detail, sent)
            return PublishResult(PublishOutcome.FAILED, detail)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return PublishResult(PublishOutcome.FAILED, text)
        self._link.note_answer()
        return PublishResult(PublishOutcome.DELIVERED)

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._header_injector is not None:
            try:
                self._header_injector(headers)
            except Exception:  # no trace context is better than no event
                _log.debug("The events header injector failed", exc_info=True)
        if extra:
            headers.update(extra)
        return headers
