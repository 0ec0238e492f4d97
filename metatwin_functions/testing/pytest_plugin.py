"""The pytest plugin: ``function_client`` and friends, registered when the package is installed.

Fixtures (override ``functions_registry`` and ``functions_settings`` in your ``conftest.py``):

- ``functions_registry``: the functions to serve; default the ``@Function`` registry.
- ``functions_settings``: a dict of settings overrides, e.g. ``{"functions_timeout": 1}``.
- ``function_client``: a started `FunctionTestClient` on those.
- ``function_events``: the `InMemoryBroker` that client's events go to (``.published``,
  ``await function_events.wait_for("FunctionDeploymentStartedPayload")``).

An ``async def`` test that uses ``function_client`` runs on pytest-asyncio without any
configuration: the plugin marks it ``asyncio`` itself, so it works in pytest-asyncio's default
strict mode as in auto mode. A project that sets no ``asyncio_default_fixture_loop_scope`` gets
``function`` (pytest-asyncio's coming default) instead of a warning at every run.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest

from ..registry import FunctionRegistry, default_registry
from .broker import InMemoryBroker
from .client import FunctionTestClient

__all__ = ["function_client", "function_events", "functions_registry", "functions_settings"]

#: The async fixtures of this plugin: a coroutine test using one is marked ``asyncio``.
ASYNC_FIXTURES = frozenset({"function_client"})

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the ``tests`` extra brings it
    pytest_asyncio = None  # type: ignore[assignment]


@pytest.fixture
def functions_registry() -> FunctionRegistry:
    """The functions ``function_client`` serves: every ``@Function`` unless overridden."""
    return default_registry


@pytest.fixture
def functions_settings() -> dict[str, Any]:
    """Settings overrides for ``function_client`` (field names of `Settings`); none by default."""
    return {}


async def _client(
    functions_registry: FunctionRegistry, functions_settings: dict[str, Any]
) -> AsyncIterator[FunctionTestClient]:
    async with FunctionTestClient(functions_registry, **functions_settings) as client:
        yield client


if pytest_asyncio is not None:
    function_client = pytest_asyncio.fixture(_client, name="function_client")
else:  # pragma: no cover - exercised only without pytest-asyncio

    @pytest.fixture(name="function_client")
    def function_client() -> FunctionTestClient:
        pytest.fail(
            "function_client needs pytest-asyncio: pip install 'metatwin-functions[tests]'",
            pytrace=False,
        )


@pytest.fixture
def function_events(function_client: FunctionTestClient) -> InMemoryBroker:
    """The in-memory broker recording the events ``function_client``'s server publishes."""
    return function_client.broker


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Give pytest-asyncio its fixture loop scope when the project did not choose one.

    Unset, pytest-asyncio warns at every run (an error under ``-W error``); ``function`` is the
    scope our fixtures need and pytest-asyncio's announced default. A value in the project's
    configuration or ``-o`` wins.
    """
    if pytest_asyncio is None:
        return
    name = "asyncio_default_fixture_loop_scope"
    cache = getattr(config, "_inicache", None)
    if not config.getini(name) and isinstance(cache, dict):
        cache[name] = "function"


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(
    collector: pytest.Collector, name: str, obj: object
) -> Generator[None, Any, None]:
    """Mark coroutine tests that use this plugin's async fixtures with ``asyncio``.

    ``trylast`` makes this wrapper the inner one, so pytest-asyncio, which turns marked
    coroutines into its own test items, sees the mark.
    """
    outcome = yield
    if pytest_asyncio is None:
        return
    result = outcome.get_result()
    # Only the test items pytest made: ``obj`` may be any module attribute, such as a proxy
    # (``quart.current_app``) that raises on every attribute access.
    for item in result if isinstance(result, list) else [result]:
        if (
            isinstance(item, pytest.Function)
            and inspect.iscoroutinefunction(item.function)
            and ASYNC_FIXTURES.intersection(item.fixturenames)
            and item.get_closest_marker("asyncio") is None
        ):
            item.add_marker(pytest.mark.asyncio)
