"""Units of streaming: the bounded channel, the sink, progress, the invoker running generators."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from metatwin_functions import FunctionRegistry, Settings, current_execution
from metatwin_functions.context import ExecutionContext
from metatwin_functions.envelope import ExecRequest
from metatwin_functions.invocation import Invoker
from metatwin_functions.streaming import ChannelClosedError, LineChannel, StreamSink


@pytest.fixture
def registry() -> FunctionRegistry:
    return FunctionRegistry()


@pytest.fixture
def invoker(registry: FunctionRegistry) -> Iterator[Invoker]:
    settings = Settings(
        functions_timeout=0.5,
        functions_max_timeout=1,
        functions_max_result_size=1024,
        _env_file=None,  # type: ignore[call-arg]
    )
    running = Invoker(registry, settings)
    yield running
    running.close()


def lines_of(batch: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in batch]


# -- LineChannel ---------------------------------------------------------------------------------


async def test_put_waits_while_the_channel_is_full_and_take_frees_it() -> None:
    channel = LineChannel(2)
    await channel.put(b"1")
    await channel.put(b"2")
    third = asyncio.ensure_future(channel.put(b"3"))
    await asyncio.sleep(0)
    assert not third.done()  # full: the writer waits
    assert await channel.take() == [b"1", b"2"]
    await asyncio.wait_for(third, 1)
    assert await channel.take() == [b"3"]


async def test_offer_drops_a_line_when_full_and_never_waits() -> None:
    channel = LineChannel(1)
    assert channel.offer(b"a") is True
    assert channel.offer(b"b") is False
    assert await channel.take() == [b"a"]


async def test_close_wakes_waiting_writers_with_an_error() -> None:
    channel = LineChannel(1)
    await channel.put(b"a")
    waiting = asyncio.ensure_future(channel.put(b"b"))
    await asyncio.sleep(0)
    channel.close()
    with pytest.raises(ChannelClosedError):
        await waiting
    assert await channel.take() == []


async def test_take_returns_the_rest_then_nothing_once_finished() -> None:
    channel = LineChannel(4)
    await channel.put(b"last")
    channel.finish()
    assert await channel.take() == [b"last"]
    assert await channel.take() == []


async def test_a_cancelled_writer_leaves_no_trace() -> None:
    channel = LineChannel(1)
    await channel.put(b"a")
    waiting = asyncio.ensure_future(channel.put(b"b"))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await channel.take() == [b"a"]
    assert len(channel) == 0


# -- progress ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), float("inf"), True, "0.5", None])
def test_progress_refuses_a_fraction_outside_zero_to_one(fraction: Any) -> None:
    context = ExecutionContext("e", "f")
    with pytest.raises(ValueError, match="from 0 to 1"):
        context.progress(fraction)


def test_progress_refuses_a_message_that_is_not_a_string() -> None:
    with pytest.raises(TypeError, match="string or None"):
        ExecutionContext("e", "f").progress(0.5, 42)  # type: ignore[arg-type]


def test_progress_without_a_stream_is_ignored() -> None:
    ExecutionContext("e", "f").progress(0.5, "nobody listens")


async def test_progress_from_a_thread_reaches_the_loop() -> None:
    channel = LineChannel(8)
    sink = StreamSink(channel)
    sink.start("t-1")
    thread = threading.Thread(target=sink.progress, args=(0.75, "from a thread"))
    thread.start()
    thread.join()
    assert lines_of(await asyncio.wait_for(channel.take(), 1)) == [
        {"executionId": "t-1", "type": "progress", "fraction": 0.75, "message": "from a thread"}
    ]


# -- the invoker ---------------------------------------------------------------------------------


async def test_a_streamed_generator_writes_items_and_answers_a_null_result(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    async def letters() -> AsyncIterator[str]:
        current_execution().progress(0.0)  # type: ignore[union-attr]
        yield "a"
        yield "b"

    channel = LineChannel(16)
    sink = StreamSink(channel)
    outcome = await invoker.invoke(ExecRequest("i-1", "letters", {}), sink=sink)
    assert json.loads(outcome.body)["result"] is None
    assert [line.get("data") for line in lines_of(await channel.take())] == [None, "a", "b"]


async def test_an_item_over_the_result_size_limit_fails_the_call(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    async def grows() -> AsyncIterator[str]:
        yield "small"
        yield "x" * 2000

    sink = StreamSink(LineChannel(16))
    outcome = await invoker.invoke(ExecRequest("i-2", "grows", {}), sink=sink)
    body = json.loads(outcome.body)
    assert body["metadata"]["errorKind"] == "result_too_large"
    assert "yielded an item (#2) of 2002 bytes" in body["error"]


async def test_a_collected_generator_is_bound_by_the_result_size_limit(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    @registry.function()
    def many() -> Iterator[int]:
        yield from range(1000)

    body = json.loads((await invoker.invoke(ExecRequest("i-3", "many", {}))).body)
    assert body["metadata"]["errorKind"] == "result_too_large"


async def test_a_plain_generator_past_its_deadline_times_out_and_is_closed(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    closed = threading.Event()

    @registry.function()
    def slow() -> Iterator[int]:
        try:
            for i in range(10**6):
                yield i
                threading.Event().wait(0.01)
        finally:
            closed.set()

    for sink in (None, StreamSink(LineChannel(10**6))):
        closed.clear()
        body = json.loads((await invoker.invoke(ExecRequest("i-4", "slow", {}), sink=sink)).body)
        assert body["metadata"]["errorKind"] == "timeout"
        assert await asyncio.to_thread(closed.wait, 2)  # closed at its next yield


async def test_a_cancel_asked_by_the_sink_ends_the_call_as_cancelled(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    started = asyncio.Event()

    @registry.function()
    async def forever() -> AsyncIterator[int]:
        started.set()
        await asyncio.sleep(30)
        yield 1

    sink = StreamSink(LineChannel(4))
    call = asyncio.ensure_future(invoker.invoke(ExecRequest("i-5", "forever", {}), sink=sink))
    await started.wait()
    sink.cancel()
    call.cancel()
    outcome = await call  # an answer, not a CancelledError
    assert outcome.outcome == "cancelled"
    assert json.loads(outcome.body)["metadata"]["errorKind"] == "cancelled"


async def test_a_server_cancel_still_propagates(
    registry: FunctionRegistry, invoker: Invoker
) -> None:
    started = asyncio.Event()

    @registry.function()
    async def forever() -> AsyncIterator[int]:
        started.set()
        await asyncio.sleep(30)
        yield 1

    call = asyncio.ensure_future(
        invoker.invoke(ExecRequest("i-6", "forever", {}), sink=StreamSink(LineChannel(4)))
    )
    await started.wait()
    call.cancel()  # not asked by the caller: e.g. a forced stop
    with pytest.raises(asyncio.CancelledError):
        await call
