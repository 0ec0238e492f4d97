"""One execution message, served through the real pipeline and settled by the handler's rules.

The broker side is a recording `Settlement` and a scripted `CompletedEvents` (the handler's two
seams); the real-broker suite (tests/integration/test_amqp_*.py) proves the same on the wire.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from metatwin_functions import FunctionRegistry, Settings
from metatwin_functions.amqp.delivery import Delivery, posix_timestamp
from metatwin_functions.amqp.handler import EventResult, MessageHandler, ReplyResult
from metatwin_functions.runtime import FunctionRuntime


@dataclass
class RecordingSettlement:
    """The message's channel: records replies and how the message was settled."""

    reply_result: ReplyResult = "confirmed"
    replies: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)

    async def reply(self, routing_key: str, body: bytes, correlation_id: str | None) -> ReplyResult:
        self.replies.append((routing_key, json.loads(body), correlation_id))
        return self.reply_result

    async def ack(self) -> bool:
        self.settled.append("ack")
        return True

    async def requeue(self) -> bool:
        self.settled.append("requeue")
        return True

    async def dead_letter(self) -> bool:
        self.settled.append("dead_letter")
        return True


class LostAckSettlement(RecordingSettlement):
    """A channel that goes away right after the reply: the ack never reaches the broker."""

    async def ack(self) -> bool:
        self.settled.append("ack")
        return False


@dataclass
class ScriptedEvents:
    """Completed events: records each and answers ``result``."""

    result: EventResult = "confirmed"
    published: list[dict[str, Any]] = field(default_factory=list)

    async def publish(
        self, *, function_name: str, answer: Mapping[str, Any], traceparent: str | None
    ) -> EventResult:
        self.published.append(
            {"function_name": function_name, "answer": dict(answer), "traceparent": traceparent}
        )
        return self.result


def make_registry() -> FunctionRegistry:
    registry = FunctionRegistry()

    @registry.function()
    async def add(a: int, b: int) -> int:
        return a + b

    @registry.function()
    async def boom() -> None:
        raise RuntimeError("kaput")

    @registry.function(timeout=5)
    async def sleepy(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "awake"

    @registry.function(roles=["admin"])
    async def admin_only() -> str:
        return "secret"

    return registry


def make_settings(**overrides: Any) -> Settings:
    return Settings(
        deployment_id="dep-unit",
        enable_events=False,
        _env_file=None,  # type: ignore[call-arg]
        **overrides,
    )


@pytest.fixture
async def runtime() -> AsyncIterator[FunctionRuntime]:
    started = FunctionRuntime(make_registry(), make_settings())
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
def events() -> ScriptedEvents:
    return ScriptedEvents()


@pytest.fixture
def handler(runtime: FunctionRuntime, events: ScriptedEvents) -> MessageHandler:
    return MessageHandler(runtime.pipeline, events, max_deliveries=2)


def envelope(name: str, args: dict[str, Any] | None = None, execution_id: str = "e-1") -> bytes:
    return json.dumps(
        {"executionId": execution_id, "functionName": name, "args": args or {}}
    ).encode()


async def test_a_call_is_answered_to_reply_to_and_acked_after_reply_and_event(
    handler: MessageHandler, events: ScriptedEvents
) -> None:
    settle = RecordingSettlement()
    delivery = Delivery(envelope("add", {"a": 3, "b": 5}), reply_to="rq", correlation_id="c-9")

    assert await handler.handle(delivery, settle) == "acked"

    [(routing_key, body, correlation_id)] = settle.replies
    assert (routing_key, correlation_id) == ("rq", "c-9")
    assert body["success"] is True
    assert body["result"] == 8
    assert body["metadata"]["executionId"] == "e-1"
    assert settle.settled == ["ack"]
    [event] = events.published
    assert event["function_name"] == "add"
    assert event["answer"] == body


async def test_the_reply_correlation_id_defaults_to_the_execution_id(
    handler: MessageHandler,
) -> None:
    settle = RecordingSettlement()
    await handler.handle(Delivery(envelope("add", {"a": 1, "b": 1}, "e-7"), reply_to="rq"), settle)
    assert settle.replies[0][2] == "e-7"


async def test_without_reply_to_the_call_still_publishes_its_event_and_is_acked(
    handler: MessageHandler, events: ScriptedEvents
) -> None:
    settle = RecordingSettlement()
    assert await handler.handle(Delivery(envelope("add", {"a": 1, "b": 2})), settle) == "acked"
    assert settle.replies == []
    assert events.published[0]["answer"]["result"] == 3


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"executionId": "e-2"}', "'functionName' is required"),
        (b'{"executionId": "e-2", "functionName": "add", "args": 3}', "'args' must be"),
    ],
)
async def test_a_bad_envelope_is_answered_422_and_dead_lettered_without_an_event(
    handler: MessageHandler, events: ScriptedEvents, body: bytes, problem: str
) -> None:
    settle = RecordingSettlement()
    assert await handler.handle(Delivery(body, reply_to="rq"), settle) == "dead_lettered"
    [(_, answer, _)] = settle.replies
    assert answer["success"] is False
    assert answer["metadata"]["errorKind"] == "invalid_envelope"
    assert problem in answer["error"]
    assert settle.settled == ["dead_letter"]
    assert events.published == []


async def test_a_message_redelivered_more_than_the_limit_is_answered_and_dead_lettered_unrun(
    handler: MessageHandler, events: ScriptedEvents
) -> None:
    settle = RecordingSettlement()
    delivery = Delivery(
        envelope("add", {"a": 1, "b": 1}, "e-3"), reply_to="rq", headers={"x-delivery-count": 3}
    )
    assert await handler.handle(delivery, settle) == "dead_lettered"
    [(_, answer, correlation_id)] = settle.replies
    assert answer["metadata"] == {"executionId": "e-3", "errorKind": "delivery_limit"}
    assert "delivered 4 times" in answer["error"]
    assert correlation_id == "e-3"
    assert events.published == []


async def test_a_success_whose_ack_kept_getting_lost_is_answered_from_the_store_past_the_limit(
    events: ScriptedEvents,
) -> None:
    registry = FunctionRegistry()
    runs: list[int] = []

    @registry.function()
    def once(a: int) -> int:
        runs.append(a)
        return a * 10

    @registry.function()
    def fails(a: int) -> int:
        runs.append(a)
        raise ValueError("no")

    runtime = FunctionRuntime(registry, make_settings())
    await runtime.start()
    try:
        handler = MessageHandler(runtime.pipeline, events, max_deliveries=2)
        body = envelope("once", {"a": 7}, "e-lost-acks")
        for count in range(4):  # the last delivery is over the limit
            settle = LostAckSettlement()
            delivery = Delivery(body, reply_to="rq", headers={"x-delivery-count": count})
            disposition = await handler.handle(delivery, settle)
        assert disposition == "unsettled"  # acked, but the ack was lost once more
        assert settle.settled == ["ack"]
        [(_, answer, _)] = settle.replies
        assert answer["success"] is True
        assert answer["result"] == 70
        assert answer["metadata"]["replayed"] is True
        assert events.published[-1]["answer"]["result"] == 70
        assert runs == [7]

        # A failure is not stored: past the limit it is still dead-lettered, not run again.
        failing = envelope("fails", {"a": 1}, "e-fails")
        await handler.handle(Delivery(failing, reply_to="rq"), LostAckSettlement())
        settle = LostAckSettlement()
        past = Delivery(failing, reply_to="rq", headers={"x-delivery-count": 3})
        assert await handler.handle(past, settle) == "dead_lettered"
        assert settle.replies[0][1]["metadata"]["errorKind"] == "delivery_limit"
        assert runs == [7, 1]
    finally:
        await runtime.stop()


async def test_a_message_redelivered_up_to_the_limit_still_runs(handler: MessageHandler) -> None:
    settle = RecordingSettlement()
    delivery = Delivery(envelope("add", {"a": 2, "b": 2}), headers={"x-delivery-count": 2})
    assert await handler.handle(delivery, settle) == "acked"


@pytest.mark.parametrize(
    ("name", "args", "kind"),
    [
        ("nope", {}, "not_found"),
        ("boom", {}, "execution_failed"),
        ("add", {"a": "x"}, "invalid_arguments"),
    ],
)
async def test_a_call_that_fails_is_an_answer_and_is_acked(
    handler: MessageHandler, events: ScriptedEvents, name: str, args: dict[str, Any], kind: str
) -> None:
    settle = RecordingSettlement()
    assert await handler.handle(Delivery(envelope(name, args), reply_to="rq"), settle) == "acked"
    answer = settle.replies[0][1]
    assert answer["success"] is False
    assert answer["metadata"]["errorKind"] == kind
    assert events.published[0]["answer"] == answer


async def test_the_message_expiration_bounds_the_call_deadline(handler: MessageHandler) -> None:
    settle = RecordingSettlement()
    delivery = Delivery(envelope("sleepy", {"seconds": 3}), reply_to="rq", expiration=0.2)
    assert await handler.handle(delivery, settle) == "acked"
    answer = settle.replies[0][1]
    assert answer["metadata"]["errorKind"] == "timeout"
    assert answer["error"] == "Function 'sleepy' execution timed out after 0.2 seconds"


async def test_a_reply_queue_that_does_not_exist_still_acks_the_message(
    handler: MessageHandler, caplog: pytest.LogCaptureFixture
) -> None:
    settle = RecordingSettlement(reply_result="returned")
    delivery = Delivery(envelope("add", {"a": 1, "b": 1}), reply_to="gone")
    assert await handler.handle(delivery, settle) == "acked"
    assert "No queue 'gone' to reply to" in caplog.text


async def test_a_reply_the_broker_did_not_confirm_requeues_the_message(
    handler: MessageHandler,
) -> None:
    settle = RecordingSettlement(reply_result="failed")
    delivery = Delivery(envelope("add", {"a": 1, "b": 1}), reply_to="rq")
    assert await handler.handle(delivery, settle) == "requeued"
    assert settle.settled == ["requeue"]


async def test_an_event_the_broker_did_not_confirm_requeues_the_message(
    handler: MessageHandler, events: ScriptedEvents
) -> None:
    events.result = "failed"
    settle = RecordingSettlement()
    assert await handler.handle(Delivery(envelope("add", {"a": 1, "b": 1})), settle) == "requeued"


async def test_events_off_acks_after_the_reply_alone(
    handler: MessageHandler, events: ScriptedEvents
) -> None:
    events.result = "off"
    settle = RecordingSettlement()
    assert await handler.handle(Delivery(envelope("add", {"a": 1, "b": 1})), settle) == "acked"


async def test_a_redelivery_of_a_call_that_succeeded_replays_its_answer(
    handler: MessageHandler,
) -> None:
    first, again = RecordingSettlement(), RecordingSettlement()
    body = envelope("add", {"a": 4, "b": 4}, "e-once")
    await handler.handle(Delivery(body, reply_to="rq"), first)
    await handler.handle(Delivery(body, reply_to="rq", headers={"x-delivery-count": 1}), again)
    assert again.replies[0][1]["result"] == 8
    assert again.replies[0][1]["metadata"]["replayed"] is True


async def test_a_draining_runtime_requeues_messages_unanswered(
    runtime: FunctionRuntime, handler: MessageHandler, events: ScriptedEvents
) -> None:
    await runtime.drain(0.1)
    settle = RecordingSettlement()
    delivery = Delivery(envelope("add", {"a": 1, "b": 1}), reply_to="rq")
    assert await handler.handle(delivery, settle) == "requeued"
    assert settle.replies == []
    assert events.published == []


async def test_auth_and_roles_do_not_apply_to_amqp_calls(events: ScriptedEvents) -> None:
    runtime = FunctionRuntime(make_registry(), make_settings(auth_api_keys="k-123:viewer"))
    await runtime.start()
    try:
        handler = MessageHandler(runtime.pipeline, events, max_deliveries=2)
        settle = RecordingSettlement()
        await handler.handle(Delivery(envelope("admin_only"), reply_to="rq"), settle)
        assert settle.replies[0][1]["result"] == "secret"
    finally:
        await runtime.stop()


async def test_the_traceparent_header_reaches_the_event_and_the_call_meta(
    handler: MessageHandler, events: ScriptedEvents
) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    delivery = Delivery(envelope("add", {"a": 1, "b": 1}), headers={"traceparent": traceparent})
    assert delivery.call_meta().traceparent == traceparent
    await handler.handle(delivery, RecordingSettlement())
    assert events.published[0]["traceparent"] == traceparent


def test_the_call_meta_of_a_message_is_trusted_amqp_bounded_by_its_expiration() -> None:
    meta = Delivery(b"{}", expiration=1.5, headers={"tracestate": b"k=v"}).call_meta()
    assert (meta.trigger, meta.trusted, meta.timeout, meta.tracestate) == (
        "amqp",
        True,
        1.5,
        "k=v",
    )


@pytest.mark.parametrize(
    ("headers", "redelivered", "count"),
    [
        (None, False, 0),
        ({"x-delivery-count": 4}, True, 4),
        ({"x-delivery-count": "4"}, True, 1),  # not a number: only "redelivered" is known
        (None, True, 1),  # a classic queue counts nothing
    ],
)
def test_the_delivery_count_comes_from_the_quorum_queue_header(
    headers: dict[str, Any] | None, redelivered: bool, count: int
) -> None:
    assert Delivery(b"", headers=headers, redelivered=redelivered).delivery_count == count


async def test_an_amqp_call_span_is_a_pubsub_consumer_child_of_the_message_traceparent(
    runtime: FunctionRuntime, handler: MessageHandler, events: ScriptedEvents
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from metatwin_functions._otel import OtelCallTracer

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    runtime.guards.tracer = OtelCallTracer(provider, owned=True)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    delivery = Delivery(envelope("add", {"a": 1, "b": 1}), headers={"traceparent": traceparent})
    await handler.handle(delivery, RecordingSettlement())

    [span] = exporter.get_finished_spans()
    assert span.kind is SpanKind.CONSUMER
    assert span.attributes is not None
    assert span.attributes["faas.trigger"] == "pubsub"
    assert span.parent is not None
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    # The completed event is a child of the call's span, not of the message's sender.
    call_span = format(span.context.span_id, "016x")
    assert events.published[0]["traceparent"] == (
        f"00-0af7651916cd43dd8448eb211c80319c-{call_span}-01"
    )
    exporter.shutdown()


@pytest.mark.parametrize(
    ("expiration", "queued", "deadline"),
    [
        (30.0, 0.4, 30.0),  # within the timestamp's resolution: nothing surely spent
        (30.0, 10.0, 21.0),  # 10 s in the queue (1 s of it may be truncation)
        (30.0, 40.0, 1.0),  # clocks apart: never less than the floor
        (0.3, 5.0, 0.3),  # ... nor more than the caller's whole limit
        (30.0, -5.0, 30.0),  # a timestamp from the future (skew) takes nothing off
    ],
)
def test_the_deadline_of_a_message_is_its_expiration_less_the_time_it_spent_queued(
    expiration: float, queued: float, deadline: float
) -> None:
    published = 1_800_000_000.0
    delivery = Delivery(b"{}", expiration=expiration, timestamp=published)
    assert delivery.deadline(now=published + queued) == pytest.approx(deadline)


def test_without_a_timestamp_the_deadline_is_the_whole_expiration() -> None:
    assert Delivery(b"{}", expiration=12.0).deadline(now=0.0) == 12.0
    assert Delivery(b"{}", timestamp=5.0).deadline(now=100.0) is None


def test_the_call_meta_timeout_takes_off_the_time_queued() -> None:
    delivery = Delivery(b"{}", expiration=30.0, timestamp=time.time() - 11.0)
    timeout = delivery.call_meta().timeout
    assert timeout is not None
    assert 19.0 <= timeout <= 20.5


def test_an_amqp_timestamp_property_becomes_posix_seconds() -> None:
    aware = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert posix_timestamp(aware) == aware.timestamp()
    assert posix_timestamp(aware.replace(tzinfo=None)) == aware.timestamp()  # naive is UTC
    assert posix_timestamp(1_800_000_000) == 1_800_000_000.0
    assert posix_timestamp(None) is None
    assert posix_timestamp("yesterday") is None
