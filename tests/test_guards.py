"""Idempotency and traffic limits as guards of the pipeline, seen through both HTTP transports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart

from metatwin_functions import FunctionRegistry, Settings, create_app


def quick(**values: Any) -> Settings:
    values.setdefault("enable_events", False)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def registry() -> FunctionRegistry:
    functions = FunctionRegistry()
    functions.runs = []  # type: ignore[attr-defined]
    functions.release = asyncio.Event()  # type: ignore[attr-defined]

    @functions.function()
    async def add(a: int, b: int) -> int:
        functions.runs.append(("add", a, b))  # type: ignore[attr-defined]
        return a + b

    @functions.function()
    async def hold(tag: str = "") -> str:
        functions.runs.append(("hold", tag))  # type: ignore[attr-defined]
        await functions.release.wait()  # type: ignore[attr-defined]
        return "released"

    @functions.function()
    async def fail() -> None:
        functions.runs.append(("fail",))  # type: ignore[attr-defined]
        raise RuntimeError("no")

    @functions.function(max_concurrency=1)
    async def single() -> str:
        await functions.release.wait()  # type: ignore[attr-defined]
        return "single"

    @functions.function(rate_limit="2/m")
    async def scarce() -> str:
        return "ok"

    return functions


@pytest.fixture(params=[True, False], ids=["raw-asgi", "quart-view"])
async def app(request: pytest.FixtureRequest, registry: FunctionRegistry) -> AsyncIterator[Quart]:
    application = create_app(registry, quick(), configure_logs=False, fast_exec=request.param)
    async with application.test_app():
        yield application


async def post(app: Quart, execution_id: str, name: str, **args: Any) -> tuple[int, Any, Any]:
    body = {"executionId": execution_id, "functionName": name, "args": args}
    response = await app.test_client().post("/exec", json=body)
    return response.status_code, json.loads(await response.get_data()), response.headers


async def test_a_retry_of_a_success_is_replayed_without_running_again(
    app: Quart, registry: Any
) -> None:
    first = await post(app, "r-1", "add", a=1, b=2)
    again = await post(app, "r-1", "add", a=1, b=2)
    assert first[1]["result"] == again[1]["result"] == 3
    assert "replayed" not in first[1]["metadata"]
    assert again[1]["metadata"]["replayed"] is True
    assert registry.runs == [("add", 1, 2)]


async def test_the_same_args_in_another_key_order_are_the_same_call(
    app: Quart, registry: Any
) -> None:
    client = app.test_client()
    await client.post(
        "/exec", data=b'{"executionId":"k","functionName":"add","args":{"a":1,"b":2}}'
    )
    response = await client.post(
        "/exec", data=b'{"args":{"b":2,"a":1},"functionName":"add","executionId":"k"}'
    )
    assert (await response.get_json())["metadata"]["replayed"] is True
    assert len(registry.runs) == 1


async def test_a_reused_id_with_other_arguments_is_a_409_and_nothing_runs(
    app: Quart, registry: Any
) -> None:
    await post(app, "c-1", "add", a=1, b=2)
    status, body, _ = await post(app, "c-1", "add", a=5, b=5)
    other_function = await post(app, "c-1", "fail")
    assert status == other_function[0] == 409
    assert body["metadata"] == {"executionId": "c-1", "errorKind": "idempotency_conflict"}
    assert registry.runs == [("add", 1, 2)]


async def test_concurrent_duplicates_join_the_running_call(app: Quart, registry: Any) -> None:
    calls = [asyncio.create_task(post(app, "j-1", "hold", tag="x")) for _ in range(5)]
    while not registry.runs:  # noqa: ASYNC110 - waits for the function to start
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    registry.release.set()
    answers = await asyncio.gather(*calls)
    assert {body["result"] for _, body, _ in answers} == {"released"}
    assert registry.runs == [("hold", "x")]


async def test_failures_are_not_stored_and_empty_ids_never_deduplicated(
    app: Quart, registry: Any
) -> None:
    await post(app, "f-1", "fail")
    await post(app, "f-1", "fail")
    await post(app, "", "add", a=1, b=1)
    await post(app, "", "add", a=1, b=1)
    assert registry.runs == [("fail",), ("fail",), ("add", 1, 1), ("add", 1, 1)]


async def test_idempotency_off_runs_every_retry(registry: Any) -> None:
    app = create_app(registry, quick(idempotency_ttl=0), configure_logs=False)
    async with app.test_app():
        await post(app, "o-1", "add", a=1, b=1)
        _, body, _ = await post(app, "o-1", "add", a=1, b=1)
    assert "replayed" not in body["metadata"]
    assert len(registry.runs) == 2


async def test_a_function_concurrency_cap_answers_429_with_retry_after(
    app: Quart, registry: Any
) -> None:
    first = asyncio.create_task(post(app, "s-1", "single"))
    await asyncio.sleep(0.05)
    status, body, headers = await post(app, "s-2", "single")
    assert status == 429
    assert headers["Retry-After"] == "1"
    assert body["metadata"] == {"executionId": "s-2", "errorKind": "concurrency_limited"}
    registry.release.set()
    assert (await first)[1]["result"] == "single"
    assert (await post(app, "s-3", "single"))[0] == 200


async def test_a_rate_limit_answers_429_and_a_replay_takes_no_token(app: Quart) -> None:
    assert (await post(app, "t-1", "scarce"))[0] == 200
    assert (await post(app, "t-1", "scarce"))[1]["metadata"]["replayed"] is True
    assert (await post(app, "t-2", "scarce"))[0] == 200
    status, body, headers = await post(app, "t-3", "scarce")
    assert status == 429
    assert body["metadata"]["errorKind"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 1


async def test_ready_says_saturated_at_the_process_concurrency_limit(registry: Any) -> None:
    app = create_app(registry, quick(functions_max_concurrency=1), configure_logs=False)
    async with app.test_app():
        client = app.test_client()
        assert (await (await client.get("/ready")).get_json())["saturated"] is False
        held = asyncio.create_task(post(app, "h-1", "hold"))
        await asyncio.sleep(0.05)
        ready = await client.get("/ready")
        assert ready.status_code == 200
        assert (await ready.get_json())["saturated"] is True
        assert (await post(app, "h-2", "add", a=1, b=1))[1]["metadata"]["errorKind"] == (
            "concurrency_limited"
        )
        registry.release.set()
        await held


# --- authentication and authorization, through both transports ---------------------------------

SECRET_KEY = "k-8f3e2c1d9b7a-unique"


@pytest.fixture
def secured(registry: FunctionRegistry) -> FunctionRegistry:
    from metatwin_functions import current_execution

    @registry.function(roles=["admin"])
    async def admin_only() -> str:
        return "secret"

    @registry.function()
    async def whoami() -> list[Any]:
        context = current_execution()
        assert context is not None
        assert context.caller is not None
        return [context.caller.subject.startswith("api-key:"), sorted(context.caller.roles)]

    return registry


@pytest.fixture(params=[True, False], ids=["raw-asgi", "quart-view"])
async def secured_app(
    request: pytest.FixtureRequest, secured: FunctionRegistry
) -> AsyncIterator[Quart]:
    settings = quick(auth_api_keys=f"{SECRET_KEY}:reader,other-key-123456:admin|reader")
    application = create_app(secured, settings, configure_logs=False, fast_exec=request.param)
    async with application.test_app():
        yield application


async def call_with(
    app: Quart, headers: dict[str, str], name: str, execution_id: str = "a-1"
) -> tuple[int, Any, Any]:
    body = {"executionId": execution_id, "functionName": name, "args": {}}
    response = await app.test_client().post("/exec", json=body, headers=headers)
    return response.status_code, json.loads(await response.get_data()), response.headers


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({}, "missing"),
        ({"Authorization": "Bearer wrong-key-000000"}, "key"),
        ({"Authorization": "Basic abc"}, "malformed"),
        ({"X-API-Key": "wrong-key-000000"}, "key"),
    ],
)
async def test_calls_without_valid_credentials_are_401_and_echo_the_id(
    secured_app: Quart, headers: dict[str, str], problem: str
) -> None:
    status, body, response_headers = await call_with(secured_app, headers, "whoami")
    assert status == 401
    assert response_headers["WWW-Authenticate"] == "Bearer"
    assert body["metadata"] == {"executionId": "a-1", "errorKind": "unauthorized"}
    assert problem in body["error"].lower()
    assert SECRET_KEY not in body["error"]


async def test_unknown_functions_need_credentials_too(secured_app: Quart) -> None:
    status, _, _ = await call_with(secured_app, {}, "no_such_function")
    assert status == 401


async def test_the_caller_is_seen_in_code_and_roles_are_enforced(secured_app: Quart) -> None:
    reader = {"Authorization": f"Bearer {SECRET_KEY}"}
    status, body, _ = await call_with(secured_app, reader, "whoami", "r-1")
    assert (status, body["result"]) == (200, [True, ["reader"]])
    status, body, _ = await call_with(secured_app, {"X-API-Key": SECRET_KEY}, "admin_only", "r-2")
    assert status == 403
    assert body["metadata"]["errorKind"] == "forbidden"
    assert "admin" in body["error"]
    status, body, _ = await call_with(secured_app, {"X-API-Key": "other-key-123456"}, "admin_only")
    assert (status, body["result"]) == (200, "secret")


async def test_ready_is_never_protected(secured_app: Quart) -> None:
    assert (await secured_app.test_client().get("/ready")).status_code == 200


async def test_a_stored_answer_belongs_to_the_caller_who_asked(secured_app: Quart) -> None:
    first = await call_with(secured_app, {"X-API-Key": SECRET_KEY}, "whoami")
    other = await call_with(secured_app, {"X-API-Key": "other-key-123456"}, "whoami")
    assert first[0] == 200
    assert other[0] == 409
    assert other[1]["metadata"]["errorKind"] == "idempotency_conflict"


async def test_a_function_with_roles_is_closed_when_auth_is_off(secured: FunctionRegistry) -> None:
    app = create_app(secured, quick(), configure_logs=False)
    async with app.test_app():
        status, body, _ = await call_with(app, {}, "admin_only")
    assert status == 403
    assert body["metadata"]["errorKind"] == "forbidden"


def test_bad_guard_settings_fail_when_the_app_is_built(registry: FunctionRegistry) -> None:
    from metatwin_functions import ConfigurationError

    with pytest.raises(ConfigurationError, match="CRBR_FUNCTIONS_RATE_LIMIT"):
        create_app(registry, quick(functions_rate_limit="lots"), configure_logs=False)
    with pytest.raises(ConfigurationError, match="CRBR_AUTH_API_KEYS"):
        create_app(registry, quick(auth_api_keys="sha256:nothex"), configure_logs=False)


async def test_a_replay_is_logged_without_running_the_function(
    app: Quart, registry: Any, caplog: pytest.LogCaptureFixture
) -> None:
    await post(app, "l-1", "add", a=1, b=2)
    with caplog.at_level("INFO", logger="metatwin_functions.calls"):
        await post(app, "l-1", "add", a=1, b=2)
    [record] = [r for r in caplog.records if getattr(r, "status", None) == "replayed"]
    assert record.getMessage() == "Function 'add' not run again for a retry (stored answer)"
    assert record.execution_id == "l-1"  # type: ignore[attr-defined]
    assert len(registry.runs) == 1


async def test_a_repeated_credential_header_counts_once_and_alike_on_both_transports(
    secured_app: Quart,
) -> None:
    body = {"executionId": "dup-1", "functionName": "whoami", "args": {}}
    response = await secured_app.test_client().post(
        "/exec",
        json=body,
        headers=[("X-API-Key", SECRET_KEY), ("X-API-Key", "wrong-key-000000")],  # type: ignore[arg-type]
    )
    assert response.status_code == 200  # the first header counts, as Quart's headers.get says


async def test_docs_can_be_protected_with_the_credentials_of_exec(registry: Any) -> None:
    settings = quick(auth_api_keys="docs-key-1234567890", auth_protect_docs=True)
    app = create_app(registry, settings, configure_logs=False)
    async with app.test_app():
        client = app.test_client()
        for path in ("/docs", "/openapi.json"):
            refused = await client.get(path)
            assert refused.status_code == 401
            assert refused.headers["WWW-Authenticate"] == "Bearer"
            allowed = await client.get(path, headers={"X-API-Key": "docs-key-1234567890"})
            assert allowed.status_code == 200
        open_app = create_app(
            registry, quick(auth_api_keys="docs-key-1234567890"), configure_logs=False
        )
    async with open_app.test_app():
        assert (await open_app.test_client().get("/openapi.json")).status_code == 200
