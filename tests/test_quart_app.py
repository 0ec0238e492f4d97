"""`FunctionsApp` (what `create_app` builds): ``run()`` honours ``CRBR_*``; typos are warned."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from quart import Quart

from metatwin_functions import FunctionRegistry, Settings, create_app
from metatwin_functions.quart_app import FunctionsApp

pytestmark = pytest.mark.usefixtures("isolated_cwd")


@pytest.fixture
def quart_run_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What ``Quart.run`` is asked for, without starting a server."""
    calls: list[dict[str, Any]] = []

    def record(self: Quart, **kwargs: Any) -> None:
        calls.append(kwargs)

    monkeypatch.setattr(Quart, "run", record)
    return calls


def test_run_binds_the_configured_host_and_port_without_a_reloader(
    monkeypatch: pytest.MonkeyPatch, quart_run_calls: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv("CRBR_FUNCTIONS_HOST", "127.0.0.1")
    monkeypatch.setenv("CRBR_FUNCTIONS_PORT", "18118")
    app = create_app(FunctionRegistry(), configure_logs=False)
    assert isinstance(app, FunctionsApp)
    app.run()
    [call] = quart_run_calls
    assert (call["host"], call["port"], call["use_reloader"]) == ("127.0.0.1", 18118, False)


def test_run_arguments_win_over_the_settings(quart_run_calls: list[dict[str, Any]]) -> None:
    app = create_app(FunctionRegistry(), Settings(functions_port=18118), configure_logs=False)
    app.run(host="::1", port=18119, use_reloader=True)
    [call] = quart_run_calls
    assert (call["host"], call["port"], call["use_reloader"]) == ("::1", 18119, True)


async def test_unknown_variables_are_warned_once_when_serving_starts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CRBR_FUNCTIONS_PROT", "18118")
    monkeypatch.setenv("CRBR_ENABLE_EVENTS", "false")
    app = create_app(FunctionRegistry(), configure_logs=False)
    with caplog.at_level(logging.WARNING, logger="metatwin_functions.settings"):
        assert not caplog.records
        async with app.test_app():
            pass
    warnings = [r.getMessage() for r in caplog.records if r.name == "metatwin_functions.settings"]
    assert warnings == [
        "Ignoring unknown variable CRBR_FUNCTIONS_PROT (did you mean CRBR_FUNCTIONS_PORT?): "
        "it is not a setting"
    ]
