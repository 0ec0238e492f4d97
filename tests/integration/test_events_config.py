"""Configuration edge cases: incomplete settings, disabled events, credentials kept out of logs."""

from __future__ import annotations

import asyncio
import logging
import traceback
import uuid
from typing import Any

import pytest

from metatwin_functions.events import EventsService
from metatwin_functions.registry import FunctionRegistry

try:
    from .tcp_proxy import ProxyMode
except ImportError:
    from tcp_proxy import ProxyMode  # type: ignore[no-redef]

SERVICE_LOGGER = "test.metatwin.events"


def _texts(logs: pytest.LogCaptureFixture) -> list[str]:
    texts = []
    for record in logs.records:
        texts.append(record.getMessage())
        if record.exc_info is not None:
            texts.append("".join(traceback.format_exception(*record.exc_info)))
    return texts


async def test_incomplete_configuration_warns_once_and_disables_events(
    make_settings: Any, make_service: Any, logs: pytest.LogCaptureFixture
) -> None:
    service = make_service(make_settings(rabbitmq_username=None, rabbitmq_password=None))
    assert not service.enabled
    await service.start()
    await service.start()
    assert not service.connected
    warnings = [r for r in logs.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "CRBR_RABBITMQ_USERNAME" in message
    assert "CRBR_RABBITMQ_PASSWORD" in message
    assert "CRBR_RABBITMQ_HOSTNAME" not in message
    await service.stop()
    await service.stop()


async def test_disabled_events_stay_quiet(
    make_settings: Any, make_service: Any, logs: pytest.LogCaptureFixture
) -> None:
    service = make_service(make_settings(enable_events=False))
    assert not service.enabled
    await service.start()
    assert not service.connected
    assert not [r for r in logs.records if r.levelno >= logging.WARNING]
    await service.stop()


@pytest.mark.broker
async def test_password_never_appears_in_logs_or_reprs(
    make_settings: Any,
    make_service: Any,
    proxy: Any,
    logs: pytest.LogCaptureFixture,
    registry: FunctionRegistry,
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    # Wrong password against the real broker: the authentication failure path.
    rejected = make_service(make_settings(rabbitmq_password=password, max_retries=1))
    # The same password through a refusing proxy: the unreachable-broker path.
    await proxy.set_mode(ProxyMode.REFUSE)
    unreachable = make_service(
        make_settings(rabbitmq_password=password, rabbitmq_port=proxy.port, max_retries=1)
    )
    await rejected.start()
    await unreachable.start()
    await asyncio.sleep(1.5)
    assert not rejected.connected
    assert not unreachable.connected

    texts = _texts(logs)
    assert any("unreachable" in text for text in texts), "the failures were logged"
    assert all(password not in text for text in texts)
    for service in (rejected, unreachable):
        assert password not in repr(service)
        assert password not in repr(service._settings)
    errors = [r for r in logs.records if r.name == SERVICE_LOGGER and r.levelno == logging.ERROR]
    assert len(errors) == 2, "one ERROR per service once max_retries retries failed"
    await rejected.stop()
    await unreachable.stop()
    assert all(password not in text for text in _texts(logs))


@pytest.mark.broker
async def test_password_stays_out_of_logs_on_a_working_connection(
    make_settings: Any,
    make_service: Any,
    sink: Any,
    logs: pytest.LogCaptureFixture,
    eventually: Any,
) -> None:
    service = make_service(make_settings())
    await service.start()
    assert await eventually(lambda: service.started_delivered, 5)
    await service.stop()
    # guest/guest: the password equals the user name, so look for it in URL form only.
    assert all("guest:guest" not in text for text in _texts(logs))
    assert "guest" not in repr(service)


def test_service_builds_without_an_event_loop(
    registry: FunctionRegistry, make_settings: Any
) -> None:
    service = EventsService(make_settings(), registry)
    assert service.enabled
    assert not service.connected
    assert "guest" not in repr(service)
