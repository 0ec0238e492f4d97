"""A broker that answers and refuses: said plainly, once, and never with the password."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.broker

SERVICE_LOGGER = "test.metatwin.events"


def _texts(logs: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in logs.records if r.name == SERVICE_LOGGER]


async def _attempts(logs: pytest.LogCaptureFixture, count: int, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while sum("failed" in t and "attempt" in t for t in _texts(logs)) < count:
        assert loop.time() < deadline, "the retries stopped"
        await asyncio.sleep(0.02)


async def test_wrong_password_is_one_error_naming_the_user_not_the_password(
    make_settings: Any, make_service: Any, logs: pytest.LogCaptureFixture
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    service = make_service(make_settings(rabbitmq_password=password, max_retries=1))
    await service.start()
    await _attempts(logs, 3)  # retries go on: the refusal is said once, not per attempt
    assert not service.connected

    texts = _texts(logs)
    refused = [t for t in texts if "authentication refused for user guest" in t]
    assert len(refused) == 1, texts
    errors = [r for r in logs.records if r.name == SERVICE_LOGGER and r.levelno >= logging.WARNING]
    assert [r.levelno for r in errors] == [logging.ERROR], [r.getMessage() for r in errors]
    assert not any("unreachable" in t or "ProbableAuthenticationError" in t for t in texts)
    assert all(password not in r.getMessage() for r in logs.records)


async def test_unknown_vhost_is_one_error_naming_the_vhost(
    make_settings: Any, make_service: Any, logs: pytest.LogCaptureFixture
) -> None:
    vhost = f"no-such-vhost-{uuid.uuid4().hex[:8]}"
    service = make_service(make_settings(rabbitmq_vhost=vhost, max_retries=1))
    await service.start()
    await _attempts(logs, 3)
    assert not service.connected

    texts = _texts(logs)
    refused = [t for t in texts if f"vhost {vhost} does not exist" in t]
    assert len(refused) == 1, texts
    errors = [r for r in logs.records if r.name == SERVICE_LOGGER and r.levelno >= logging.WARNING]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert not any("InvalidFrameError" in t or "object at 0x" in t for t in texts)
