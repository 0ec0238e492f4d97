"""Versions: several definitions of one name, picked by the envelope's ``version``, on every
transport; the started event and ``/ready`` list names once; decoration-time errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart

from metatwin_functions import Function, FunctionRegistry, RegistrationError, Settings, create_app
from metatwin_functions.events.payloads import started_payload
from metatwin_functions.fastpath import ExecFastPath


@pytest.fixture
def registry() -> FunctionRegistry:
    functions = FunctionRegistry()

    @Function("greet", version="1.0.0", registry=functions)
    async def greet_v1(name: str) -> str:
        """Greets."""
        return f"hello {name}"

    @Function("greet", version="2.0.0", registry=functions, roles=["admin"])
    async def greet_v2(name: str, punctuation: str = "!") -> dict[str, str]:
        """Greets, louder."""
        return {"greeting": f"HELLO {name}{punctuation}"}

    @Function("greet", version="1.5", registry=functions, max_concurrency=1)
    def greet_v15(name: str, times: int) -> str:
        return " ".join([f"hi {name}"] * times)

    @Function(registry=functions)
    async def add_numbers(a: int, b: int) -> int:
        return a + b

    return functions


def quick_settings() -> Settings:
    return Settings(
        deployment_id="dep-versions",
        enable_events=False,
        functions_timeout=2,
        idempotency_ttl=0,
        auth_api_keys="admin-key:admin,plain-key",
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture(params=["raw-asgi", "quart-view"])
async def app(request: pytest.FixtureRequest, registry: FunctionRegistry) -> AsyncIterator[Quart]:
    fast = request.param == "raw-asgi"
    application = create_app(registry, quick_settings(), configure_logs=False, fast_exec=fast)
    assert isinstance(application.asgi_app, ExecFastPath) is fast
    async with application.test_app():
        yield application


async def call(app: Quart, key: str = "admin-key", **envelope: Any) -> dict[str, Any]:
    body = {"executionId": "e-1", **envelope}
    response = await app.test_client().post("/exec", json=body, headers={"X-API-Key": key})
    assert response.status_code == 200
    payload: dict[str, Any] = await response.get_json()
    return payload


# --- registry ------------------------------------------------------------------------------


def test_get_resolves_the_highest_version_or_exactly_the_one_asked(
    registry: FunctionRegistry,
) -> None:
    assert registry.get("greet").version == "2.0.0"  # type: ignore[union-attr]
    assert registry.get("greet", "1.5").version == "1.5"  # type: ignore[union-attr]
    assert registry.get("greet", "1.0").version == "1.0.0"  # type: ignore[union-attr]  # PEP 440
    assert registry.get("greet", "3.0") is None
    assert registry.get("greet", "not a version") is None
    assert registry.get("add_numbers", "1.0") is None  # unversioned: no version to match


def test_names_len_and_iteration_see_each_name_once_and_specs_every_version(
    registry: FunctionRegistry,
) -> None:
    assert registry.names == ["greet", "add_numbers"]
    assert len(registry) == 2
    assert [(spec.name, spec.version) for spec in registry] == [
        ("greet", "2.0.0"),
        ("add_numbers", None),
    ]
    assert [spec.version for spec in registry.versions("greet")] == ["1.0.0", "1.5", "2.0.0"]
    assert len(registry.specs()) == 4


def test_unregister_one_version_keeps_the_others(registry: FunctionRegistry) -> None:
    registry.unregister("greet", "2.0.0")
    assert registry.get("greet").version == "1.5"  # type: ignore[union-attr]
    registry.unregister("greet")
    assert "greet" not in registry


def test_two_versions_with_the_same_number_fail_naming_function_and_version() -> None:
    functions = FunctionRegistry()

    @Function("calc", version="1.0", registry=functions)
    def calc_a() -> int:
        return 1

    with pytest.raises(RegistrationError, match=r"Function 'calc': version '1\.0\.0' is regist"):

        @Function("calc", version="1.0.0", registry=functions)  # equal under PEP 440
        def calc_b() -> int:
            return 2


def test_the_same_qualname_twice_with_one_version_is_still_a_duplicate() -> None:
    functions = FunctionRegistry()

    @Function(version="1", registry=functions)
    def calc() -> int:
        return 1

    with pytest.raises(RegistrationError, match="version '1' is registered twice"):

        @Function(version="1", registry=functions)  # type: ignore[no-redef]
        def calc() -> int:
            return 2


@pytest.mark.parametrize("bad", ["one.two", "1.0-final-final", "", "latest", 2, "1" * 80])
def test_a_version_that_is_not_pep_440_fails_at_decoration(bad: Any) -> None:
    with pytest.raises(RegistrationError, match="Function 'calc': version"):

        @Function(version=bad, registry=FunctionRegistry())
        def calc() -> int:
            return 1


def test_versioned_and_unversioned_definitions_of_one_name_do_not_mix() -> None:
    functions = FunctionRegistry()

    @Function("calc", registry=functions)
    def calc_plain() -> int:
        return 1

    with pytest.raises(RegistrationError, match="only one has a version"):

        @Function("calc", version="1.0", registry=functions)
        def calc_versioned() -> int:
            return 2


# --- HTTP: both transports -------------------------------------------------------------------


async def test_without_a_version_the_highest_runs(app: Quart) -> None:
    body = await call(app, functionName="greet", args={"name": "ada"})
    assert body["success"] is True
    assert body["result"] == {"greeting": "HELLO ada!"}


async def test_an_exact_version_runs_with_its_own_signature(app: Quart) -> None:
    body = await call(app, functionName="greet", version="1.5", args={"name": "ada", "times": 2})
    assert body["result"] == "hi ada hi ada"
    body = await call(app, functionName="greet", version="1.0.0", args={"name": "ada"})
    assert body["result"] == "hello ada"
    # 1.0.0 has no 'punctuation': its own validator answers.
    body = await call(
        app, functionName="greet", version="1.0.0", args={"name": "a", "punctuation": "?"}
    )
    assert body["success"] is False
    assert "unexpected argument 'punctuation'" in body["error"]


async def test_an_unknown_version_is_not_found_with_the_contract_text(app: Quart) -> None:
    body = await call(app, functionName="greet", version="9.9", args={"name": "ada"})
    assert body["success"] is False
    assert body["error"] == "Function 'greet' version '9.9' not found"
    assert body["metadata"]["errorKind"] == "not_found"
    body = await call(app, functionName="add_numbers", version="1", args={"a": 1, "b": 2})
    assert body["error"] == "Function 'add_numbers' version '1' not found"


async def test_each_version_has_its_own_roles(app: Quart) -> None:
    response = await app.test_client().post(
        "/exec",
        json={"executionId": "", "functionName": "greet", "args": {"name": "x"}},
        headers={"X-API-Key": "plain-key"},
    )
    assert response.status_code == 403  # 2.0.0 needs admin
    body = await call(app, "plain-key", functionName="greet", version="1.0", args={"name": "x"})
    assert body["result"] == "hello x"


async def test_a_version_that_is_not_a_string_or_too_long_is_an_invalid_envelope(
    app: Quart,
) -> None:
    for version in (2, "1" * 65):
        response = await app.test_client().post(
            "/exec",
            json={"executionId": "x", "functionName": "greet", "version": version},
            headers={"X-API-Key": "admin-key"},
        )
        assert response.status_code == 422
        assert "'version'" in (await response.get_json())["error"]


async def test_ready_lists_each_name_once(app: Quart) -> None:
    ready = await (await app.test_client().get("/ready")).get_json()
    assert ready["functions"] == ["greet", "add_numbers"]
    assert ready["function_count"] == 2


# --- the started event -----------------------------------------------------------------------


def test_started_event_lists_highest_signature_and_versions_for_versioned_names_only(
    registry: FunctionRegistry,
) -> None:
    payload = started_payload("dep-1", registry)
    greet, add = payload["functions"]
    assert greet == {
        "name": "greet",
        "description": "Greets, louder.",
        "args": [
            {"name": "name", "type": "str", "required": True, "description": None},
            {"name": "punctuation", "type": "str", "required": False, "description": None},
        ],
        "returnType": "dict[str, str]",
        "version": "2.0.0",
        "versions": ["1.0.0", "1.5", "2.0.0"],
    }
    assert add == {
        "name": "add_numbers",
        "description": "",
        "args": [
            {"name": "a", "type": "int", "required": True, "description": None},
            {"name": "b", "type": "int", "required": True, "description": None},
        ],
        "returnType": "int",
    }
    json.dumps(payload)  # JSON as is


async def test_openapi_documents_every_version(registry: FunctionRegistry) -> None:
    application = create_app(registry, quick_settings(), configure_logs=False)
    async with application.test_app():
        document = await (await application.test_client().get("/openapi.json")).get_json()
    schemas = document["components"]["schemas"]
    assert {"Call_greet_1_0_0", "Call_greet_1_5", "Call_greet_2_0_0", "Call_add_numbers"} <= set(
        schemas
    )
    assert schemas["Call_greet_1_5"]["properties"]["version"]["const"] == "1.5"
    assert "times" in schemas["Call_greet_1_5"]["properties"]["args"]["properties"]
    assert "version" not in schemas["Call_add_numbers"]["properties"]
