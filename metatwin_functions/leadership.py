"""Which replica runs the schedules: elected by RabbitMQ, not by a consensus of our own.

`BrokerLeadership` holds an **exclusive queue** named
``metatwin-functions.scheduler.<deploymentId>`` on a connection of its own. RabbitMQ lets one
connection at a time hold an exclusive queue and deletes it when that connection closes, so the
broker's view of who holds it is the election:

- every replica tries to declare the queue; the one that succeeds leads, the others get
  ``RESOURCE_LOCKED`` and try again every `POLL_INTERVAL` seconds (jittered);
- a leader that exits, crashes or is killed (SIGKILL closes its socket) frees the queue at once; a
  leader whose host goes silent is dropped by the broker after its heartbeats stop
  (`HEARTBEAT` seconds, about twice that before the broker gives up), so another replica takes
  over within ``2 * HEARTBEAT + POLL_INTERVAL`` seconds, under 15 s;
- a leader that loses its connection, or whose round trip to the broker (every
  `PROBE_INTERVAL` s) takes over `PROBE_TIMEOUT` s, stops leading at once (before the broker
  could give the lead away) and competes again when the broker answers.

aio-pika is imported only when a broker is configured and schedules exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .settings import Settings

if TYPE_CHECKING:
    from aio_pika.abc import AbstractConnection

__all__ = [
    "HEARTBEAT",
    "POLL_INTERVAL",
    "BrokerLeadership",
    "Leadership",
    "LocalLeadership",
    "scheduler_queue_name",
]

POLL_INTERVAL = 2.0
"""Seconds between a follower's attempts to take the lead (±25 % jitter)."""

HEARTBEAT = 3
"""AMQP heartbeat of the leadership connection, seconds: how fast a silent leader is dropped."""

PROBE_INTERVAL = 1.0
"""Seconds between the leader's round trips to the broker."""

PROBE_TIMEOUT = 2.0
"""A leader whose round trip takes longer steps down (the broker may be handing the lead on)."""

_CONNECT_TIMEOUT = 5.0

logger = logging.getLogger("metatwin_functions.schedules")


def scheduler_queue_name(deployment_id: str) -> str:
    """``metatwin-functions.scheduler.<deploymentId>``: the queue whose holder runs schedules."""
    return f"metatwin-functions.scheduler.{deployment_id}"


class Leadership(Protocol):
    """Tells the scheduler whether this replica runs the schedules right now."""

    @property
    def is_leader(self) -> bool:
        """True while this replica runs the schedules (no I/O)."""

    async def start(self) -> None:
        """Begin taking part (returns at once)."""

    async def stop(self) -> None:
        """Stop leading and give the lead away (bounded)."""


class LocalLeadership:
    """No broker: this process runs the schedules by itself."""

    is_leader = True

    async def start(self) -> None:
        """Nothing to do."""

    async def stop(self) -> None:
        """Nothing to do."""


class BrokerLeadership:
    """Leads while this replica's connection holds the deployment's exclusive scheduler queue.

    Args:
        settings: The broker to use (host, credentials, vhost) and the deployment id.
        poll_interval: Seconds between a follower's attempts.
        heartbeat: AMQP heartbeat of the leadership connection.
        on_change: Called with the new state each time this replica gains or loses the lead.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        poll_interval: float = POLL_INTERVAL,
        heartbeat: int = HEARTBEAT,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.queue_name = scheduler_queue_name(settings.deployment_id)
        self._settings = settings
        self._poll_interval = poll_interval
        self._heartbeat = heartbeat
        self._on_change = on_change
        self._leader = False
        self._task: asyncio.Task[None] | None = None
        self._connection: AbstractConnection | None = None

    @property
    def is_leader(self) -> bool:
        """True while this replica's connection holds the queue (as far as it knows)."""
        return self._leader and self._connection is not None and not self._connection.is_closed

    async def start(self) -> None:
        """Start competing in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._compete(), name="metatwin-functions-leadership")

    async def stop(self) -> None:
        """Close the connection (the queue goes, another replica takes over); bounded."""
        self._set_leader(False)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._close()

    async def _compete(self) -> None:
        aio_pika: Any = await asyncio.to_thread(importlib.import_module, "aio_pika")
        exceptions: Any = importlib.import_module("aiormq.exceptions")
        failures = 0
        while True:
            try:
                connection = await self._connect(aio_pika)
                failures = 0
                await self._hold_or_wait(connection, exceptions.ChannelLockedResource)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._set_leader(False)
                failures += 1
                if failures == 1:
                    logger.warning(
                        "Scheduler election: broker unreachable (%s); retrying, schedules are "
                        "not run by this replica meanwhile",
                        type(exc).__name__,
                    )
            await self._close()
            await asyncio.sleep(self._jittered(min(self._poll_interval * failures, 10.0)))

    async def _connect(self, aio_pika: Any) -> AbstractConnection:
        settings = self._settings
        password = settings.rabbitmq_password
        url = aio_pika.connection.make_url(
            host=settings.rabbitmq_hostname or "",
            port=settings.rabbitmq_port,
            login=settings.rabbitmq_username or "",
            password=password.get_secret_value() if password is not None else "",
            virtualhost=settings.rabbitmq_vhost,
            heartbeat=self._heartbeat,
        )
        name = f"metatwin-functions scheduler {settings.deployment_id} pid={os.getpid()}"
        connection: AbstractConnection = await asyncio.wait_for(
            aio_pika.connect(url, client_properties={"connection_name": name}),
            _CONNECT_TIMEOUT,
        )
        self._connection = connection
        return connection

    async def _hold_or_wait(self, connection: AbstractConnection, locked: type[Exception]) -> None:
        """Declare the queue until it is ours; then lead until the connection closes."""
        while not connection.is_closed:
            channel = await asyncio.wait_for(connection.channel(), _CONNECT_TIMEOUT)
            try:
                await asyncio.wait_for(
                    channel.declare_queue(self.queue_name, exclusive=True, auto_delete=True),
                    _CONNECT_TIMEOUT,
                )
            except locked:
                # Another replica holds it: follow, and try again later.
                await asyncio.sleep(self._jittered(self._poll_interval))
                continue
            self._set_leader(True)
            await self._lead(connection, channel)
            self._set_leader(False)
        raise ConnectionError("the scheduler election connection closed")

    async def _lead(self, connection: AbstractConnection, channel: Any) -> None:
        """Return as soon as the broker may have given the lead to another replica.

        The broker drops a silent connection (and the queue with it) after about two
        heartbeats; a round trip every `PROBE_INTERVAL` s that must answer within
        `PROBE_TIMEOUT` s makes a cut-off leader step down well before that, so two replicas
        never run the schedules at once.
        """
        # One event and one close callback for the whole lead, removed when it ends: a
        # callback per probe would pile up on the connection (a leak, one a second).
        closed = asyncio.Event()

        def on_close(*_: object) -> None:
            closed.set()

        connection.close_callbacks.add(on_close)
        try:
            while not connection.is_closed and not closed.is_set():
                try:
                    await asyncio.wait_for(
                        channel.declare_queue(self.queue_name, passive=True), PROBE_TIMEOUT
                    )
                except Exception:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closed.wait(), PROBE_INTERVAL)
        finally:
            connection.close_callbacks.discard(on_close)

    def _set_leader(self, leader: bool) -> None:
        if leader == self._leader:
            return
        self._leader = leader
        if leader:
            logger.info("This replica now runs the schedules (holds queue %s)", self.queue_name)
        else:
            logger.info("This replica no longer runs the schedules")
        if self._on_change is not None:
            self._on_change(leader)

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), _CONNECT_TIMEOUT)

    @staticmethod
    def _jittered(delay: float) -> float:
        return delay * random.uniform(0.75, 1.25)
