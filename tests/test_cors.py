"""CORS (``CRBR_CORS_ORIGINS``): off by default; on, every answer carries it, fast path included."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from quart import Quart

from metatwin_functions import ConfigurationError, FunctionRegistry, Settings, create_app
from metatwin_functions.testing import FunctionTestClient

APP = "https://app.example.com"
CALL = {"executionId": "c-1", "functionName": "add_numbers", "args": {"a": 1, "b": 2}}
CORS_HEADERS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Expose-Headers",
    "Access-Control-Allow-Credentials",
    "Vary",
)


@pytest.fixture
def registry() -> FunctionRegistry:
    functions = FunctionRegistry()

    @functions.function()
    async def add_numbers(a: int, b: int) -> int:
        return a + b

    return functions


def cors_of(headers: Any) -> dict[str, str]:
    return {name: headers[name] for name in CORS_HEADERS if name in headers}


async def test_off_by_default_no_answer_carries_cors(registry: FunctionRegistry) -> None:
    async with FunctionTestClient(registry) as client:
        call = await client.call("add_numbers", a=1, b=2, headers={"Origin": APP})
        preflight = await client.http.options(
            "/exec", headers={"Origin": APP, "Access-Control-Request-Method": "POST"}
        )
    assert cors_of(call.headers) == {}
    assert "Access-Control-Allow-Origin" not in preflight.headers


async def test_the_fast_exec_answer_carries_the_origin_it_allows(
    registry: FunctionRegistry,
) -> None:
    async with FunctionTestClient(registry, cors_origins=f"{APP}, http://localhost:3000") as client:
        allowed = await client.call("add_numbers", a=1, b=2, headers={"Origin": APP})
        other = await client.call(
            "add_numbers", a=1, b=2, headers={"Origin": "https://evil.example"}
        )
        assert client.app.asgi_app.__class__.__name__ == "ExecFastPath"
    assert allowed.result == 3
    assert cors_of(allowed.headers) == {
        "Access-Control-Allow-Origin": APP,
        "Access-Control-Expose-Headers": "Retry-After, WWW-Authenticate",
        "Vary": "Origin",
    }
    assert cors_of(other.headers) == {"Vary": "Origin"}


async def test_the_preflight_of_exec_is_answered(registry: FunctionRegistry) -> None:
    async with FunctionTestClient(registry, cors_origins=APP) as client:
        preflight = await client.http.options(
            "/exec",
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, x-api-key",
            },
        )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert {"content-type", "x-api-key"} <= {h.strip() for h in allowed.split(",")}
    assert preflight.headers["Access-Control-Max-Age"] == "600"


async def test_docs_ready_and_refusals_carry_it_too(registry: FunctionRegistry) -> None:
    async with FunctionTestClient(registry, cors_origins=APP, auth_api_keys="k") as client:
        origin = {"Origin": APP}
        docs = await client.http.get("/docs", headers=origin)
        openapi = await client.http.get("/openapi.json", headers=origin)
        ready = await client.http.get("/ready", headers=origin)
        refused = await client.call("add_numbers", a=1, b=2, headers=origin)
    for response in (docs, openapi, ready):
        assert response.headers["Access-Control-Allow-Origin"] == APP
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == APP


@pytest.mark.parametrize("origins", [APP, "*"])
@pytest.mark.parametrize("origin", [APP, "https://other.example", None])
async def test_the_fast_path_answers_as_quarts_view_does(
    registry: FunctionRegistry, settings: Settings, origins: str, origin: str | None
) -> None:
    config = settings.model_copy(update={"cors_origins": origins})
    headers = {"Content-Type": "application/json"} | ({"Origin": origin} if origin else {})
    answers = []
    for fast in (True, False):
        app: Quart = create_app(registry, config, configure_logs=False, fast_exec=fast)
        async with app.test_app():
            response = await app.test_client().post("/exec", json=CALL, headers=headers)
        answers.append((response.status_code, cors_of(response.headers)))
    assert answers[0] == answers[1]


@pytest.mark.parametrize("value", ["app.example.com", "https://app.example.com/path", " , "])
def test_a_bad_origin_stops_the_start_naming_the_variable(
    registry: FunctionRegistry, settings: Settings, value: str
) -> None:
    config = settings.model_copy(update={"cors_origins": value})
    with pytest.raises(ConfigurationError, match="CRBR_CORS_ORIGINS"):
        create_app(registry, config, configure_logs=False)


def test_without_quart_cors_the_error_says_what_to_install(
    registry: FunctionRegistry, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "quart_cors", None)
    config = settings.model_copy(update={"cors_origins": APP})
    with pytest.raises(ConfigurationError, match=r"metatwin-functions\[cors\]"):
        create_app(registry, config, configure_logs=False)
