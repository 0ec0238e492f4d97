"""EventsService against the in-memory broker: cadence, retries, outages, partitions, stop."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from metatwin_functions.events import (
    HEALTHY_PAYLOAD_TYPE,
    STARTED_PAYLOAD_TYPE,
    STARTED_ROUTING_KEY,
    STOP_TIMEOUT,
)
from metatwin_functions.testing import InMemoryBroker

from .events_support import fast_settings, make_service, messages, until


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


async def test_started_goes_first_once_then_beats_follow_the_interval() -> None:
    broker = InMemoryBroker()
    service = make_service(broker)
    await service.start()
    beats = await broker.wait_for(HEALTHY_PAYLOAD_TYPE, count=5)
    await service.stop()

    assert broker.published[0].routing_key == STARTED_ROUTING_KEY
    assert len(broker.of_type(STARTED_PAYLOAD_TYPE)) == 1
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(beats)]
    assert all(0.035 <= gap <= 0.2 for gap in gaps), gaps  # every 0.05 s, no burst
    assert len({beat.correlation_id for beat in beats}) == len(beats)
    assert beats[0].payload == {"deploymentId": "dep-unit", "functionNames": ["add_numbers"]}
    assert service.beats_delivered >= 5
    assert service.started_delivered


async def test_refused_started_event_is_retried_with_its_correlation_id_beside_the_beat(
    logs: pytest.LogCaptureFixture,
) -> None:
    broker = InMemoryBroker(bindings=["routing.event.*.function.deployment.healthy.#"])
    service = make_service(broker)
    await service.start()
    await broker.wait_for(HEALTHY_PAYLOAD_TYPE, count=3)  # beats go out while started is stuck
    await until(lambda: len(broker.returned) >= 3)
    assert not service.started_delivered

    broker.bind("routing.event.metatwin-functions.function.deployment.started.#")
    [started] = await broker.wait_for(STARTED_PAYLOAD_TYPE)
    await service.stop()
    returned_ids = {event.correlation_id for event in broker.returned}
    assert returned_ids == {started.correlation_id}, "one event, retried: one correlation id"
    assert service.started_delivered
    warnings = messages(logs.records, logging.WARNING)
    assert warnings == [
        f"RabbitMQ returned the started event: no queue is bound to {STARTED_ROUTING_KEY!r} "
        "(retrying until a queue is bound)"
    ]


async def test_outage_pauses_beats_with_one_warning_and_reconnect_resumes_them(
    logs: pytest.LogCaptureFixture,
) -> None:
    broker = InMemoryBroker()
    service = make_service(broker)
    await service.start()
    await broker.wait_for(HEALTHY_PAYLOAD_TYPE)

    broker.fail()
    assert not service.connected, "a closed connection turns connected false at once"
    during = len(broker.of_type(HEALTHY_PAYLOAD_TYPE))
    await asyncio.sleep(0.2)  # four intervals
    assert len(broker.of_type(HEALTHY_PAYLOAD_TYPE)) == during

    broker.recover()
    await broker.wait_for(HEALTHY_PAYLOAD_TYPE, count=during + 2)
    assert service.connected
    await service.stop()
    assert messages(logs.records, logging.WARNING) == [
        "Lost the connection to RabbitMQ in-memory (ConnectionResetError: in-memory broker went "
        "down); events are paused until it is back"
    ]
    assert (
        messages(logs.records, logging.INFO).count("RabbitMQ in-memory is back; events resume") == 1
    )
    assert len(broker.of_type(STARTED_PAYLOAD_TYPE)) == 1


async def test_broker_down_at_start_warns_once_errors_once_then_connects() -> None:
    broker = InMemoryBroker()
    broker.fail()
    service = make_service(broker)
    records: list[logging.LogRecord] = []
    handler = _ListHandler(records)
    logging.getLogger("test.metatwin.events.unit").addHandler(handler)
    try:
        await service.start()
        await until(lambda: any(r.levelno == logging.ERROR for r in records))
        assert not service.connected
        broker.recover()
        await broker.wait_for(STARTED_PAYLOAD_TYPE)
        await service.stop()
    finally:
        logging.getLogger("test.metatwin.events.unit").removeHandler(handler)
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    errors = [r.getMessage() for r in records if r.levelno == logging.ERROR]
    assert len(warnings) == 1
    assert "unreachable (ConnectionRefusedError" in warnings[0]
    assert len(errors) == 1
    assert "still unreachable after 3 attempts" in errors[0]


async def test_refusal_is_one_error_and_retries_continue_until_accepted(
    logs: pytest.LogCaptureFixture,
) -> None:
    broker = InMemoryBroker()
    broker.fail(refusal="authentication refused for user guest")
    service = make_service(broker)
    await service.start()
    await until(lambda: sum("refused again" in m for m in messages(logs.records, 10)) >= 3)
    broker.recover()
    await broker.wait_for(STARTED_PAYLOAD_TYPE)
    await service.stop()
    assert messages(logs.records, logging.ERROR) == [
        "RabbitMQ in-memory refused the connection: authentication refused for user guest; "
        "events stay paused, retrying in the background"
    ]
    assert messages(logs.records, logging.WARNING) == []


async def test_partition_is_detected_by_the_probe_within_two_heartbeats(
    logs: pytest.LogCaptureFixture,
) -> None:
    # Heartbeat 0.1 s (compressed) and a beat interval far away: only the probe can notice.
    settings = fast_settings(rabbitmq_heartbeat=0.1, health_check_interval=60)
    broker = InMemoryBroker()
    service = make_service(broker, settings)
    await service.start()
    await broker.wait_for(HEALTHY_PAYLOAD_TYPE)
    await until(lambda: broker.connections == 1)

    broker.drop()
    detected = await until(lambda: not service.connected)
    assert detected <= 2 * 0.1 + 0.05
    broker.recover()
    await until(lambda: service.connected)
    await service.stop()
    assert broker.connections == 2, "the link reconnected from scratch"
    assert messages(logs.records, logging.WARNING) == [
        "RabbitMQ in-memory stopped answering (no answer to a probe within 0.1 s); events are "
        "paused until it is back"
    ]
    assert (
        messages(logs.records, logging.INFO).count("RabbitMQ in-memory is back; events resume") == 1
    )


async def test_unconfirmed_beat_marks_the_link_down_without_heartbeats(
    logs: pytest.LogCaptureFixture,
) -> None:
    broker = InMemoryBroker()
    service = make_service(broker, fast_settings(connection_timeout=0.05))
    await service.start()
    await broker.wait_for(HEALTHY_PAYLOAD_TYPE)
    broker.drop()
    await until(lambda: not service.connected, timeout=1)
    assert messages(logs.records, logging.WARNING) == [
        "RabbitMQ in-memory stopped answering (no confirmation within 0.05 s); events are "
        "paused until it is back"
    ]
    broker.recover()
    await until(lambda: service.connected)
    await service.stop()


async def test_slow_confirmations_within_the_timeout_are_no_outage(
    logs: pytest.LogCaptureFixture,
) -> None:
    broker = InMemoryBroker()
    broker.delay(0.02)
    service = make_service(broker, fast_settings(rabbitmq_heartbeat=0.1))
    await service.start()
    await broker.wait_for(HEALTHY_PAYLOAD_TYPE, count=4)
    await service.stop()
    assert messages(logs.records, logging.WARNING) == []


async def test_nacked_beat_is_one_warning_until_a_beat_is_confirmed_again(
    logs: pytest.LogCaptureFixture,
) -> None:
    broker = InMemoryBroker()
    service = make_service(broker)
    await service.start()
    await broker.wait_for(HEALTHY_PAYLOAD_TYPE)
    broker.nack()
    await asyncio.sleep(0.2)
    broker.nack(False)
    count = len(broker.of_type(HEALTHY_PAYLOAD_TYPE))
    await broker.wait_for(HEALTHY_PAYLOAD_TYPE, count=count + 1)
    await service.stop()
    warnings = messages(logs.records, logging.WARNING)
    assert len(warnings) == 1
    assert (
        "did not confirm the healthy beat (the broker refused the message (nack))" in (warnings[0])
    )
    assert "RabbitMQ accepts healthy beats again" in messages(logs.records, logging.INFO)


async def test_unroutable_beat_is_warned_about_once() -> None:
    broker = InMemoryBroker(bindings=["routing.event.*.*.deployment.started"])
    records: list[logging.LogRecord] = []
    handler = _ListHandler(records)
    logging.getLogger("test.metatwin.events.unit").addHandler(handler)
    service = make_service(broker)
    try:
        await service.start()
        await until(lambda: len(broker.returned) >= 3)
        await service.stop()
    finally:
        logging.getLogger("test.metatwin.events.unit").removeHandler(handler)
    returned = [r.getMessage() for r in records if "returned the healthy beat" in r.getMessage()]
    assert len(returned) == 1
    assert service.started_delivered


@pytest.mark.parametrize("misbehaviour", ["fail", "drop"])
async def test_stop_during_an_outage_is_quick(misbehaviour: str) -> None:
    broker = InMemoryBroker()
    service = make_service(broker, fast_settings(connection_timeout=1, rabbitmq_heartbeat=0.1))
    await service.start()
    await broker.wait_for(HEALTHY_PAYLOAD_TYPE)
    getattr(broker, misbehaviour)()
    await until(lambda: not service.connected)
    loop = asyncio.get_running_loop()
    before = loop.time()
    await service.stop()
    assert loop.time() - before < 0.5
    assert not service.connected
    await service.stop()  # idempotent


async def test_stop_while_the_first_connect_hangs_is_bounded() -> None:
    broker = InMemoryBroker()
    broker.drop()
    service = make_service(broker, fast_settings(connection_timeout=3))
    await service.start()
    await asyncio.sleep(0.02)
    loop = asyncio.get_running_loop()
    before = loop.time()
    await service.stop()
    assert loop.time() - before < STOP_TIMEOUT / 2 + 0.2
    assert not service.started_delivered
    assert broker.connections == 0


async def test_start_is_idempotent_and_does_nothing_after_stop() -> None:
    broker = InMemoryBroker()
    service = make_service(broker)
    await service.start()
    await service.start()
    await broker.wait_for(STARTED_PAYLOAD_TYPE)
    await service.stop()
    await service.start()
    await asyncio.sleep(0.1)
    assert len(broker.of_type(STARTED_PAYLOAD_TYPE)) == 1
    assert broker.connections == 1
    assert "connected=False" in repr(service)
    assert "in-memory" in repr(service)


async def test_disabled_or_incomplete_events_publish_nothing(
    logs: pytest.LogCaptureFixture,
) -> None:
    broker = InMemoryBroker()
    disabled = make_service(broker, fast_settings(enable_events=False))
    assert not disabled.enabled
    await disabled.start()
    assert "RabbitMQ events are disabled (CRBR_ENABLE_EVENTS=false)" in messages(
        logs.records, logging.INFO
    )
    await disabled.stop()
    assert broker.connections == 0
    assert disabled.last_healthy_timestamp is None
    assert disabled.beats_delivered == 0


async def test_interval_the_platform_would_call_unhealthy_is_warned_about(
    logs: pytest.LogCaptureFixture,
) -> None:
    service = make_service(InMemoryBroker(), fast_settings(health_check_interval=300))
    await service.start()
    await service.stop()
    assert any("UNHEALTHY" in m for m in messages(logs.records, logging.WARNING))


async def test_the_same_connection_answering_again_is_used_without_a_reconnect() -> None:
    broker = InMemoryBroker()
    service = make_service(broker, fast_settings(rabbitmq_heartbeat=0.1, health_check_interval=60))
    await service.start()
    await broker.wait_for(HEALTHY_PAYLOAD_TYPE)
    link = service._link
    assert link is not None
    session = link.session
    assert session is not None
    # A reset that could not close the connection: the watchdog's next probe answers.
    link.suspect("test", since=link.clock())
    await until(lambda: service.connected)
    await service.stop()


class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
