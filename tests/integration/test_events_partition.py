"""A partition: the broker stops answering but nothing closes the connection.

The `TcpProxy` holds every byte in both directions and sends no RST, so only heartbeats, the
liveness probe or a missing publisher confirmation can reveal it. The tests use a one-second
heartbeat; the bound for the default settings is computed from them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from metatwin_functions.events import (
    HEALTHY_ROUTING_KEY,
    STARTED_ROUTING_KEY,
    BrokerLink,
    OutageLog,
)
from metatwin_functions.settings import Settings

try:
    from .tcp_proxy import ProxyMode
except ImportError:
    from tcp_proxy import ProxyMode  # type: ignore[no-redef]

pytestmark = pytest.mark.broker

SERVICE_LOGGER = "test.metatwin.events"


def _messages(logs: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in logs.records if r.name == SERVICE_LOGGER and r.levelno == level]


async def _until(predicate: Any, timeout: float) -> float:
    """Seconds until ``predicate()`` holds (fails the test after ``timeout``)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        assert loop.time() - start < timeout, "did not happen in time"
        await asyncio.sleep(0.01)
    return loop.time() - start


async def test_partition_turns_connected_false_within_two_heartbeats_then_beats_resume(
    make_settings: Any, make_service: Any, sink: Any, proxy: Any, logs: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        rabbitmq_port=proxy.port, rabbitmq_heartbeat=1, connection_timeout=5, retry_delay=0.2
    )
    service = make_service(settings)
    await service.start()
    await sink.wait_for(HEALTHY_ROUTING_KEY, timeout=5)
    assert service.connected

    await proxy.set_mode(ProxyMode.PARTITION)
    detected = await _until(lambda: not service.connected, timeout=10)
    print(f"partition -> connected false: {detected:.2f} s (heartbeat 1 s)")
    # Two heartbeats at most (half a heartbeat of quiet, half of wake-up, one of probe).
    assert detected <= 2 * settings.rabbitmq_heartbeat + 0.5
    beats = len(sink.of_kind(HEALTHY_ROUTING_KEY))
    await asyncio.sleep(1.5)
    assert not service.connected, "stays false while the partition lasts"
    assert len(sink.of_kind(HEALTHY_ROUTING_KEY)) == beats

    await proxy.set_mode(ProxyMode.FORWARD)
    back = await _until(lambda: service.connected, timeout=15)
    print(f"partition healed -> connected again: {back:.2f} s")
    await sink.wait_for(HEALTHY_ROUTING_KEY, count=beats + 1, timeout=5)
    await asyncio.sleep(1.2)  # a further beat: no second outage is reported
    warnings = _messages(logs, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert "stopped answering" in warnings[0]
    assert len([m for m in _messages(logs, logging.INFO) if "is back" in m]) == 1
    assert len(sink.of_kind(STARTED_ROUTING_KEY)) == 1


async def test_unconfirmed_beat_reveals_a_partition_without_heartbeats(
    make_settings: Any, make_service: Any, sink: Any, proxy: Any, logs: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        rabbitmq_port=proxy.port, rabbitmq_heartbeat=0, connection_timeout=1, retry_delay=0.2
    )
    service = make_service(settings)
    await service.start()
    await sink.wait_for(HEALTHY_ROUTING_KEY, timeout=5)

    await proxy.set_mode(ProxyMode.PARTITION)
    # The next beat (interval 1 s) waits 1 s for its confirmation, then marks the link down.
    detected = await _until(lambda: not service.connected, timeout=10)
    assert detected <= settings.health_check_interval + settings.connection_timeout + 0.5
    warnings = _messages(logs, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert "no confirmation within 1 s" in warnings[0]

    await proxy.set_mode(ProxyMode.FORWARD)
    await _until(lambda: service.connected, timeout=15)
    beats = len(sink.of_kind(HEALTHY_ROUTING_KEY))
    await sink.wait_for(HEALTHY_ROUTING_KEY, count=beats + 1, timeout=5)


def test_default_settings_reveal_a_partition_within_30_seconds() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.rabbitmq_heartbeat == 10
    link = BrokerLink(settings, logging.getLogger("test"), OutageLog(logging.getLogger("test")))
    bound = link.detection_bound
    assert bound is not None
    assert bound <= 30
    # An unconfirmed publish also counts, and is bounded by the publish timeout.
    assert settings.connection_timeout <= 30
