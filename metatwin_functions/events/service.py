"""`EventsService`: the one object the runtime starts and stops to report to RabbitMQ.

Lifecycle: `EventsService.start` returns at once and leaves one background task that connects
(retrying with back-off), delivers the started event and then beats. The request path never awaits
the broker; `EventsService.connected` is a cheap read for ``/ready``. `EventsService.stop` is
bounded, also in the middle of an outage.

Several Hypercorn workers in one container each create their own service: each opens its own
connection and publishes its own started event and its own healthy beats (the platform sees one
started event per worker, with the same deployment id).

Decisions:
    * Unroutable messages: events go out ``mandatory`` on a channel with ``on_return_raises``, so a
      message no queue is bound for comes back as "unrouted". For the started event that means
      *not delivered*: it is retried with back-off (one WARNING) until a queue is bound. An
      unrouted healthy beat is only warned about (once); the next beat follows anyway.
    * ``max_retries``: the first connect never gives up (events must resume when the broker comes
      back). After ``max_retries`` failed retries one ERROR says so; the back-off keeps doubling
      up to 60 s. After the first connect, aio-pika's robust connection reconnects every
      ``retry_delay`` seconds (jittered, at most 60 s).
    * ``connection_timeout`` bounds each connect attempt and every broker call (publish plus
      confirmation), so a beat never hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..registry import FunctionRegistry
from ..settings import Settings
from .beat import HealthBeat
from .connection import BrokerLink, OutageLog
from .publisher import EventPublisher

__all__ = ["STOP_TIMEOUT", "EventsService"]

STOP_TIMEOUT = 5.0
"""Upper bound of `EventsService.stop`, seconds."""

PLATFORM_UNHEALTHY_AFTER = 300
"""Seconds without a healthy event after which the platform marks a deployment UNHEALTHY."""

_DEFAULT_LOGGER = "metatwin_functions.events"


class EventsService:
    """Reports a deployment to RabbitMQ: the started event once, then healthy beats.

    Args:
        settings: Broker settings, deployment id, interval and retry knobs.
        registry: The functions the events describe (read when each event is built).
        logger: Where the service logs; defaults to ``metatwin_functions.events``. Credentials are
            never logged: the broker is named ``host:port/vhost``.
    """

    def __init__(
        self,
        settings: Settings,
        registry: FunctionRegistry,
        logger: logging.Logger | None = None,
    ) -> None:
        self._settings = settings
        self._logger = logger if logger is not None else logging.getLogger(_DEFAULT_LOGGER)
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False
        self._link: BrokerLink | None = None
        self._beat: HealthBeat | None = None
        if settings.events_configured:
            outage = OutageLog(self._logger)
            self._link = BrokerLink(settings, self._logger, outage)
            publisher = EventPublisher(self._link, timeout=settings.connection_timeout)
            self._beat = HealthBeat(self._link, publisher, settings, registry, self._logger, outage)

    def __repr__(self) -> str:
        broker = self._link.address if self._link is not None else None
        return (
            f"EventsService(enabled={self.enabled}, broker={broker!r}, connected={self.connected})"
        )

    @property
    def enabled(self) -> bool:
        """True when events are enabled and the broker configuration is complete."""
        return self._link is not None

    @property
    def connected(self) -> bool:
        """True when the broker connection is up right now (no I/O)."""
        return self._link is not None and self._link.connected

    @property
    def started_delivered(self) -> bool:
        """True once the broker confirmed the deployment-started event."""
        return self._beat is not None and self._beat.started_delivered

    @property
    def beats_delivered(self) -> int:
        """Healthy beats the broker confirmed so far."""
        return self._beat.beats_delivered if self._beat is not None else 0

    async def start(self) -> None:
        """Start reporting in the background; returns at once, whatever the broker does.

        Calling it again, or after `stop`, does nothing.
        """
        if self._started or self._stopped:
            return
        self._started = True
        settings = self._settings
        if not settings.enable_events:
            self._logger.info("RabbitMQ events are disabled (CRBR_ENABLE_EVENTS=false)")
            return
        if self._link is None:
            self._logger.warning(settings.incomplete_events_warning)
            return
        if settings.health_check_interval >= PLATFORM_UNHEALTHY_AFTER:
            self._logger.warning(
                "CRBR_HEALTH_CHECK_INTERVAL is %g s: the platform marks a deployment UNHEALTHY "
                "after %d s without a healthy event",
                settings.health_check_interval,
                PLATFORM_UNHEALTHY_AFTER,
            )
        self._task = asyncio.create_task(self._run(), name="metatwin-functions-events")

    async def stop(self) -> None:
        """Stop beating and close the connection within `STOP_TIMEOUT` seconds; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        loop = asyncio.get_running_loop()
        timeout = STOP_TIMEOUT
        deadline = loop.time() + timeout
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # Leave at least a second of the budget for closing the connection.
            await asyncio.wait({task}, timeout=max(0.1, timeout / 2))
            if task.done() and not task.cancelled():
                with contextlib.suppress(BaseException):
                    task.result()
        if self._link is not None:
            await self._link.close(max(0.1, deadline - loop.time()))
        self._logger.debug("RabbitMQ events stopped")

    async def _run(self) -> None:
        assert self._link is not None
        assert self._beat is not None
        try:
            await self._link.connect()
            await self._beat.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug, not an outage (those never raise here): say so loudly, once.
            self._logger.exception("RabbitMQ events stopped after an unexpected error")
