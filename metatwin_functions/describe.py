"""``metatwin-functions describe --json``: a stable description of a registry, for diffs in CI.

The document (``"describeFormat": 1``) is the deployment-started event's payload with more in it:

.. code-block:: json

    {"describeFormat": 1, "deploymentId": "local-dev", "functions": [
      {"name": "add", "description": "Adds", "returnType": "int",
       "returnSchema": {"type": "integer"}, "acceptsExtraArgs": false,
       "args": [{"name": "a", "type": "int", "required": true, "description": null,
                 "schema": {"type": "integer"}}],
       "version": "2.0.0", "versions": ["1.0.0", "2.0.0"],
       "definitions": [{"version": "1.0.0", "description": "...", "args": [], "returnType": "...",
                        "returnSchema": {}}, {"version": "2.0.0", "...": "..."}]}]}

- Each entry is the started event's (the name's highest version), plus each argument's JSON
  Schema (``schema``: self-contained, with the ``$defs`` it needs) and the return value's
  (``returnSchema``: null when pydantic cannot describe the type).
- ``acceptsExtraArgs``: the function takes ``**kwargs``.
- ``version``, ``versions`` and ``definitions`` (every version, ascending, each described in
  full) appear for versioned names only.

Keys are only ever added to this format; ``describeFormat`` changes if one is ever removed.
"""

from __future__ import annotations

from typing import Any

from .catalog import functions_catalog
from .registry import FunctionRegistry, FunctionSpec

__all__ = ["DESCRIBE_FORMAT", "describe_registry", "describe_spec"]

DESCRIBE_FORMAT = 1


def describe_spec(spec: FunctionSpec) -> dict[str, Any]:
    """One definition of a function: version, description, arguments with schemas, return."""
    schema = spec.signature.arguments_schema()
    defs = schema.get("$defs")
    properties: dict[str, Any] = schema.get("properties", {})
    args = []
    for argument in spec.signature.arguments:
        argument_schema = dict(properties.get(argument.name, {}))
        argument_schema.pop("title", None)
        if defs:
            argument_schema["$defs"] = defs
        args.append(
            {
                "name": argument.name,
                "type": argument.type,
                "required": argument.required,
                "description": argument.description,
                "schema": argument_schema,
            }
        )
    described: dict[str, Any] = {}
    if spec.version is not None:
        described["version"] = spec.version
    described.update(
        description=spec.description,
        args=args,
        returnType=spec.signature.return_type,
        returnSchema=spec.signature.return_schema(),
        acceptsExtraArgs=spec.signature.accepts_extra,
    )
    return described


def describe_registry(registry: FunctionRegistry, deployment_id: str) -> dict[str, Any]:
    """The ``describe --json`` document of ``registry`` (see the module's docs)."""
    functions: list[dict[str, Any]] = []
    for entry, spec in zip(functions_catalog(registry), registry, strict=True):
        described = describe_spec(spec)
        full: dict[str, Any] = dict(entry)
        full["args"] = described["args"]
        full["returnSchema"] = described["returnSchema"]
        full["acceptsExtraArgs"] = described["acceptsExtraArgs"]
        if spec.version is not None:
            full["definitions"] = [describe_spec(other) for other in registry.versions(spec.name)]
        functions.append(full)
    return {
        "describeFormat": DESCRIBE_FORMAT,
        "deploymentId": deployment_id,
        "functions": functions,
    }
