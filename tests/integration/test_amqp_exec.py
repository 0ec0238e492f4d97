"""Execution over RabbitMQ against the real broker, with the consumer in this process.

Each test has its own exchange, deployment id and execution queue (deleted afterwards); replies
come to the test's own exclusive queue and dead letters are read from a private queue bound to
the shared dead-letter exchange, filtered by the queue they died in.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import pytest

from metatwin_functions import FunctionRegistry, Settings
from metatwin_functions.amqp import execute_routing_key, queue_arguments
from metatwin_functions.events import COMPLETED_PAYLOAD_TYPE, COMPLETED_ROUTING_KEY
from metatwin_functions.runtime import FunctionRuntime

try:
    from .amqp_caller import BROKER_URL, AmqpCaller
    from .conftest import EventSink
    from .tcp_proxy import ProxyMode, TcpProxy
except ImportError:
    from amqp_caller import BROKER_URL, AmqpCaller  # type: ignore[no-redef]
    from conftest import EventSink  # type: ignore[no-redef]
    from tcp_proxy import ProxyMode, TcpProxy  # type: ignore[no-redef]

pytestmark = pytest.mark.broker

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def exec_registry() -> FunctionRegistry:
    registry = FunctionRegistry()

    @registry.function()
    async def add_numbers(a: int, b: int) -> int:
        return a + b

    @registry.function()
    async def boom() -> None:
        raise ValueError("kaput")

    @registry.function(timeout=10)
    async def sleepy(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    return registry


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
async def completed_sink(broker: str, exchange_name: str) -> AsyncIterator[EventSink]:
    sink = EventSink(exchange_name)
    await sink.open(bind=False)
    await sink.bind_keys([COMPLETED_ROUTING_KEY])
    yield sink
    await sink.close()


StartRuntime = Callable[..., Awaitable[FunctionRuntime]]
Eventually = Callable[[Callable[[], bool], float], Awaitable[bool]]


@pytest.fixture
async def start_runtime(
    make_settings: Callable[..., Settings], exec_registry: FunctionRegistry, eventually: Eventually
) -> AsyncIterator[StartRuntime]:
    """Start runtimes consuming the test's queue; each is stopped after the test."""
    runtimes: list[FunctionRuntime] = []

    async def start(**overrides: Any) -> FunctionRuntime:
        values: dict[str, Any] = {"amqp_exec_enabled": True, "amqp_exec_prefetch": 8}
        values.update(overrides)
        runtime = FunctionRuntime(exec_registry, make_settings(**values))
        runtimes.append(runtime)
        await runtime.start()
        assert await eventually(lambda: runtime.amqp is not None and runtime.amqp.consuming, 10)
        return runtime

    yield start
    for runtime in runtimes:
        await runtime.stop()


async def test_reply_and_completed_event_are_wire_exact(
    start_runtime: StartRuntime,
    caller: AmqpCaller,
    completed_sink: EventSink,
    deployment_id: str,
) -> None:
    await start_runtime()
    await caller.publish(
        {"executionId": "e-1", "functionName": "add_numbers", "args": {"a": 3, "b": 5}},
        correlation_id="corr-1",
        headers={"traceparent": TRACEPARENT},
    )
    await caller.wait_replies(1)
    await completed_sink.wait_for(COMPLETED_ROUTING_KEY)

    [reply] = caller.replies
    assert reply.exchange == ""
    assert reply.routing_key == caller.reply_queue
    assert reply.correlation_id == "corr-1"
    assert reply.content_type == "application/json"
    body = json.loads(reply.body)
    assert list(body) == ["success", "result", "error", "metadata"]
    assert body["success"] is True
    assert body["result"] == 8
    assert body["error"] is None
    assert body["metadata"]["executionId"] == "e-1"

    [event] = completed_sink.of_kind(COMPLETED_ROUTING_KEY)
    assert event.content_type == "application/json"
    assert event.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert (event.headers or {})["traceparent"] == TRACEPARENT
    envelope = json.loads(event.body)
    assert set(envelope) == {"correlationId", "payloadType", "payload"}
    assert envelope["payloadType"] == COMPLETED_PAYLOAD_TYPE
    assert envelope["payload"] == {
        "deploymentId": deployment_id,
        "executionId": "e-1",
        "functionName": "add_numbers",
        "trigger": "amqp",
        "success": True,
        "result": 8,
        "error": None,
        "metadata": body["metadata"],
    }


async def test_without_correlation_id_the_reply_carries_the_execution_id(
    start_runtime: StartRuntime, caller: AmqpCaller
) -> None:
    await start_runtime()
    await caller.publish({"executionId": "e-2", "functionName": "add_numbers", "args": {}})
    await caller.wait_replies(1)
    [reply] = caller.replies
    assert reply.correlation_id == "e-2"
    assert caller.body(reply)["metadata"]["errorKind"] == "invalid_arguments"


@pytest.mark.parametrize("body", [b"{oops", b'"a string"', b'{"executionId": 5}'])
async def test_a_bad_envelope_is_answered_and_dead_lettered_never_requeued(
    start_runtime: StartRuntime, caller: AmqpCaller, body: bytes
) -> None:
    runtime = await start_runtime()
    await caller.publish(body, correlation_id="bad")
    await caller.wait_replies(1)
    await caller.wait_dead(1)
    answer = caller.body(caller.replies[0])
    assert answer["success"] is False
    assert answer["metadata"]["errorKind"] == "invalid_envelope"
    [dead] = caller.dead
    assert dead.body == body
    assert (dead.headers or {})["x-death"][0]["reason"] == "rejected"  # type: ignore[index]
    await runtime.stop()
    assert await caller.queue_state() == (0, 0)


async def test_a_message_redelivered_too_often_is_answered_and_dead_lettered(
    start_runtime: StartRuntime,
    caller: AmqpCaller,
    make_settings: Callable[..., Settings],
    exchange_name: str,
    deployment_id: str,
    queue_name: str,
) -> None:
    # A consumer that keeps failing (nack, requeue) before ours gets the message.
    settings = make_settings(amqp_exec_max_deliveries=1)
    connection = await aio_pika.connect(BROKER_URL)
    channel = await connection.channel()
    queue = await channel.declare_queue(
        queue_name, durable=True, arguments=queue_arguments(settings)
    )
    await queue.bind(exchange_name, execute_routing_key(deployment_id))
    await caller.publish(
        {"executionId": "e-poison", "functionName": "add_numbers", "args": {"a": 1, "b": 1}}
    )
    for _ in range(2):  # get() answers "empty" until the requeued message is ready again
        got: list[aio_pika.abc.AbstractIncomingMessage] = []

        async def take(queue: aio_pika.abc.AbstractQueue = queue, got: list[Any] = got) -> bool:
            message = await queue.get(fail=False)
            if message is not None:
                got.append(message)
            return bool(got)

        async with asyncio.timeout(5):
            while not await take():
                pass
        await got[0].nack(requeue=True)
    await connection.close()

    await start_runtime(amqp_exec_max_deliveries=1)
    await caller.wait_replies(1)
    await caller.wait_dead(1)
    answer = caller.body(caller.replies[0])
    assert answer["metadata"] == {"executionId": "e-poison", "errorKind": "delivery_limit"}


async def test_failures_and_unknown_functions_are_answered_and_acked(
    start_runtime: StartRuntime, caller: AmqpCaller
) -> None:
    runtime = await start_runtime()
    await caller.publish({"executionId": "f-1", "functionName": "boom", "args": {}})
    await caller.publish({"executionId": "f-2", "functionName": "missing", "args": {}})
    await caller.wait_replies(2)
    answers = {caller.body(m)["metadata"]["executionId"]: caller.body(m) for m in caller.replies}
    assert answers["f-1"]["error"] == "Function execution failed: kaput"
    assert answers["f-2"]["error"] == "Function 'missing' not found"
    await runtime.stop()
    assert await caller.queue_state() == (0, 0)
    assert caller.dead == []


async def test_the_message_expiration_bounds_the_call(
    start_runtime: StartRuntime, caller: AmqpCaller
) -> None:
    await start_runtime()
    await caller.publish(
        {"executionId": "t-1", "functionName": "sleepy", "args": {"seconds": 5}}, expiration=0.3
    )
    await caller.wait_replies(1, timeout=3)
    answer = caller.body(caller.replies[0])
    assert answer["metadata"]["errorKind"] == "timeout"


async def test_the_time_a_message_spent_queued_is_taken_off_its_deadline(
    start_runtime: StartRuntime, caller: AmqpCaller
) -> None:
    await start_runtime()
    # Published (say) 5 s ago with a 5.5 s limit: about a second is left, not 5.5.
    await caller.publish(
        {"executionId": "t-2", "functionName": "sleepy", "args": {"seconds": 4}},
        expiration=5.5,
        timestamp=time.time() - 5,
    )
    await caller.wait_replies(1, timeout=3)
    answer = caller.body(caller.replies[0])
    assert answer["metadata"]["errorKind"] == "timeout"


async def test_a_reply_queue_that_does_not_exist_does_not_block_the_consumer(
    start_runtime: StartRuntime, caller: AmqpCaller, logs: pytest.LogCaptureFixture
) -> None:
    runtime = await start_runtime()
    await caller.publish(
        {"executionId": "g-1", "functionName": "add_numbers", "args": {"a": 1, "b": 1}},
        reply_to="metatwin-test-no-such-queue",
    )
    await caller.publish(
        {"executionId": "g-2", "functionName": "add_numbers", "args": {"a": 2, "b": 2}}
    )
    await caller.wait_replies(1)
    assert caller.body(caller.replies[0])["result"] == 4
    await runtime.stop()
    assert await caller.queue_state() == (0, 0)
    assert "No queue 'metatwin-test-no-such-queue' to reply to" in logs.text


async def test_ready_reports_the_consumer_and_a_drain_cancels_it_then_acks_calls_in_flight(
    start_runtime: StartRuntime, caller: AmqpCaller, queue_name: str, eventually: Eventually
) -> None:
    runtime = await start_runtime()
    assert runtime.ready_payload()["amqp_exec"] == {
        "enabled": True,
        "consuming": True,
        "queue": queue_name,
    }
    await caller.publish({"executionId": "d-1", "functionName": "sleepy", "args": {"seconds": 1}})
    assert await eventually(lambda: runtime.pipeline.in_flight > 0, 5)

    drained = asyncio.create_task(runtime.drain(5))
    await asyncio.sleep(0.05)
    assert runtime.ready_payload()["amqp_exec"]["consuming"] is False
    # Cancelled while the call runs: a message published now stays for another replica.
    await caller.publish({"executionId": "d-2", "functionName": "sleepy", "args": {"seconds": 0}})
    await asyncio.sleep(0.3)
    assert not drained.done()
    assert (await caller.queue_state())[0] == 1
    assert await drained is True
    [reply] = caller.replies
    assert caller.body(reply)["metadata"]["executionId"] == "d-1"
    await runtime.stop()
    assert (await caller.queue_state())[0] == 1  # d-1 acked, d-2 never taken


async def test_a_broker_cut_mid_run_loses_nothing_and_consuming_resumes(
    start_runtime: StartRuntime,
    caller: AmqpCaller,
    completed_sink: EventSink,
    proxy: TcpProxy,
    eventually: Eventually,
) -> None:
    runtime = await start_runtime(rabbitmq_port=proxy.port, amqp_exec_prefetch=16)
    ids = await caller.call_many(150, "sleepy", {"seconds": 0.05})
    await caller.wait_replies(30)
    await proxy.set_mode(ProxyMode.REFUSE)
    assert runtime.amqp is not None
    amqp = runtime.amqp
    assert await eventually(lambda: not amqp.consuming, 5)
    await asyncio.sleep(0.5)
    await proxy.set_mode(ProxyMode.FORWARD)

    await caller.wait_answered(ids, timeout=30)
    assert runtime.amqp.consuming
    assert all(caller.body(m)["success"] for m in caller.replies)

    def completed() -> set[str]:
        return {
            json.loads(m.body)["payload"]["executionId"]
            for m in completed_sink.of_kind(COMPLETED_ROUTING_KEY)
        }

    # The reply goes out before the event: the last events may still be on their way.
    assert await eventually(lambda: completed() >= set(ids), 10), set(ids) - completed()
    assert completed() == set(ids)
    await runtime.stop()
    assert await caller.queue_state() == (0, 0)


async def test_a_partition_mid_run_is_noticed_by_heartbeats_and_loses_nothing(
    start_runtime: StartRuntime,
    caller: AmqpCaller,
    proxy: TcpProxy,
    eventually: Eventually,
) -> None:
    runtime = await start_runtime(rabbitmq_port=proxy.port, rabbitmq_heartbeat=1)
    amqp = runtime.amqp
    assert amqp is not None
    ids = await caller.call_many(60, "sleepy", {"seconds": 0.05})
    await caller.wait_replies(10)
    await proxy.set_mode(ProxyMode.PARTITION)  # the broker stops answering; nothing is closed
    assert await eventually(lambda: not amqp.consuming, 10)
    await proxy.set_mode(ProxyMode.FORWARD)

    await caller.wait_answered(ids, timeout=30)
    assert await eventually(lambda: amqp.consuming, 10)
    await runtime.stop()
    assert await caller.queue_state() == (0, 0)


async def test_a_queue_declared_otherwise_is_used_as_it_is_with_a_warning(
    start_runtime: StartRuntime,
    caller: AmqpCaller,
    queue_name: str,
    logs: pytest.LogCaptureFixture,
) -> None:
    connection = await aio_pika.connect(BROKER_URL)
    channel = await connection.channel()
    await channel.declare_queue(queue_name, durable=True)  # classic, no dead-lettering
    await connection.close()

    await start_runtime()
    await caller.publish(
        {"executionId": "c-1", "functionName": "add_numbers", "args": {"a": 2, "b": 3}}
    )
    await caller.wait_replies(1)
    assert caller.body(caller.replies[0])["result"] == 5
    assert f"Queue {queue_name!r} exists with other arguments" in logs.text


async def test_messages_refused_while_draining_are_held_then_requeued_not_bounced(
    start_runtime: StartRuntime,
    caller: AmqpCaller,
    queue_name: str,
    eventually: Eventually,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = await start_runtime(amqp_exec_max_deliveries=2)
    consumer = runtime.amqp
    assert consumer is not None
    # A slow drain step: the runtime refuses calls while the consumer is still registered.
    release = asyncio.Event()
    stop_consuming = consumer.stop_consuming

    async def slow_stop(timeout: float) -> None:
        await release.wait()
        await stop_consuming(timeout)

    monkeypatch.setattr(consumer, "stop_consuming", slow_stop)
    drained = asyncio.create_task(runtime.drain(10))
    try:
        assert await eventually(lambda: runtime.state == "draining", 5)
        for i in range(4):
            call = {"executionId": f"held-{i}", "functionName": "add_numbers"}
            await caller.publish({**call, "args": {"a": i, "b": 0}})
        assert await eventually(lambda: consumer.in_flight == 4, 5)  # in hand, held unsettled
        await asyncio.sleep(0.3)  # a bounce loop would reach the delivery limit in milliseconds
        assert consumer.in_flight == 4
        assert caller.dead == []
        assert caller.replies == []
    finally:
        release.set()  # whatever happened, the drain (and the runtime's stop) can end
    async with asyncio.timeout(10):
        assert await drained is True
    assert (await caller.queue_state()) == (4, 0)  # back in the queue, nobody consuming
    assert caller.dead == []  # not dead-lettered
    assert caller.replies == []  # not run
    assert caller.channel is not None
    queue = await caller.channel.get_queue(queue_name, ensure=False)
    for _ in range(4):
        message = await queue.get(timeout=5)
        assert message is not None
        assert (message.headers or {}).get("x-delivery-count", 0) <= 1
        await message.nack(requeue=True)


async def test_a_stop_during_consume_registration_still_cancels_the_consumer(
    caller: AmqpCaller,
    make_settings: Callable[..., Settings],
    exec_registry: FunctionRegistry,
    eventually: Eventually,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from metatwin_functions.amqp import ExecConsumer

    runtime = FunctionRuntime(exec_registry, make_settings(amqp_exec_enabled=True))
    consumer = ExecConsumer(runtime.settings, runtime.pipeline, _NoEvents())
    registered = aio_pika.Queue.consume
    stops: list[asyncio.Task[None]] = []

    async def racing_consume(self: aio_pika.Queue, *args: Any, **kwargs: Any) -> str:
        # The stop arrives after the consumer's "stopping?" check, before consume-ok.
        stops.append(asyncio.create_task(consumer.stop_consuming(2)))
        await asyncio.sleep(0)
        tag: str = await registered(self, *args, **kwargs)
        return tag

    monkeypatch.setattr(aio_pika.Queue, "consume", racing_consume)
    await consumer.start()
    try:
        assert await eventually(lambda: bool(stops) and stops[0].done(), 10)
        for _ in range(100):  # the broker may take a moment to drop the consumer
            if (await caller.queue_state())[1] == 0:
                break
            await asyncio.sleep(0.05)  # polling the broker: no event tells
        assert (await caller.queue_state())[1] == 0
        assert not consumer.consuming
    finally:
        await consumer.close()


class _NoEvents:
    async def publish(self, **_: Any) -> str:
        return "off"
