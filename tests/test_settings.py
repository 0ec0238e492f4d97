"""`Settings`: contract defaults, ``CRBR_*`` environment, ``.env``, validation and secrets."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from metatwin_functions import ConfigurationError, Settings, load_settings
from metatwin_functions.environ import parse_dotenv

PASSWORD = "pa55-very-secret-w0rd"


# CRBR_* variables are cleared by conftest; settings also read .env from the working directory.
pytestmark = pytest.mark.usefixtures("isolated_cwd")


def test_defaults_follow_the_contract_table() -> None:
    settings = load_settings()
    assert settings.deployment_id == "local-dev"
    assert settings.functions_host == "0.0.0.0"
    assert settings.functions_port == 8000
    assert settings.functions_timeout == 30
    assert settings.functions_max_timeout == 300
    assert settings.functions_log_level == "INFO"
    assert settings.uvicorn_log_level == "INFO"
    assert settings.rabbitmq_hostname is None
    assert settings.rabbitmq_port == 5672
    assert settings.rabbitmq_username is None
    assert settings.rabbitmq_password is None
    assert settings.rabbitmq_vhost == "/"
    assert settings.rabbitmq_exchange == "event.exchange"
    assert settings.enable_events is True
    assert settings.health_check_interval == 60
    assert settings.connection_timeout == 10
    assert settings.max_retries == 5
    assert settings.retry_delay == 5
    assert settings.is_local is True


def test_values_are_read_from_crbr_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "CRBR_DEPLOYMENT_ID": "dep-42",
        "CRBR_FUNCTIONS_HOST": "127.0.0.1",
        "CRBR_FUNCTIONS_PORT": "8080",
        "CRBR_FUNCTIONS_TIMEOUT": "12.5",
        "CRBR_FUNCTIONS_MAX_TIMEOUT": "100",
        "CRBR_RABBITMQ_HOSTNAME": "rabbit",
        "CRBR_RABBITMQ_PORT": "5673",
        "CRBR_RABBITMQ_USERNAME": "guest",
        "CRBR_RABBITMQ_PASSWORD": PASSWORD,
        "CRBR_RABBITMQ_VHOST": "/platform",
        "CRBR_RABBITMQ_EXCHANGE": "other.exchange",
        "CRBR_ENABLE_EVENTS": "false",
        "CRBR_HEALTH_CHECK_INTERVAL": "15",
        "CRBR_CONNECTION_TIMEOUT": "3",
        "CRBR_MAX_RETRIES": "0",
        "CRBR_RETRY_DELAY": "0.5",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.deployment_id == "dep-42"
    assert settings.is_local is False
    assert settings.functions_host == "127.0.0.1"
    assert settings.functions_port == 8080
    assert settings.functions_timeout == 12.5
    assert settings.functions_max_timeout == 100
    assert settings.rabbitmq_hostname == "rabbit"
    assert settings.rabbitmq_port == 5673
    assert settings.rabbitmq_username == "guest"
    assert settings.rabbitmq_password is not None
    assert settings.rabbitmq_password.get_secret_value() == PASSWORD
    assert settings.rabbitmq_vhost == "/platform"
    assert settings.rabbitmq_exchange == "other.exchange"
    assert settings.enable_events is False
    assert settings.health_check_interval == 15
    assert settings.connection_timeout == 3
    assert settings.max_retries == 0
    assert settings.retry_delay == 0.5


def test_lowercase_variable_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("crbr_functions_port", "9000")
    assert load_settings().functions_port == 9000


@pytest.mark.parametrize(
    ("raw", "level"),
    [("debug", "DEBUG"), ("Info", "INFO"), (" warning ", "WARNING"), ("ERROR", "ERROR")],
)
def test_log_levels_are_case_insensitive(
    monkeypatch: pytest.MonkeyPatch, raw: str, level: str
) -> None:
    monkeypatch.setenv("CRBR_FUNCTIONS_LOG_LEVEL", raw)
    monkeypatch.setenv("CRBR_UVICORN_LOG_LEVEL", raw)
    settings = load_settings()
    assert settings.functions_log_level == level
    assert settings.uvicorn_log_level == level


def test_log_level_given_in_code_is_case_insensitive_too() -> None:
    assert Settings(functions_log_level="debug").functions_log_level == "DEBUG"  # type: ignore[arg-type]


def test_empty_broker_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRBR_RABBITMQ_HOSTNAME", "")
    monkeypatch.setenv("CRBR_RABBITMQ_USERNAME", "")
    monkeypatch.setenv("CRBR_RABBITMQ_PASSWORD", "")
    settings = load_settings()
    assert settings.rabbitmq_hostname is None
    assert settings.rabbitmq_username is None
    assert settings.rabbitmq_password is None
    assert settings.missing_rabbitmq_settings == [
        "CRBR_RABBITMQ_HOSTNAME",
        "CRBR_RABBITMQ_USERNAME",
        "CRBR_RABBITMQ_PASSWORD",
    ]


@pytest.mark.parametrize(("raw", "expected"), [("0", False), ("no", False), ("1", True)])
def test_enable_events_reads_boolean_spellings(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool
) -> None:
    monkeypatch.setenv("CRBR_ENABLE_EVENTS", raw)
    assert load_settings().enable_events is expected


def test_overrides_in_code_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRBR_FUNCTIONS_PORT", "8080")
    assert load_settings(functions_port=9999).functions_port == 9999


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(Exception, match="frozen"):
        settings.functions_port = 1  # type: ignore[misc]


# --- invalid values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CRBR_FUNCTIONS_PORT", "eighty"),
        ("CRBR_FUNCTIONS_PORT", "70000"),
        ("CRBR_FUNCTIONS_TIMEOUT", "0"),
        ("CRBR_FUNCTIONS_TIMEOUT", "-5"),
        ("CRBR_FUNCTIONS_MAX_TIMEOUT", "abc"),
        ("CRBR_FUNCTIONS_LOG_LEVEL", "VERBOSE"),
        ("CRBR_UVICORN_LOG_LEVEL", "trace"),
        ("CRBR_RABBITMQ_PORT", "0"),
        ("CRBR_ENABLE_EVENTS", "maybe"),
        ("CRBR_HEALTH_CHECK_INTERVAL", "0.5"),
        ("CRBR_HEALTH_CHECK_INTERVAL", "3601"),
        ("CRBR_CONNECTION_TIMEOUT", "0"),
        ("CRBR_MAX_RETRIES", "-1"),
        ("CRBR_RETRY_DELAY", "0"),
    ],
)
def test_invalid_value_names_the_variable_and_hides_the_password(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("CRBR_RABBITMQ_HOSTNAME", "rabbit")
    monkeypatch.setenv("CRBR_RABBITMQ_USERNAME", "guest")
    monkeypatch.setenv("CRBR_RABBITMQ_PASSWORD", PASSWORD)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("Invalid configuration:")
    assert variable in message
    assert PASSWORD not in message
    assert PASSWORD not in repr(caught.value)


def test_every_invalid_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRBR_FUNCTIONS_PORT", "x")
    monkeypatch.setenv("CRBR_FUNCTIONS_TIMEOUT", "y")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert "CRBR_FUNCTIONS_PORT" in message
    assert "CRBR_FUNCTIONS_TIMEOUT" in message


def test_invalid_override_in_code_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="CRBR_FUNCTIONS_SYNC_WORKERS"):
        load_settings(functions_sync_workers=0)


# --- derived values --------------------------------------------------------------------------


def test_effective_timeout_uses_the_default_when_the_function_has_none() -> None:
    settings = Settings(functions_timeout=30, functions_max_timeout=300)
    assert settings.effective_timeout(None) == 30


def test_effective_timeout_prefers_the_functions_own_timeout() -> None:
    settings = Settings(functions_timeout=30, functions_max_timeout=300)
    assert settings.effective_timeout(5) == 5
    assert settings.effective_timeout(120) == 120


def test_effective_timeout_never_exceeds_the_maximum() -> None:
    settings = Settings(functions_timeout=30, functions_max_timeout=60)
    assert settings.effective_timeout(600) == 60
    assert Settings(functions_timeout=500, functions_max_timeout=60).effective_timeout(None) == 60


def test_default_timeout_is_capped_by_the_maximum() -> None:
    assert Settings(functions_timeout=500, functions_max_timeout=60).effective_timeout(None) == 60
    assert Settings(functions_timeout=5, functions_max_timeout=60).effective_timeout(None) == 5


def test_missing_rabbitmq_settings_lists_what_events_need() -> None:
    assert Settings().missing_rabbitmq_settings == [
        "CRBR_RABBITMQ_HOSTNAME",
        "CRBR_RABBITMQ_USERNAME",
        "CRBR_RABBITMQ_PASSWORD",
    ]
    partial = Settings(rabbitmq_hostname="rabbit", rabbitmq_password="pw")  # type: ignore[arg-type]
    assert partial.missing_rabbitmq_settings == ["CRBR_RABBITMQ_USERNAME"]


def test_events_are_configured_only_when_enabled_and_complete() -> None:
    complete = {
        "rabbitmq_hostname": "rabbit",
        "rabbitmq_username": "guest",
        "rabbitmq_password": "pw",
    }
    assert Settings(**complete).events_configured is True  # type: ignore[arg-type]
    assert Settings(**complete, enable_events=False).events_configured is False  # type: ignore[arg-type]
    assert Settings(rabbitmq_hostname="rabbit").events_configured is False
    assert Settings(**complete).missing_rabbitmq_settings == []  # type: ignore[arg-type]


def test_password_is_kept_out_of_repr_and_str() -> None:
    settings = Settings(rabbitmq_password=PASSWORD)  # type: ignore[arg-type]
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)
    assert PASSWORD not in str(settings.model_dump())
    assert settings.rabbitmq_password is not None
    assert settings.rabbitmq_password.get_secret_value() == PASSWORD


# --- .env ------------------------------------------------------------------------------------


def test_dot_env_file_in_the_working_directory_is_honoured(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "CRBR_DEPLOYMENT_ID=from-dotenv\nCRBR_FUNCTIONS_PORT=8123\nCRBR_FUNCTIONS_LOG_LEVEL=debug\n",
        encoding="utf-8",
    )
    settings = load_settings()
    assert settings.deployment_id == "from-dotenv"
    assert settings.functions_port == 8123
    assert settings.functions_log_level == "DEBUG"


def test_environment_beats_the_dot_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("CRBR_FUNCTIONS_PORT=8123\n", encoding="utf-8")
    monkeypatch.setenv("CRBR_FUNCTIONS_PORT", "8124")
    assert load_settings().functions_port == 8124


def test_unrelated_dot_env_entries_are_ignored(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OTHER_TOOL_SETTING=1\nCRBR_MAX_RETRIES=2\n", encoding="utf-8")
    assert load_settings().max_retries == 2


def test_invalid_dot_env_value_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CRBR_FUNCTIONS_PORT=nope\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="CRBR_FUNCTIONS_PORT"):
        load_settings()


def test_incomplete_events_warning_names_what_is_missing() -> None:
    only_host = Settings(rabbitmq_hostname="broker", _env_file=None)  # type: ignore[call-arg]
    password_only = Settings(
        rabbitmq_hostname="broker",
        rabbitmq_username="u",
        _env_file=None,  # type: ignore[call-arg]
    )
    assert only_host.incomplete_events_warning == (
        "RabbitMQ events are enabled but CRBR_RABBITMQ_USERNAME, CRBR_RABBITMQ_PASSWORD are not "
        "set: running without events"
    )
    assert password_only.incomplete_events_warning is not None
    assert "CRBR_RABBITMQ_PASSWORD is not set" in password_only.incomplete_events_warning
    assert Settings(enable_events=False, _env_file=None).incomplete_events_warning is None  # type: ignore[call-arg]


# --- empty values, unknown names -------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "field", "default"),
    [
        ("CRBR_FUNCTIONS_PORT", "functions_port", 8000),
        ("CRBR_FUNCTIONS_TIMEOUT", "functions_timeout", 30),
        ("CRBR_DEPLOYMENT_ID", "deployment_id", "local-dev"),
        ("CRBR_ENABLE_EVENTS", "enable_events", True),
        ("CRBR_FUNCTIONS_LOG_LEVEL", "functions_log_level", "INFO"),
    ],
)
def test_an_empty_variable_means_the_default(
    monkeypatch: pytest.MonkeyPatch, variable: str, field: str, default: object
) -> None:
    monkeypatch.setenv(variable, "")
    assert getattr(load_settings(), field) == default


def test_an_empty_dot_env_value_means_the_default(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CRBR_FUNCTIONS_PORT=\nCRBR_MAX_RETRIES=''\n", encoding="utf-8")
    settings = load_settings()
    assert settings.functions_port == 8000
    assert settings.max_retries == 5


def test_an_empty_deployment_id_given_in_code_is_still_invalid() -> None:
    with pytest.raises(ConfigurationError, match="CRBR_DEPLOYMENT_ID"):
        Settings(deployment_id="")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"timeout": 5}, "unknown setting timeout (did you mean functions_timeout?)"),
        ({"port": 18118}, "unknown setting port (did you mean functions_port?)"),
        ({"functions_prot": 1}, "unknown setting functions_prot (did you mean functions_port?)"),
        ({"zzz": 1}, "unknown setting zzz"),
    ],
)
def test_an_unknown_name_in_code_is_an_error_with_a_hint(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings(**overrides)  # type: ignore[arg-type]
    assert str(caught.value) == f"Invalid configuration: {message}"
    with pytest.raises(ConfigurationError, match="unknown setting"):
        load_settings(**overrides)


def test_every_unknown_name_in_code_is_named_at_once() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings(port=1, host="127.0.0.1")  # type: ignore[call-arg]
    assert str(caught.value) == (
        "Invalid configuration: unknown settings host (did you mean functions_host?), "
        "port (did you mean functions_port?)"
    )


def test_configuration_error_carries_no_chained_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRBR_FUNCTIONS_PORT", "eighty")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


def test_unknown_crbr_variables_are_recorded_and_warned_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CRBR_FUNCTONS_PORT", "9000")
    (tmp_path / ".env").write_text("CRBR_NOT_A_SETTING_AT_ALL=1\n", encoding="utf-8")
    settings = load_settings()
    assert settings.functions_port == 8000
    assert settings.unknown_variables == ("CRBR_FUNCTONS_PORT", "CRBR_NOT_A_SETTING_AT_ALL")
    with caplog.at_level(logging.WARNING, logger="metatwin_functions.settings"):
        settings.warn_unknown_variables()
    assert [r.getMessage() for r in caplog.records] == [
        "Ignoring unknown variable CRBR_FUNCTONS_PORT (did you mean CRBR_FUNCTIONS_PORT?): "
        "it is not a setting",
        "Ignoring unknown variable CRBR_NOT_A_SETTING_AT_ALL: it is not a setting",
    ]


def test_known_variables_leave_nothing_to_warn_about(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRBR_FUNCTIONS_PORT", "9000")
    assert load_settings().unknown_variables == ()


# --- .env format -----------------------------------------------------------------------------


def test_dot_env_parser_reads_the_documented_format() -> None:
    text = (
        "# a comment\n"
        "\n"
        "CRBR_A=plain\n"
        "export CRBR_B=exported\n"
        "CRBR_C = spaced  # trailing comment\n"
        "CRBR_D='single # quoted \\n kept'\n"
        'CRBR_E="double \\"quoted\\" \\n line"  # comment\n'
        "CRBR_F=a=b\n"
        "CRBR_G=#not-a-comment\n"
        "CRBR_H=     # only a comment\n"
        "CRBR_I=a#b\n"
    )
    assert parse_dotenv(text) == {
        "CRBR_A": "plain",
        "CRBR_B": "exported",
        "CRBR_C": "spaced",
        "CRBR_D": "single # quoted \\n kept",
        "CRBR_E": 'double "quoted" \n line',
        "CRBR_F": "a=b",
        "CRBR_G": "#not-a-comment",
        "CRBR_H": "",
        "CRBR_I": "a#b",
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("CRBR_FUNCTIONS_PORT 8080\n", "line 1: expected KEY=VALUE"),
        ("# ok\nCRBR_A='open\n", "line 2: the value has no closing '"),
        ('CRBR_A="x" y\n', 'line 1: unexpected text after the closing "'),
        ("=value\n", "line 1: expected KEY=VALUE"),
    ],
)
def test_a_malformed_dot_env_line_is_an_error_naming_the_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    (tmp_path / ".env").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert str(caught.value).startswith(f".env, {problem}")


def test_another_env_file_can_be_named_or_none_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CRBR_FUNCTIONS_PORT=8123\n", encoding="utf-8")
    (tmp_path / "other.env").write_text("CRBR_FUNCTIONS_PORT=8124\n", encoding="utf-8")
    assert Settings().functions_port == 8123
    assert Settings(_env_file=tmp_path / "other.env").functions_port == 8124
    assert Settings(_env_file=None).functions_port == 8000


def test_no_dot_env_file_is_fine(tmp_path: Path) -> None:
    assert not (tmp_path / ".env").exists()
    assert load_settings().functions_port == 8000


def test_settings_do_not_import_pydantic_settings() -> None:
    code = (
        "import sys, metatwin_functions, metatwin_functions.app; "
        "metatwin_functions.load_settings(); "
        "print('pydantic_settings' in sys.modules, 'dotenv' in sys.modules)"
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env={"PYTHONPATH": str(root)},
    )
    assert result.stdout.split() == ["False", "False"]
