"""Two real replica processes on the real broker: one runs the schedules, each tick runs once,
and when the leader is killed (SIGKILL) the other takes over within 15 s."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from typing import Any

import aio_pika
import httpx
import pytest
from aiormq.exceptions import ChannelLockedResource
from conftest import BROKER_URL, EventSink
from server_process import ServerProcess
from tcp_proxy import ProxyMode, TcpProxy

from metatwin_functions.events import COMPLETED_ROUTING_KEY

pytestmark = pytest.mark.broker

SERVE = ("-m", "metatwin_functions", "serve", "tests/integration/scheduled_replica.py")


def replica_env(exchange_name: str, deployment_id: str) -> dict[str, str]:
    return {
        "CRBR_ENABLE_EVENTS": "true",
        "CRBR_DEPLOYMENT_ID": deployment_id,
        "CRBR_RABBITMQ_HOSTNAME": "127.0.0.1",
        "CRBR_RABBITMQ_USERNAME": "guest",
        "CRBR_RABBITMQ_PASSWORD": "guest",
        "CRBR_RABBITMQ_EXCHANGE": exchange_name,
        "CRBR_RETRY_DELAY": "0.2",
        "CRBR_CONNECTION_TIMEOUT": "2",
    }


async def ready(server: ServerProcess) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=2) as client:
        payload: dict[str, Any] = (await client.get("/ready")).json()
    return payload


async def leader_among(servers: list[ServerProcess], timeout: float) -> tuple[int, float]:
    """Index of the one replica that says it leads (waiting for it), and how long it took."""
    started = time.monotonic()
    for _ in range(int(timeout / 0.1)):
        leading = [i for i, s in enumerate(servers) if (await ready(s))["schedules_leader"]]
        assert len(leading) <= 1, "two replicas run the schedules"
        if leading:
            return leading[0], time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"no replica leads after {timeout} s")


def ticks(sink: EventSink) -> list[dict[str, Any]]:
    return [EventSink.body(m)["payload"] for m in sink.of_kind(COMPLETED_ROUTING_KEY)]


async def test_one_of_two_replicas_runs_each_tick_once_and_the_other_takes_over_when_killed(
    sink: EventSink, exchange_name: str, deployment_id: str
) -> None:
    await sink.bind_keys([COMPLETED_ROUTING_KEY])
    env = replica_env(exchange_name, deployment_id)
    servers = [ServerProcess(*SERVE, env=env), ServerProcess(*SERVE, env=env)]
    try:
        for server in servers:
            await asyncio.to_thread(server.wait_ready)
        leader, _ = await leader_among(servers, timeout=10)
        follower = 1 - leader
        await sink.wait_for(COMPLETED_ROUTING_KEY, count=4, timeout=10)

        # The election is the broker's: the queue of the contract is held exclusively.
        connection = await aio_pika.connect(BROKER_URL)
        try:
            channel = await connection.channel()
            with pytest.raises(ChannelLockedResource):
                await channel.declare_queue(
                    f"metatwin-functions.scheduler.{deployment_id}", exclusive=True
                )
        finally:
            await connection.close()

        before = ticks(sink)
        pids = {tick["result"]["pid"] for tick in before}
        assert pids == {servers[leader].process.pid}
        assert all(tick["trigger"] == "schedule" for tick in before)
        assert all(tick["functionName"] == "heartbeat_job" for tick in before)

        killed_at = time.monotonic()
        servers[leader].signal(signal.SIGKILL)
        servers[leader].wait(10)
        new_leader, _ = await leader_among([servers[follower]], timeout=15)
        takeover = time.monotonic() - killed_at
        assert new_leader == 0
        assert takeover < 15, f"takeover took {takeover:.1f} s"
        count = len(ticks(sink))
        await sink.wait_for(COMPLETED_ROUTING_KEY, count=count + 3, timeout=10)
        after = ticks(sink)[count:]
        assert {tick["result"]["pid"] for tick in after} == {servers[follower].process.pid}

        every = ticks(sink)
        ids = Counter(tick["executionId"] for tick in every)
        assert all(n == 1 for n in ids.values()), f"a tick ran twice: {ids}"
        assert all(tick["success"] for tick in every)
        lags = sorted(tick["result"]["lag_ms"] for tick in every)
        print(
            f"\ntakeover after SIGKILL: {takeover:.2f} s; ticks: {len(every)}; start lag ms: "
            f"min {lags[0]:.1f}, median {lags[len(lags) // 2]:.1f}, max {lags[-1]:.1f}"
        )
        assert lags[0] >= 0  # never before its tick
        assert lags[len(lags) // 2] < 250
        ready_after = await ready(servers[follower])
        (schedule,) = ready_after["schedules"]
        assert schedule["function"] == "heartbeat_job"
        assert schedule["every"] == 1.0
        assert schedule["next_tick"].endswith("Z")
    finally:
        for server in servers:
            server.stop()


async def test_a_leader_cut_off_by_a_partition_is_replaced_within_15_seconds(
    sink: EventSink, exchange_name: str, deployment_id: str, proxy: TcpProxy
) -> None:
    await sink.bind_keys([COMPLETED_ROUTING_KEY])
    env = replica_env(exchange_name, deployment_id)
    cut_off = ServerProcess(*SERVE, env={**env, "CRBR_RABBITMQ_PORT": str(proxy.port)})
    servers = [cut_off]
    try:
        await asyncio.to_thread(cut_off.wait_ready)
        await leader_among([cut_off], timeout=10)
        other = ServerProcess(*SERVE, env=env)
        servers.append(other)
        await asyncio.to_thread(other.wait_ready)

        partitioned_at = time.monotonic()
        await proxy.set_mode(ProxyMode.PARTITION)
        stepped_down = took_over = None
        for _ in range(200):
            now = time.monotonic() - partitioned_at
            if stepped_down is None and not (await ready(cut_off))["schedules_leader"]:
                stepped_down = now
            if took_over is None and (await ready(other))["schedules_leader"]:
                took_over = now
            if stepped_down is not None and took_over is not None:
                break
            await asyncio.sleep(0.1)
        print(
            f"\npartition: old leader stepped down after {stepped_down} s, "
            f"new leader after {took_over} s"
        )
        assert took_over is not None
        assert took_over < 15
        assert stepped_down is not None
        assert stepped_down <= took_over + 0.5, "two replicas led at once"
        count = len(ticks(sink))
        await sink.wait_for(COMPLETED_ROUTING_KEY, count=count + 2, timeout=10)
        assert ticks(sink)[-1]["result"]["pid"] == other.process.pid
    finally:
        for server in servers:
            server.stop()


async def test_a_draining_leader_gives_the_schedules_away_at_once(
    sink: EventSink, exchange_name: str, deployment_id: str
) -> None:
    env = replica_env(exchange_name, deployment_id)
    servers = [ServerProcess(*SERVE, env=env), ServerProcess(*SERVE, env=env)]
    try:
        for server in servers:
            await asyncio.to_thread(server.wait_ready)
        leader, _ = await leader_among(servers, timeout=10)
        follower = 1 - leader
        stopped_at = time.monotonic()
        servers[leader].signal(signal.SIGTERM)
        await leader_among([servers[follower]], timeout=10)
        handover = time.monotonic() - stopped_at
        assert await asyncio.to_thread(servers[leader].wait, 15) == 0
        print(f"\nhandover after SIGTERM: {handover:.2f} s")
        assert handover < 5
    finally:
        for server in servers:
            server.stop()
