"""The command line: ``describe`` and ``call`` against the example module, and its errors."""

from __future__ import annotations

import json
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
