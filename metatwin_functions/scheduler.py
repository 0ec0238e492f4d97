"""`Scheduler`: runs scheduled functions at their ticks, through the one call pipeline.

Each tick is a normal call: ``pipeline.serve_request(ExecRequest("schedule:<name>:<tick>", name,
schedule_args, version), CallMeta(trigger="schedule"))``, so deadlines, logs, metrics and tracing
(``faas.trigger=timer``) hold as for any call; its answer is then published as the execution
completed event with ``trigger: "schedule"``.

- **No overlap**: a tick whose previous run of the same function is still running is skipped,
  logged (WARNING) and counted.
- **No catch-up**: the next tick is always computed from now; ticks missed while this replica was
  not leading, not running, or stalled are not run late. No jitter: every run starts at its tick.
- **One runner**: ticks fire only while `Leadership.is_leader` (``metatwin_functions.leadership``).
- The clock is injectable, so tests drive ticks without waiting for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from pydantic_core import from_json

from .answers import Answer
from .envelope import ExecRequest
from .leadership import Leadership
from .pipeline import CallMeta, CallPipeline
from .registry import FunctionSpec
from .schedules import Schedule, schedule_execution_id, tick_text

if TYPE_CHECKING:
    from .metrics import PrometheusMetrics

__all__ = ["Clock", "Scheduler", "SystemClock"]

logger = logging.getLogger("metatwin_functions.schedules")

_SCHEDULE = CallMeta(trigger="schedule")
#: Longest single sleep: a wall clock that jumps (NTP, suspend) is looked at again this often.
_MAX_SLEEP = 30.0
#: Most ticks counted as missed after a stall before jumping straight to now.
_MAX_MISSED = 1000

Publish = Callable[[ExecRequest, Answer], Awaitable[bool]]


class Clock(Protocol):
    """Wall-clock time in UTC and a way to wait for an instant of it."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""

    async def sleep_until(self, when: datetime) -> None:
        """Return at ``when`` (or at once if it has passed)."""


class SystemClock:
    """The real clock: ``datetime.now(UTC)`` and asyncio's timers."""

    def now(self) -> datetime:
        """The current time in UTC."""
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        """Sleep in steps of at most 30 s, so a jump of the wall clock is noticed."""
        while (delay := (when - self.now()).total_seconds()) > 0:  # noqa: ASYNC110 - a timer
            await asyncio.sleep(min(delay, _MAX_SLEEP))


@dataclass(slots=True)
class _Scheduled:
    spec: FunctionSpec
    schedule: Schedule
    next_tick: datetime | None = None
    running: asyncio.Task[None] | None = None
    running_tick: datetime | None = None
    runs: int = 0
    skipped: int = 0
    last_tick: datetime | None = None
    last_status: str | None = None
    loop: asyncio.Task[None] | None = field(default=None, repr=False)


class Scheduler:
    """Fires the ticks of every scheduled function of a registry while this replica leads.

    Args:
        specs: The scheduled definitions (`FunctionSpec.schedule` set).
        pipeline: The call pipeline every tick goes through.
        leadership: Whether this replica runs the schedules now.
        publish: Publishes the execution completed event of a tick's answer (None: not at all).
        clock: Time source; `SystemClock` by default.
        metrics: Where ticks run and skipped are counted.
    """

    def __init__(
        self,
        specs: list[FunctionSpec],
        pipeline: CallPipeline,
        leadership: Leadership,
        *,
        publish: Publish | None = None,
        clock: Clock | None = None,
        metrics: PrometheusMetrics | None = None,
    ) -> None:
        self.leadership = leadership
        self._pipeline = pipeline
        self._publish = publish
        self._clock = clock if clock is not None else SystemClock()
        self._scheduled = [
            _Scheduled(spec, spec.schedule) for spec in specs if spec.schedule is not None
        ]
        self._ticks = _tick_counter(metrics)

    @property
    def is_leader(self) -> bool:
        """Whether this replica runs the schedules right now."""
        return self.leadership.is_leader

    async def start(self) -> None:
        """Start competing for the lead and one timer task per scheduled function."""
        await self.leadership.start()
        for scheduled in self._scheduled:
            if scheduled.loop is None:
                name = f"metatwin-functions-schedule-{scheduled.spec.name}"
                scheduled.loop = asyncio.create_task(self._timer(scheduled), name=name)

    async def pause(self) -> None:
        """Fire no more ticks and give the lead away (a drain); runs in flight go on."""
        for scheduled in self._scheduled:
            loop, scheduled.loop = scheduled.loop, None
            if loop is not None:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
        await self.leadership.stop()

    async def stop(self, timeout: float = 5.0) -> None:
        """`pause`, then wait up to ``timeout`` s for runs (and their events) to end."""
        await self.pause()
        running = [s.running for s in self._scheduled if s.running is not None]
        if running:
            _, pending = await asyncio.wait(running, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    def status(self) -> list[dict[str, Any]]:
        """One entry per schedule for ``/ready``: when it fires next and how it went."""
        entries = []
        for scheduled in self._scheduled:
            schedule = scheduled.schedule
            entry: dict[str, Any] = {"function": scheduled.spec.name}
            if scheduled.spec.version is not None:
                entry["version"] = scheduled.spec.version
            if schedule.cron is not None:
                entry["schedule"] = schedule.cron
            else:
                entry["every"] = schedule.every
            entry.update(
                next_tick=None if scheduled.next_tick is None else tick_text(scheduled.next_tick),
                running=scheduled.running is not None and not scheduled.running.done(),
                runs=scheduled.runs,
                skipped=scheduled.skipped,
                last_tick=None if scheduled.last_tick is None else tick_text(scheduled.last_tick),
                last_status=scheduled.last_status,
            )
            entries.append(entry)
        return entries

    async def _timer(self, scheduled: _Scheduled) -> None:
        clock, schedule = self._clock, scheduled.schedule
        tick = schedule.next_tick(clock.now())
        while True:
            scheduled.next_tick = tick
            await clock.sleep_until(tick)
            # Woken late (a stalled loop, a suspended host)? Run the latest tick that is due,
            # never the older ones: no catch-up.
            now, missed = clock.now(), 0
            while (following := schedule.next_tick(tick)) <= now and missed < _MAX_MISSED:
                tick, missed = following, missed + 1
            if missed:
                logger.warning(
                    "Schedule of '%s': %d tick(s) before %s passed while the scheduler was "
                    "stalled; they are not run late",
                    scheduled.spec.name,
                    missed,
                    tick_text(tick),
                )
            self._fire(scheduled, tick)
            tick = schedule.next_tick(max(tick, now))

    def _fire(self, scheduled: _Scheduled, tick: datetime) -> None:
        name = scheduled.spec.name
        if not self.leadership.is_leader:
            logger.debug("Schedule of '%s': tick %s left to the leading replica", name, tick)
            return
        running = scheduled.running
        if running is not None and not running.done():
            scheduled.skipped += 1
            self._count(name, "skipped")
            previous = "?" if scheduled.running_tick is None else tick_text(scheduled.running_tick)
            logger.warning(
                "Schedule of '%s': tick %s skipped, the run of tick %s is still running",
                name,
                tick_text(tick),
                previous,
                extra={"function_name": name, "status": "skipped"},
            )
            return
        scheduled.running_tick = tick
        scheduled.running = asyncio.create_task(self._run(scheduled, tick))

    async def _run(self, scheduled: _Scheduled, tick: datetime) -> None:
        spec = scheduled.spec
        request = ExecRequest(
            schedule_execution_id(spec.name, tick),
            spec.name,
            dict(scheduled.schedule.args),
            spec.version,
        )
        scheduled.runs += 1
        scheduled.last_tick = tick
        self._count(spec.name, "run")
        try:
            answer = await self._pipeline.serve_request(request, _SCHEDULE)
        except Exception:
            scheduled.last_status = "error"
            logger.exception("Schedule of '%s': tick %s could not run", spec.name, tick)
            return
        if answer.status != 200:
            scheduled.last_status = answer.rejected or f"http_{answer.status}"
            logger.warning(
                "Schedule of '%s': tick %s refused (HTTP %d %s)",
                spec.name,
                tick_text(tick),
                answer.status,
                answer.rejected,
            )
            return
        succeeded = from_json(answer.body).get("success") is True
        scheduled.last_status = "success" if succeeded else "error"
        if self._publish is not None:
            await self._publish(request, answer)

    def _count(self, name: str, result: str) -> None:
        if self._ticks is not None:
            self._ticks.labels(name, result).inc()


def _tick_counter(metrics: PrometheusMetrics | None) -> Any:
    """``metatwin_functions_schedule_ticks_total{function, result}``: ``run`` or ``skipped``."""
    if metrics is None:
        return None
    from prometheus_client import Counter

    counter = Counter(
        "metatwin_functions_schedule_ticks",
        "Schedule ticks of this process, by function and result (run, skipped).",
        ("function", "result"),
        registry=None,
    )
    if not metrics.multiprocess:
        metrics.collector_registry.register(counter)
    return counter
