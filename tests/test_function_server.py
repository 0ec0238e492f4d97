"""`FunctionServer`: keyword overrides are checked, and bad configuration ends in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from metatwin_functions import ConfigurationError, FunctionRegistry, FunctionServer, Settings

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("isolated_cwd")


def test_unknown_keywords_are_an_error_naming_them_with_hints() -> None:
    with pytest.raises(ConfigurationError) as caught:
        FunctionServer(port=18118, host="127.0.0.1")
    assert str(caught.value) == (
        "Invalid configuration: unknown settings host (did you mean functions_host?), "
        "port (did you mean functions_port?)"
    )


def test_keyword_overrides_apply() -> None:
    server = FunctionServer(FunctionRegistry(), functions_port=18118, functions_host="127.0.0.1")
    assert (server.settings.functions_host, server.settings.functions_port) == ("127.0.0.1", 18118)


def test_keyword_overrides_apply_on_top_of_given_settings() -> None:
    base = Settings(deployment_id="dep-7", functions_timeout=5)
    server = FunctionServer(FunctionRegistry(), settings=base, functions_port=18119)
    assert server.settings.functions_port == 18119
    assert server.settings.deployment_id == "dep-7"
    assert server.settings.functions_timeout == 5
    with pytest.raises(ConfigurationError, match="did you mean functions_timeout"):
        FunctionServer(FunctionRegistry(), settings=base, timeout=5)


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CRBR_")}
    environment |= {"PYTHONPATH": str(REPO), **env}
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=60,
        check=False,
    )


def test_bad_configuration_prints_the_same_one_line_as_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "my_functions.py").write_text(
        "from metatwin_functions import Function, FunctionServer\n"
        "@Function\n"
        "def one() -> int:\n"
        "    return 1\n"
        "if __name__ == '__main__':\n"
        "    FunctionServer().start()\n",
        encoding="utf-8",
    )
    env = {"CRBR_FUNCTIONS_PORT": "eighty"}
    script = _run(["my_functions.py"], env, tmp_path)
    cli = _run(["-m", "metatwin_functions", "serve", "my_functions"], env, tmp_path)
    expected = (
        "error: Invalid configuration: CRBR_FUNCTIONS_PORT: Input should be a valid integer, "
        "unable to parse string as an integer"
    )
    assert script.stderr.splitlines() == [expected]
    assert cli.stderr.splitlines() == [expected]
    assert script.returncode != 0
    assert cli.returncode != 0


def test_an_unknown_keyword_in_a_script_prints_one_line(tmp_path: Path) -> None:
    (tmp_path / "server.py").write_text(
        "from metatwin_functions import FunctionServer\n"
        "FunctionServer(port=18118, host='127.0.0.1').start()\n",
        encoding="utf-8",
    )
    result = _run(["server.py"], {}, tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: Invalid configuration: unknown settings host (did you mean functions_host?), "
        "port (did you mean functions_port?)"
    ]


def test_configuration_error_is_still_catchable_as_such() -> None:
    with pytest.raises(ConfigurationError) as caught:
        FunctionServer(functions_port=-1)
    assert caught.value.__cause__ is None
    assert "CRBR_FUNCTIONS_PORT" in str(caught.value)
