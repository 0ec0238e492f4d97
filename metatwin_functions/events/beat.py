"""The started event, then the health beat: one background loop per service.

The started event counts as delivered only when the broker routed and confirmed it; until then it
is retried with back-off, and at once when a lost connection comes back. It is sent once per
process lifetime, keeping the same correlation id across retries. Then a healthy beat goes out at
once and every ``health_check_interval`` seconds; while the broker is down the loop waits for the
link instead of publishing into the void, and beats again as soon as it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..registry import FunctionRegistry
from ..settings import Settings
from .connection import BrokerLink, OutageLog, backoff_delay
from .payloads import Event, healthy_event, started_event
from .publisher import EventPublisher, PublishOutcome, PublishResult

__all__ = ["HealthBeat"]


class HealthBeat:
    """Delivers the started event once, then the healthy beat forever.

    Args:
        link: The broker link (connected or not).
        publisher: Publishes to the link's exchange.
        settings: Deployment id, interval and retry delay.
        registry: The functions the events describe.
        logger: Where delivery problems are reported.
        outage: Shared with the link, so one outage gives one warning.
    """

    def __init__(
        self,
        link: BrokerLink,
        publisher: EventPublisher,
        settings: Settings,
        registry: FunctionRegistry,
        logger: logging.Logger,
        outage: OutageLog,
    ) -> None:
        self._link = link
        self._publisher = publisher
        self._settings = settings
        self._registry = registry
        self._logger = logger
        self._outage = outage
        self._started_delivered = False
        self._beats_delivered = 0
        self._last_healthy: float | None = None
        self._unrouted_warned: set[str] = set()

    @property
    def started_delivered(self) -> bool:
        """True once the broker confirmed the started event."""
        return self._started_delivered

    @property
    def beats_delivered(self) -> int:
        """Healthy beats the broker confirmed so far."""
        return self._beats_delivered

    @property
    def last_healthy_timestamp(self) -> float | None:
        """``time.time()`` when the broker last confirmed a healthy beat, ``None`` before."""
        return self._last_healthy

    async def run(self) -> None:
        """Deliver the started event, then beat until cancelled.

        If the broker does not take the started event at the first try (no queue bound, a
        policy refusing it), it is retried beside the beat rather than before it: a deployment
        whose started event is stuck must not also go without beats and be marked UNHEALTHY.
        """
        event = started_event(self._settings.deployment_id, self._registry)
        retry: asyncio.Task[None] | None = None
        if not self._started_delivered and not await self._attempt_started(event):
            retry = asyncio.create_task(self._retry_started(event))
        try:
            await self._beat_forever()
        finally:
            if retry is not None:
                retry.cancel()
                await asyncio.gather(retry, return_exceptions=True)

    async def _retry_started(self, event: Event) -> None:
        failures = 1
        while True:
            if self._link.connected:
                # The broker is there but did not take it: back off. A lost connection instead
                # goes straight to wait_connected, so the retry follows the reconnect at once.
                await asyncio.sleep(backoff_delay(failures, self._settings.retry_delay))
            if await self._attempt_started(event):
                return
            failures += 1

    async def _attempt_started(self, event: Event) -> bool:
        await self._link.wait_connected()
        result = await self._publisher.publish(event)
        if not result.delivered:
            self._report_failure(result, "started event")
            return False
        self._started_delivered = True
        self._outage.recovered("RabbitMQ accepts events again")
        self._logger.info(
            "Deployment started event delivered (deployment %s, %d functions)",
            self._settings.deployment_id,
            len(self._registry),
        )
        return True

    async def _beat_forever(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self._settings.health_check_interval
        next_due = loop.time()
        while True:
            delay = next_due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self._link.connected:
                self._logger.debug("Healthy beat skipped: RabbitMQ is down")
                await self._link.wait_connected()
                next_due = loop.time()  # beat at once when the broker is back
                continue
            next_due += interval
            if next_due < loop.time():  # fell behind (slow broker): skip, do not burst
                next_due = loop.time() + interval
            result = await self._publisher.publish(
                healthy_event(self._settings.deployment_id, self._registry)
            )
            if result.delivered:
                self._beats_delivered += 1
                self._last_healthy = time.time()
                self._unrouted_warned.discard("healthy beat")
                self._outage.recovered("RabbitMQ accepts healthy beats again")
                self._logger.debug("Healthy beat delivered")
            else:
                self._report_failure(result, "healthy beat")

    def _report_failure(self, result: PublishResult, what: str) -> None:
        if result.outcome is PublishOutcome.UNROUTED:
            # Not an outage: the broker works but nobody listens. Said once per event kind.
            if what not in self._unrouted_warned:
                self._unrouted_warned.add(what)
                retry = " (retrying until a queue is bound)" if what == "started event" else ""
                self._logger.warning("RabbitMQ returned the %s: %s%s", what, result.detail, retry)
            return
        if result.outcome is PublishOutcome.NOT_CONNECTED or not self._link.connected:
            # The link reports the outage itself; one warning per outage is enough.
            self._logger.debug("%s not delivered: %s", what.capitalize(), result.detail)
            return
        self._outage.problem(
            "RabbitMQ did not confirm the %s (%s); events are retried or skipped until it does",
            what,
            result.detail,
        )
