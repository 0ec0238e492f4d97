"""The events as deployed: a real server process reporting to the real broker."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
from conftest import EventSink
from server_process import ServerProcess, free_port

from metatwin_functions.events import (
    COMPLETED_PAYLOAD_TYPE,
    COMPLETED_ROUTING_KEY,
    HEALTHY_PAYLOAD_TYPE,
    HEALTHY_ROUTING_KEY,
    STARTED_PAYLOAD_TYPE,
    STARTED_ROUTING_KEY,
)

SERVE_EXAMPLES = ("-m", "metatwin_functions", "serve", "examples.simple_function")


def broker_env(exchange_name: str, deployment_id: str, port: int = 5672) -> dict[str, str]:
    return {
        "CRBR_ENABLE_EVENTS": "true",
        "CRBR_DEPLOYMENT_ID": deployment_id,
        "CRBR_RABBITMQ_HOSTNAME": "127.0.0.1",
        "CRBR_RABBITMQ_PORT": str(port),
        "CRBR_RABBITMQ_USERNAME": "guest",
        "CRBR_RABBITMQ_PASSWORD": "guest",
        "CRBR_RABBITMQ_EXCHANGE": exchange_name,
        "CRBR_HEALTH_CHECK_INTERVAL": "1",
        "CRBR_RETRY_DELAY": "0.2",
        "CRBR_CONNECTION_TIMEOUT": "2",
    }


async def test_served_examples_announce_themselves_and_beat(
    sink: EventSink, exchange_name: str, deployment_id: str
) -> None:
    server = ServerProcess(*SERVE_EXAMPLES, env=broker_env(exchange_name, deployment_id))
    try:
        await asyncio.to_thread(server.wait_ready)
        await sink.wait_for(STARTED_ROUTING_KEY, timeout=10)
        await sink.wait_for(HEALTHY_ROUTING_KEY, count=2, timeout=10)
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            ready = (await client.get("/ready")).json()

        started = sink.of_kind(STARTED_ROUTING_KEY)[0]
        envelope = EventSink.body(started)
        assert envelope["payloadType"] == STARTED_PAYLOAD_TYPE
        assert envelope["payload"]["deploymentId"] == deployment_id
        functions = {f["name"]: f for f in envelope["payload"]["functions"]}
        assert functions["count_invoices"] == {
            "name": "count_invoices",
            "description": "Counts all invoices",
            "args": [
                {"name": "includePaid", "type": "bool", "required": True, "description": None}
            ],
            "returnType": "int",
        }
        assert started.content_type == "application/json"
        beat = EventSink.body(sink.of_kind(HEALTHY_ROUTING_KEY)[0])
        assert beat["payloadType"] == HEALTHY_PAYLOAD_TYPE
        assert beat["payload"]["functionNames"] == list(functions)
        assert (ready["rabbitmq_enabled"], ready["rabbitmq_connected"]) == (True, True)

        server.signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait) == 0
    finally:
        server.stop()
    assert "guest" not in server.output.replace('"guest"', "")


async def test_unreachable_broker_never_delays_serving(deployment_id: str) -> None:
    nothing_listens = free_port()
    server = ServerProcess(
        *SERVE_EXAMPLES, env=broker_env("unused", deployment_id, port=nothing_listens)
    )
    try:
        started = time.perf_counter()
        await asyncio.to_thread(server.wait_ready)
        ready_after = time.perf_counter() - started
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            ready = (await client.get("/ready")).json()
            answer = await client.post(
                "/exec",
                json={"executionId": "x", "functionName": "add_numbers", "args": {"a": 1, "b": 2}},
            )
        await asyncio.sleep(1.5)  # several connect attempts fail meanwhile
        stop_started = time.perf_counter()
        server.signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait) == 0
        stop_took = time.perf_counter() - stop_started
    finally:
        server.stop()

    assert (ready["rabbitmq_enabled"], ready["rabbitmq_connected"]) == (True, False)
    assert answer.json()["result"] == 3
    # Bounded waits, not benchmarks: serving must not wait for connect attempts (2 s each).
    assert ready_after < 10
    assert stop_took < 8
    records = [json.loads(line) for line in server.lines if line.startswith("{")]
    warnings = [r for r in records if r["level"] in {"WARNING", "ERROR"}]
    assert len(warnings) == 1, warnings
    assert "Traceback" not in server.output


async def test_http_calls_publish_the_completed_event_when_asked(
    sink: EventSink, exchange_name: str, deployment_id: str
) -> None:
    await sink.bind_keys([COMPLETED_ROUTING_KEY])
    env = broker_env(exchange_name, deployment_id) | {"CRBR_PUBLISH_HTTP_EXECUTIONS": "true"}
    server = ServerProcess(*SERVE_EXAMPLES, env=env)
    try:
        await asyncio.to_thread(server.wait_ready)
        await sink.wait_for(STARTED_ROUTING_KEY, timeout=10)
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            answer = await client.post(
                "/exec",
                json={
                    "executionId": "h-1",
                    "functionName": "add_numbers",
                    "args": {"a": 5, "b": 3},
                },
            )
        assert answer.json()["result"] == 8
        await sink.wait_for(COMPLETED_ROUTING_KEY, timeout=10)
    finally:
        server.stop()
    envelope = EventSink.body(sink.of_kind(COMPLETED_ROUTING_KEY)[0])
    assert envelope["payloadType"] == COMPLETED_PAYLOAD_TYPE
    payload = envelope["payload"]
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
    assert (payload["executionId"], payload["trigger"], payload["result"]) == ("h-1", "http", 8)
    assert payload["metadata"]["executionId"] == "h-1"
