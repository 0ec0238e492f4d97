"""The command line: ``describe`` and ``call`` against the example module, and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metatwin_functions.cli import main

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = "examples.simple_function"


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI finds modules relative to the working directory, like ``python -m`` (CRBR_*
    # variables are cleared by conftest).
    monkeypatch.chdir(REPO_ROOT)


def test_describe_prints_the_contract_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", EXAMPLES]) == 0
    catalog = json.loads(capsys.readouterr().out)
    by_name = {entry["name"]: entry for entry in catalog}
    assert by_name["count_invoices"] == {
        "name": "count_invoices",
        "description": "Counts all invoices",
        "args": [{"name": "includePaid", "type": "bool", "required": True, "description": None}],
        "returnType": "int",
    }


def test_describe_shows_parameters_with_defaults_as_not_required(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["describe", EXAMPLES])
    by_name = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    generate_user = by_name["generate_user"]
    assert [(a["name"], a["type"], a["required"]) for a in generate_user["args"]] == [
        ("user_id", "int", True),
        ("name", "str", False),
    ]
    add_numbers = by_name["add_numbers"]
    assert add_numbers["description"] == "Adds two numbers together"
    assert add_numbers["returnType"] == "int"
    # Without an explicit description, the first docstring line is used.
    assert by_name["echo"]["description"] == "Echo a message back."


def test_describe_accepts_a_file_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "examples/simple_function.py"]) == 0
    names = [entry["name"] for entry in json.loads(capsys.readouterr().out)]
    assert "add_numbers" in names


def test_call_prints_the_success_response_and_returns_zero(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["call", EXAMPLES, "-f", "add_numbers", "-a", '{"a": 5, "b": 3}'])
    body = json.loads(capsys.readouterr().out)
    assert code == 0
    assert body["success"] is True
    assert body["result"] == 8
    assert body["error"] is None
    assert body["metadata"]["executionId"] == "cli"


def test_call_with_long_options_works(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["call", EXAMPLES, "--function", "word_count", "--args", '{"text": "a b c"}'])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["result"] == 3


def test_call_of_a_failing_function_prints_the_error_and_returns_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["call", EXAMPLES, "-f", "divide", "-a", '{"a": 1, "b": 0}'])
    body = json.loads(capsys.readouterr().out)
    assert code == 1
    assert body["success"] is False
    assert body["error"] == "Function execution failed: Cannot divide by zero!"
    assert body["metadata"]["errorCode"] == "MTF-EXECUTION-003"


def test_call_of_an_unknown_function_returns_one(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["call", EXAMPLES, "-f", "no_such_function"])
    assert code == 1
    assert json.loads(capsys.readouterr().out)["error"] == "Function 'no_such_function' not found"


def test_call_with_invalid_arguments_returns_one(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["call", EXAMPLES, "-f", "add_numbers", "-a", '{"a": 5}'])
    body = json.loads(capsys.readouterr().out)
    assert code == 1
    assert body["metadata"]["errorCode"] == "MTF-EXECUTION-008"


def test_call_with_args_that_are_not_json_exits_with_a_clear_error() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["call", EXAMPLES, "-f", "add_numbers", "-a", "{a: 5}"])
    assert "--args is not valid JSON" in str(caught.value.code)


def test_call_with_args_that_are_not_an_object_exits_with_a_clear_error() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["call", EXAMPLES, "-f", "add_numbers", "-a", "[5, 3]"])
    assert caught.value.code == "error: --args must be a JSON object"


def test_bad_module_name_exits_with_a_clear_error() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["describe", "no_such_module_for_cli_tests"])
    message = str(caught.value.code)
    assert message.startswith("error: cannot import 'no_such_module_for_cli_tests'")


def test_a_module_that_cannot_register_is_reported_with_exit_code_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "clashing_functions_for_cli.py").write_text(
        "from metatwin_functions import Function, FunctionRegistry\n"
        "registry = FunctionRegistry()\n"
        "@Function('same', registry=registry)\n"
        "def first() -> int:\n    return 1\n"
        "@Function('same', registry=registry)\n"
        "def second() -> int:\n    return 2\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code = main(["describe", "clashing_functions_for_cli"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: A function named 'same' is already registered")
    assert "Traceback" not in err


def test_invalid_configuration_is_reported_with_exit_code_two(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRBR_FUNCTIONS_TIMEOUT", "soon")
    code = main(["call", EXAMPLES, "-f", "add_numbers", "-a", '{"a": 1, "b": 2}'])
    assert code == 2
    assert "CRBR_FUNCTIONS_TIMEOUT" in capsys.readouterr().err


def test_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_call_requires_a_function_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["call", EXAMPLES])
    assert caught.value.code == 2
    assert "--function" in capsys.readouterr().err


# --- modules by path or name, and modules without functions (real processes) -----------------

FUNCTIONS_FILE = (
    "from metatwin_functions import Function\n@Function\ndef {name}() -> int:\n    return 1\n"
)


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as the console script runs it: the working directory is not on sys.path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRBR_")}
    env |= {"PYTHONPATH": str(REPO_ROOT), "CRBR_FUNCTIONS_PORT": "0"}
    return subprocess.run(
        [sys.executable, "-P", "-m", "metatwin_functions", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


def described_names(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [entry["name"] for entry in json.loads(result.stdout)]


def test_describe_accepts_relative_nested_and_absolute_paths(tmp_path: Path) -> None:
    (tmp_path / "my_functions.py").write_text(FUNCTIONS_FILE.format(name="top"))
    nested = tmp_path / "sub" / "dir"
    nested.mkdir(parents=True)
    # A sibling import works, as it does for ``python sub/dir/mod.py``.
    (nested / "helper.py").write_text("NAME = 'deep'\n")
    (nested / "mod.py").write_text(
        "from helper import NAME\n"
        "from metatwin_functions import Function\n"
        "@Function(NAME)\n"
        "def deep() -> int:\n"
        "    return 2\n"
    )
    assert described_names(run_cli(tmp_path, "describe", "./my_functions.py")) == ["top"]
    assert described_names(run_cli(tmp_path, "describe", "my_functions.py")) == ["top"]
    assert described_names(run_cli(tmp_path, "describe", "sub/dir/mod.py")) == ["deep"]
    absolute = str(nested / "mod.py")
    assert described_names(run_cli(REPO_ROOT, "describe", absolute)) == ["deep"]


def test_a_path_to_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "describe", "./missing.py")
    assert result.returncode != 0
    assert result.stderr.strip() == "error: cannot import './missing.py': no such file"


@pytest.mark.parametrize("command", ["serve", "describe"])
def test_modules_without_any_function_are_an_error_with_a_hint(
    tmp_path: Path, command: str
) -> None:
    (tmp_path / "nofuncs.py").write_text("VALUE = 1\n")
    result = run_cli(tmp_path, command, "nofuncs")
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.startswith("error: no @Function found in nofuncs: decorate functions")
    assert "Traceback" not in result.stderr


def test_a_module_named_like_the_standard_library_is_explained(tmp_path: Path) -> None:
    (tmp_path / "json.py").write_text(FUNCTIONS_FILE.format(name="from_my_json"))
    result = run_cli(tmp_path, "describe", "json")
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "error: 'json' is a module of Python's standard library: your json.py is shadowed by "
        "it; pass the path (./json.py) or rename it"
    )
    assert described_names(run_cli(tmp_path, "describe", "./json.py")) == ["from_my_json"]


def test_a_standard_library_module_without_a_local_file_is_named_as_such(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "serve", "csv")
    assert result.returncode != 0
    assert result.stderr.strip() == "error: 'csv' is a module of Python's standard library"
