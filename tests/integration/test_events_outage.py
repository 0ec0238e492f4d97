"""A broker that is down at start, cut mid-run, or black-holed: nothing blocks, events resume.

The shared broker is never stopped: the service talks to it through a `TcpProxy` the test drives.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from metatwin_functions.events import HEALTHY_ROUTING_KEY, STARTED_ROUTING_KEY, STOP_TIMEOUT

try:
    from .tcp_proxy import ProxyMode
except ImportError:
    from tcp_proxy import ProxyMode  # type: ignore[no-redef]

pytestmark = pytest.mark.broker

SERVICE_LOGGER = "test.metatwin.events"


def _service_records(logs: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in logs.records if r.name == SERVICE_LOGGER and r.levelno == level]


async def test_broker_down_at_start_then_up_delivers_the_started_event(
    make_settings: Any, make_service: Any, sink: Any, proxy: Any, logs: pytest.LogCaptureFixture
) -> None:
    await proxy.set_mode(ProxyMode.REFUSE)
    service = make_service(make_settings(rabbitmq_port=proxy.port, retry_delay=0.1, max_retries=20))
    loop = asyncio.get_running_loop()
    before = loop.time()
    await service.start()
    assert loop.time() - before < 0.05, "start() never waits on the broker"

    await asyncio.sleep(1.0)
    assert not service.connected
    assert sink.messages == []
    assert len(_service_records(logs, logging.WARNING)) == 1  # first failure only; then DEBUG

    await proxy.set_mode(ProxyMode.FORWARD)
    back = loop.time()
    await sink.wait_for(STARTED_ROUTING_KEY, timeout=5)
    elapsed = loop.time() - back
    print(f"broker back -> started event delivered: {elapsed:.3f} s")
    # Back-off after ~1 s of failures is at most 0.8 s (0.1 doubling, jittered); plus publish.
    assert elapsed < 4.0
    assert service.connected
    await sink.wait_for(HEALTHY_ROUTING_KEY, timeout=3)


async def test_broker_cut_mid_run_pauses_beats_with_one_warning_then_resumes(
    make_settings: Any,
    make_service: Any,
    sink: Any,
    proxy: Any,
    logs: pytest.LogCaptureFixture,
    eventually: Any,
) -> None:
    service = make_service(make_settings(rabbitmq_port=proxy.port, retry_delay=0.2))
    await service.start()
    await sink.wait_for(HEALTHY_ROUTING_KEY, timeout=5)
    assert service.connected

    await proxy.set_mode(ProxyMode.REFUSE)
    assert await eventually(lambda: not service.connected, 2), "connected turns False at once"
    during = len(sink.of_kind(HEALTHY_ROUTING_KEY))
    await asyncio.sleep(2.5)  # at least two beats fall into the outage
    assert not service.connected
    assert len(sink.of_kind(HEALTHY_ROUTING_KEY)) == during
    warnings = _service_records(logs, logging.WARNING)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "Lost the connection" in warnings[0].getMessage()
    assert all(r.exc_info is None for r in logs.records if r.name == SERVICE_LOGGER)

    await proxy.set_mode(ProxyMode.FORWARD)
    assert await eventually(lambda: service.connected, 5), "connected turns True again"
    await sink.wait_for(HEALTHY_ROUTING_KEY, count=during + 1, timeout=3)
    infos = [r.getMessage() for r in _service_records(logs, logging.INFO)]
    assert any("is back" in message for message in infos)
    assert len(_service_records(logs, logging.WARNING)) == 1
    assert len(sink.of_kind(STARTED_ROUTING_KEY)) == 1, "started is not repeated once delivered"


async def test_stop_during_an_outage_finishes_in_bounded_time(
    make_settings: Any, make_service: Any, sink: Any, proxy: Any, eventually: Any
) -> None:
    service = make_service(make_settings(rabbitmq_port=proxy.port, retry_delay=0.2))
    await service.start()
    await sink.wait_for(STARTED_ROUTING_KEY, timeout=5)
    await proxy.set_mode(ProxyMode.BLACKHOLE)  # reconnects hang instead of failing
    assert await eventually(lambda: not service.connected, 2)
    await asyncio.sleep(0.5)

    loop = asyncio.get_running_loop()
    before = loop.time()
    await service.stop()
    assert loop.time() - before < STOP_TIMEOUT + 0.5
    assert not service.connected


@pytest.mark.parametrize("mode", [ProxyMode.REFUSE, ProxyMode.BLACKHOLE])
async def test_stop_while_the_first_connect_is_retrying_is_bounded(
    make_settings: Any, make_service: Any, proxy: Any, mode: ProxyMode
) -> None:
    await proxy.set_mode(mode)
    service = make_service(make_settings(rabbitmq_port=proxy.port, connection_timeout=5))
    await service.start()
    await asyncio.sleep(0.4)  # mid-attempt (black hole) or mid-back-off (refused)

    loop = asyncio.get_running_loop()
    before = loop.time()
    await service.stop()
    assert loop.time() - before < 1.0
    assert not service.connected
    assert not service.started_delivered


async def test_black_holed_broker_attempts_are_bounded_by_connection_timeout(
    make_settings: Any, make_service: Any, sink: Any, proxy: Any
) -> None:
    await proxy.set_mode(ProxyMode.BLACKHOLE)
    service = make_service(
        make_settings(rabbitmq_port=proxy.port, connection_timeout=0.5, retry_delay=0.1)
    )
    await service.start()
    await asyncio.sleep(0.8)  # the first attempt has timed out by now, the second is running
    await proxy.set_mode(ProxyMode.FORWARD)  # cuts the hanging attempt; the next one succeeds
    await sink.wait_for(STARTED_ROUTING_KEY, timeout=5)
    assert service.connected
