"""`FunctionTestClient`: calls as the platform makes them, through the deployed pipeline."""

from __future__ import annotations

import asyncio
import logging

import pytest
from quart import has_request_context

from metatwin_functions import FunctionRegistry, MetaTwinFunctionsError, Settings
from metatwin_functions.testing import CallFailedError, FunctionTestClient, InMemoryBroker


@pytest.fixture
def registry() -> FunctionRegistry:
    functions = FunctionRegistry()

    @functions.function(description="Adds two numbers together")
    async def add_numbers(a: int, b: int) -> int:
        return a + b

    @functions.function()
    async def nap(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "rested"

    @functions.function()
    def broken() -> None:
        raise ValueError("no luck")

    @functions.function()
    async def where_am_i() -> bool:
        return has_request_context()

    @functions.function()
    async def echo_headers(headers: str) -> str:
        return headers

    return functions


async def test_call_returns_the_contracts_answer_as_a_typed_object(
    registry: FunctionRegistry,
) -> None:
    async with FunctionTestClient(registry) as client:
        response = await client.call("add_numbers", a=1, b=2)
    assert response.status_code == 200
    assert (response.success, response.result, response.error) == (True, 3, None)
    assert response.execution_id is not None
    assert response.execution_id.startswith("test-")
    assert response.duration_ms is not None
    assert response.body["metadata"] == response.metadata
    assert response.raise_for_error() is response


async def test_failures_carry_kind_code_and_text(registry: FunctionRegistry) -> None:
    async with FunctionTestClient(registry) as client:
        failed = await client.call("broken", execution_id="e-1")
        invalid = await client.call("add_numbers", a="x", b=2)
        missing = await client.call("nope")
    assert (failed.status_code, failed.success, failed.result) == (200, False, None)
    assert failed.error == "Function execution failed: no luck"
    assert (failed.error_kind, failed.error_code, failed.execution_id) == (
        "execution_failed",
        "MTF-EXECUTION-003",
        "e-1",
    )
    assert invalid.error_kind == "invalid_arguments"
    assert invalid.error is not None
    assert "argument 'a'" in invalid.error
    assert missing.error == "Function 'nope' not found"
    with pytest.raises(CallFailedError, match=r"execution_failed.*no luck"):
        failed.raise_for_error()


async def test_settings_overrides_apply_to_the_served_app(registry: FunctionRegistry) -> None:
    async with FunctionTestClient(registry, functions_timeout=0.05) as client:
        response = await client.call("nap", seconds=1)
    assert response.error_kind == "timeout"
    assert response.error == "Function 'nap' execution timed out after 0.05 seconds"


async def test_calls_cross_the_raw_asgi_endpoint_as_deployed(registry: FunctionRegistry) -> None:
    # The raw-ASGI /exec runs a function in an app context only: no Quart request context.
    async with FunctionTestClient(registry) as client:
        assert (await client.call("where_am_i")).result is False
        assert (await client.call("where_am_i")).result is False


async def test_headers_carry_credentials_per_client_and_per_call(
    registry: FunctionRegistry,
) -> None:
    async with FunctionTestClient(registry, auth_api_keys="k-1") as anonymous:
        refused = await anonymous.call("add_numbers", a=1, b=1)
        allowed = await anonymous.call("add_numbers", a=1, b=1, headers={"X-API-Key": "k-1"})
    assert (refused.status_code, refused.error_kind) == (401, "unauthorized")
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert (allowed.status_code, allowed.result) == (200, 2)
    async with FunctionTestClient(
        registry, auth_api_keys="k-1", headers={"Authorization": "Bearer k-1"}
    ) as client:
        assert (await client.call("add_numbers", a=2, b=2)).result == 4


async def test_arguments_named_like_the_clients_own_go_in_args(registry: FunctionRegistry) -> None:
    async with FunctionTestClient(registry) as client:
        response = await client.call("echo_headers", args={"headers": "as an argument"})
    assert response.result == "as an argument"


async def test_same_execution_id_twice_replays_the_stored_answer(
    registry: FunctionRegistry,
) -> None:
    async with FunctionTestClient(registry) as client:
        first = await client.call("add_numbers", a=1, b=2, execution_id="same")
        second = await client.call("add_numbers", a=1, b=2, execution_id="same")
        fresh = await client.call("add_numbers", a=1, b=2)
    assert "replayed" not in first.metadata
    assert second.metadata["replayed"] is True
    assert "replayed" not in fresh.metadata


async def test_exec_posts_any_body_and_reports_refusals(registry: FunctionRegistry) -> None:
    async with FunctionTestClient(registry) as client:
        not_json = await client.exec(b"{nope")
        envelope = await client.exec({"executionId": "x", "functionName": "add_numbers"})
    assert (not_json.status_code, not_json.error_kind) == (422, "invalid_envelope")
    assert envelope.status_code == 200
    assert "missing required argument 'a'" in (envelope.error or "")


async def test_ready_metrics_and_raw_http(registry: FunctionRegistry) -> None:
    async with FunctionTestClient(registry, deployment_id="dep-7") as client:
        ready = await client.ready()
        await client.call("add_numbers", a=1, b=2)
        await client.call("add_numbers", a=1, b=2)
        calls = await client.metric(
            "metatwin_functions_calls_total", function="add_numbers", outcome="success"
        )
        absent = await client.metric("metatwin_functions_calls_total", function="nobody")
        text = await client.metrics()
        docs = await client.http.get("/openapi.json")
    assert ready.is_ready
    assert ready.body["deployment_id"] == "dep-7"
    assert ready.functions == ["add_numbers", "nap", "broken", "where_am_i", "echo_headers"]
    assert calls == 2.0
    assert absent is None
    assert "metatwin_functions_info" in text
    assert docs.status_code == 200


async def test_metrics_turned_off_is_a_clear_error(registry: FunctionRegistry) -> None:
    async with FunctionTestClient(registry, metrics_enabled=False) as client:
        with pytest.raises(RuntimeError, match="HTTP 404"):
            await client.metrics()


async def test_serving_hooks_start_and_stop_the_runtime(
    registry: FunctionRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "metatwin_functions")
    client = FunctionTestClient(registry)
    with pytest.raises(RuntimeError, match="not started"):
        _ = client.http
    async with client:
        runtime = client.runtime
        assert runtime.state == "ready"
        assert "Serving 5 function(s)" in caplog.text
        assert "raw-ASGI endpoint" in caplog.text
    assert runtime.state == "stopped"
    with pytest.raises(RuntimeError, match="not started"):
        await client.call("add_numbers", a=1, b=2)


async def test_mounted_under_a_prefix(registry: FunctionRegistry) -> None:
    async with FunctionTestClient(registry, url_prefix="/functions/") as client:
        assert (await client.call("add_numbers", a=3, b=4)).result == 7
        assert (await client.ready()).is_ready


def test_settings_and_overrides_together_are_refused(
    registry: FunctionRegistry, settings: Settings
) -> None:
    with pytest.raises(TypeError, match="either settings or keyword overrides"):
        FunctionTestClient(registry, settings, functions_timeout=1)


async def test_a_client_cannot_start_twice(registry: FunctionRegistry) -> None:
    async with FunctionTestClient(registry) as client:
        with pytest.raises(RuntimeError, match="already started"):
            await client.start()


async def test_events_go_to_an_in_memory_broker_and_can_be_awaited(
    registry: FunctionRegistry,
) -> None:
    async with FunctionTestClient(
        registry, deployment_id="dep-42", publish_http_executions=True
    ) as client:
        (started,) = await client.wait_for_event("FunctionDeploymentStartedPayload")
        await client.call("add_numbers", a=5, b=3, execution_id="e-1")
        (completed,) = await client.wait_for_event("FunctionExecutionCompletedPayload")
        ready = await client.ready()
        assert client.events[0] is started
    assert started.payload["deploymentId"] == "dep-42"
    assert [f["name"] for f in started.payload["functions"]][:1] == ["add_numbers"]
    assert started.routing_key == "routing.event.metatwin-functions.function.deployment.started"
    assert completed.payload == {
        "deploymentId": "dep-42",
        "executionId": "e-1",
        "functionName": "add_numbers",
        "trigger": "http",
        "success": True,
        "result": 8,
        "error": None,
        "metadata": completed.payload["metadata"],
    }
    assert (ready.body["rabbitmq_enabled"], ready.body["rabbitmq_connected"]) == (True, True)


async def test_events_turned_off_publish_nothing(registry: FunctionRegistry) -> None:
    async with FunctionTestClient(registry, enable_events=False) as client:
        with pytest.raises(TimeoutError):
            await client.wait_for_event("FunctionDeploymentStartedPayload", timeout=0.2)
        assert (await client.ready()).body["rabbitmq_enabled"] is False
    assert client.events == []


async def test_a_broker_outage_shows_in_ready(registry: FunctionRegistry) -> None:
    broker = InMemoryBroker()
    async with FunctionTestClient(registry, broker=broker) as client:
        await client.wait_for_event("FunctionDeploymentStartedPayload")
        broker.fail()
        assert (await client.ready()).body["rabbitmq_connected"] is False
        assert (await client.call("add_numbers", a=1, b=1)).result == 2


def test_the_test_kit_exports_exactly_its_public_names() -> None:
    import metatwin_functions.testing as testing

    assert testing.__all__ == [
        "CallFailedError",
        "CallResponse",
        "FunctionTestClient",
        "InMemoryBroker",
        "PublishedEvent",
        "ReadyResponse",
    ]
    assert issubclass(testing.CallFailedError, MetaTwinFunctionsError)
    assert issubclass(testing.CallFailedError, AssertionError)  # pytest reports a failure
