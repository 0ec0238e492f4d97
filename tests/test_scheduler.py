"""`Scheduler`: ticks are normal calls through the pipeline, never overlap, never catch up, run
only on the leading replica; driven by a manual clock, so no test waits for a tick."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from metatwin_functions import FunctionRegistry, Settings, current_execution
from metatwin_functions._otel import OtelCallTracer
from metatwin_functions.events import COMPLETED_PAYLOAD_TYPE, EventsService
from metatwin_functions.runtime import FunctionRuntime
from metatwin_functions.testing import InMemoryBroker

START = datetime(2026, 1, 1, 0, 0, 7, tzinfo=UTC)


class ManualClock:
    """A clock that moves only when told; timers sleeping on it wake when it passes them."""

    def __init__(self, now: datetime) -> None:
        self._now = now
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []
        self._changed = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            return
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((when, future))
        self._changed.set()
        await future

    async def sleeping(self, count: int = 1) -> datetime:
        """Wait until ``count`` timers sleep on this clock; the earliest instant they wait for."""
        async with asyncio.timeout(2):
            while len(pending := [(w, f) for w, f in self._sleepers if not f.done()]) < count:
                self._changed.clear()
                await self._changed.wait()
        return min(when for when, _ in pending)

    def advance(self, to: datetime) -> None:
        self._now = to
        for when, future in self._sleepers:
            if when <= to and not future.done():
                future.set_result(None)
        self._sleepers = [(w, f) for w, f in self._sleepers if not f.done()]


class Job:
    """A scheduled function that records its calls and may be held until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], Any]] = []
        self.called = asyncio.Event()
        self.hold = False
        self.release = asyncio.Event()

    async def __call__(self, region: str, limit: int = 10) -> dict[str, Any]:
        execution = current_execution()
        assert execution is not None
        self.calls.append((execution.execution_id, {"region": region, "limit": limit}, execution))
        self.called.set()
        if self.hold:
            await self.release.wait()
        return {"region": region, "limit": limit}

    async def next_call(self) -> None:
        async with asyncio.timeout(2):
            await self.called.wait()
        self.called.clear()


async def eventually(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (a state with no event to wait on) for at most 2 s."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 2 s")


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "deployment_id": "dep-sched",
        "enable_events": True,  # with the in-memory broker below
        "functions_timeout": 2,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def job() -> Job:
    return Job()


@pytest.fixture
def registry(job: Job) -> FunctionRegistry:
    functions = FunctionRegistry()
    functions.register(job, name="sync_region", every=5, schedule_args={"region": "eu"})
    return functions


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def broker() -> InMemoryBroker:
    return InMemoryBroker(bindings=["#"])


@pytest.fixture
async def runtime(
    registry: FunctionRegistry, clock: ManualClock, broker: InMemoryBroker
) -> AsyncIterator[FunctionRuntime]:
    config = settings()
    functions_runtime = FunctionRuntime(registry, config, schedule_clock=clock)
    functions_runtime.events = EventsService(config, registry, broker=broker)
    await functions_runtime.events.start()
    await functions_runtime.start()
    yield functions_runtime
    await functions_runtime.stop()


async def test_a_tick_is_a_normal_call_named_after_its_scheduled_time(
    runtime: FunctionRuntime, clock: ManualClock, job: Job, broker: InMemoryBroker
) -> None:
    first = await clock.sleeping()
    assert first == datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)  # a multiple of 5 s
    clock.advance(first + timedelta(milliseconds=300))  # the run starts a little late
    await job.next_call()
    execution_id, args, _ = job.calls[0]
    assert execution_id == "schedule:sync_region:2026-01-01T00:00:10Z"
    assert args == {"region": "eu", "limit": 10}

    (event,) = await broker.wait_for(COMPLETED_PAYLOAD_TYPE)
    assert event.routing_key == "routing.event.metatwin-functions.function.execution.completed"
    payload = event.payload
    assert set(payload) == {
        "deploymentId",
        "executionId",
        "functionName",
        "trigger",
        "success",
        "result",
        "error",
        "metadata",
    }
    assert payload["trigger"] == "schedule"
    assert payload["executionId"] == execution_id
    assert payload["functionName"] == "sync_region"
    assert payload["success"] is True
    assert payload["result"] == {"region": "eu", "limit": 10}

    metrics = runtime.metrics
    assert metrics is not None
    text = metrics.exposition(None)[0].decode()
    assert 'metatwin_functions_calls_total{function="sync_region",outcome="success"} 1.0' in text
    assert (
        'metatwin_functions_schedule_ticks_total{function="sync_region",result="run"} 1.0' in text
    )


async def test_a_tick_whose_previous_run_is_still_running_is_skipped_logged_and_counted(
    runtime: FunctionRuntime,
    clock: ManualClock,
    job: Job,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job.hold = True
    first = await clock.sleeping()
    clock.advance(first)
    await job.next_call()
    second = await clock.sleeping()
    clock.advance(second)
    third = await clock.sleeping()  # the timer went on to the next tick without a run
    assert third == second + timedelta(seconds=5)
    assert len(job.calls) == 1
    assert any(
        "tick 2026-01-01T00:00:15Z skipped, the run of tick 2026-01-01T00:00:10Z is still running"
        in record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING
    )
    (status,) = runtime.ready_payload()["schedules"]
    assert status["skipped"] == 1
    assert status["running"] is True
    metrics = runtime.metrics
    assert metrics is not None
    text = metrics.exposition(None)[0].decode()
    assert 'schedule_ticks_total{function="sync_region",result="skipped"} 1.0' in text

    job.release.set()
    job.hold = False
    await eventually(lambda: not runtime.ready_payload()["schedules"][0]["running"])
    clock.advance(third)
    await job.next_call()
    assert job.calls[1][0] == "schedule:sync_region:2026-01-01T00:00:20Z"


async def test_missed_ticks_are_not_run_late(
    runtime: FunctionRuntime, clock: ManualClock, job: Job, caplog: pytest.LogCaptureFixture
) -> None:
    first = await clock.sleeping()
    clock.advance(first + timedelta(seconds=17))  # a stall over three more ticks
    await job.next_call()
    following = await clock.sleeping()
    assert [call[0] for call in job.calls] == ["schedule:sync_region:2026-01-01T00:00:25Z"]
    assert following == datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)
    assert any("3 tick(s) before" in record.getMessage() for record in caplog.records)


async def test_a_replica_that_does_not_lead_runs_no_tick(
    runtime: FunctionRuntime, clock: ManualClock, job: Job
) -> None:
    scheduler = runtime.scheduler
    assert scheduler is not None
    leadership: Any = scheduler.leadership
    leadership.is_leader = False  # LocalLeadership: a plain attribute
    first = await clock.sleeping()
    clock.advance(first)
    second = await clock.sleeping()
    assert job.calls == []
    assert runtime.ready_payload()["schedules_leader"] is False
    leadership.is_leader = True
    clock.advance(second)
    await job.next_call()
    assert job.calls[0][0] == "schedule:sync_region:2026-01-01T00:00:15Z"


async def test_ready_shows_each_schedule_next_tick_and_leadership(
    runtime: FunctionRuntime, clock: ManualClock
) -> None:
    await clock.sleeping()
    ready = runtime.ready_payload()
    assert ready["schedules_leader"] is True
    assert ready["schedules"] == [
        {
            "function": "sync_region",
            "every": 5.0,
            "next_tick": "2026-01-01T00:00:10Z",
            "running": False,
            "runs": 0,
            "skipped": 0,
            "last_tick": None,
            "last_status": None,
        }
    ]


async def test_without_a_broker_one_warning_says_the_schedules_run_in_this_process(
    registry: FunctionRegistry, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    functions_runtime = FunctionRuntime(registry, settings(), schedule_clock=clock)
    await functions_runtime.start()
    await functions_runtime.stop()
    warnings = [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "schedules" in record.getMessage()
    ]
    assert len(warnings) == 1
    assert "this process runs them" in warnings[0]


async def test_no_warning_and_no_schedule_keys_without_schedules(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    functions = FunctionRegistry()
    functions.register(lambda: 1, name="plain")
    functions_runtime = FunctionRuntime(functions, settings(), schedule_clock=clock)
    await functions_runtime.start()
    ready = functions_runtime.ready_payload()
    await functions_runtime.stop()
    assert "schedules" not in ready
    assert "schedules_leader" not in ready
    assert functions_runtime.scheduler is None
    assert not [r for r in caplog.records if "schedules" in r.getMessage()]


async def test_ticks_run_without_credentials_when_auth_is_on_even_for_functions_with_roles(
    clock: ManualClock, job: Job
) -> None:
    functions = FunctionRegistry()
    functions.register(
        job, name="sync_region", every=5, schedule_args={"region": "eu"}, roles=["admin"]
    )
    functions_runtime = FunctionRuntime(
        functions, settings(auth_api_keys="k1:admin"), schedule_clock=clock
    )
    await functions_runtime.start()
    try:
        clock.advance(await clock.sleeping())
        await job.next_call()
    finally:
        await functions_runtime.stop()
    caller = job.calls[0][2].caller
    assert caller is not None
    assert caller.subject == "metatwin-functions:scheduler"


async def test_a_tick_is_traced_with_the_timer_trigger(
    registry: FunctionRegistry, clock: ManualClock, job: Job
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    functions_runtime = FunctionRuntime(registry, settings(), schedule_clock=clock)
    functions_runtime.guards.tracer = OtelCallTracer(provider, owned=True)
    await functions_runtime.start()
    try:
        clock.advance(await clock.sleeping())
        await job.next_call()
        await eventually(lambda: bool(exporter.get_finished_spans()))
    finally:
        await functions_runtime.stop()
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["faas.trigger"] == "timer"
    assert attributes["faas.invocation_id"] == "schedule:sync_region:2026-01-01T00:00:10Z"


async def test_a_drain_stops_the_ticks_and_a_tick_of_a_given_version_runs_that_version(
    clock: ManualClock,
) -> None:
    ran: list[str] = []
    functions = FunctionRegistry()
    functions.register(lambda: ran.append("1.0"), name="cleanup", version="1.0")
    functions.register(lambda: ran.append("0.9"), name="cleanup", version="0.9", every=60)
    functions_runtime = FunctionRuntime(functions, settings(), schedule_clock=clock)
    await functions_runtime.start()
    try:
        clock.advance(await clock.sleeping())
        await eventually(lambda: bool(ran))
        assert ran == ["0.9"]
        await functions_runtime.drain(1.0)
        assert functions_runtime.scheduler is not None
        assert functions_runtime.scheduler.status()[0]["runs"] == 1
        clock.advance(clock.now() + timedelta(minutes=5))
        await asyncio.sleep(0)
        assert ran == ["0.9"]
    finally:
        await functions_runtime.stop()


def test_schedules_without_a_broker_never_import_aio_pika() -> None:
    import subprocess
    import sys
    from pathlib import Path

    program = (
        "import asyncio, sys\n"
        "from metatwin_functions import FunctionRegistry, Settings\n"
        "from metatwin_functions.runtime import FunctionRuntime\n"
        "functions = FunctionRegistry()\n"
        "functions.register(lambda: 1, name='job', schedule='* * * * *')\n"
        "async def main():\n"
        "    runtime = FunctionRuntime(functions, Settings(_env_file=None))\n"
        "    await runtime.start()\n"
        "    assert runtime.scheduler is not None and runtime.scheduler.is_leader\n"
        "    await runtime.stop()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in ('aio_pika', 'aiormq') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.stdout.strip() == "[]"
