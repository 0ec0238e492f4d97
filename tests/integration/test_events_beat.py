"""The beat's cadence and the started event's once-per-process rule."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from metatwin_functions.events import HEALTHY_ROUTING_KEY, STARTED_ROUTING_KEY, backoff_delay
from metatwin_functions.events.connection import MAX_BACKOFF

pytestmark = pytest.mark.broker


async def test_beats_follow_the_interval_and_started_is_sent_once(
    make_settings: Any, make_service: Any, sink: Any
) -> None:
    service = make_service(make_settings(health_check_interval=1))
    loop = asyncio.get_running_loop()
    await service.start()
    await sink.wait_for(STARTED_ROUTING_KEY)
    started_at = loop.time()
    await sink.wait_for(HEALTHY_ROUTING_KEY)
    assert loop.time() - started_at < 0.9, "the first beat follows the started event promptly"

    await asyncio.sleep(3.3)
    beats = len(sink.of_kind(HEALTHY_ROUTING_KEY))
    # One at once, then one a second: 4 in ~3.3 s; generous bounds against a loaded machine.
    assert 3 <= beats <= 5
    assert len(sink.of_kind(STARTED_ROUTING_KEY)) == 1
    assert service.beats_delivered >= beats


async def test_start_returns_at_once_and_connected_becomes_true(
    make_settings: Any, make_service: Any, sink: Any, eventually: Any
) -> None:
    service = make_service(make_settings())
    loop = asyncio.get_running_loop()
    before = loop.time()
    await service.start()
    assert loop.time() - before < 0.05
    assert service.enabled
    assert await eventually(lambda: service.connected, 5)


async def test_stop_is_idempotent_and_closes_the_connection(
    make_settings: Any, make_service: Any, sink: Any, eventually: Any
) -> None:
    service = make_service(make_settings())
    await service.start()
    assert await eventually(lambda: service.connected, 5)
    await service.stop()
    assert not service.connected
    await service.stop()
    count = len(sink.messages)
    await asyncio.sleep(1.2)
    assert len(sink.messages) == count, "no beat after stop"


def test_backoff_doubles_from_retry_delay_caps_at_60_s_and_jitters() -> None:
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (8, 60.0), (200, 60.0)]:
        delays = {backoff_delay(attempt, 0.5) for _ in range(50)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1, "jittered"
    assert backoff_delay(1, 5.0) <= MAX_BACKOFF
