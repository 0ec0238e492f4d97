"""When a function runs by itself: ``@Function(schedule=...)`` and ``@Function(every=...)``.

A `Schedule` is checked when the function is decorated (a bad cron string, ``every=0`` or
arguments that do not fit the signature fail there, naming the function) and knows its ticks.
A tick is a scheduled instant, not the moment a run starts: cron times in UTC, and for
``every=N`` the multiples of N seconds since the Unix epoch, so that every replica names a tick
alike (the execution id ``schedule:<name>:<tick>``). cronsim is imported only when a cron
schedule exists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_core import to_json

from .errors import RegistrationError

if TYPE_CHECKING:
    from .signature import SignatureInfo

__all__ = ["Schedule", "build_schedule", "schedule_execution_id", "tick_text"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_CRON_FIELDS = "minute hour day-of-month month day-of-week"


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron expression (5 fields, UTC) or a period in seconds, and the arguments of each run."""

    cron: str | None = None
    every: float | None = None
    args: Mapping[str, Any] = field(default_factory=dict)

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (an aware datetime), in UTC."""
        after = after.astimezone(UTC)
        if self.cron is not None:
            from cronsim import CronSim

            return next(CronSim(self.cron, after)).astimezone(UTC)
        assert self.every is not None
        period = round(self.every * 1_000_000)
        elapsed = (after - EPOCH) // _MICROSECOND
        return EPOCH + (elapsed // period + 1) * period * _MICROSECOND

    def __str__(self) -> str:
        return f"cron '{self.cron}' (UTC)" if self.cron is not None else f"every {self.every:g} s"


def tick_text(tick: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``: ``2026-01-01T00:05:00Z`` (milliseconds only when needed)."""
    tick = tick.astimezone(UTC)
    spec = "milliseconds" if tick.microsecond else "seconds"
    return tick.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def schedule_execution_id(name: str, tick: datetime) -> str:
    """The execution id of one tick: ``schedule:<name>:<ISO 8601 UTC of the tick>``."""
    return f"schedule:{name}:{tick_text(tick)}"


def build_schedule(
    name: str,
    signature: SignatureInfo,
    schedule: str | None,
    every: float | None,
    schedule_args: Mapping[str, Any] | None,
) -> Schedule | None:
    """Check the schedule options of ``@Function`` against the function's signature.

    Raises:
        RegistrationError: naming the function and what is wrong.
    """
    if schedule is None and every is None:
        if schedule_args is not None:
            raise RegistrationError(
                f"Function '{name}': schedule_args given without schedule= or every="
            )
        return None
    if schedule is not None and every is not None:
        raise RegistrationError(f"Function '{name}': give schedule= or every=, not both")
    cron = None if schedule is None else _check_cron(name, schedule)
    period = None if every is None else _check_every(name, every)
    args = _check_args(name, signature, schedule_args)
    return Schedule(cron=cron, every=period, args=args)


def _check_cron(name: str, expression: object) -> str:
    if not isinstance(expression, str):
        raise RegistrationError(
            f"Function '{name}': schedule must be a cron string such as '*/5 * * * *', "
            f"got {expression!r}"
        )
    fields = expression.split()
    if len(fields) != 5:
        raise RegistrationError(
            f"Function '{name}': schedule {expression!r} has {len(fields)} field(s); "
            f"a schedule is a 5-field cron expression ({_CRON_FIELDS}), evaluated in UTC"
        )
    text = " ".join(fields)
    from cronsim import CronSim, CronSimError

    try:
        ticks = CronSim(text, EPOCH)
        next(ticks)
    except CronSimError as exc:
        raise RegistrationError(
            f"Function '{name}': schedule {expression!r} is not a valid cron expression ({exc}); "
            f"fields: {_CRON_FIELDS}"
        ) from None
    except StopIteration:
        raise RegistrationError(f"Function '{name}': schedule {expression!r} never fires") from None
    return text


def _check_every(name: str, every: object) -> float:
    if (
        isinstance(every, bool)
        or not isinstance(every, int | float)
        or not math.isfinite(every)
        or every < 0.001
    ):
        raise RegistrationError(
            f"Function '{name}': every must be a positive number of seconds (at least 0.001), "
            f"got {every!r}"
        )
    return float(every)


def _check_args(
    name: str, signature: SignatureInfo, schedule_args: Mapping[str, Any] | None
) -> dict[str, Any]:
    if schedule_args is None:
        schedule_args = {}
    if not isinstance(schedule_args, Mapping) or not all(
        isinstance(key, str) for key in schedule_args
    ):
        raise RegistrationError(
            f"Function '{name}': schedule_args must be a dict of argument names to values, "
            f"got {schedule_args!r}"
        )
    args = dict(schedule_args)
    try:
        signature.arguments_adapter.validate_python(args)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_context=False, include_input=False):
            where = ".".join(str(part) for part in error["loc"])
            if error["type"] == "missing":
                problems.append(f"missing required argument '{where}'")
            elif error["type"] == "extra_forbidden":
                problems.append(f"unexpected argument '{where}'")
            else:
                problems.append(f"argument '{where}': {error['msg']}")
        raise RegistrationError(
            f"Function '{name}': schedule_args do not fit its signature: {'; '.join(problems)}"
        ) from None
    try:
        to_json(args)
    except Exception as exc:
        raise RegistrationError(
            f"Function '{name}': schedule_args must be JSON values ({exc})"
        ) from None
    return args
