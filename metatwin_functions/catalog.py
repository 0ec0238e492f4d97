"""The functions as the platform sees them: the contract's ``FunctionInfo`` records.

Used by the deployment-started event and by ``metatwin-functions describe``.
"""

from __future__ import annotations

from typing import TypedDict

from .registry import FunctionRegistry, FunctionSpec

__all__ = ["ArgumentPayload", "FunctionPayload", "function_payload", "functions_catalog"]


class ArgumentPayload(TypedDict):
    """One parameter of a function, as the platform reads it."""

    name: str
    type: str
    required: bool
    description: str | None


class FunctionPayload(TypedDict):
    """One function of the started event."""

    name: str
    description: str
    args: list[ArgumentPayload]
    returnType: str


def function_payload(spec: FunctionSpec) -> FunctionPayload:
    """Describe one registered function the way the started event lists it."""
    return {
        "name": spec.name,
        "description": spec.description,
        "args": [
            {
                "name": argument.name,
                "type": argument.type,
                "required": argument.required,
                "description": argument.description,
            }
            for argument in spec.signature.arguments
        ],
        "returnType": spec.signature.return_type,
    }


def functions_catalog(registry: FunctionRegistry) -> list[FunctionPayload]:
    """Every registered function's entry, in registration order."""
    return [function_payload(spec) for spec in registry]
