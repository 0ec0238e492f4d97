"""Replica processes competing for one execution queue: sharing, SIGKILL and SIGTERM mid-call.

Real server processes (``metatwin-functions serve``) against the real broker; the test publishes
through its own connection and counts every reply by correlation id.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

try:
    from .amqp_caller import AmqpCaller
    from .server_process import ServerProcess
except ImportError:
    from amqp_caller import AmqpCaller  # type: ignore[no-redef]
    from server_process import ServerProcess  # type: ignore[no-redef]

pytestmark = pytest.mark.broker

Replica = Callable[[], ServerProcess]


@pytest.fixture
def queue_name(deployment_id: str) -> str:
    return f"metatwin-functions.exec.{deployment_id}"


@pytest.fixture
async def caller(
    broker: str, exchange_name: str, deployment_id: str, queue_name: str
) -> AsyncIterator[AmqpCaller]:
    caller = AmqpCaller(exchange_name, deployment_id, queue_name)
    await caller.open()
    yield caller
    await caller.close()


@pytest.fixture
def replica(broker: str, exchange_name: str, deployment_id: str) -> Iterator[Replica]:
    """Start replica processes consuming the test's queue (killed after the test)."""
    started: list[ServerProcess] = []

    def start() -> ServerProcess:
        server = ServerProcess(
            "-m",
            "metatwin_functions",
            "serve",
            "tests/integration/amqp_functions.py",
            env={
                "CRBR_DEPLOYMENT_ID": deployment_id,
                "CRBR_ENABLE_EVENTS": "true",
                "CRBR_AMQP_EXEC_ENABLED": "true",
                "CRBR_AMQP_EXEC_PREFETCH": "16",
                "CRBR_RABBITMQ_HOSTNAME": "127.0.0.1",
                "CRBR_RABBITMQ_USERNAME": "guest",
                "CRBR_RABBITMQ_PASSWORD": "guest",
                "CRBR_RABBITMQ_EXCHANGE": exchange_name,
                "CRBR_CONNECTION_TIMEOUT": "2",
                "CRBR_RETRY_DELAY": "0.2",
                "CRBR_FUNCTIONS_LOG_LEVEL": "WARNING",
            },
        )
        started.append(server)
        server.wait_ready()
        wait_consuming(server)
        return server

    yield start
    for server in started:
        server.stop()


def wait_consuming(server: ServerProcess, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready: dict[str, Any] = httpx.get(server.base_url + "/ready", timeout=2).json()
        if ready["amqp_exec"]["consuming"]:
            return
        time.sleep(0.05)
    raise AssertionError(f"replica not consuming after {timeout} s:\n{server.output}")


async def test_three_replicas_share_a_thousand_calls_each_answered_exactly_once(
    replica: Replica, caller: AmqpCaller
) -> None:
    replicas = await asyncio.gather(*(asyncio.to_thread(replica) for _ in range(3)))
    ids = await caller.call_many(1000, "work", {"seconds": 0.01})
    await caller.wait_answered(ids, timeout=60)
    await asyncio.sleep(0.3)  # a duplicate, if any, would arrive now

    counts = caller.replied_ids()
    assert set(counts) == set(ids)
    assert set(counts.values()) == {1}
    pids = {caller.body(m)["result"]["pid"] for m in caller.replies}
    assert pids == {r.process.pid for r in replicas}
    for server in replicas:
        server.signal(signal.SIGTERM)
    assert [await asyncio.to_thread(server.wait) for server in replicas] == [0, 0, 0]
    assert await caller.queue_state() == (0, 0)


async def test_a_replica_killed_mid_call_leaves_its_message_to_another(
    replica: Replica, caller: AmqpCaller
) -> None:
    replicas = await asyncio.gather(*(asyncio.to_thread(replica) for _ in range(2)))
    await caller.publish(
        {"executionId": "k-1", "functionName": "work", "args": {"seconds": 1.5}},
        correlation_id="k-1",
    )
    started = await asyncio.to_thread(first_to_print, replicas, "WORK-STARTED k-1")
    [other] = [r for r in replicas if r is not started]
    started.signal(signal.SIGKILL)

    await caller.wait_replies(1, timeout=20)
    await asyncio.sleep(0.3)
    [reply] = caller.replies
    assert caller.body(reply)["result"] == {"pid": other.process.pid}
    assert "WORK-STARTED k-1" in other.output
    other.signal(signal.SIGTERM)
    assert await asyncio.to_thread(other.wait) == 0
    assert await caller.queue_state() == (0, 0)


def first_to_print(servers: list[ServerProcess], text: str, timeout: float = 10.0) -> ServerProcess:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for server in servers:
            if any(text in line for line in list(server.lines)):
                return server
        time.sleep(0.01)
    raise AssertionError(f"no replica printed {text!r} within {timeout} s")


async def test_sigterm_mid_call_answers_and_acks_before_exiting(
    replica: Replica, caller: AmqpCaller
) -> None:
    server = await asyncio.to_thread(replica)
    await caller.publish(
        {"executionId": "s-1", "functionName": "work", "args": {"seconds": 1.5}},
        correlation_id="s-1",
    )
    await asyncio.to_thread(server.wait_for_line, "WORK-STARTED s-1")
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait, 15) == 0

    [reply] = caller.replies
    assert caller.body(reply)["result"] == {"pid": server.process.pid}
    assert await caller.queue_state() == (0, 0)
