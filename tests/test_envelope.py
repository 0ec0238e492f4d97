"""The ``/exec`` wire format: parsing request envelopes and writing response bodies."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from metatwin_functions import MetaTwinFunctionsError
from metatwin_functions.answers import envelope_error_answer
from metatwin_functions.envelope import (
    EnvelopeError,
    ExecRequest,
    failure_body,
    parse_exec_request,
    serialize_result,
    success_body,
)

# --- valid envelopes -------------------------------------------------------------------------


def test_parses_a_full_envelope_from_bytes() -> None:
    body = b'{"executionId": "unique-id-123", "functionName": "add_numbers", "args": {"a": 5}}'
    assert parse_exec_request(body) == ExecRequest("unique-id-123", "add_numbers", {"a": 5})


def test_parses_a_full_envelope_from_str() -> None:
    body = '{"executionId": "e", "functionName": "échō", "args": {"text": "ünïcode"}}'
    assert parse_exec_request(body) == ExecRequest("e", "échō", {"text": "ünïcode"})


def test_empty_execution_id_is_allowed() -> None:
    request = parse_exec_request(b'{"executionId": "", "functionName": "f"}')
    assert request.execution_id == ""


def test_absent_args_become_an_empty_object() -> None:
    assert parse_exec_request(b'{"executionId": "e", "functionName": "f"}').args == {}


def test_null_args_become_an_empty_object() -> None:
    body = b'{"executionId": "e", "functionName": "f", "args": null}'
    assert parse_exec_request(body).args == {}


def test_nested_args_are_kept_as_json_values() -> None:
    args = {"items": [1, 2.5, "x", None, True], "nested": {"k": {"deep": []}}}
    body = json.dumps({"executionId": "e", "functionName": "f", "args": args})
    assert parse_exec_request(body).args == args


def test_unknown_envelope_fields_are_ignored() -> None:
    body = b'{"executionId": "e", "functionName": "f", "args": {}, "traceId": "t"}'
    assert parse_exec_request(body) == ExecRequest("e", "f", {})


# --- invalid envelopes -----------------------------------------------------------------------


def _problems(body: bytes | str) -> list[str]:
    with pytest.raises(EnvelopeError) as caught:
        parse_exec_request(body)
    assert isinstance(caught.value, MetaTwinFunctionsError)
    assert str(caught.value).startswith("Invalid request: ")
    return caught.value.problems


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{", b'{"executionId": "e",}', b"\xff\xfe", "{'single': 'quotes'}"],
    ids=["text", "truncated", "trailing-comma", "bad-utf8", "python-dict"],
)
def test_body_that_is_not_json_is_rejected(body: bytes | str) -> None:
    problems = _problems(body)
    assert len(problems) == 1
    assert problems[0].startswith("body is not valid JSON")


@pytest.mark.parametrize("body", [b"", "", b"   "], ids=["empty-bytes", "empty-str", "blank"])
def test_empty_body_is_rejected_as_not_json(body: bytes | str) -> None:
    assert _problems(body)[0].startswith("body is not valid JSON")


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"[]", "array"),
        (b'[{"executionId": "e", "functionName": "f"}]', "array"),
        (b"42", "number"),
        (b"1.5", "number"),
        (b'"text"', "string"),
        (b"true", "boolean"),
        (b"null", "null"),
    ],
)
def test_body_that_is_not_an_object_is_rejected_naming_its_type(body: bytes, kind: str) -> None:
    assert _problems(body) == [f"body must be a JSON object, got {kind}"]


def test_missing_execution_id_is_named() -> None:
    assert _problems(b'{"functionName": "f"}') == ["'executionId' is required"]


def test_missing_function_name_is_named() -> None:
    assert _problems(b'{"executionId": "e"}') == ["'functionName' is required"]


def test_empty_object_names_both_missing_fields() -> None:
    assert _problems(b"{}") == ["'executionId' is required", "'functionName' is required"]


@pytest.mark.parametrize(
    ("value", "kind"),
    [("null", "null"), ("42", "number"), ("true", "boolean"), ("[]", "array"), ("{}", "object")],
)
def test_execution_id_of_wrong_type_is_named(value: str, kind: str) -> None:
    body = f'{{"executionId": {value}, "functionName": "f"}}'
    assert _problems(body) == [f"'executionId' must be a string, got {kind}"]


@pytest.mark.parametrize(
    ("value", "kind"),
    [("null", "null"), ("1.5", "number"), ("false", "boolean"), ('["f"]', "array")],
)
def test_function_name_of_wrong_type_is_named(value: str, kind: str) -> None:
    body = f'{{"executionId": "e", "functionName": {value}}}'
    assert _problems(body) == [f"'functionName' must be a string, got {kind}"]


@pytest.mark.parametrize(
    ("value", "kind"),
    [("[1, 2]", "array"), ('"a=1"', "string"), ("3", "number"), ("false", "boolean")],
)
def test_args_that_are_not_an_object_are_named(value: str, kind: str) -> None:
    body = f'{{"executionId": "e", "functionName": "f", "args": {value}}}'
    assert _problems(body) == [f"'args' must be a JSON object, got {kind}"]


def test_every_problem_is_reported_at_once() -> None:
    body = b'{"executionId": 1, "functionName": null, "args": []}'
    assert _problems(body) == [
        "'executionId' must be a string, got number",
        "'functionName' must be a string, got null",
        "'args' must be a JSON object, got array",
    ]


def test_envelope_error_keeps_a_valid_execution_id_for_the_response() -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse_exec_request(b'{"executionId": "keep-me", "args": 5}')
    assert caught.value.execution_id == "keep-me"


def test_envelope_error_has_no_execution_id_when_it_is_not_a_string() -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse_exec_request(b'{"executionId": 5}')
    assert caught.value.execution_id is None


# --- response bodies -------------------------------------------------------------------------


def test_envelope_error_body_is_json_of_the_response_shape_with_problems() -> None:
    error = EnvelopeError(["'functionName' is required", "'args' must be a JSON object"], "id-1")
    body = json.loads(envelope_error_answer(error).body)
    assert body == {
        "success": False,
        "result": None,
        "error": "Invalid request: 'functionName' is required; 'args' must be a JSON object",
        "metadata": {
            "executionId": "id-1",
            "errorKind": "invalid_envelope",
            "problems": ["'functionName' is required", "'args' must be a JSON object"],
        },
    }


def test_envelope_error_body_from_a_real_parse_failure() -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse_exec_request(b"[1]")
    body = json.loads(envelope_error_answer(caught.value).body)
    assert body["success"] is False
    assert body["metadata"]["executionId"] is None
    assert body["metadata"]["problems"] == ["body must be a JSON object, got array"]


def test_success_body_wraps_the_serialized_result() -> None:
    body = success_body(serialize_result({"sum": 8}), {"executionId": "unique-id-123"})
    assert json.loads(body) == {
        "success": True,
        "result": {"sum": 8},
        "error": None,
        "metadata": {"executionId": "unique-id-123"},
    }


@pytest.mark.parametrize("result", [None, 0, "", [], 'quote " and \\ backslash', 1.5e300])
def test_success_body_is_valid_json_for_edge_results(result: Any) -> None:
    body = json.loads(success_body(serialize_result(result), {"executionId": ""}))
    assert body["result"] == result
    assert body["metadata"] == {"executionId": ""}


def test_failure_body_has_null_result_and_the_message() -> None:
    metadata = {"executionId": "x", "errorCode": "MTF-EXECUTION-003"}
    body = json.loads(failure_body('Function execution failed: "boom" ü', metadata))
    assert body == {
        "success": False,
        "result": None,
        "error": 'Function execution failed: "boom" ü',
        "metadata": metadata,
    }


# --- result serialization --------------------------------------------------------------------


class Point(BaseModel):
    x: int
    when: datetime


@dataclass
class Line:
    start: tuple[int, int]
    label: str


def _round_trip(value: Any) -> Any:
    return json.loads(serialize_result(value))


def test_serializes_datetime_as_iso_8601() -> None:
    value = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert _round_trip(value) == "2024-05-06T07:08:09Z"


def test_serializes_aware_non_utc_datetime_with_its_offset() -> None:
    value = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    assert _round_trip(value) == "2024-05-06T07:08:09+02:00"


def test_serializes_date_as_iso_8601() -> None:
    assert _round_trip(date(2024, 1, 2)) == "2024-01-02"


def test_serializes_uuid_as_its_string() -> None:
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert _round_trip(value) == "12345678-1234-5678-1234-567812345678"


def test_serializes_decimal_without_losing_digits() -> None:
    assert _round_trip(Decimal("0.10000000000000000001")) == "0.10000000000000000001"


def test_serializes_pydantic_models_as_objects() -> None:
    point = Point(x=1, when=datetime(2024, 1, 1, tzinfo=UTC))
    assert _round_trip(point) == {"x": 1, "when": "2024-01-01T00:00:00Z"}


def test_serializes_dataclasses_as_objects() -> None:
    assert _round_trip(Line(start=(1, 2), label="l")) == {"start": [1, 2], "label": "l"}


def test_serializes_sets_and_tuples_as_arrays() -> None:
    assert sorted(_round_trip({3, 1, 2})) == [1, 2, 3]
    assert _round_trip(frozenset({"a"})) == ["a"]
    assert _round_trip((1, "two", None)) == [1, "two", None]


def test_serializes_nested_structures() -> None:
    value = {
        "user": Point(x=2, when=datetime(2020, 2, 2, tzinfo=UTC)),
        "ids": (uuid.UUID(int=0),),
        "amounts": [Decimal("1.50")],
        "day": date(2020, 2, 2),
        "lines": [Line(start=(0, 0), label="origin")],
    }
    assert _round_trip(value) == {
        "user": {"x": 2, "when": "2020-02-02T00:00:00Z"},
        "ids": ["00000000-0000-0000-0000-000000000000"],
        "amounts": ["1.50"],
        "day": "2020-02-02",
        "lines": [{"start": [0, 0], "label": "origin"}],
    }


def test_non_finite_floats_become_null_so_the_body_stays_valid_json() -> None:
    raw = serialize_result([float("nan"), float("inf"), float("-inf"), 1.0])
    # Strict JSON parsers (the platform's Jackson) reject NaN/Infinity literals.
    parsed = json.loads(raw, parse_constant=lambda token: pytest.fail(f"non-JSON {token}"))
    assert parsed == [None, None, None, 1.0]


def test_plain_object_cannot_be_serialized() -> None:
    with pytest.raises(ValueError, match="object"):
        serialize_result({"value": object()})


def test_circular_list_cannot_be_serialized() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match=r"(?i)circular|recursion"):
        serialize_result(loop)


def test_circular_dict_cannot_be_serialized() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = {"parent": loop}
    with pytest.raises(ValueError, match=r"(?i)circular|recursion"):
        serialize_result(loop)


def test_serialization_error_is_a_plain_value_error() -> None:
    with pytest.raises(ValueError, match="Unable to serialize") as caught:
        serialize_result(object())
    assert type(caught.value) is ValueError
    assert caught.value.__cause__ is None
