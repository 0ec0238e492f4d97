"""``@Function(schedule=..., every=..., schedule_args=...)``: checked at decoration, ticks named
alike on every replica."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from metatwin_functions import Function, FunctionRegistry, RegistrationError
from metatwin_functions.schedules import Schedule, schedule_execution_id, tick_text


def decorate(**options: Any) -> Any:
    functions = FunctionRegistry()

    @Function(registry=functions, **options)
    def report(region: str, limit: int = 10) -> int:
        return limit

    return functions.get("report")


# --- bad input fails at decoration, naming the function and the problem ----------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"schedule": "0 */5 * * * *", "schedule_args": {"region": "eu"}}, "has 6 field"),
        ({"schedule": "* * * *", "schedule_args": {"region": "eu"}}, "has 4 field"),
        ({"schedule": "61 * * * *", "schedule_args": {"region": "eu"}}, "Bad minute"),
        ({"schedule": "0 25 * * *", "schedule_args": {"region": "eu"}}, "Bad hour"),
        ({"schedule": "0 0 32 * *", "schedule_args": {"region": "eu"}}, "Bad day-of-month"),
        ({"schedule": "0 0 * 13 *", "schedule_args": {"region": "eu"}}, "Bad month"),
        ({"schedule": "@hourly", "schedule_args": {"region": "eu"}}, "has 1 field"),
        ({"schedule": 5, "schedule_args": {"region": "eu"}}, "must be a cron string"),
        ({"every": 0, "schedule_args": {"region": "eu"}}, "every must be a positive number"),
        ({"every": -5, "schedule_args": {"region": "eu"}}, "every must be a positive number"),
        ({"every": True, "schedule_args": {"region": "eu"}}, "every must be a positive number"),
        ({"every": float("inf"), "schedule_args": {"region": "eu"}}, "every must be"),
        ({"every": 5}, "missing required argument 'region'"),
        ({"every": 5, "schedule_args": {"region": "eu", "x": 1}}, "unexpected argument 'x'"),
        ({"every": 5, "schedule_args": {"region": "eu", "limit": "many"}}, "argument 'limit'"),
        ({"every": 5, "schedule_args": ["eu"]}, "schedule_args must be a dict"),
        ({"every": 5, "schedule_args": {"region": "eu", "limit": object()}}, "argument 'limit'"),
        ({"schedule_args": {"region": "eu"}}, "schedule_args given without schedule"),
        (
            {"schedule": "* * * * *", "every": 5, "schedule_args": {"region": "eu"}},
            "not both",
        ),
    ],
)
def test_bad_schedules_fail_at_decoration_naming_function_and_problem(
    options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(RegistrationError, match="Function 'report'") as caught:
        decorate(**options)
    assert problem in str(caught.value)


def test_two_versions_of_one_name_cannot_both_be_scheduled() -> None:
    functions = FunctionRegistry()

    @Function("sync", version="1", every=60, registry=functions)
    def sync_v1() -> None:
        return None

    with pytest.raises(RegistrationError, match="Function 'sync': versions '1' and '2' both"):

        @Function("sync", version="2", every=60, registry=functions)
        def sync_v2() -> None:
            return None


def test_a_valid_schedule_is_recorded_with_its_arguments() -> None:
    spec = decorate(schedule=" */5  * * * * ", schedule_args={"region": "eu"})
    assert spec.schedule == Schedule(cron="*/5 * * * *", args={"region": "eu"})
    assert str(spec.schedule) == "cron '*/5 * * * *' (UTC)"
    every = decorate(every=30, schedule_args={"region": "eu", "limit": 3})
    assert every.schedule == Schedule(every=30.0, args={"region": "eu", "limit": 3})


# --- ticks ---------------------------------------------------------------------------------------


def test_cron_ticks_are_utc_cron_times_strictly_after_now() -> None:
    schedule = Schedule(cron="*/5 * * * *")
    start = datetime(2026, 1, 1, 0, 4, 59, 900_000, tzinfo=UTC)
    first = schedule.next_tick(start)
    assert first == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert schedule.next_tick(first) == datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    # The same instant given in another zone yields the same UTC tick.
    other_zone = start.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert schedule.next_tick(other_zone) == first


def test_every_n_ticks_are_multiples_of_n_seconds_since_the_epoch() -> None:
    schedule = Schedule(every=7)
    start = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
    tick = schedule.next_tick(start)
    assert tick.timestamp() % 7 == 0
    assert tick > start
    assert tick - start <= timedelta(seconds=7)
    assert schedule.next_tick(tick) - tick == timedelta(seconds=7)
    # Two replicas started at different moments name the same ticks.
    later = schedule.next_tick(start + timedelta(seconds=3.3))
    assert later in (tick, tick + timedelta(seconds=7))


def test_fractional_periods_tick_on_exact_multiples() -> None:
    schedule = Schedule(every=0.25)
    tick = schedule.next_tick(datetime(2026, 1, 1, 0, 0, 0, 100_000, tzinfo=UTC))
    assert tick == datetime(2026, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)
    assert tick_text(tick) == "2026-01-01T00:00:00.250Z"


def test_execution_id_names_the_function_and_the_tick_in_iso_8601_utc() -> None:
    tick = datetime(2026, 3, 4, 5, 10, tzinfo=UTC)
    assert schedule_execution_id("report", tick) == "schedule:report:2026-03-04T05:10:00Z"
    parsed = datetime.fromisoformat(schedule_execution_id("r", tick).split(":", 2)[2])
    assert parsed == tick
