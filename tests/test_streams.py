"""Generator functions and ``POST /exec/stream`` (NDJSON) over a real Hypercorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart

from metatwin_functions import FunctionRegistry, Settings, create_app, current_execution
from metatwin_functions.runtime import runtimes_of
from metatwin_functions.stream_client import StreamRefusedError, stream_call
from tests.live_server import live_server

KEY = "stream-test-key"


class Probe:
    """What the functions did, for tests that prove a side effect."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.thread_release = threading.Event()
        self.produced: list[int] = []
        self.closed = asyncio.Event()
        self.thread_closed = threading.Event()


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def registry(probe: Probe) -> FunctionRegistry:
    functions = FunctionRegistry()

    @functions.function()
    async def count_to(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @functions.function()
    def count_in_thread(n: int) -> Any:
        for i in range(n):
            yield {"i": i}

    @functions.function()
    async def add(a: int, b: int) -> int:
        return a + b

    @functions.function()
    async def gated() -> AsyncIterator[str]:
        yield "first"
        await probe.release.wait()
        yield "second"

    @functions.function()
    def gated_in_thread() -> Any:
        yield "first"
        if not probe.thread_release.wait(5):
            raise TimeoutError("the test never released the generator")
        yield "second"

    @functions.function()
    async def endless() -> AsyncIterator[int]:
        try:
            for i in range(10**9):
                probe.produced.append(i)
                yield i
                await asyncio.sleep(0.001)
        finally:
            probe.closed.set()

    @functions.function()
    def endless_in_thread() -> Any:
        try:
            for i in range(10**9):
                yield i
                probe.thread_release.wait(0.001)
        finally:
            probe.thread_closed.set()

    @functions.function()
    async def breaks_halfway() -> AsyncIterator[int]:
        yield 1
        yield 2
        raise RuntimeError("disk on fire")

    @functions.function()
    async def yields_a_socket() -> AsyncIterator[Any]:
        yield "fine"
        yield threading.Lock()

    @functions.function()
    async def with_progress() -> AsyncIterator[str]:
        current_execution().progress(0.5, "half")  # type: ignore[union-attr]
        yield "done"

    @functions.function()
    def progress_in_thread() -> int:
        context = current_execution()
        assert context is not None
        context.progress(0.25)
        context.progress(1, "all")
        return 4

    @functions.function(timeout=0.3)
    async def too_slow() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(5)
        yield 2

    @functions.function(rate_limit="1/h")
    async def scarce() -> AsyncIterator[int]:
        yield 1

    return functions


def make_settings(**extra: Any) -> Settings:
    return Settings(
        enable_events=False,
        functions_timeout=5,
        functions_max_timeout=10,
        functions_max_body_size=4096,
        _env_file=None,  # type: ignore[call-arg]
        **extra,
    )


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
async def server(registry: FunctionRegistry, settings: Settings) -> AsyncIterator[str]:
    app = create_app(registry, settings, configure_logs=False, docs=False)
    async with live_server(app, settings) as address:
        yield f"http://{address}"


@pytest.fixture
async def http(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        yield client


def envelope(name: str, execution_id: str = "e-1", **args: Any) -> dict[str, Any]:
    return {"executionId": execution_id, "functionName": name, "args": args}


async def collect(server: str, name: str, execution_id: str = "s-1", **args: Any) -> list[Any]:
    return [event async for event in stream_call(server, name, args, execution_id=execution_id)]


# -- plain /exec collects a generator ---------------------------------------------------------


@pytest.mark.parametrize("name", ["count_to", "count_in_thread"])
async def test_plain_exec_collects_a_generator_into_a_list(
    http: httpx.AsyncClient, name: str
) -> None:
    response = await http.post("/exec", json=envelope(name, n=3))
    body = response.json()
    assert response.status_code == 200
    assert body["success"] is True
    expected = [0, 1, 2] if name == "count_to" else [{"i": 0}, {"i": 1}, {"i": 2}]
    assert body["result"] == expected


async def test_plain_exec_ignores_progress(http: httpx.AsyncClient) -> None:
    body = (await http.post("/exec", json=envelope("progress_in_thread"))).json()
    assert body["result"] == 4


# -- the NDJSON stream --------------------------------------------------------------------------


async def test_stream_sends_each_item_then_exactly_one_result_line(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post("/exec/stream", json=envelope("count_to", "s-9", n=3))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[:3] == [{"executionId": "s-9", "type": "item", "data": i} for i in range(3)]
    assert [line["type"] for line in lines] == ["item", "item", "item", "result"]
    result = lines[-1]
    assert set(result) == {"executionId", "type", "success", "result", "error", "metadata"}
    assert result["success"] is True
    assert result["result"] is None
    assert result["metadata"]["executionId"] == "s-9"


async def test_a_plain_generator_streams_from_the_thread_pool(server: str) -> None:
    events = await collect(server, "count_in_thread", n=500)
    assert [event["data"] for event in events[:-1]] == [{"i": i} for i in range(500)]
    assert events[-1]["success"] is True


async def test_a_function_that_is_not_a_generator_streams_only_the_result(server: str) -> None:
    events = await collect(server, "add", "s-add", a=2, b=3)
    assert events == [
        {
            "executionId": "s-add",
            "type": "result",
            "success": True,
            "result": 5,
            "error": None,
            "metadata": events[0]["metadata"],
        }
    ]


@pytest.mark.parametrize(
    ("name", "release"),
    [("gated", "release"), ("gated_in_thread", "thread_release")],
)
async def test_the_first_item_is_readable_before_the_second_is_produced(
    server: str, probe: Probe, name: str, release: str
) -> None:
    events = stream_call(server, name, execution_id=f"inc-{name}")
    first = await asyncio.wait_for(anext(events), 5)  # would hang if items were held back
    assert first["data"] == "first"
    getattr(probe, release).set()
    rest = [event async for event in events]
    assert [event.get("data") for event in rest] == ["second", None]
    assert rest[-1]["success"] is True


async def test_progress_is_streamed_from_async_and_thread_functions(server: str) -> None:
    events = await collect(server, "with_progress", "p-1")
    assert events[0] == {
        "executionId": "p-1",
        "type": "progress",
        "fraction": 0.5,
        "message": "half",
    }
    assert events[1]["data"] == "done"
    threaded = await collect(server, "progress_in_thread", "p-2")
    progress = [event for event in threaded if event["type"] == "progress"]
    assert progress == [
        {"executionId": "p-2", "type": "progress", "fraction": 0.25, "message": None},
        {"executionId": "p-2", "type": "progress", "fraction": 1.0, "message": "all"},
    ]
    assert threaded[-1]["result"] == 4


async def test_a_generator_that_raises_halfway_keeps_its_items_and_fails(server: str) -> None:
    events = await collect(server, "breaks_halfway")
    assert [event["data"] for event in events[:2]] == [1, 2]
    result = events[-1]
    assert len(events) == 3
    assert result["success"] is False
    assert result["result"] is None
    assert result["error"] == "Function execution failed: disk on fire"
    assert result["metadata"]["errorKind"] == "execution_failed"
    assert result["metadata"]["errorCode"] == "MTF-EXECUTION-003"


async def test_an_item_json_cannot_hold_fails_the_stream_with_a_clear_error(server: str) -> None:
    events = await collect(server, "yields_a_socket")
    assert events[0]["data"] == "fine"
    result = events[-1]
    assert result["success"] is False
    assert result["metadata"]["errorKind"] == "result_not_serializable"
    assert "yields_a_socket' yielded an item (#2) that cannot be serialized" in result["error"]


async def test_the_deadline_covers_the_whole_stream(server: str) -> None:
    events = await collect(server, "too_slow")
    assert events[0]["data"] == 1
    assert events[-1]["metadata"]["errorKind"] == "timeout"
    assert events[-1]["error"] == "Function 'too_slow' execution timed out after 0.3 seconds"


# -- refusals answer as /exec does ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1]", b'{"functionName": "add"}', b'{"executionId": "x", "functionName": 3}'],
)
async def test_an_invalid_envelope_gets_the_same_422_as_exec(
    http: httpx.AsyncClient, body: bytes
) -> None:
    plain = await http.post("/exec", content=body)
    streamed = await http.post("/exec/stream", content=body)
    assert streamed.status_code == plain.status_code == 422
    assert streamed.headers["content-type"] == "application/json"
    assert streamed.json() == plain.json()


async def test_a_body_over_the_limit_gets_413(http: httpx.AsyncClient) -> None:
    streamed = await http.post("/exec/stream", json=envelope("add", text="x" * 5000))
    assert streamed.status_code == 413
    assert streamed.json()["metadata"]["errorKind"] == "too_large"


async def test_a_rate_limited_stream_gets_the_same_429_as_exec(http: httpx.AsyncClient) -> None:
    first = await http.post("/exec/stream", json=envelope("scarce", "r-1"))
    assert first.status_code == 200
    streamed = await http.post("/exec/stream", json=envelope("scarce", "r-2"))
    plain = await http.post("/exec", json=envelope("scarce", "r-2"))
    assert streamed.status_code == plain.status_code == 429
    assert streamed.headers["retry-after"] == plain.headers["retry-after"]
    assert streamed.json() == plain.json()
    assert streamed.json()["metadata"]["errorKind"] == "rate_limited"


async def test_a_stream_needs_the_same_credentials_as_exec(
    registry: FunctionRegistry,
) -> None:
    secured = make_settings(auth_api_keys=KEY)
    app = create_app(registry, secured, configure_logs=False, docs=False)
    async with live_server(app, secured) as address:
        base = f"http://{address}"
        async with httpx.AsyncClient(base_url=base) as client:
            refused = await client.post("/exec/stream", json=envelope("add", a=1, b=2))
            plain = await client.post("/exec", json=envelope("add", a=1, b=2))
        assert refused.status_code == plain.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json() == plain.json()
        with pytest.raises(StreamRefusedError) as caught:
            await collect(base, "add", a=1, b=2)
        assert caught.value.status == 401
        by_key = [e async for e in stream_call(base, "add", {"a": 1, "b": 2}, api_key=KEY)]
        by_bearer = [e async for e in stream_call(base, "add", {"a": 1, "b": 2}, token=KEY)]
        assert by_key[-1]["result"] == by_bearer[-1]["result"] == 3


# -- going away cancels -------------------------------------------------------------------------


async def test_a_client_that_goes_away_cancels_and_closes_an_async_generator(
    server: str, probe: Probe, registry: FunctionRegistry
) -> None:
    events = stream_call(server, "endless", execution_id="gone-1")
    assert (await anext(events))["data"] == 0
    await events.aclose()  # the connection closes
    await asyncio.wait_for(probe.closed.wait(), 5)  # the generator's finally ran
    produced = len(probe.produced)
    await asyncio.sleep(0.05)
    assert len(probe.produced) == produced  # and nothing more is produced


async def test_a_client_that_goes_away_closes_a_plain_generator_at_its_next_yield(
    server: str, probe: Probe
) -> None:
    events = stream_call(server, "endless_in_thread", execution_id="gone-2")
    assert (await anext(events))["data"] == 0
    await events.aclose()
    assert await asyncio.to_thread(probe.thread_closed.wait, 5)


async def test_a_cancelled_stream_is_counted_as_cancelled(
    registry: FunctionRegistry, settings: Settings, probe: Probe
) -> None:
    app: Quart = create_app(registry, settings, configure_logs=False, docs=False)
    async with live_server(app, settings) as address:
        events = stream_call(f"http://{address}", "endless", execution_id="gone-3")
        await anext(events)
        await events.aclose()
        await asyncio.wait_for(probe.closed.wait(), 5)
        runtime = runtimes_of(app)["metatwin_functions"]
        assert await runtime.pipeline.wait_idle(5)  # the call has ended and been recorded
        assert runtime.metrics is not None
        assert sample(runtime.metrics.exposition(None)[0], "endless", "cancelled") == 1


def sample(exposition: bytes, function: str, outcome: str) -> float:
    for family in text_string_to_metric_families(exposition.decode()):
        for found in family.samples:
            if found.name == "metatwin_functions_calls_total" and found.labels == {
                "function": function,
                "outcome": outcome,
            }:
                return found.value
    return 0.0


# -- duplicates -----------------------------------------------------------------------------------


async def test_a_duplicate_of_a_running_stream_is_a_conflict_and_a_finished_one_runs_again(
    server: str, probe: Probe, http: httpx.AsyncClient
) -> None:
    running = stream_call(server, "gated", execution_id="dup-1")
    assert (await anext(running))["data"] == "first"
    duplicate = await http.post("/exec/stream", json=envelope("gated", "dup-1"))
    assert duplicate.status_code == 409
    assert duplicate.json()["metadata"]["errorKind"] == "idempotency_conflict"
    assert "already streaming" in duplicate.json()["error"]
    plain = await http.post("/exec", json=envelope("gated", "dup-1"))  # not run a second time
    assert plain.status_code == 409
    assert plain.json()["metadata"]["errorKind"] == "idempotency_conflict"
    probe.release.set()
    assert [event async for event in running][-1]["success"] is True
    again = await collect(server, "gated", "dup-1")  # not replayed: it runs again
    assert [event.get("data") for event in again] == ["first", "second", None]
