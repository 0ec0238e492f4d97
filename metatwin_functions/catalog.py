"""The functions as the platform sees them: the contract's ``FunctionInfo`` records.

Used by the deployment-started event and by ``metatwin-functions describe``.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

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
    #: Versioned names only (additive): the version described, and every version, ascending.
    version: NotRequired[str]
    versions: NotRequired[list[str]]


def function_payload(spec: FunctionSpec) -> FunctionPayload:
    """Describe one definition of a function the way the started event lists it."""
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
    """Each name's entry, in registration order: its highest version, and its versions."""
    catalog: list[FunctionPayload] = []
    for spec in registry:
        entry = function_payload(spec)
        if spec.version is not None:
            entry["version"] = spec.version
            entry["versions"] = [
                other.version for other in registry.versions(spec.name) if other.version
            ]
        catalog.append(entry)
    return catalog
