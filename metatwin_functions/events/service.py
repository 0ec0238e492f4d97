"""`EventsService`: the one object the runtime starts and stops to report to RabbitMQ.

It publishes the deployment-started event and the healthy beat by itself, and the execution
completed event when asked (`EventsService.publish_execution_completed`).

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
    * Partitions (the broker stops answering, nothing is closed): AMQP heartbeats
      (``rabbitmq_heartbeat``) plus a watchdog that probes a quiet link every half heartbeat and
      treats an unconfirmed publish as a sign; ``connected`` turns false within two heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from ..registry import FunctionRegistry
from ..settings import Settings
from .beat import HealthBeat
from .connection import BrokerLink, OutageLog
from .payloads import Trigger, execution_completed_event, execution_completed_payload
from .publisher import EventPublisher, EventsObserver, HeaderInjector, ResultName, result_name
from .transport import BrokerConnector

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
        observer: Told the outcome of every publish (``event_published(event, result)``).
        header_injector: Called with each event's AMQP headers (a dict) to add some, e.g. the
            current ``traceparent``.
        broker: The broker to talk to; default the RabbitMQ the settings name. A test passes a
            `metatwin_functions.testing.InMemoryBroker` (then no broker settings are needed).
    """

    def __init__(
        self,
        settings: Settings,
        registry: FunctionRegistry,
        logger: logging.Logger | None = None,
        *,
        observer: EventsObserver | None = None,
        header_injector: HeaderInjector | None = None,
        broker: BrokerConnector | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._logger = logger if logger is not None else logging.getLogger(_DEFAULT_LOGGER)
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False
        self._link: BrokerLink | None = None
        self._beat: HealthBeat | None = None
        self._publisher: EventPublisher | None = None
        if settings.events_configured or (broker is not None and settings.enable_events):
            outage = OutageLog(self._logger)
            self._link = BrokerLink(settings, self._logger, outage, broker)
            self._publisher = EventPublisher(
                self._link,
                timeout=settings.connection_timeout,
                observer=observer,
                header_injector=header_injector,
            )
            self._beat = HealthBeat(
                self._link, self._publisher, settings, registry, self._logger, outage
            )

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

    @property
    def last_healthy_timestamp(self) -> float | None:
        """``time.time()`` of the last healthy beat the broker confirmed, ``None`` before."""
        return self._beat.last_healthy_timestamp if self._beat is not None else None

    async def publish_execution_completed(
        self,
        *,
        execution_id: str,
        function_name: str,
        trigger: Trigger,
        success: bool,
        result: Any,
        error: str | None,
        metadata: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bool:
        """Publish the execution-completed event; True once the broker confirmed and routed it.

        The arguments are the ``/exec`` answer (``success``, ``result``, ``error``, ``metadata``)
        and what ran. ``headers`` are added to the message (e.g. the call's ``traceparent``).
        Waits at most ``connection_timeout`` seconds and never raises: False means "not
        delivered" (events off, broker down, returned, refused, or ``result`` not JSON).
        `publish_execution_completed_result` tells those apart.
        """
        outcome = await self.publish_execution_completed_result(
            execution_id=execution_id,
            function_name=function_name,
            trigger=trigger,
            success=success,
            result=result,
            error=error,
            metadata=metadata,
            headers=headers,
        )
        return outcome == "delivered"

    async def publish_execution_completed_result(
        self,
        *,
        execution_id: str,
        function_name: str,
        trigger: Trigger,
        success: bool,
        result: Any,
        error: str | None,
        metadata: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ResultName:
        """As `publish_execution_completed`, saying how it ended.

        ``delivered``: confirmed and routed. ``unroutable``: the broker confirmed it but no queue
        is bound for it (publishing again changes nothing). ``failed``: not confirmed (events
        off, link down, nack, timeout, or a result JSON cannot hold): it may be tried again.
        """
        publisher = self._publisher
        if publisher is None or self._stopped or not self._started:
            return "failed"
        try:
            event = execution_completed_event(
                execution_completed_payload(
                    deployment_id=self._settings.deployment_id,
                    execution_id=execution_id,
                    function_name=function_name,
                    trigger=trigger,
                    success=success,
                    result=result,
                    error=error,
                    metadata=metadata,
                )
            )
            outcome = await publisher.publish(event, headers)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must never fail the call that asked
            self._logger.exception("Execution completed event for %r not published", execution_id)
            return "failed"
        if not outcome.delivered:
            self._logger.debug(
                "Execution completed event for %r not delivered: %s", execution_id, outcome.detail
            )
        return result_name(outcome.outcome)

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
