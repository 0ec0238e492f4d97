"""``metatwin-functions check``: one line per thing the platform could not use, and exit 1."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field

from metatwin_functions import FunctionRegistry
from metatwin_functions.checks import check_registry

ROOT = Path(__file__).resolve().parent.parent


class Point(BaseModel):
    x: float
    y: float


def test_well_described_functions_pass() -> None:
    registry = FunctionRegistry()

    @registry.function(description="Adds two numbers together")
    async def add_numbers(a: int, b: int = 2) -> int:
        return a + b

    @registry.function()
    async def distance(p: Point, q: Annotated[Point, Field(description="the other")]) -> float:
        """Distance between two points."""
        return ((p.x - q.x) ** 2 + (p.y - q.y) ** 2) ** 0.5

    assert check_registry(registry) == []


def test_each_problem_is_one_line_naming_the_function() -> None:
    registry = FunctionRegistry()

    class Local(BaseModel):
        value: int

    @registry.function()
    async def undescribed(a: int) -> int:
        return a

    @registry.function(description="Takes anything")
    async def loose(anything, whatever: Any, fine: int) -> None:  # type: ignore[no-untyped-def]
        return None

    async def local(item):  # type: ignore[no-untyped-def]
        return item

    # Hints set by hand: this module's postponed annotations could not name a local class.
    local.__annotations__ = {"item": Local, "return": Local}
    registry.register(local, description="Uses a local model")

    assert check_registry(registry) == [
        "function 'undescribed': no description: the platform lists functions with one "
        "(pass description=... or give it a docstring)",
        "function 'loose': argument 'anything' has no JSON Schema (no type hint, or Any): "
        "callers cannot tell what to send; give it a type hint",
        "function 'loose': argument 'whatever' has no JSON Schema (no type hint, or Any): "
        "callers cannot tell what to send; give it a type hint",
        "function 'local': argument 'item': the type "
        "'test_each_problem_is_one_line_naming_the_function.<locals>.Local' cannot be "
        "described to the platform (define it at module level)",
        "function 'local': the return type "
        "'test_each_problem_is_one_line_naming_the_function.<locals>.Local' cannot be "
        "described to the platform (define it at module level)",
    ]


def test_names_that_clash_or_cannot_be_called_are_reported() -> None:
    registry = FunctionRegistry()

    def make(name: str) -> None:
        async def f() -> int:
            return 1

        registry.register(f, name=name, description="d")

    for name in ("add_numbers", "Add-Numbers", "x" * 300, "two words"):
        make(name)
    problems = check_registry(registry)
    assert problems == [
        f"function '{'x' * 40}...': the name is longer than 256 characters, so no call can name it",
        "function 'two words': the name contains whitespace or control characters",
        "functions 'add_numbers', 'Add-Numbers': the names differ only in case or '-'/'_'; "
        "callers and the platform's lists cannot tell them apart",
    ]


def test_arguments_without_json_schema_are_reported() -> None:
    registry = FunctionRegistry()

    @registry.function(description="Takes a callable")
    async def takes(callback: Callable[[int], int], a: int) -> None:
        return None

    (problem,) = check_registry(registry)
    assert problem.startswith("function 'takes': its arguments have no JSON Schema (")
    assert "Callable" in problem


def test_an_empty_module_is_an_error() -> None:
    assert check_registry(FunctionRegistry()) == [
        "no @Function found: decorate the functions to serve with @Function"
    ]


def run_check(cwd: Path, *modules: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metatwin_functions", "check", *modules],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_the_command_exits_1_with_a_line_per_problem(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "from metatwin_functions import Function\n\n\n"
        "@Function\nasync def nameless(x):\n    return x\n"
    )
    done = run_check(tmp_path, "bad")
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        "function 'nameless': no description: the platform lists functions with one "
        "(pass description=... or give it a docstring)",
        "function 'nameless': argument 'x' has no JSON Schema (no type hint, or Any): "
        "callers cannot tell what to send; give it a type hint",
    ]
    assert done.stderr.strip() == "2 problem(s) found"


def test_the_command_passes_the_examples() -> None:
    done = run_check(ROOT, "examples.simple_function")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: ")


def test_a_name_registered_by_two_modules_fails_the_command(tmp_path: Path) -> None:
    for module in ("one", "two"):
        (tmp_path / f"{module}.py").write_text(
            "from metatwin_functions import Function\n\n\n"
            "@Function(description='d')\nasync def same() -> int:\n    return 1\n"
        )
    done = run_check(tmp_path, "one", "two")
    assert done.returncode != 0
    assert "already registered" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
