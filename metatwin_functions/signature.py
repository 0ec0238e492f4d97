"""The one place that reads Python signatures.

From a function it builds, once at registration: the pydantic model that validates a call's
arguments, the contract's argument descriptions (type strings, required flags) and the return type
string.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired, Required, get_args, get_origin

from pydantic import ConfigDict, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python
from typing_extensions import TypedDict

from .errors import RegistrationError

__all__ = ["ArgumentInfo", "SignatureInfo", "read_signature", "type_string"]

# Called with a computed name, which type checkers do not allow for TypedDict itself.
_make_typed_dict: Any = TypedDict
_PREFIXES = re.compile(r"\b(?:typing_extensions|typing|builtins)\.")
_SIMPLE_TYPES: dict[Any, str] = {
    int: "int",
    float: "float",
    str: "str",
    bool: "bool",
    bytes: "bytes",
    type(None): "None",
    Any: "Any",
}


@dataclass(frozen=True, slots=True)
class ArgumentInfo:
    """One parameter as the platform sees it."""

    name: str
    type: str
    required: bool
    description: str | None


@dataclass(frozen=True, slots=True)
class SignatureInfo:
    """What registration learns from a signature."""

    arguments: tuple[ArgumentInfo, ...]
    return_type: str
    #: Validates a call's ``args`` object into the keyword arguments of the function.
    arguments_adapter: TypeAdapter[dict[str, Any]]
    accepts_extra: bool
    defaults: dict[str, Any]
    #: The return annotation as written (``inspect.Parameter.empty`` when there is none).
    return_hint: Any = inspect.Parameter.empty

    def return_schema(self) -> dict[str, Any] | None:
        """JSON Schema of the returned value (``{}`` without a hint); None if pydantic has none."""
        if self.return_hint is inspect.Parameter.empty:
            return {}
        try:
            schema: dict[str, Any] = TypeAdapter(self.return_hint).json_schema(mode="serialization")
        except Exception:
            return None
        return schema

    def arguments_schema(self, ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
        """JSON Schema of the ``args`` object, with each parameter's default where JSON has one.

        ``ref_template`` places the definitions of nested models (e.g. under an OpenAPI
        document's ``#/components/schemas/{model}``).
        """
        schema = self.arguments_adapter.json_schema(ref_template=ref_template)
        properties = schema.get("properties", {})
        for name, default in self.defaults.items():
            try:
                properties.setdefault(name, {})["default"] = to_jsonable_python(default)
            except Exception:
                continue
        return schema


def type_string(hint: Any) -> str:
    """Render a type hint the way the contract wants it (``List[float]``, ``str | None``)."""
    if hint is inspect.Parameter.empty:
        return "Any"
    simple = _SIMPLE_TYPES.get(hint)
    if simple is not None:
        return simple
    if get_origin(hint) is Annotated:
        return type_string(get_args(hint)[0])
    if isinstance(hint, type) and not get_args(hint):
        return hint.__qualname__
    if isinstance(hint, typing.ForwardRef):
        return hint.__forward_arg__
    if isinstance(hint, str):
        return hint
    return _PREFIXES.sub("", repr(hint))


def _field_description(hint: Any) -> str | None:
    if get_origin(hint) is Annotated:
        for extra in get_args(hint)[1:]:
            if isinstance(extra, FieldInfo) and extra.description:
                return extra.description
    return None


def _resolve_hints(func: Callable[..., Any], name: str) -> dict[str, Any]:
    target: Any = func
    if isinstance(target, functools.partial):
        target = target.func
    if not (inspect.isroutine(target) or isinstance(target, type)):
        # A callable object: its hints live on its class's __call__, not on the instance.
        target = type(target).__call__
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception as exc:
        raise RegistrationError(
            f"Function '{name}': cannot resolve its type hints ({exc}); "
            "define every type the signature names before decorating"
        ) from exc


def read_signature(func: Callable[..., Any], name: str) -> SignatureInfo:
    """Read ``func``'s signature, or raise `RegistrationError` if the SDK cannot serve it."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise RegistrationError(f"Function '{name}': cannot read its signature ({exc})") from exc
    hints = _resolve_hints(func, name)

    fields: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    arguments: list[ArgumentInfo] = []
    accepts_extra = False
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            raise RegistrationError(
                f"Function '{name}': *{parameter.name} cannot be served, because calls pass "
                "arguments by name; use named parameters"
            )
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise RegistrationError(
                f"Function '{name}': parameter '{parameter.name}' is positional-only, but calls "
                "pass arguments by name; remove the '/' from the signature"
            )
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            accepts_extra = True
            continue
        hint = hints.get(parameter.name, Any)
        required = parameter.default is inspect.Parameter.empty
        if required:
            fields[parameter.name] = Required[hint]
        else:
            # Defaults stay Python's job: an omitted argument is simply not passed.
            fields[parameter.name] = NotRequired[hint]
            defaults[parameter.name] = parameter.default
        arguments.append(
            ArgumentInfo(
                name=parameter.name,
                type=type_string(hints.get(parameter.name, inspect.Parameter.empty)),
                required=required,
                description=_field_description(hint),
            )
        )

    # A TypedDict rather than a model: parameter names such as ``json`` or ``copy`` cannot clash
    # with BaseModel attributes, and validation yields the keyword arguments dict directly.
    arguments_type: Any = _make_typed_dict(f"{_model_name(name)}Arguments", fields)
    arguments_type.__pydantic_config__ = ConfigDict(extra="allow" if accepts_extra else "forbid")
    try:
        adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(arguments_type)
    except Exception as exc:
        raise RegistrationError(
            f"Function '{name}': its parameters cannot be validated ({exc})"
        ) from exc

    return_hint = hints.get("return", inspect.Parameter.empty)
    return SignatureInfo(
        arguments=tuple(arguments),
        return_type=type_string(return_hint),
        return_hint=return_hint,
        arguments_adapter=adapter,
        accepts_extra=accepts_extra,
        defaults=defaults,
    )


def _model_name(name: str) -> str:
    words = re.split(r"[^0-9A-Za-z]+", name)
    return "".join(word[:1].upper() + word[1:] for word in words if word) or "Function"
