"""The README's code runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.plugin_project import run_pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_block_after(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, f"no python block after {heading!r}"
    return match.group(1)


def test_the_testing_example_passes_as_pasted_into_a_fresh_project(tmp_path: Path) -> None:
    # No pytest configuration at all: the package's pytest plugin is all the user installs.
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_my_functions.py").write_text(python_block_after("## Testing your functions"))
    done = run_pytest(project, "-W", "error", "--rootdir", str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_the_quick_start_module_registers_its_functions(tmp_path: Path) -> None:
    (tmp_path / "my_functions.py").write_text(python_block_after("## Quick start"))
    done = subprocess.run(
        [sys.executable, "-m", "metatwin_functions", "describe", "my_functions"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "add_numbers" in done.stdout
    assert "word_count" in done.stdout


TESTING_GUIDE = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def test_the_testing_guide_runs_as_written(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", TESTING_GUIDE.read_text(encoding="utf-8"), re.S)
    first, conftest, client, invoker = blocks
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_invoices.py").write_text(first)
    (project / "my_functions.py").write_text(
        "from metatwin_functions import FunctionRegistry\n\n"
        "registry = FunctionRegistry()\n\n\n"
        "@registry.function(description='Adds two numbers')\n"
        "async def add_numbers(a: int, b: int) -> int:\n    return a + b\n"
    )
    (project / "overrides").mkdir()
    (project / "overrides" / "conftest.py").write_text(conftest)
    (project / "overrides" / "test_client.py").write_text(
        "from my_functions import registry\n\n" + client + "\n\n" + invoker
    )
    done = run_pytest(project, "-W", "error", "--rootdir", str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 passed" in done.stdout


MIGRATING = Path(__file__).resolve().parent.parent / "docs" / "migrating.md"


def test_the_migration_guides_stricter_validation_holds(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", MIGRATING.read_text(encoding="utf-8"), re.S)
    imports, stricter = blocks
    assert "from metatwin_functions import Function, FunctionServer" in imports
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_stricter.py").write_text(stricter)
    done = run_pytest(project, "-W", "error", "--rootdir", str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
