"""The client's pieces that need no server: the response type, envelopes, CLI arguments, and the
errors a call gets when nothing answers."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from metatwin_functions.cli import build_parser
from metatwin_functions.cli_remote import amqp_target, parse_arguments
from metatwin_functions.client import FunctionResponse, HttpFunctionClient, exec_envelope
from metatwin_functions.errors import ClientError, MetaTwinFunctionsError


def test_a_response_body_becomes_a_typed_response() -> None:
    response = FunctionResponse.from_body(
        b'{"success": false, "result": null, "error": "Function \'x\' not found",'
        b' "metadata": {"executionId": "e-1", "errorKind": "not_found"}}',
        200,
    )
    assert response.success is False
    assert response.error == "Function 'x' not found"
    assert (response.execution_id, response.error_kind, response.status) == (
        "e-1",
        "not_found",
        200,
    )


@pytest.mark.parametrize(
    ("body", "why"), [(b"<html>", "not JSON"), (b'{"ok": 1}', "not an /exec response")]
)
def test_a_body_that_is_not_the_contract_shape_is_a_client_error(body: bytes, why: str) -> None:
    with pytest.raises(ClientError, match=why) as caught:
        FunctionResponse.from_body(body)
    assert isinstance(caught.value, MetaTwinFunctionsError)


def test_an_envelope_gets_a_new_execution_id_unless_given() -> None:
    first, second = exec_envelope("f"), exec_envelope("f")
    assert first["executionId"] != second["executionId"]
    assert exec_envelope("f", {"a": 1}, execution_id="", version="1.0") == {
        "executionId": "",
        "functionName": "f",
        "args": {"a": 1},
        "version": "1.0",
    }


def test_cli_pairs_are_json_when_they_can_be_and_strings_otherwise() -> None:
    assert parse_arguments(["a=3", "flag=true", "name=bob", 'quoted="3"', "xs=[1,2]"], "{}") == {
        "a": 3,
        "flag": True,
        "name": "bob",
        "quoted": "3",
        "xs": [1, 2],
    }
    assert parse_arguments(["a=1"], '{"a": 0, "b": 2}') == {"a": 1, "b": 2}


@pytest.mark.parametrize(("pairs", "json_args"), [(["oops"], "{}"), ([], "[1]"), ([], "{")])
def test_bad_cli_arguments_are_refused_clearly(pairs: list[str], json_args: str) -> None:
    with pytest.raises(SystemExit, match="error: "):
        parse_arguments(pairs, json_args)


async def test_an_http_call_to_nothing_listening_is_a_client_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HttpFunctionClient(f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(ClientError, match="cannot reach"):
        await client.call("add_numbers", {"a": 1, "b": 2})


def test_cli_amqp_options_win_over_the_environment_and_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("CRBR_DEPLOYMENT_ID=dep-42\nCRBR_RABBITMQ_EXCHANGE=my.ex\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRBR_DEPLOYMENT_ID", raising=False)
    monkeypatch.setenv("CRBR_RABBITMQ_EXCHANGE", "env.ex")
    parse = build_parser().parse_args
    assert amqp_target(parse(["call", "--amqp", "amqp://h/", "f"])) == ("dep-42", "env.ex")
    given = parse(["call", "--amqp", "amqp://h/", "--deployment-id", "d", "--exchange", "x", "f"])
    assert amqp_target(given) == ("d", "x")


def test_cli_amqp_with_a_bad_dotenv_says_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("CRBR_RABBITMQ_PORT=not-a-port\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="CRBR_RABBITMQ_PORT"):
        amqp_target(build_parser().parse_args(["call", "--amqp", "amqp://h/", "f"]))
