"""Metrics and spans recorded by the pipeline, the same for the raw-ASGI endpoint and the view."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart

from metatwin_functions import FunctionRegistry, Settings, create_app
from metatwin_functions._otel import OtelCallTracer
from metatwin_functions.runtime import runtimes_of


def quick(**values: Any) -> Settings:
    values.setdefault("enable_events", False)
    values.setdefault("functions_timeout", 0.2)
    values.setdefault("functions_max_result_size", 2048)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def registry() -> FunctionRegistry:
    functions = FunctionRegistry()

    @functions.function()
    async def add(a: int, b: int) -> int:
        return a + b

    @functions.function()
    async def fail() -> None:
        raise RuntimeError("no")

    @functions.function()
    async def slow() -> None:
        await asyncio.sleep(5)

    @functions.function()
    async def odd() -> object:
        return object()

    @functions.function()
    async def big() -> str:
        return "x" * 4096

    @functions.function(rate_limit="1/h")
    async def once() -> None:
        return None

    return functions


@pytest.fixture(params=[True, False], ids=["raw-asgi", "quart-view"])
async def app(request: pytest.FixtureRequest, registry: FunctionRegistry) -> AsyncIterator[Quart]:
    application = create_app(registry, quick(), configure_logs=False, fast_exec=request.param)
    async with application.test_app():
        yield application


async def post(app: Quart, body: Any, headers: dict[str, str] | None = None) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await app.test_client().post("/exec", data=data, headers=headers or {})
    await response.get_data()
    return response.status_code


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_every_outcome_and_refusal_is_counted_on_metrics(app: Quart) -> None:
    calls = [
        ("s", "add", {"a": 1, "b": 2}),
        ("s", "add", {"a": 1, "b": 2}),  # replayed
        ("f", "fail", {}),
        ("t", "slow", {}),
        ("i", "add", {"a": "x", "b": 1}),
        ("n", "nope", {}),
        ("o", "odd", {}),
        ("b", "big", {}),
        ("r1", "once", {}),
        ("r2", "once", {}),  # rate limited
        ("s", "fail", {}),  # idempotency conflict
    ]
    for execution_id, name, args in calls:
        await post(app, {"executionId": execution_id, "functionName": name, "args": args})
    await post(app, b"not json")
    response = await app.test_client().get("/metrics")
    assert response.status_code == 200
    found = samples((await response.get_data()).decode())
    total = "metatwin_functions_calls_total"
    expected_calls = {
        ("add", "success"): 1,
        ("add", "replayed"): 1,
        ("fail", "execution_failed"): 1,
        ("slow", "timeout"): 1,
        ("add", "invalid_arguments"): 1,
        ("<unknown>", "not_found"): 1,
        ("odd", "result_not_serializable"): 1,
        ("big", "result_too_large"): 1,
        ("once", "success"): 1,
    }
    for (function, outcome), count in expected_calls.items():
        assert found[(total, (("function", function), ("outcome", outcome)))] == count
    rejected = "metatwin_functions_requests_rejected_total"
    for reason in ("rate_limited", "idempotency_conflict", "invalid_envelope"):
        assert found[(rejected, (("reason", reason),))] == 1
    assert found[("metatwin_functions_calls_in_flight", (("function", "add"),))] == 0
    assert found[("metatwin_functions_call_duration_seconds_count", (("function", "add"),))] >= 1


async def test_metrics_can_be_turned_off(registry: FunctionRegistry) -> None:
    app = create_app(registry, quick(metrics_enabled=False), configure_logs=False)
    async with app.test_app():
        assert (await app.test_client().get("/metrics")).status_code == 404


async def test_metrics_can_be_protected(registry: FunctionRegistry) -> None:
    settings = quick(auth_api_keys="scrape-key-1234567", auth_protect_metrics=True)
    app = create_app(registry, settings, configure_logs=False)
    async with app.test_app():
        client = app.test_client()
        assert (await client.get("/metrics")).status_code == 401
        good = await client.get("/metrics", headers={"X-API-Key": "scrape-key-1234567"})
        assert good.status_code == 200
        assert (await client.get("/ready")).status_code == 200


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


async def test_a_call_is_a_span_continuing_the_callers_trace(
    app: Quart, spans: InMemorySpanExporter
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    runtimes_of(app)["metatwin_functions"].guards.tracer = OtelCallTracer(provider)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    headers = {"traceparent": f"00-{trace_id}-{parent}-01"}
    await post(
        app, {"executionId": "tr-1", "functionName": "add", "args": {"a": 1, "b": 1}}, headers
    )
    await post(app, {"executionId": "tr-2", "functionName": "fail"}, headers)
    finished = spans.get_finished_spans()
    assert [span.name for span in finished] == ["add", "fail"]
    ok, failed = finished
    assert f"{ok.context.trace_id:032x}" == trace_id
    assert ok.parent is not None
    assert f"{ok.parent.span_id:016x}" == parent
    assert ok.attributes is not None
    assert ok.attributes["faas.invocation_id"] == "tr-1"
    assert ok.attributes["faas.trigger"] == "http"
    assert failed.status.status_code is StatusCode.ERROR


async def test_a_replay_is_a_span_of_its_own_with_outcome_replayed(
    app: Quart, spans: InMemorySpanExporter
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    runtimes_of(app)["metatwin_functions"].guards.tracer = OtelCallTracer(provider)
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    headers = {"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}
    body = {"executionId": "rp-1", "functionName": "add", "args": {"a": 1, "b": 1}}
    await post(app, body, headers)
    await post(app, body, headers)
    first, replay = spans.get_finished_spans()
    assert replay.name == "add"
    assert f"{replay.context.trace_id:032x}" == trace_id
    assert replay.attributes is not None
    assert replay.attributes["faas.invocation_id"] == "rp-1"
    assert replay.status.status_code is not StatusCode.ERROR
    assert replay.context.span_id != first.context.span_id


async def test_completed_events_carry_the_calls_own_traceparent(
    registry: FunctionRegistry, spans: InMemorySpanExporter
) -> None:
    from metatwin_functions.events import COMPLETED_PAYLOAD_TYPE
    from metatwin_functions.testing import FunctionTestClient

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    settings = quick(publish_http_executions=True, enable_events=True)
    async with FunctionTestClient(registry, settings) as client:
        client.runtime.guards.tracer = OtelCallTracer(provider)
        await client.call(
            "add",
            a=2,
            b=3,
            execution_id="tp-1",
            headers={"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"},
        )
        [event] = await client.wait_for_event(COMPLETED_PAYLOAD_TYPE)
    [span] = spans.get_finished_spans()
    traceparent = event.properties.headers["traceparent"]
    # The event's parent is the call's span, in the caller's trace.
    assert traceparent == f"00-{caller_trace}-{span.context.span_id:016x}-01"


async def test_a_completed_event_is_tried_again_until_the_broker_confirms_it(
    registry: FunctionRegistry,
) -> None:
    from metatwin_functions.answers import Answer
    from metatwin_functions.envelope import ExecRequest
    from metatwin_functions.events import COMPLETED_PAYLOAD_TYPE
    from metatwin_functions.testing import FunctionTestClient

    async with FunctionTestClient(registry, quick(enable_events=True)) as client:
        await client.wait_for_event("FunctionsDeploymentHealthyPayload")
        client.broker.nack()  # the broker refuses every publish for a while
        asyncio.get_running_loop().call_later(0.6, client.broker.nack, False)
        body = b'{"success":true,"result":1,"error":null,"metadata":{"executionId":"s-1"}}'
        delivered = await client.runtime.publish_completed(
            ExecRequest("s-1", "add", {}), Answer(200, body), "schedule", patience=5
        )
        [event] = await client.wait_for_event(COMPLETED_PAYLOAD_TYPE)
        client.broker.nack()
        gave_up = await client.runtime.publish_completed(
            ExecRequest("s-2", "add", {}), Answer(200, body), "schedule", patience=0.3
        )
    assert delivered is True
    assert event.envelope["payload"]["trigger"] == "schedule"
    assert gave_up is False


async def test_an_http_call_served_before_the_events_service_is_up_still_publishes(
    registry: FunctionRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metatwin_functions.events import COMPLETED_PAYLOAD_TYPE
    from metatwin_functions.runtime import FunctionRuntime
    from metatwin_functions.testing import FunctionTestClient

    load_events = FunctionRuntime._start_events

    async def slow_to_load(self: FunctionRuntime) -> None:
        await asyncio.sleep(0.3)  # as a slow import of the broker client would
        await load_events(self)

    monkeypatch.setattr(FunctionRuntime, "_start_events", slow_to_load)
    settings = quick(publish_http_executions=True, enable_events=True)
    async with FunctionTestClient(registry, settings) as client:
        assert client.runtime.events is None  # still loading
        await client.call("add", a=1, b=1, execution_id="early-1")
        [event] = await client.wait_for_event(COMPLETED_PAYLOAD_TYPE)
    assert event.envelope["payload"]["executionId"] == "early-1"
