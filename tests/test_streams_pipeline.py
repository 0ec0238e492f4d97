"""Streams ride the one pipeline: traces continue, plain /exec is untouched, ids keep apart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from quart import Quart

from metatwin_functions import FunctionRegistry, Settings, create_app
from metatwin_functions._otel import OtelCallTracer
from metatwin_functions.runtime import runtimes_of
from metatwin_functions.stream_client import stream_call
from tests.live_server import live_server

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT}-01"


class Gate:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.items: list[int] = []
        self.finished = asyncio.Event()


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def registry(gate: Gate) -> FunctionRegistry:
    functions = FunctionRegistry()

    @functions.function()
    async def pairs(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @functions.function()
    async def held(n: int) -> AsyncIterator[int]:
        for i in range(n):
            if i == 1:
                await gate.release.wait()
            gate.items.append(i)
            yield i
        gate.finished.set()

    return functions


@pytest.fixture
def settings() -> Settings:
    return Settings(enable_events=False, functions_timeout=5, _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
async def app(registry: FunctionRegistry, settings: Settings) -> AsyncIterator[Quart]:
    served = create_app(registry, settings, configure_logs=False, docs=False)
    async with served.test_app():
        yield served


async def test_stream_and_websocket_calls_continue_the_callers_trace(app: Quart) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    runtimes_of(app)["metatwin_functions"].guards.tracer = OtelCallTracer(provider)
    client = app.test_client()
    envelope = {"executionId": "t-1", "functionName": "pairs", "args": {"n": 2}}
    response = await client.post(
        "/exec/stream", json=envelope, headers={"traceparent": TRACEPARENT}
    )
    assert response.status_code == 200
    async with client.websocket("/ws") as ws:
        await ws.send(json.dumps({**envelope, "executionId": "t-2", "traceparent": TRACEPARENT}))
        while json.loads(await ws.receive())["type"] != "result":
            pass
    spans = exporter.get_finished_spans()
    assert [span.attributes["faas.invocation_id"] for span in spans] == ["t-1", "t-2"]  # type: ignore[index]
    for span in spans:
        assert f"{span.context.trace_id:032x}" == TRACE_ID
        assert span.parent is not None
        assert f"{span.parent.span_id:016x}" == PARENT
        assert span.attributes is not None
        assert span.attributes["faas.trigger"] == "http"


async def test_a_plain_exec_of_a_generator_runs_to_its_end_when_its_client_goes(
    registry: FunctionRegistry, settings: Settings, gate: Gate
) -> None:
    served = create_app(registry, settings, configure_logs=False, docs=False)
    async with live_server(served, settings) as address:
        envelope = {"executionId": "p-1", "functionName": "held", "args": {"n": 3}}
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post("/exec", json=envelope, timeout=0.2)
        gate.release.set()
        await asyncio.wait_for(gate.finished.wait(), 5)
        assert gate.items == [0, 1, 2]
        # Its retry joins the stored answer instead of running again.
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            body = (await client.post("/exec", json=envelope)).json()
        assert body["result"] == [0, 1, 2]
        assert body["metadata"]["replayed"] is True


async def test_streams_and_plain_exec_keep_separate_books_of_ids(
    registry: FunctionRegistry, settings: Settings
) -> None:
    served = create_app(registry, settings, configure_logs=False, docs=False)
    async with live_server(served, settings) as address:
        base = f"http://{address}"
        envelope: dict[str, Any] = {"executionId": "b-1", "functionName": "pairs", "args": {"n": 2}}
        async with httpx.AsyncClient(base_url=base) as client:
            first = (await client.post("/exec", json=envelope)).json()
            assert first["result"] == [0, 1]
            streamed = [e async for e in stream_call(base, "pairs", {"n": 2}, execution_id="b-1")]
            assert [e["type"] for e in streamed] == ["item", "item", "result"]  # not a replay
            again = (await client.post("/exec", json=envelope)).json()
        assert again["metadata"]["replayed"] is True  # the /exec answer is still stored
