"""The functions as the platform sees them: the contract's ``FunctionInfo`` records."""

from __future__ import annotations

from typing import Any

from .registry import FunctionRegistry, FunctionSpec

__all__ = ["function_info", "functions_catalog"]


def function_info(spec: FunctionSpec) -> dict[str, Any]:
    """One function's entry of the deployment-started payload."""
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


def functions_catalog(registry: FunctionRegistry) -> list[dict[str, Any]]:
    """Every registered function's entry, in registration order."""
    return [function_info(spec) for spec in registry]
