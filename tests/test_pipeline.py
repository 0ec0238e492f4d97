"""The call pipeline: admission and drain, one count per request, and answers for every refusal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from metatwin_functions import FunctionRegistry, Settings
from metatwin_functions.body import chunks_reader
from metatwin_functions.envelope import ExecRequest
from metatwin_functions.guards import CallGuards
from metatwin_functions.invocation import Invoker
from metatwin_functions.pipeline import CallMeta, CallPipeline


@pytest.fixture
def registry() -> FunctionRegistry:
    return FunctionRegistry()


@pytest.fixture
def settings() -> Settings:
    return Settings(
        functions_timeout=0.5,
        functions_max_timeout=1,
        functions_body_timeout=0.2,
        _env_file=None,  # type: ignore[call-arg]
    )


class Gate:
    """Whether the pipeline takes new calls, switched by the test."""

    def __init__(self) -> None:
        self.open = True

    def __call__(self) -> bool:
        return self.open


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def pipeline(registry: FunctionRegistry, settings: Settings, gate: Gate) -> Iterator[CallPipeline]:
    invoker = Invoker(registry, settings)
    yield CallPipeline(invoker, CallGuards(registry, settings), gate, state=lambda: "draining")
    invoker.close()


async def chunks_of(*parts: bytes, then_wait: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if then_wait:
        await asyncio.Event().wait()


def envelope(name: str, execution_id: str = "e", **args: Any) -> bytes:
    return json.dumps({"executionId": execution_id, "functionName": name, "args": args}).encode()


async def call(pipeline: CallPipeline, body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
    answer = await pipeline.serve_http(len(body), chunks_reader(chunks_of(body)))
    assert answer is not None
    return answer.status, json.loads(answer.body), answer.headers


async def test_a_call_counts_once_in_flight(
    registry: FunctionRegistry, pipeline: CallPipeline
) -> None:
    seen: list[int] = []

    @registry.function()
    async def probe() -> None:
        seen.append(pipeline.in_flight)

    status, body, _ = await call(pipeline, envelope("probe"))
    assert (status, body["success"]) == (200, True)
    assert seen == [1]  # admitted once, not again when invoked
    assert pipeline.in_flight == 0


async def test_wait_idle_waits_for_calls_and_bodies_still_arriving(
    registry: FunctionRegistry, pipeline: CallPipeline
) -> None:
    release = asyncio.Event()

    @registry.function()
    async def hold() -> str:
        await release.wait()
        return "released"

    assert await pipeline.wait_idle(0.01) is True
    calls = [asyncio.create_task(call(pipeline, envelope("hold"))) for _ in range(2)]
    slow_body = asyncio.create_task(
        pipeline.serve_http(100, chunks_reader(chunks_of(b'{"exec', then_wait=True)))
    )
    while pipeline.in_flight < 3:  # noqa: ASYNC110 - polls a counter, not an event
        await asyncio.sleep(0.005)
    assert await pipeline.wait_idle(0.05) is False
    first = asyncio.create_task(pipeline.wait_idle(2))
    second = asyncio.create_task(pipeline.wait_idle(2))
    release.set()
    assert await asyncio.gather(first, second) == [True, True]  # the slow body timed out too
    assert [body["result"] for _, body, _ in await asyncio.gather(*calls)] == ["released"] * 2
    timed_out = await slow_body
    assert timed_out is not None
    assert timed_out.status == 408
    assert json.loads(timed_out.body)["metadata"]["errorKind"] == "body_timeout"
    assert pipeline.in_flight == 0


async def test_a_declared_length_over_the_limit_is_413_before_any_body(
    pipeline: CallPipeline, settings: Settings
) -> None:
    async def never() -> AsyncIterator[bytes]:
        await asyncio.Event().wait()
        yield b""  # pragma: no cover

    async with asyncio.timeout(1):
        answer = await pipeline.serve_http(
            settings.functions_max_body_size + 1, chunks_reader(never())
        )
    assert answer is not None
    assert answer.status == 413
    assert json.loads(answer.body)["metadata"]["errorKind"] == "too_large"


async def test_when_not_ready_calls_get_503_with_their_id_and_are_not_admitted(
    registry: FunctionRegistry, pipeline: CallPipeline, gate: Gate
) -> None:
    ran: list[str] = []

    @registry.function()
    async def probe() -> None:
        ran.append("ran")

    gate.open = False
    status, body, headers = await call(pipeline, envelope("probe", "id-7"))
    assert status == 503
    assert body["metadata"] == {"executionId": "id-7", "errorKind": "unavailable"}
    assert headers["Retry-After"] == "1"
    assert headers["Connection"] == "close"
    answer = await pipeline.serve_request(ExecRequest("id-8", "probe", {}), CallMeta())
    assert answer.status == 503
    assert ran == []
    assert pipeline.in_flight == 0


async def test_a_forced_stop_answers_calls_in_flight_with_503_json(
    registry: FunctionRegistry, pipeline: CallPipeline
) -> None:
    started = asyncio.Event()

    @registry.function()
    async def hold() -> None:
        started.set()
        await asyncio.Event().wait()

    body = envelope("hold")
    task = asyncio.create_task(pipeline.serve_http(len(body), chunks_reader(chunks_of(body))))
    await started.wait()
    assert pipeline.abort_in_flight() == 1
    answer = await task
    assert answer is not None
    assert answer.status == 503
    assert json.loads(answer.body)["metadata"] == {"executionId": "e", "errorKind": "unavailable"}
    assert pipeline.in_flight == 0


async def test_a_forced_stop_answers_parsed_and_whole_body_calls_too(
    registry: FunctionRegistry, pipeline: CallPipeline
) -> None:
    started = asyncio.Event()

    @registry.function()
    async def hold() -> None:
        started.set()
        await asyncio.Event().wait()

    parsed = asyncio.create_task(
        pipeline.serve_request(ExecRequest("ws-1", "hold", {}), CallMeta(trigger="websocket"))
    )
    whole = asyncio.create_task(pipeline.serve_body(envelope("hold", "amqp-1"), CallMeta()))
    await started.wait()
    while pipeline.in_flight < 2:  # noqa: ASYNC110 - polls a counter, not an event
        await asyncio.sleep(0.005)
    assert pipeline.abort_in_flight() == 2
    answers = [await parsed, await whole]
    assert [a.status for a in answers] == [503, 503]
    ids = [json.loads(a.body)["metadata"]["executionId"] for a in answers]
    assert ids == ["ws-1", "amqp-1"]


async def test_a_detached_call_runs_to_its_end_when_the_client_goes_away(
    registry: FunctionRegistry, pipeline: CallPipeline
) -> None:
    release = asyncio.Event()
    finished: list[str] = []

    @registry.function()
    async def hold() -> None:
        await release.wait()
        finished.append("done")

    body = envelope("hold")
    meta = CallMeta(detach_on_cancel=True)
    task = asyncio.create_task(pipeline.serve_http(len(body), chunks_reader(chunks_of(body)), meta))
    while not pipeline.invoker.async_calls:  # noqa: ASYNC110 - polls a dict, not an event
        await asyncio.sleep(0.005)
    task.cancel()  # what Quart does when the client disconnects
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pipeline.in_flight == 1  # still counted: a drain waits for it
    release.set()
    assert await pipeline.wait_idle(1) is True
    assert finished == ["done"]


async def test_amqp_style_bodies_and_parsed_requests_share_the_answers(
    registry: FunctionRegistry, pipeline: CallPipeline
) -> None:
    @registry.function()
    async def add(a: int, b: int) -> int:
        return a + b

    answer = await pipeline.serve_body(envelope("add", a=1, b=2), CallMeta(trigger="amqp"))
    assert json.loads(answer.body)["result"] == 3
    bad = await pipeline.serve_body(b"[]", CallMeta(trigger="amqp"))
    assert bad.status == 422
    assert bad.rejected == "invalid_envelope"
    parsed = await pipeline.serve_request(ExecRequest("s", "add", {"a": 2, "b": 2}), CallMeta())
    assert json.loads(parsed.body)["result"] == 4


async def test_a_first_piece_over_the_limit_is_413_without_waiting_for_the_rest(
    pipeline: CallPipeline, settings: Settings
) -> None:
    big = b"x" * (settings.functions_max_body_size + 1)
    async with asyncio.timeout(1):  # the rest never comes: the answer must not wait for it
        answer = await pipeline.serve_http(None, chunks_reader(chunks_of(big, then_wait=True)))
    assert answer is not None
    assert answer.status == 413
