"""``metatwin-functions check``: what the platform could not use in a set of functions.

Registration already refuses what cannot be served at all (``*args``, unresolvable hints, two
functions under one name). These checks go further, to what serves but that the platform or its
users cannot make sense of: a function without a description, an argument whose JSON Schema says
nothing, a type that renders as ``<locals>`` or fails to render, names that differ only in case or
that no envelope can carry.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from .envelope import MAX_FUNCTION_NAME_LENGTH
from .registry import FunctionRegistry, FunctionSpec

__all__ = ["check_registry"]

#: Keys of a JSON Schema that say nothing about what is accepted.
_SILENT_KEYS = frozenset({"default", "title", "description", "examples"})
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\s]")


def check_registry(registry: FunctionRegistry) -> list[str]:
    """Every problem found, one line each (``function 'NAME': ...``); empty when all is well."""
    if len(registry) == 0:
        return ["no @Function found: decorate the functions to serve with @Function"]
    problems = _name_clashes(registry)
    for spec in registry:
        problems.extend(f"function '{spec.name}': {problem}" for problem in _check(spec))
    return problems


def _name_clashes(registry: FunctionRegistry) -> list[str]:
    problems = []
    folded: defaultdict[str, list[str]] = defaultdict(list)
    for name in dict.fromkeys(spec.name for spec in registry):
        folded[name.casefold().replace("-", "_")].append(name)
        if len(name) > MAX_FUNCTION_NAME_LENGTH:
            problems.append(
                f"function '{name[:40]}...': the name is longer than "
                f"{MAX_FUNCTION_NAME_LENGTH} characters, so no call can name it"
            )
        elif _UNPRINTABLE.search(name):
            problems.append(
                f"function {name!r}: the name contains whitespace or control characters"
            )
    for names in folded.values():
        if len(names) > 1:
            listed = ", ".join(f"'{name}'" for name in names)
            problems.append(
                f"functions {listed}: the names differ only in case or '-'/'_'; "
                "callers and the platform's lists cannot tell them apart"
            )
    return problems


def _check(spec: FunctionSpec) -> list[str]:
    problems = []
    if not spec.description.strip():
        problems.append(
            "no description: the platform lists functions with one "
            "(pass description=... or give it a docstring)"
        )
    signature = spec.signature
    try:
        schema = signature.arguments_schema()
    except Exception as exc:
        return [*problems, f"its arguments have no JSON Schema ({_first_line(exc)})"]
    properties: dict[str, Any] = schema.get("properties", {})
    for argument in signature.arguments:
        if not _describable(argument.type):
            problems.append(
                f"argument '{argument.name}': the type '{argument.type}' cannot be described "
                "to the platform (define it at module level)"
            )
        elif not (set(properties.get(argument.name, {})) - _SILENT_KEYS):
            problems.append(
                f"argument '{argument.name}' has no JSON Schema (no type hint, or Any): "
                "callers cannot tell what to send; give it a type hint"
            )
    if not _describable(signature.return_type):
        problems.append(
            f"the return type '{signature.return_type}' cannot be described to the platform "
            "(define it at module level)"
        )
    return problems


def _describable(type_string: str) -> bool:
    # Reprs of objects and classes local to a function: the platform would show Python's noise.
    return "<" not in type_string and "object at 0x" not in type_string


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
