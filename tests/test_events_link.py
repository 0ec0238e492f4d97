"""BrokerLink and the aio-pika adapter without a broker: naming, refusals said plainly, bounds."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from aiormq.exceptions import InvalidFrameError, ProbableAuthenticationError
from pydantic import SecretStr

from metatwin_functions.events import BrokerLink, BrokerRefusedError, OutageLog, broker_address
from metatwin_functions.events.aiopika import AioPikaConnector, describe_refusal
from metatwin_functions.settings import Settings
from metatwin_functions.testing import InMemoryBroker

from .events_support import fast_settings


def _settings(**values: object) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        rabbitmq_hostname="127.0.0.1",
        rabbitmq_username="svc",
        rabbitmq_password="s3cret-pw",
        **values,
    )


def test_the_broker_is_named_host_port_vhost_without_credentials() -> None:
    settings = _settings(rabbitmq_vhost="/prod")
    assert broker_address(settings) == "127.0.0.1:5672/prod"
    link = BrokerLink(settings, logging.getLogger("t"), OutageLog(logging.getLogger("t")))
    assert link.address == "127.0.0.1:5672/prod"
    assert repr(link) == "BrokerLink('127.0.0.1:5672/prod', connected=False)"
    assert link.session is None


def test_wrong_password_is_said_as_authentication_refused_for_the_user() -> None:
    exc = ProbableAuthenticationError("ACCESS_REFUSED - Login was refused using PLAIN")
    refusal = describe_refusal(exc, _settings())
    assert isinstance(refusal, BrokerRefusedError)
    assert str(refusal) == "authentication refused for user svc"


def test_unknown_vhost_is_said_as_vhost_does_not_exist() -> None:
    exc = InvalidFrameError(
        "Expected one of ['Connection.OpenOk'], got <Connection.Close object at 0x7f36>"
    )
    refusal = describe_refusal(exc, _settings(rabbitmq_vhost="nope"))
    assert refusal is not None
    assert str(refusal).startswith("vhost nope does not exist")
    assert "0x" not in str(refusal)


def test_other_failures_are_not_refusals() -> None:
    assert describe_refusal(ConnectionRefusedError("refused"), _settings()) is None
    assert describe_refusal(InvalidFrameError("Expected Connection.Start"), _settings()) is None


def test_heartbeat_bound_follows_the_setting_and_is_none_when_off() -> None:
    log = logging.getLogger("t")
    on = BrokerLink(_settings(rabbitmq_heartbeat=7), log, OutageLog(log))
    off = BrokerLink(_settings(rabbitmq_heartbeat=0), log, OutageLog(log))
    assert on.detection_bound == 14
    assert off.detection_bound is None


async def test_aio_pika_connect_to_a_closed_port_fails_within_the_timeout() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    connector = AioPikaConnector(_settings(rabbitmq_port=port), lambda: 0.1)
    assert connector.address == f"127.0.0.1:{port}/"
    link = BrokerLink(_settings(), logging.getLogger("t"), OutageLog(logging.getLogger("t")))
    loop = asyncio.get_running_loop()
    before = loop.time()
    with pytest.raises(ConnectionError):
        await connector.open(link, timeout=2)
    assert loop.time() - before < 2


async def test_password_is_masked_should_a_reason_ever_carry_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = InMemoryBroker()
    broker.fail(refusal="the broker echoed s3cret-pw")
    settings = fast_settings(rabbitmq_password=SecretStr("s3cret-pw"))
    link = BrokerLink(
        settings, logging.getLogger("t.mask"), OutageLog(logging.getLogger("t")), broker
    )
    task = asyncio.create_task(link.connect())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    texts = [r.getMessage() for r in caplog.records if r.name == "t.mask"]
    assert texts
    assert all("s3cret-pw" not in text for text in texts)
    assert any("******" in text for text in texts)


async def test_a_connect_that_completes_after_close_closes_its_session() -> None:
    broker = InMemoryBroker()
    broker.delay(0.05)
    link = BrokerLink(
        fast_settings(), logging.getLogger("t"), OutageLog(logging.getLogger("t")), broker
    )
    task = asyncio.create_task(link.connect())
    await asyncio.sleep(0.01)
    closing = asyncio.create_task(link.close(1.0))
    await asyncio.wait_for(task, 1)
    await closing
    assert not link.connected
    assert broker.connections == 1
    assert broker._sessions == set(), "the late session was closed"
