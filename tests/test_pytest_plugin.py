"""The pytest plugin: a fresh project gets ``function_client`` with no configuration at all."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

from tests.plugin_project import run_pytest

FUNCTIONS = """
from metatwin_functions import Function, FunctionRegistry


@Function(description="Adds two numbers together")
async def add_numbers(a: int, b: int) -> int:
    return a + b


other = FunctionRegistry()


@other.function()
async def slow(seconds: float) -> str:
    import asyncio

    await asyncio.sleep(seconds)
    return "done"
"""

TESTS = """
from quart import current_app  # a proxy that raises on any attribute outside an app context

from my_functions import add_numbers


async def test_add_numbers(function_client):
    response = await function_client.call("add_numbers", a=1, b=2)
    assert (response.success, response.result) == (True, 3)


async def test_ready_lists_it(function_client):
    assert (await function_client.ready()).functions == ["add_numbers"]


async def test_the_started_event_lists_it(function_events):
    (started,) = await function_events.wait_for("FunctionDeploymentStartedPayload")
    assert [f["name"] for f in started.payload["functions"]] == ["add_numbers"]


def test_plain_call():
    assert add_numbers  # sync tests are left alone
"""


def project(tmp_path: Path, **files: str) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")  # pins the rootdir here, sets nothing
    (root / "my_functions.py").write_text(FUNCTIONS)
    for name, text in files.items():
        (root / f"{name}.py").write_text(dedent(text))
    return root


def test_async_tests_run_in_strict_mode_with_warnings_as_errors(tmp_path: Path) -> None:
    done = run_pytest(project(tmp_path, test_mine=TESTS), "-W", "error")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
    assert "warning" not in done.stdout.lower()


def test_registry_and_settings_fixtures_are_overridable(tmp_path: Path) -> None:
    conftest = """
        import pytest

        from my_functions import other


        @pytest.fixture
        def functions_registry():
            return other


        @pytest.fixture
        def functions_settings():
            return {"functions_timeout": 0.05}
    """
    tests = """
        async def test_the_override_serves_with_its_settings(function_client):
            response = await function_client.call("slow", seconds=1)
            assert response.error_kind == "timeout"
            assert (await function_client.ready()).functions == ["slow"]
    """
    done = run_pytest(project(tmp_path, conftest=conftest, test_other=tests), "-W", "error")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_auto_mode_projects_work_too(tmp_path: Path) -> None:
    root = project(tmp_path, test_mine=TESTS)
    (root / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    done = run_pytest(root, "-W", "error")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


def test_without_the_plugin_the_fixture_does_not_exist(tmp_path: Path) -> None:
    done = run_pytest(
        project(tmp_path, test_mine=TESTS), "-p", "no:metatwin_functions.testing.pytest_plugin"
    )
    assert done.returncode != 0
    assert "fixture 'function_client' not found" in done.stdout
