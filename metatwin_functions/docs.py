"""OpenAPI documentation of the functions through quart-schema.

quart-schema documents routes from static models; ``/exec`` takes a different ``args`` object per
function, so `FunctionsOpenAPIProvider` replaces that route's request body with a ``oneOf`` of one
envelope per function, discriminated by ``functionName``, each with its arguments' JSON Schema.
"""

from __future__ import annotations

from typing import Any

from quart import Quart
from quart_schema import QuartSchema
from quart_schema.openapi import OpenAPIProvider
from werkzeug.routing import Rule

from .registry import FunctionRegistry

__all__ = ["FunctionsOpenAPIProvider", "enable_docs", "exec_openapi"]

_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["success", "result", "error", "metadata"],
    "properties": {
        "success": {"type": "boolean"},
        "result": {"description": "The function's return value, null on failure"},
        "error": {"type": ["string", "null"]},
        "metadata": {
            "type": "object",
            "properties": {
                "executionId": {"type": ["string", "null"]},
                "durationMs": {"type": "number"},
                "errorKind": {"type": "string"},
                "errorCode": {"type": "string"},
            },
        },
    },
}
_READY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ready", "starting", "draining", "stopped"]},
        "deployment_id": {"type": "string"},
        "function_count": {"type": "integer"},
        "functions": {"type": "array", "items": {"type": "string"}},
        "rabbitmq_enabled": {"type": "boolean"},
        "rabbitmq_connected": {"type": "boolean"},
    },
}


def _json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def exec_openapi(registry: FunctionRegistry) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``/exec`` operation's request body and responses, and the component schemas they use."""
    components: dict[str, Any] = {}
    variants: list[dict[str, Any]] = []
    for spec in registry:
        arguments = spec.signature.arguments_schema()
        arguments.pop("title", None)
        component = f"Call_{spec.name}"
        components[component] = {
            "type": "object",
            "title": spec.name,
            "description": spec.description,
            "required": ["executionId", "functionName"],
            "properties": {
                "executionId": {"type": "string"},
                "functionName": {"const": spec.name},
                "args": arguments
                | {"description": f"Arguments; returns {spec.signature.return_type}"},
            },
        }
        for name, definition in arguments.pop("$defs", {}).items():
            components[name] = definition
        variants.append({"$ref": f"#/components/schemas/{component}"})
    body = {"oneOf": variants} if variants else {"type": "object"}
    request_body = {"required": True, "content": {"application/json": {"schema": body}}}
    responses = {
        "200": _json_content(_RESPONSE_SCHEMA, "The call's outcome (see success)"),
        "413": _json_content(_RESPONSE_SCHEMA, "Body over the size limit"),
        "422": _json_content(_RESPONSE_SCHEMA, "Not a valid envelope"),
        "503": _json_content(_RESPONSE_SCHEMA, "Starting or shutting down"),
    }
    return {"requestBody": request_body, "responses": responses}, components


class FunctionsOpenAPIProvider(OpenAPIProvider):
    """quart-schema provider that documents each function's arguments on ``/exec``."""

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        view = self._app.view_functions[rule.endpoint]
        registry = getattr(view, "__metatwin_registry__", None)
        if isinstance(registry, FunctionRegistry):
            operation, extra = exec_openapi(registry)
            for operations in paths.values():
                for method in operations.values():
                    method.update(operation)
            components.update(extra)
        elif rule.endpoint.endswith(".ready") and getattr(view, "__metatwin_ready__", False):
            for operations in paths.values():
                for method in operations.values():
                    method["responses"] = {
                        "200": _json_content(_READY_SCHEMA, "Ready"),
                        "503": _json_content(_READY_SCHEMA, "Starting or draining"),
                    }
        return paths, components


def enable_docs(app: Quart, *, title: str = "MetaTwin functions", version: str = "") -> QuartSchema:
    """Serve ``/openapi.json`` and ``/docs`` (Swagger UI) for ``app``."""
    return QuartSchema(
        app,
        info={"title": title, "version": version or "1"},
        openapi_provider_class=FunctionsOpenAPIProvider,
        redoc_ui_path=None,
        scalar_ui_path=None,
    )
