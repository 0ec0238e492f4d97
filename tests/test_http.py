"""The blueprint and app over Quart's test client, with serving hooks running."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel
from quart import Quart, jsonify
from quart.typing import TestClientProtocol as Client

from metatwin_functions import FunctionRegistry, Settings, create_app, functions_blueprint
from metatwin_functions.runtime import runtimes_of
from metatwin_functions.testing import FunctionTestClient


@pytest.fixture
def registry() -> FunctionRegistry:
    functions = FunctionRegistry()

    @functions.function(description="Adds two numbers together")
    async def add_numbers(a: int, b: int) -> int:
        return a + b

    @functions.function()
    async def slow(seconds: float = 0.3) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @functions.function()
    def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    return functions


@pytest.fixture
async def app(registry: FunctionRegistry, settings: Settings) -> AsyncIterator[Quart]:
    application = create_app(registry, settings, configure_logs=False)
    async with application.test_app():
        yield application


@pytest.fixture
def client(app: Quart) -> Client:
    return app.test_client()


async def post_exec(client: Client, body: Any, path: str = "/exec") -> tuple[int, Any]:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    response = await client.post(path, data=data, headers={"Content-Type": "application/json"})
    assert response.content_type == "application/json"
    return response.status_code, await response.get_json()


@pytest.fixture
def functions_registry(registry: FunctionRegistry) -> FunctionRegistry:
    return registry


@pytest.fixture
def functions_settings() -> dict[str, Any]:
    return {
        "deployment_id": "test-deployment",
        "functions_timeout": 2,
        "functions_max_timeout": 5,
        "enable_events": False,
    }


async def test_exec_returns_the_contract_envelope(function_client: FunctionTestClient) -> None:
    response = await function_client.call("add_numbers", a=5, b=3, execution_id="unique-id-123")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert (response.success, response.result, response.error) == (True, 8, None)
    assert response.execution_id == "unique-id-123"


async def test_exec_echoes_an_empty_execution_id(function_client: FunctionTestClient) -> None:
    response = await function_client.call("shout", text="hi", execution_id="")
    assert (response.status_code, response.result, response.execution_id) == (200, "HI", "")


async def test_exec_reports_function_errors_with_http_200(
    function_client: FunctionTestClient,
) -> None:
    response = await function_client.exec({"executionId": "e1", "functionName": "nope"})
    assert response.status_code == 200
    assert response.body == {
        "success": False,
        "result": None,
        "error": "Function 'nope' not found",
        "metadata": {
            "executionId": "e1",
            "durationMs": response.duration_ms,
            "errorKind": "not_found",
        },
    }


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got array"),
        ({"functionName": "add_numbers"}, "'executionId' is required"),
        ({"executionId": "x"}, "'functionName' is required"),
        ({"executionId": 1, "functionName": "add_numbers"}, "'executionId' must be a string"),
        ({"executionId": "x", "functionName": None}, "'functionName' must be a string"),
        ({"executionId": "x", "functionName": "add_numbers", "args": [1]}, "'args' must be"),
    ],
)
async def test_invalid_envelope_is_422_json_saying_what_is_wrong(
    client: Client, body: Any, problem: str
) -> None:
    status, answer = await post_exec(client, body)
    assert status == 422
    assert answer["success"] is False
    assert problem in answer["error"]
    assert answer["metadata"]["errorKind"] == "invalid_envelope"


async def test_body_over_the_limit_is_413_json(registry: FunctionRegistry) -> None:
    async with FunctionTestClient(registry, functions_max_body_size=2048) as client:
        too_large = await client.call("shout", text="x" * 4096)
        small = await client.call("shout", text="x")
    assert (too_large.status_code, too_large.error_kind) == (413, "too_large")
    assert "larger than the limit of 2048 bytes" in (too_large.error or "")
    assert (small.status_code, small.result) == (200, "X")


async def test_mounted_blueprint_enforces_its_own_body_limit(registry: FunctionRegistry) -> None:
    small = Settings(enable_events=False, functions_max_body_size=2048, _env_file=None)  # type: ignore[call-arg]
    host = Quart("host")  # keeps Quart's own 16 MiB MAX_CONTENT_LENGTH
    host.register_blueprint(functions_blueprint(registry, small), url_prefix="/fn")
    async with host.test_app():
        body = {"executionId": "big", "functionName": "shout", "args": {"text": "x" * 4096}}
        status, answer = await post_exec(host.test_client(), body, path="/fn/exec")
    assert status == 413
    assert answer["metadata"]["errorKind"] == "too_large"
    assert host.config["MAX_CONTENT_LENGTH"] != 2048


async def test_docs_are_served_without_installing_quart_schema_on_the_app(
    app: Quart, client: Client
) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    assert "QUART_SCHEMA" not in app.extensions
    assert set(spec["paths"]) == {"/exec", "/ready"}
    assert set(spec["paths"]["/ready"]["get"]["responses"]) == {"200", "503"}


async def test_host_app_with_quart_schema_can_document_the_functions(
    registry: FunctionRegistry, settings: Settings
) -> None:
    from quart_schema import QuartSchema

    from metatwin_functions.docs import FunctionsOpenAPIProvider

    host = Quart("host")
    QuartSchema(host, openapi_provider_class=FunctionsOpenAPIProvider)
    host.register_blueprint(functions_blueprint(registry, settings), url_prefix="/fn")
    async with host.test_app():
        spec = await (await host.test_client().get("/openapi.json")).get_json()
    body = spec["paths"]["/fn/exec"]["post"]["requestBody"]["content"]["application/json"]
    assert len(body["schema"]["oneOf"]) == 3
    assert "Call_add_numbers" in spec["components"]["schemas"]


async def test_unknown_routes_and_methods_answer_json(client: Client) -> None:
    missing = await client.get("/nowhere")
    wrong_method = await client.get("/exec")
    assert (missing.status_code, missing.content_type) == (404, "application/json")
    assert (wrong_method.status_code, wrong_method.content_type) == (405, "application/json")
    assert (await wrong_method.get_json())["success"] is False


async def test_404_and_405_log_one_info_line_each_without_query_or_body(
    function_client: FunctionTestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "metatwin_functions")
    await function_client.http.get("/nowhere?token=secret")
    await function_client.http.get("/exec")
    await function_client.http.delete("/" + "x" * 1000, data=b"secret body")
    refused = [r for r in caplog.records if r.getMessage().startswith("Refused a request")]
    assert [r.getMessage() for r in refused[:2]] == [
        "Refused a request: HTTP 404 GET /nowhere",
        "Refused a request: HTTP 405 GET /exec",
    ]
    assert refused[2].getMessage() == f"Refused a request: HTTP 404 DELETE /{'x' * 199}..."
    assert all(r.levelno == logging.INFO for r in refused)
    assert [getattr(r, "http_status", None) for r in refused] == [404, 405, 404]
    assert "secret" not in caplog.text


async def test_ready_lists_the_functions(function_client: FunctionTestClient) -> None:
    response = await function_client.ready()
    assert response.status_code == 200
    assert response.body == {
        "status": "ready",
        "deployment_id": "test-deployment",
        "function_count": 3,
        "functions": ["add_numbers", "slow", "shout"],
        "rabbitmq_enabled": False,
        "rabbitmq_connected": False,
        "sync_threads_abandoned": 0,
        "saturated": False,
    }


async def test_draining_refuses_new_calls_and_ready_says_503(app: Quart, client: Client) -> None:
    in_flight = asyncio.ensure_future(
        post_exec(client, {"executionId": "long", "functionName": "slow", "args": {"seconds": 0.3}})
    )
    await asyncio.sleep(0.05)
    runtime = runtimes_of(app)["metatwin_functions"]
    drained = asyncio.ensure_future(runtime.drain(timeout=5))
    await asyncio.sleep(0.01)

    ready = await client.get("/ready")
    refused_status, refused = await post_exec(
        client, {"executionId": "new", "functionName": "shout", "args": {"text": "a"}}
    )
    assert ready.status_code == 503
    assert (await ready.get_json())["status"] == "draining"
    assert refused_status == 503
    assert refused["metadata"]["errorKind"] == "unavailable"
    assert refused["metadata"]["executionId"] == "new"
    assert await drained is True
    status, body = await in_flight
    assert (status, body["result"]) == (200, "done")


async def test_openapi_documents_each_functions_arguments(client: Client) -> None:
    response = await client.get("/openapi.json")
    spec = await response.get_json()
    operation = spec["paths"]["/exec"]["post"]
    variants = operation["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert [v["$ref"].rsplit("/", 1)[1] for v in variants] == [
        "Call_add_numbers",
        "Call_slow",
        "Call_shout",
    ]
    add = spec["components"]["schemas"]["Call_add_numbers"]
    assert add["description"] == "Adds two numbers together"
    assert add["properties"]["functionName"] == {"const": "add_numbers"}
    args = add["properties"]["args"]
    assert args["required"] == ["a", "b"]
    assert args["properties"]["a"]["type"] == "integer"
    assert (
        spec["components"]["schemas"]["Call_slow"]["properties"]["args"]["properties"]["seconds"][
            "default"
        ]
        == 0.3
    )
    assert {"200", "413", "422"} <= set(operation["responses"])
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in (await docs.get_data(as_text=True)).lower()


async def test_blueprint_mounts_into_a_host_app_without_changing_it(
    registry: FunctionRegistry, settings: Settings
) -> None:
    host = Quart("host")

    @host.get("/hello")
    async def hello() -> Any:
        return jsonify(greeting="hi")

    @host.errorhandler(404)
    async def not_found(_: Exception) -> tuple[str, int]:
        return "host page", 404

    json_provider = type(host.json)
    host.register_blueprint(functions_blueprint(registry, settings), url_prefix="/functions")
    async with host.test_app():
        client = host.test_client()
        status, body = await post_exec(
            client,
            {"executionId": "m", "functionName": "add_numbers", "args": {"a": 1, "b": 2}},
            path="/functions/exec",
        )
        assert (status, body["result"]) == (200, 3)
        assert (await client.get("/functions/ready")).status_code == 200
        assert (await (await client.get("/hello")).get_json()) == {"greeting": "hi"}
        missing = await client.get("/missing")
        assert (missing.status_code, await missing.get_data(as_text=True)) == (404, "host page")
        assert type(host.json) is json_provider
        status, _ = await post_exec(client, b"nope", path="/functions/exec")
        assert status == 422


async def test_two_blueprints_on_one_app_keep_separate_runtimes(settings: Settings) -> None:
    first, second = FunctionRegistry(), FunctionRegistry()
    first.register(lambda: 1, name="one")
    second.register(lambda: 2, name="two")
    host = Quart("host")
    host.register_blueprint(functions_blueprint(first, settings, name="first"), url_prefix="/a")
    host.register_blueprint(functions_blueprint(second, settings, name="second"), url_prefix="/b")
    async with host.test_app():
        client = host.test_client()
        a = await (await client.get("/a/ready")).get_json()
        b = await (await client.get("/b/ready")).get_json()
        assert (a["functions"], b["functions"]) == (["one"], ["two"])


async def test_test_client_without_serving_hooks_still_serves(
    registry: FunctionRegistry, settings: Settings
) -> None:
    app = create_app(registry, settings, configure_logs=False, docs=False)
    status, body = await post_exec(
        app.test_client(),
        {"executionId": "t", "functionName": "add_numbers", "args": {"a": 2, "b": 2}},
    )
    assert (status, body["result"]) == (200, 4)


class Invoice(BaseModel):
    amount: float
    paid: bool = False


async def test_openapi_places_nested_models_among_the_components(settings: Settings) -> None:
    functions = FunctionRegistry()

    @functions.function()
    async def total(invoices: list[Invoice]) -> float:
        return sum(invoice.amount for invoice in invoices)

    app = create_app(functions, settings, configure_logs=False)
    async with app.test_app():
        spec = await (await app.test_client().get("/openapi.json")).get_json()
    schemas = spec["components"]["schemas"]
    items = schemas["Call_total"]["properties"]["args"]["properties"]["invoices"]["items"]
    assert items == {"$ref": "#/components/schemas/Invoice"}
    assert schemas["Invoice"]["properties"]["amount"]["type"] == "number"
    assert "$defs" not in json.dumps(spec)
