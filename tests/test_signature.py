"""Reading signatures: the contract's type strings, required flags, and the argument validator."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Annotated, Any, Dict, List, Optional  # noqa: UP035 - the contract's spelling

import pytest
from pydantic import Field, ValidationError

from metatwin_functions import RegistrationError
from metatwin_functions.signature import ArgumentInfo, SignatureInfo, read_signature, type_string


@dataclass
class Invoice:
    """A user type pydantic can validate, to check that a class renders as its name."""

    number: int


class Opaque:
    """A user type pydantic cannot validate."""


def _arguments(func: Any) -> dict[str, ArgumentInfo]:
    return {argument.name: argument for argument in read_signature(func, "f").arguments}


def _types(func: Any) -> dict[str, str]:
    return {name: argument.type for name, argument in _arguments(func).items()}


# --- type strings ----------------------------------------------------------------------------


def test_builtin_scalar_types_render_as_their_names() -> None:
    def f(a: int, b: float, c: str, d: bool, e: bytes) -> None:
        return None

    assert _types(f) == {"a": "int", "b": "float", "c": "str", "d": "bool", "e": "bytes"}


def test_parameter_without_hint_is_any() -> None:
    def f(x, y=1):  # type: ignore[no-untyped-def]
        return x

    assert _types(f) == {"x": "Any", "y": "Any"}


def test_explicit_any_is_any() -> None:
    def f(x: Any) -> Any:
        return x

    assert _types(f) == {"x": "Any"}
    assert read_signature(f, "f").return_type == "Any"


def test_typing_generics_render_without_the_typing_prefix() -> None:
    def f(
        numbers: List[float],  # noqa: UP006
        data: Dict[str, Any],  # noqa: UP006
        maybe: Optional[str],  # noqa: UP045
    ) -> None:
        return None

    assert _types(f) == {
        "numbers": "List[float]",
        "data": "Dict[str, Any]",
        "maybe": "Optional[str]",
    }


def test_builtin_generics_and_pep604_unions_render_as_python_writes_them() -> None:
    def f(a: list[int], b: str | None, c: dict[str, list[int]]) -> None:
        return None

    assert _types(f) == {"a": "list[int]", "b": "str | None", "c": "dict[str, list[int]]"}


def test_user_class_renders_as_its_name() -> None:
    def f(invoice: Invoice) -> Invoice:
        return invoice

    info = read_signature(f, "f")
    assert _types(f) == {"invoice": "Invoice"}
    assert info.return_type == "Invoice"
    assert info.arguments_adapter.validate_python({"invoice": {"number": "7"}}) == {
        "invoice": Invoice(number=7)
    }


def test_annotated_field_renders_as_its_type_with_the_field_description() -> None:
    def f(count: Annotated[int, Field(description="d")], other: Annotated[str, "meta"]) -> None:
        return None

    arguments = _arguments(f)
    assert arguments["count"].type == "int"
    assert arguments["count"].description == "d"
    assert arguments["other"].type == "str"
    assert arguments["other"].description is None


def test_description_is_none_by_default() -> None:
    def f(a: int, b: str = "x") -> None:
        return None

    assert [argument.description for argument in _arguments(f).values()] == [None, None]


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (int, "int"),
        (type(None), "None"),
        (None, "None"),
        (inspect.Parameter.empty, "Any"),
        (List[int], "List[int]"),  # noqa: UP006
        (Optional[int], "Optional[int]"),  # noqa: UP045
        (Annotated[float, "x"], "float"),
    ],
)
def test_type_string_of_single_hints(hint: Any, expected: str) -> None:
    assert type_string(hint) == expected


def test_return_type_none_is_rendered_as_none() -> None:
    def f() -> None:
        return None

    assert read_signature(f, "f").return_type == "None"


def test_missing_return_annotation_is_any() -> None:
    def f(a: int):  # type: ignore[no-untyped-def]
        return a

    assert read_signature(f, "f").return_type == "Any"


def test_return_generic_type_is_rendered() -> None:
    def f() -> Dict[str, float]:  # noqa: UP006
        return {}

    assert read_signature(f, "f").return_type == "Dict[str, float]"


# --- required flags and parameter kinds ------------------------------------------------------


def test_required_is_false_exactly_where_there_is_a_default() -> None:
    def f(a: int, b: int = 2, c: str | None = None) -> None:
        return None

    assert {name: argument.required for name, argument in _arguments(f).items()} == {
        "a": True,
        "b": False,
        "c": False,
    }


def test_arguments_keep_signature_order() -> None:
    def f(zeta: int, alpha: int, *, mid: int) -> None:
        return None

    assert [argument.name for argument in read_signature(f, "f").arguments] == [
        "zeta",
        "alpha",
        "mid",
    ]


def test_keyword_only_parameters_are_served() -> None:
    def f(*, a: int, b: int = 5) -> None:
        return None

    info = read_signature(f, "f")
    assert [(a.name, a.required) for a in info.arguments] == [("a", True), ("b", False)]
    assert info.arguments_adapter.validate_python({"a": "1"}) == {"a": 1}


def test_unresolvable_forward_reference_raises_registration_error() -> None:
    def f(x: DoesNotExist) -> int:  # type: ignore[name-defined]  # noqa: F821
        return 1

    with pytest.raises(RegistrationError, match="Function 'my_func': cannot resolve"):
        read_signature(f, "my_func")


def test_unresolvable_return_type_raises_registration_error() -> None:
    def f() -> AlsoMissing:  # type: ignore[name-defined]  # noqa: F821
        return 1

    with pytest.raises(RegistrationError, match="AlsoMissing"):
        read_signature(f, "f")


def test_var_keyword_is_not_an_argument_and_accepts_extra_arguments() -> None:
    def f(a: int, **options: Any) -> None:
        return None

    info = read_signature(f, "f")
    assert info.accepts_extra is True
    assert [argument.name for argument in info.arguments] == ["a"]
    assert info.arguments_adapter.validate_python({"a": 1, "colour": "red", "size": 3}) == {
        "a": 1,
        "colour": "red",
        "size": 3,
    }


def test_without_var_keyword_extra_arguments_are_rejected() -> None:
    def f(a: int) -> None:
        return None

    info = read_signature(f, "f")
    assert info.accepts_extra is False
    with pytest.raises(ValidationError) as caught:
        info.arguments_adapter.validate_python({"a": 1, "colour": "red"})
    assert caught.value.errors()[0]["type"] == "extra_forbidden"
    assert caught.value.errors()[0]["loc"] == ("colour",)


def test_parameter_names_that_clash_with_model_attributes_work() -> None:
    def f(json: str, copy: int, schema: bool, model_config: str = "x") -> None:
        return None

    info = read_signature(f, "f")
    assert [argument.name for argument in info.arguments] == [
        "json",
        "copy",
        "schema",
        "model_config",
    ]
    assert info.arguments_adapter.validate_python({"json": "{}", "copy": "2", "schema": True}) == {
        "json": "{}",
        "copy": 2,
        "schema": True,
    }


def test_omitted_defaults_are_not_passed_so_python_applies_them() -> None:
    sentinel: list[int] = []

    def f(a: int, b: list[int] = sentinel) -> None:
        return None

    info = read_signature(f, "f")
    assert info.arguments_adapter.validate_python({"a": 1}) == {"a": 1}
    assert info.defaults == {"b": sentinel}
    assert info.defaults["b"] is sentinel


def test_validator_coerces_in_lax_mode_and_names_the_wrong_argument() -> None:
    def f(a: int, b: float) -> None:
        return None

    adapter = read_signature(f, "f").arguments_adapter
    assert adapter.validate_python({"a": "3", "b": "2.5"}) == {"a": 3, "b": 2.5}
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python({"a": "x", "b": 1})
    assert [error["loc"] for error in caught.value.errors()] == [("a",)]


def test_validator_reports_missing_required_argument() -> None:
    def f(a: int, b: int = 1) -> None:
        return None

    with pytest.raises(ValidationError) as caught:
        read_signature(f, "f").arguments_adapter.validate_python({})
    assert [(e["type"], e["loc"]) for e in caught.value.errors()] == [("missing", ("a",))]


def test_parameter_of_unvalidatable_type_raises_registration_error() -> None:
    def f(x: Opaque) -> None:
        return None

    with pytest.raises(RegistrationError, match="cannot be validated"):
        read_signature(f, "f")


# --- JSON Schema -----------------------------------------------------------------------------


def test_arguments_schema_has_properties_required_and_defaults() -> None:
    def f(a: int, b: str = "hi", c: list[int] | None = None) -> None:
        return None

    schema = read_signature(f, "f").arguments_schema()
    assert schema["type"] == "object"
    assert set(schema["properties"]) == {"a", "b", "c"}
    assert schema["properties"]["a"]["type"] == "integer"
    assert schema["required"] == ["a"]
    assert schema["properties"]["b"]["default"] == "hi"
    assert schema["properties"]["c"]["default"] is None
    assert "default" not in schema["properties"]["a"]
    assert schema["additionalProperties"] is False


def test_arguments_schema_skips_defaults_json_cannot_hold() -> None:
    marker = object()

    def f(a: Any = marker) -> None:
        return None

    schema = read_signature(f, "f").arguments_schema()
    assert "default" not in schema["properties"]["a"]


def test_arguments_schema_carries_field_descriptions() -> None:
    def f(count: Annotated[int, Field(description="How many")]) -> None:
        return None

    schema = read_signature(f, "f").arguments_schema()
    assert schema["properties"]["count"]["description"] == "How many"


def test_signature_info_is_a_signature_info() -> None:
    def f() -> None:
        return None

    info = read_signature(f, "f")
    assert isinstance(info, SignatureInfo)
    assert info.arguments == ()
    assert info.arguments_adapter.validate_python({}) == {}
