"""``GET /ws``: concurrent calls, cancel, bad frames and bounds, over a real Hypercorn."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from metatwin_functions import FunctionRegistry, Settings, create_app, current_execution
from metatwin_functions import websocket as ws_module
from metatwin_functions.runtime import runtimes_of
from metatwin_functions.stream_client import StreamRefusedError, WebSocketClient, stream_call
from tests.live_server import live_server

KEY = "ws-test-key"


class Probe:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.closed: list[str] = []
        self.all_closed = asyncio.Event()
        self.produced = 0
        self.thread_closed = threading.Event()


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def registry(probe: Probe) -> FunctionRegistry:
    functions = FunctionRegistry()

    @functions.function()
    async def count_to(n: int, pause: float = 0.0) -> AsyncIterator[int]:
        for i in range(n):
            yield i
            await asyncio.sleep(pause)

    @functions.function()
    async def add(a: int, b: int) -> int:
        return a + b

    @functions.function()
    async def waits(tag: str) -> AsyncIterator[str]:
        try:
            yield f"{tag} started"
            probe.started.set()
            await asyncio.sleep(30)
            yield "never"
        finally:
            probe.closed.append(tag)
            if len(probe.closed) == 2:
                probe.all_closed.set()

    @functions.function()
    def waits_in_thread() -> Any:
        try:
            for i in range(10**9):
                yield i
                threading.Event().wait(0.001)
        finally:
            probe.thread_closed.set()

    @functions.function()
    async def big_items(n: int) -> AsyncIterator[str]:
        for _ in range(n):
            probe.produced += 1
            yield "x" * 65536

    @functions.function()
    async def with_progress() -> AsyncIterator[int]:
        current_execution().progress(0.5)  # type: ignore[union-attr]
        yield 1

    @functions.function()
    async def breaks_halfway() -> AsyncIterator[int]:
        yield 1
        raise ValueError("bad row 2")

    @functions.function()
    async def yields_bytes_of_a_set() -> AsyncIterator[Any]:
        yield object()

    @functions.function(max_concurrency=1)
    async def single() -> str:
        await probe.release.wait()
        return "done"

    return functions


def make_settings(**extra: Any) -> Settings:
    return Settings(
        enable_events=False,
        functions_timeout=5,
        functions_max_timeout=40,
        functions_max_body_size=2048,
        _env_file=None,  # type: ignore[call-arg]
        **extra,
    )


@pytest.fixture
async def address(registry: FunctionRegistry) -> AsyncIterator[str]:
    settings = make_settings()
    app = create_app(registry, settings, configure_logs=False, docs=False)
    async with live_server(app, settings) as served:
        yield served


@pytest.fixture
async def ws(address: str) -> AsyncIterator[WebSocketClient]:
    async with await WebSocketClient.connect(f"ws://{address}/ws") as client:
        yield client


def call(name: str, execution_id: str, **args: Any) -> dict[str, Any]:
    return {"executionId": execution_id, "functionName": name, "args": args}


async def receive(ws: WebSocketClient) -> dict[str, Any]:
    event = await asyncio.wait_for(ws.receive(), 5)
    assert event is not None, "the server closed the socket"
    return event


async def results_of(ws: WebSocketClient, count: int) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    while len(found) < count:
        event = await receive(ws)
        if event["type"] == "result":
            found[event["executionId"]] = event
    return found


# -- calls -------------------------------------------------------------------------------------


async def test_a_call_streams_items_then_its_result(ws: WebSocketClient) -> None:
    events = [event async for event in ws.call("count_to", {"n": 3}, execution_id="w-1")]
    assert events[:3] == [{"executionId": "w-1", "type": "item", "data": i} for i in range(3)]
    assert events[3]["type"] == "result"
    assert events[3]["success"] is True
    assert events[3]["result"] is None
    assert events[3]["metadata"]["executionId"] == "w-1"
    assert len(events) == 4


async def test_a_plain_function_answers_with_only_its_result(ws: WebSocketClient) -> None:
    events = [event async for event in ws.call("add", {"a": 1, "b": 2}, execution_id="w-2")]
    assert [(e["type"], e["result"]) for e in events] == [("result", 3)]


async def test_progress_objects_carry_the_execution_id(ws: WebSocketClient) -> None:
    events = [event async for event in ws.call("with_progress", execution_id="w-p")]
    assert events[0] == {"executionId": "w-p", "type": "progress", "fraction": 0.5, "message": None}


async def test_calls_on_one_socket_run_concurrently_and_interleave(ws: WebSocketClient) -> None:
    await ws.send(call("count_to", "a", n=20, pause=0.005))
    await ws.send(call("count_to", "b", n=20, pause=0.005))
    order: list[str] = []
    items: dict[str, list[int]] = {"a": [], "b": []}
    results = 0
    while results < 2:
        event = await receive(ws)
        order.append(event["executionId"])
        if event["type"] == "item":
            items[event["executionId"]].append(event["data"])
        else:
            results += 1
    assert items == {"a": list(range(20)), "b": list(range(20))}
    first_result = min(order.index("a", 20), order.index("b", 20))
    assert set(order[:first_result]) == {"a", "b"}  # both ran before either ended


async def test_a_generator_that_raises_halfway_fails_after_its_items(ws: WebSocketClient) -> None:
    events = [event async for event in ws.call("breaks_halfway", execution_id="w-3")]
    assert events[0]["data"] == 1
    assert events[-1]["success"] is False
    assert events[-1]["error"] == "Function execution failed: bad row 2"


async def test_an_item_json_cannot_hold_fails_the_call(ws: WebSocketClient) -> None:
    events = [event async for event in ws.call("yields_bytes_of_a_set", execution_id="w-4")]
    assert events[-1]["metadata"]["errorKind"] == "result_not_serializable"


# -- cancel --------------------------------------------------------------------------------------


async def test_cancel_ends_the_call_as_cancelled_and_closes_its_generator(
    ws: WebSocketClient, probe: Probe
) -> None:
    await ws.send(call("waits", "c-1", tag="one"))
    assert (await receive(ws))["data"] == "one started"
    await asyncio.wait_for(probe.started.wait(), 5)
    await ws.send({"type": "cancel", "executionId": "c-1"})
    result = await receive(ws)
    assert result["type"] == "result"
    assert result["executionId"] == "c-1"
    assert result["success"] is False
    assert result["metadata"]["errorKind"] == "cancelled"
    assert result["error"] == "Function 'waits' execution was cancelled by the caller"
    assert probe.closed == ["one"]  # its finally ran before the result was sent


async def test_a_cancel_right_behind_its_call_still_gets_the_cancelled_result(
    ws: WebSocketClient,
) -> None:
    await ws.send(call("count_to", "quick", n=10**6, pause=0.01))
    await ws.send({"type": "cancel", "executionId": "quick"})
    while (event := await receive(ws))["type"] != "result":
        pass
    assert event["executionId"] == "quick"
    assert event["metadata"]["errorKind"] == "cancelled"


async def test_cancel_closes_a_plain_generator_at_its_next_yield(
    ws: WebSocketClient, probe: Probe
) -> None:
    await ws.send(call("waits_in_thread", "c-2"))
    assert (await receive(ws))["type"] == "item"
    await ws.send({"type": "cancel", "executionId": "c-2"})
    while (event := await receive(ws))["type"] != "result":
        pass
    assert event["metadata"]["errorKind"] == "cancelled"
    assert await asyncio.to_thread(probe.thread_closed.wait, 5)


async def test_a_cancel_for_an_unknown_id_gets_an_error_and_the_socket_stays_open(
    ws: WebSocketClient,
) -> None:
    await ws.send({"type": "cancel", "executionId": "nobody"})
    assert await receive(ws) == {
        "type": "error",
        "executionId": "nobody",
        "error": "No call with executionId 'nobody' is running on this socket",
        "errorKind": "not_found",
    }
    events = [event async for event in ws.call("add", {"a": 2, "b": 2}, execution_id="after")]
    assert events[-1]["result"] == 4


async def test_closing_the_socket_cancels_its_calls(address: str, probe: Probe) -> None:
    client = await WebSocketClient.connect(f"ws://{address}/ws")
    await client.send(call("waits", "x-1", tag="one"))
    await client.send(call("waits", "x-2", tag="two"))
    seen = {(await receive(client))["data"], (await receive(client))["data"]}
    assert seen == {"one started", "two started"}
    await client.close()
    await asyncio.wait_for(probe.all_closed.wait(), 5)
    assert sorted(probe.closed) == ["one", "two"]


# -- bad frames ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "execution_id", "says"),
    [
        ("{not json", None, "frame is not valid JSON"),
        ("[1, 2]", None, "body must be a JSON object, got array"),
        ('{"executionId": "m-1"}', "m-1", "'functionName' is required"),
        ('{"executionId": "m-2", "functionName": "add", "args": 3}', "m-2", "'args' must be"),
        ('{"type": "subscribe", "executionId": "m-3"}', "m-3", "unknown frame type"),
        ('{"type": "cancel"}', None, "a cancel needs 'executionId'"),
    ],
)
async def test_a_malformed_frame_gets_an_error_object_and_the_socket_stays_open(
    ws: WebSocketClient, frame: str, execution_id: str | None, says: str
) -> None:
    await ws.send(frame)
    error = await receive(ws)
    assert set(error) == {"type", "executionId", "error", "errorKind"}
    assert error["type"] == "error"
    assert error["executionId"] == execution_id
    assert error["errorKind"] == "invalid_envelope"
    assert says in error["error"]
    events = [event async for event in ws.call("add", {"a": 1, "b": 1}, execution_id="ok")]
    assert events[-1]["result"] == 2


async def test_a_binary_frame_gets_an_error_object(ws: WebSocketClient) -> None:
    await ws.send(b'{"executionId": "b", "functionName": "add"}')
    error = await receive(ws)
    assert error["errorKind"] == "invalid_envelope"
    assert "binary frames are not accepted" in error["error"]


async def test_a_frame_over_the_body_limit_gets_too_large(ws: WebSocketClient) -> None:
    await ws.send(call("add", "huge", a=1, b=2, padding="x" * 5000))
    error = await receive(ws)
    assert error["type"] == "error"
    assert error["errorKind"] == "too_large"
    assert "larger than the limit of 2048 bytes" in error["error"]
    await ws.send({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}


# -- limits and bounds ---------------------------------------------------------------------------


async def test_a_flood_of_calls_meets_the_per_function_concurrency_limit(
    ws: WebSocketClient, probe: Probe
) -> None:
    for i in range(5):
        await ws.send(call("single", f"f-{i}"))
    refused = [await receive(ws) for _ in range(4)]
    assert {event["metadata"]["errorKind"] for event in refused} == {"concurrency_limited"}
    assert {event["status"] for event in refused} == {429}
    probe.release.set()
    done = await receive(ws)
    assert done["result"] == "done"


async def test_a_socket_has_a_bounded_number_of_calls_in_flight(
    ws: WebSocketClient, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_module, "MAX_CALLS_PER_SOCKET", 2)
    for tag in ("one", "two", "three"):
        await ws.send(call("waits", tag, tag=tag))
    events = [await receive(ws) for _ in range(3)]
    refused = [event for event in events if event["type"] == "result"]
    assert len(refused) == 1
    assert refused[0]["executionId"] == "three"
    assert refused[0]["metadata"]["errorKind"] == "concurrency_limited"


async def test_a_slow_reader_slows_its_own_call_not_the_server(
    ws: WebSocketClient, probe: Probe, address: str
) -> None:
    await ws.send(call("big_items", "slow", n=2000))  # 128 MiB if nothing held it back
    await asyncio.sleep(0.5)  # the socket is not read meanwhile
    held = probe.produced
    # The send queue plus what the kernel's socket buffers hold: far from all 2000.
    print(f"items produced while the client did not read: {held}")
    assert held < 2000 // 2
    # Another client is served meanwhile.
    events = [e async for e in stream_call(f"http://{address}", "add", {"a": 1, "b": 1})]
    assert events[-1]["result"] == 2
    results = 0
    items = 0
    while results == 0:
        event = await receive(ws)
        items += event["type"] == "item"
        results += event["type"] == "result"
    assert items == 2000
    assert event["success"] is True


async def test_a_client_that_floods_frames_without_reading_is_disconnected(
    ws: WebSocketClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_module, "SEND_BUFFER_FRAMES", 4)
    async with await WebSocketClient.connect(ws.url) as flooder:
        await flooder.send(call("big_items", "fill", n=2000))  # fills the queue; never read
        for _ in range(10_000):
            await flooder.send("not json")
            if flooder.server_closed:
                break
        while await asyncio.wait_for(flooder.receive_raw(), 5) is not None:
            pass
        assert flooder.close_code == 1008
    events = [event async for event in ws.call("add", {"a": 1, "b": 1}, execution_id="fine")]
    assert events[-1]["result"] == 2  # other sockets are served as before


async def test_ping_frames_get_pong(ws: WebSocketClient) -> None:
    await ws.send({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}


# -- duplicates and auth -------------------------------------------------------------------------


async def test_a_duplicate_of_a_running_id_is_a_conflict_on_either_stream_transport(
    ws: WebSocketClient, probe: Probe, address: str
) -> None:
    await ws.send(call("waits", "d-1", tag="one"))
    assert (await receive(ws))["type"] == "item"
    await ws.send(call("waits", "d-1", tag="two"))
    conflict = await receive(ws)
    assert conflict["type"] == "result"
    assert conflict["status"] == 409
    assert conflict["metadata"]["errorKind"] == "idempotency_conflict"
    with pytest.raises(StreamRefusedError) as caught:
        async for _ in stream_call(f"http://{address}", "waits", {"tag": "x"}, execution_id="d-1"):
            pass
    assert caught.value.status == 409


async def test_the_handshake_needs_credentials_when_auth_is_on(registry: FunctionRegistry) -> None:
    settings = make_settings(auth_api_keys=KEY)
    app = create_app(registry, settings, configure_logs=False, docs=False)
    async with live_server(app, settings) as address:
        with pytest.raises(StreamRefusedError) as caught:
            await WebSocketClient.connect(f"ws://{address}/ws")
        assert caught.value.status == 401
        assert caught.value.body["metadata"]["errorKind"] == "unauthorized"
        with pytest.raises(StreamRefusedError):
            await WebSocketClient.connect(f"ws://{address}/ws", api_key="wrong")
        for credentials in ({"api_key": KEY}, {"token": KEY}):
            async with await WebSocketClient.connect(f"ws://{address}/ws", **credentials) as client:
                events = [e async for e in client.call("add", {"a": 1, "b": 2}, execution_id="a")]
                assert events[-1]["result"] == 3


async def test_a_clients_protocol_pings_keep_the_socket_alive(ws: WebSocketClient) -> None:
    for _ in range(3):
        await asyncio.wait_for(ws.ping(), 5)
    assert ws.pongs_received == 3
    events = [event async for event in ws.call("add", {"a": 1, "b": 1}, execution_id="alive")]
    assert events[-1]["result"] == 2


async def test_a_draining_server_answers_the_calls_in_flight_then_closes_with_1001(
    registry: FunctionRegistry,
) -> None:
    settings = make_settings()
    app = create_app(registry, settings, configure_logs=False, docs=False)
    async with (
        live_server(app, settings) as address,
        await WebSocketClient.connect(f"ws://{address}/ws") as client,
    ):
        await client.send(call("count_to", "in-flight", n=20, pause=0.01))
        assert (await receive(client))["type"] == "item"
        runtime = runtimes_of(app)["metatwin_functions"]
        drained = asyncio.ensure_future(runtime.drain(5))
        await client.send(call("add", "late", a=1, b=1))
        results: dict[str, dict[str, Any]] = {}
        while (event := await asyncio.wait_for(client.receive(), 5)) is not None:
            if event["type"] == "result":
                results[event["executionId"]] = event
        assert results["in-flight"]["success"] is True
        assert results["late"]["status"] == 503
        assert results["late"]["metadata"]["errorKind"] == "unavailable"
        assert client.close_code == 1001
        assert await drained
