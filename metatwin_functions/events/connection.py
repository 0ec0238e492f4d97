"""The broker link: connect with back-off, keep `BrokerLink.connected` truthful, log outages once.

The *first* connect is our own loop (bounded attempts, exponential back-off with jitter); once a
session is open it reconnects by itself and tells the link through `LinkListener`. A broker that
stops answering without closing the connection (a partition) closes nothing, so a watchdog asks it
for one round trip whenever it has been quiet for half a heartbeat, and every publish whose
confirmation does not come in time counts too: either marks the link down at once and resets the
session so that it reconnects from scratch.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine

from ..settings import Settings
from .transport import BrokerConnector, BrokerRefusedError, BrokerSession

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
    """The connection to the broker events are published to.

    Args:
        settings: Broker settings (retry knobs, timeouts, heartbeat).
        logger: Where connection problems are reported.
        outage: Shared with the beat, so one outage gives one warning.
        connector: Opens sessions; defaults to the real RabbitMQ the settings name (aio-pika).
    """

    def __init__(
        self,
        settings: Settings,
        logger: logging.Logger,
        outage: OutageLog,
        connector: BrokerConnector | None = None,
    ) -> None:
        if connector is None:
            from .aiopika import AioPikaConnector

            connector = AioPikaConnector(settings, self._reconnect_interval)
        self._settings = settings
        self._logger = logger
        self._outage = outage
        self._connector = connector
        self._address = connector.address
        self._session: BrokerSession | None = None
        self._up = asyncio.Event()
        self._closing = False
        self._stale = False
        self._resetting = False
        self._last_answer = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"BrokerLink({self._address!r}, connected={self.connected})"

    @property
    def address(self) -> str:
        """``host:port/vhost``, safe to log."""
        return self._address

    @property
    def connected(self) -> bool:
        """True when a publish can go out right now (no I/O)."""
        session = self._session
        return self._up.is_set() and session is not None and session.is_open

    @property
    def session(self) -> BrokerSession | None:
        """The open session while connected, else ``None``."""
        return self._session if self.connected else None

    @property
    def detection_bound(self) -> float | None:
        """Longest time, seconds, from a partition to ``connected`` turning false, or ``None``
        when heartbeats are off (then only an unconfirmed publish reveals one).

        The watchdog wakes every half heartbeat and probes when nothing came back during the
        last half heartbeat; a probe waits one heartbeat: ``0.5 + 0.5 + 1`` heartbeats.
        """
        heartbeat = self._settings.rabbitmq_heartbeat
        return 2.0 * heartbeat if heartbeat > 0 else None

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
        failed too, one ERROR says events stay paused; the attempts in between log at DEBUG. A
        refusal (wrong password, unknown vhost) is one ERROR that says so, once per reason.
        """
        settings = self._settings
        failures = 0
        refusals: set[str] = set()
        while not self._closing:
            try:
                session = await self._connector.open(self, timeout=settings.connection_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = backoff_delay(failures, settings.retry_delay)
                self._log_failure(exc, failures, delay, refusals)
                await asyncio.sleep(delay)
                continue
            if self._closing:
                await session.close(timeout=settings.connection_timeout)
                return
            self._session = session
            self.note_answer()
            self._up.set()
            self._spawn(self._watch())
            self._logger.info(
                "Connected to RabbitMQ %s, exchange %r%s",
                self._address,
                settings.rabbitmq_exchange,
                f" after {failures + 1} attempts" if failures else "",
            )
            return

    def _log_failure(
        self, exc: BaseException, failures: int, delay: float, refusals: set[str]
    ) -> None:
        """One WARNING for the first failure, one ERROR after ``max_retries``, one ERROR per
        distinct refusal; DEBUG for the attempts in between, which never repeat a refusal."""
        reason = self._describe(exc)
        if isinstance(exc, BrokerRefusedError):
            if reason not in refusals:
                refusals.add(reason)
                self._logger.error(
                    "RabbitMQ %s refused the connection: %s; events stay paused, retrying in "
                    "the background",
                    self._address,
                    reason,
                )
                return
            reason = "refused again, as said above"
        elif failures == self._settings.max_retries + 1:
            self._logger.error(
                "RabbitMQ %s still unreachable after %d attempts (%s); events stay paused, "
                "retrying every %.1f s at most",
                self._address,
                failures,
                reason,
                MAX_BACKOFF,
            )
            return
        elif failures == 1:
            self._logger.warning(
                "RabbitMQ %s unreachable (%s); events are paused, retrying in the background",
                self._address,
                reason,
            )
            return
        self._logger.debug(
            "RabbitMQ %s attempt %d failed (%s); next in %.2f s",
            self._address,
            failures,
            reason,
            delay,
        )

    async def close(self, budget: float) -> None:
        """Close the connection within ``budget`` seconds, also in the middle of an outage."""
        self._closing = True
        self._up.clear()
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        session, self._session = self._session, None
        if tasks:
            await asyncio.wait(tasks, timeout=budget / 2)
        if session is not None:
            await session.close(timeout=max(0.05, budget / 2))

    def note_answer(self) -> None:
        """The broker answered (a confirm, a return, a nack): it is alive right now."""
        self._last_answer = asyncio.get_running_loop().time()

    def clock(self) -> float:
        """The link's clock (the event loop's), for `suspect`'s ``since``."""
        return asyncio.get_running_loop().time()

    def suspect(self, reason: str, since: float) -> None:
        """The broker did not answer in time: mark the link down and reconnect from scratch.

        Called by the watchdog and by the publisher when a confirmation does not come. A partition
        closes nothing, so without this the link would say "connected" for as long as it lasts.
        ``since`` is when the unanswered request went out: if the broker answered anything after
        it (the link came back meanwhile), the late timeout says nothing new and is ignored.
        """
        session = self._session
        if self._closing or session is None or not self._up.is_set():
            return
        if self._last_answer > since:
            return
        self._up.clear()
        self._stale = True
        self._outage.problem(
            "RabbitMQ %s stopped answering (%s); events are paused until it is back",
            self._address,
            reason,
        )
        self._resetting = True
        self._spawn(self._reset(session, TimeoutError(f"RabbitMQ stopped answering: {reason}")))

    async def _reset(self, session: BrokerSession, reason: BaseException) -> None:
        try:
            await session.reset(reason, timeout=self._settings.connection_timeout)
        finally:
            self._resetting = False

    # LinkListener: called by the session.

    def on_lost(self, exc: BaseException | None, /) -> None:
        """The session lost its connection and reconnects by itself."""
        if self._closing:
            return
        self._up.clear()
        self._outage.problem(
            "Lost the connection to RabbitMQ %s (%s); events are paused until it is back",
            self._address,
            self._describe(exc),
        )

    def on_restored(self) -> None:
        """The session reconnected."""
        if self._closing:
            return
        self._stale = False
        self.note_answer()
        self._up.set()
        self._outage.recovered("RabbitMQ %s is back; events resume", self._address)

    async def _watch(self) -> None:
        heartbeat = float(self._settings.rabbitmq_heartbeat)
        if heartbeat <= 0:
            return
        period = heartbeat / 2
        loop = asyncio.get_running_loop()
        while not self._closing:
            await asyncio.sleep(period)
            session = self._session
            if session is None or not session.is_open or self._resetting:
                continue  # reconnecting: the session reports the outcome itself
            if self._up.is_set() and loop.time() - self._last_answer < period:
                continue  # a recent confirmation already proved the broker alive
            sent = loop.time()
            try:
                await session.probe(timeout=heartbeat)
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                self.suspect(f"no answer to a probe within {heartbeat:g} s", sent)
                continue
            except Exception as exc:  # it answered, with an error: alive, and being restored
                self._logger.debug("RabbitMQ probe failed: %s", self._describe(exc))
                continue
            self.note_answer()
            if self._stale and not self._up.is_set() and not self._resetting:
                self.on_restored()  # the reset did not close it and it answers: use it again

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reconnect_interval(self) -> float:
        # A fresh random interval per outage spreads workers that lost the broker together.
        return backoff_delay(1, self._settings.retry_delay)

    def _describe(self, exc: BaseException | None) -> str:
        """A one-line reason, with the password masked should a library ever echo it."""
        if exc is None:
            return "closed"
        if isinstance(exc, BrokerRefusedError):
            text = str(exc)
        else:
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        password = self._settings.rabbitmq_password
        secret = password.get_secret_value() if password is not None else ""
        return text.replace(secret, "******") if secret else text
