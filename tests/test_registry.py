"""``@Function`` and `FunctionRegistry`: decorator forms, defaults, decoration-time errors."""

from __future__ import annotations

import asyncio
import functools
import math
from typing import Any

import pytest

from metatwin_functions import Function, FunctionRegistry, RegistrationError, default_registry
from metatwin_functions.registry import FunctionSpec


@pytest.fixture
def registry() -> FunctionRegistry:
    return FunctionRegistry()


# --- decorator forms -------------------------------------------------------------------------


def test_bare_decorator_registers_under_the_function_name(registry: FunctionRegistry) -> None:
    @Function(registry=registry)
    async def add_numbers(a: int, b: int) -> int:
        return a + b

    spec = registry.get("add_numbers")
    assert spec is not None
    assert spec.func is add_numbers
    assert registry.names == ["add_numbers"]


def test_bare_decorator_without_parentheses_registers_in_the_default_registry() -> None:
    # ``@Function`` with no call at all can only target the default registry.
    try:

        @Function
        async def _test_registry_bare_probe(x: int) -> int:
            """Probe for the bare form."""
            return x

        spec = default_registry.get("_test_registry_bare_probe")
        assert spec is not None
        assert spec.func is _test_registry_bare_probe
        assert spec.description == "Probe for the bare form."
    finally:
        default_registry.unregister("_test_registry_bare_probe")
    assert "_test_registry_bare_probe" not in default_registry


def test_empty_call_decorator_registers_under_the_function_name(
    registry: FunctionRegistry,
) -> None:
    @Function(registry=registry)
    def word_count(text: str) -> int:
        return len(text.split())

    assert "word_count" in registry
    assert registry.get("word_count").func is word_count  # type: ignore[union-attr]


def test_positional_name_overrides_the_function_name(registry: FunctionRegistry) -> None:
    @Function("sum_two", registry=registry)
    async def add(a: int, b: int) -> int:
        return a + b

    assert registry.names == ["sum_two"]
    assert "add" not in registry


def test_keyword_name_description_and_timeout_are_recorded(registry: FunctionRegistry) -> None:
    @Function(
        name="count_invoices", description="Counts all invoices", timeout=7, registry=registry
    )
    async def count(include_paid: bool) -> int:
        """Ignored, because a description was given."""
        return 3

    spec = registry.get("count_invoices")
    assert spec is not None
    assert spec.description == "Counts all invoices"
    assert spec.timeout == 7.0
    assert isinstance(spec.timeout, float)


def test_timeout_defaults_to_none_so_the_settings_decide(registry: FunctionRegistry) -> None:
    @Function(registry=registry)
    async def f() -> None:
        return None

    assert registry.get("f").timeout is None  # type: ignore[union-attr]


def test_registry_function_method_registers_into_that_registry(
    registry: FunctionRegistry,
) -> None:
    @registry.function("renamed", description="d", timeout=2.5)
    def original() -> int:
        return 1

    spec = registry.get("renamed")
    assert spec is not None
    assert (spec.func, spec.description, spec.timeout) == (original, "d", 2.5)
    assert "renamed" not in default_registry


def test_registry_function_without_arguments_uses_the_function_name(
    registry: FunctionRegistry,
) -> None:
    @registry.function()
    def plain() -> int:
        return 1

    assert registry.names == ["plain"]


def test_register_returns_the_spec(registry: FunctionRegistry) -> None:
    def f(x: int) -> int:
        return x

    spec = registry.register(f)
    assert isinstance(spec, FunctionSpec)
    assert spec is registry.get("f")


def test_explicit_registry_does_not_touch_the_default_registry(
    registry: FunctionRegistry,
) -> None:
    before = default_registry.names

    @Function("_test_registry_isolated", registry=registry)
    def f() -> int:
        return 1

    assert default_registry.names == before
    assert "_test_registry_isolated" in registry


def test_name_given_both_positionally_and_by_keyword_is_rejected(
    registry: FunctionRegistry,
) -> None:
    with pytest.raises(RegistrationError, match="two names"):
        Function("a", name="b", registry=registry)


def test_registration_order_is_kept(registry: FunctionRegistry) -> None:
    for name in ("zeta", "alpha", "mid"):
        registry.register(lambda: 1, name=name)
    assert registry.names == ["zeta", "alpha", "mid"]
    assert [spec.name for spec in registry] == ["zeta", "alpha", "mid"]
    assert len(registry) == 3


def test_unregister_and_clear_forget_functions(registry: FunctionRegistry) -> None:
    registry.register(lambda: 1, name="a")
    registry.register(lambda: 2, name="b")
    registry.unregister("a")
    registry.unregister("missing")  # no error
    assert registry.names == ["b"]
    registry.clear()
    assert len(registry) == 0
    assert registry.get("b") is None


# --- defaults --------------------------------------------------------------------------------


def test_default_description_is_the_first_docstring_line(registry: FunctionRegistry) -> None:
    @Function(registry=registry)
    def f() -> None:
        """
        Adds two numbers.

        Longer explanation that must not be part of the description.
        """

    assert registry.get("f").description == "Adds two numbers."  # type: ignore[union-attr]


def test_default_description_is_empty_without_docstring(registry: FunctionRegistry) -> None:
    @Function(registry=registry)
    def f() -> None:
        return None

    assert registry.get("f").description == ""  # type: ignore[union-attr]


def test_explicit_empty_description_is_kept(registry: FunctionRegistry) -> None:
    @Function(description="", registry=registry)
    def f() -> None:
        """Docstring that must not be used."""

    assert registry.get("f").description == ""  # type: ignore[union-attr]


def test_non_string_description_is_rejected(registry: FunctionRegistry) -> None:
    def f() -> None:
        return None

    with pytest.raises(RegistrationError, match="description must be a string"):
        registry.register(f, description=42)  # type: ignore[arg-type]


# --- the decorated function is unchanged -----------------------------------------------------


async def test_decorated_async_function_is_the_same_object_and_still_awaitable(
    registry: FunctionRegistry,
) -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    decorated = Function(registry=registry)(add)
    assert decorated is add
    assert await decorated(2, 3) == 5


def test_decorated_plain_function_is_the_same_object_and_still_callable(
    registry: FunctionRegistry,
) -> None:
    def add(a: int, b: int) -> int:
        return a + b

    assert Function("x", registry=registry)(add) is add
    assert registry.function()(add) is add
    assert add(2, 3) == 5


# --- async detection -------------------------------------------------------------------------


def test_async_def_is_detected_as_async(registry: FunctionRegistry) -> None:
    async def f() -> int:
        return 1

    assert registry.register(f).is_async is True


def test_plain_def_is_not_async(registry: FunctionRegistry) -> None:
    def f() -> int:
        return 1

    assert registry.register(f).is_async is False


def test_async_callable_object_is_detected_as_async_and_typed(
    registry: FunctionRegistry,
) -> None:
    class Adder:
        """Adds an offset."""

        def __init__(self, offset: int) -> None:
            self.offset = offset

        async def __call__(self, x: int) -> int:
            return x + self.offset

    adder = Adder(10)
    spec = registry.register(adder, name="adder")
    assert spec.is_async is True
    assert spec.func is adder
    assert spec.description == "Adds an offset."
    # The hints are the ones of __call__, without ``self``.
    assert [(a.name, a.type) for a in spec.signature.arguments] == [("x", "int")]
    assert spec.signature.return_type == "int"
    assert asyncio.run(adder(1)) == 11


def test_plain_callable_object_is_not_async(registry: FunctionRegistry) -> None:
    class Doubler:
        def __call__(self, x: int) -> int:
            return 2 * x

    spec = registry.register(Doubler(), name="double")
    assert spec.is_async is False
    assert [(a.name, a.type) for a in spec.signature.arguments] == [("x", "int")]


def test_partial_of_an_async_function_is_async_and_keeps_remaining_parameters(
    registry: FunctionRegistry,
) -> None:
    async def scale(factor: int, value: float) -> float:
        return factor * value

    spec = registry.register(functools.partial(scale, 3), name="triple")
    assert spec.is_async is True
    assert [(a.name, a.type) for a in spec.signature.arguments] == [("value", "float")]


def test_callable_object_without_a_name_needs_an_explicit_one(
    registry: FunctionRegistry,
) -> None:
    class Nameless:
        def __call__(self) -> int:
            return 1

    with pytest.raises(RegistrationError, match="non-empty string name"):
        registry.register(Nameless())


# --- errors at decoration time ---------------------------------------------------------------


def test_duplicate_name_for_a_different_function_is_rejected_with_both_locations(
    registry: FunctionRegistry,
) -> None:
    @Function("same", registry=registry)
    def first() -> int:
        return 1

    with pytest.raises(RegistrationError) as caught:

        @Function("same", registry=registry)
        def second() -> int:
            return 2

    message = str(caught.value)
    assert "'same' is already registered" in message
    assert "first" in message
    assert "second" in message
    assert registry.get("same").func is first  # type: ignore[union-attr]


def _make_definition(value: int) -> Any:
    # Each call creates a new function object with the same module and qualname, like a module
    # that is imported twice (as a script and as a module).
    def redefined() -> int:
        return value

    return redefined


def test_reregistering_the_same_module_and_qualname_replaces_silently(
    registry: FunctionRegistry,
) -> None:
    old, new = _make_definition(1), _make_definition(2)
    assert old is not new
    registry.register(old)
    registry.register(new)
    assert registry.names == ["redefined"]
    assert registry.get("redefined").func is new  # type: ignore[union-attr]


def test_registering_the_same_function_twice_is_allowed(registry: FunctionRegistry) -> None:
    def f() -> int:
        return 1

    registry.register(f)
    registry.register(f)
    assert registry.names == ["f"]


@pytest.mark.parametrize("value", [42, "not callable here", None], ids=["int", "str", "none"])
def test_non_callable_is_rejected(registry: FunctionRegistry, value: Any) -> None:
    with pytest.raises(RegistrationError, match="needs a function"):
        registry.register(value)


def test_non_callable_through_the_decorator_is_rejected(registry: FunctionRegistry) -> None:
    with pytest.raises(RegistrationError, match="needs a function"):
        Function(registry=registry)(42)  # type: ignore[type-var]


def test_a_class_is_rejected(registry: FunctionRegistry) -> None:
    with pytest.raises(RegistrationError, match=r"needs a function.*type"):

        @Function(registry=registry)
        class NotAFunction:
            pass


def test_var_positional_parameter_is_rejected(registry: FunctionRegistry) -> None:
    with pytest.raises(RegistrationError, match=r"\*values cannot be served"):

        @Function(registry=registry)
        def total(*values: int) -> int:
            return sum(values)

    assert "total" not in registry


def test_positional_only_parameter_is_rejected(registry: FunctionRegistry) -> None:
    with pytest.raises(RegistrationError, match="'a' is positional-only"):

        @Function(registry=registry)
        def f(a: int, /, b: int) -> int:
            return a + b


def test_generator_functions_are_registered_with_their_kind(registry: FunctionRegistry) -> None:
    @Function(registry=registry)
    def numbers() -> Any:
        yield 1

    @Function(registry=registry)
    async def async_numbers() -> Any:
        yield 1

    @Function(registry=registry)
    async def plain_async() -> int:
        return 1

    @Function(registry=registry)
    def plain() -> int:
        return 1

    kinds = {spec.name: (spec.kind, spec.is_async) for spec in registry}
    assert kinds == {
        "numbers": ("sync_generator", False),
        "async_numbers": ("async_generator", True),
        "plain_async": ("async", True),
        "plain": ("sync", False),
    }


@pytest.mark.parametrize(
    "timeout",
    [0, 0.0, -1, -0.5, math.nan, math.inf, True, False, "10"],
    ids=["zero", "zero-float", "negative", "negative-float", "nan", "inf", "true", "false", "str"],
)
def test_bad_timeout_is_rejected(registry: FunctionRegistry, timeout: Any) -> None:
    with pytest.raises(RegistrationError, match="timeout must be a positive number of seconds"):

        @Function(timeout=timeout, registry=registry)
        def f() -> int:
            return 1

    assert "f" not in registry


@pytest.mark.parametrize("timeout", [1, 0.25, 600])
def test_positive_timeout_is_accepted_as_float(registry: FunctionRegistry, timeout: float) -> None:
    spec = registry.register(lambda: 1, name="f", timeout=timeout)
    assert spec.timeout == float(timeout)


@pytest.mark.parametrize("name", ["", "   "], ids=["empty", "blank"])
def test_empty_name_is_rejected(registry: FunctionRegistry, name: str) -> None:
    with pytest.raises(RegistrationError, match="non-empty string name"):

        @Function(name=name, registry=registry)
        def f() -> int:
            return 1

    assert len(registry) == 0


def test_unresolvable_signature_is_rejected_at_decoration(registry: FunctionRegistry) -> None:
    with pytest.raises(RegistrationError, match="cannot resolve its type hints"):

        @Function(registry=registry)
        def f(x: UndefinedType) -> int:  # type: ignore[name-defined]  # noqa: F821
            return 1
