"""OpenAPI documentation of the functions through quart-schema, loaded on first use.

quart-schema documents routes from static models; ``/exec`` takes a different ``args`` object per
function, so `FunctionsOpenAPIProvider` replaces that route's request body with a ``oneOf`` of one
envelope per function, discriminated by ``functionName``, each with its arguments' JSON Schema.

`enable_docs` serves ``/openapi.json`` and ``/docs`` without installing the ``QuartSchema``
extension on the app: that extension wraps every response and swaps the app's JSON provider, a
cost on each ``/exec`` call for pages read now and then. quart-schema is imported only when a
docs page is first requested, so start-up and memory do not pay for it either.
"""

from __future__ import annotations

import asyncio
import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quart import Quart, Response, render_template_string, url_for
from werkzeug.exceptions import NotFound

from .http import json_response
from .registry import FunctionRegistry

if TYPE_CHECKING:
    from quart_schema.openapi import OpenAPIProvider
    from werkzeug.routing import Rule

__all__ = ["FunctionsOpenAPIProvider", "enable_docs", "exec_openapi"]  # noqa: F822 - lazy

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
    for spec in registry.specs():  # every version is documented
        arguments = spec.signature.arguments_schema(ref_template="#/components/schemas/{model}")
        arguments.pop("title", None)
        components.update(arguments.pop("$defs", {}))
        component = f"Call_{spec.name}"
        properties: dict[str, Any] = {
            "executionId": {"type": "string"},
            "functionName": {"const": spec.name},
        }
        if spec.version is not None:
            component += "_" + re.sub(r"[^0-9A-Za-z]+", "_", spec.version)
            highest = registry.get(spec.name) is spec
            properties["version"] = {
                "const": spec.version,
                "description": "Optional for the highest version" if highest else "Required",
            }
        properties["args"] = arguments | {
            "description": f"Arguments; returns {spec.signature.return_type}"
        }
        components[component] = {
            "type": "object",
            "title": spec.name if spec.version is None else f"{spec.name} {spec.version}",
            "description": spec.description,
            "required": ["executionId", "functionName"],
            "properties": properties,
        }
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


@functools.cache
def _provider_class() -> type[OpenAPIProvider]:
    from quart_schema.openapi import OpenAPIProvider

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
            elif getattr(view, "__metatwin_ready__", False):
                for operations in paths.values():
                    for method in operations.values():
                        method["responses"] = {
                            "200": _json_content(_READY_SCHEMA, "Ready"),
                            "503": _json_content(_READY_SCHEMA, "Starting or draining"),
                        }
            return paths, components

    return FunctionsOpenAPIProvider


def __getattr__(name: str) -> Any:
    # ``FunctionsOpenAPIProvider`` for apps that install QuartSchema themselves, built on demand
    # so importing this module does not import quart-schema.
    if name == "FunctionsOpenAPIProvider":
        return _provider_class()
    raise AttributeError(name)


# Swagger UI's files come from the swagger-ui-bundle-v2 package (a dependency), so /docs works
# without internet access; the CDN is only the fallback of an environment without that package.
_SWAGGER_JS = "https://cdnjs.cloudflare.com/ajax/libs/swagger-ui/5.31.0/swagger-ui-bundle.js"
_SWAGGER_CSS = "https://cdnjs.cloudflare.com/ajax/libs/swagger-ui/5.31.0/swagger-ui.min.css"
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


@functools.cache
def swagger_ui_directory() -> Path | None:
    """Where the packaged Swagger UI files are, or None without the swagger-ui-bundle package."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    directory = Path(str(swagger_ui_path))
    return directory if all((directory / name).is_file() for name in _ASSETS) else None


async def _refused(app: Quart) -> Response | None:
    from .http import authenticate_request
    from .runtime import runtimes_of

    for runtime in runtimes_of(app).values():
        refused = await authenticate_request(runtime)
        if refused is not None:
            return refused
    return None


class _Docs:
    """The two docs views of one app."""

    def __init__(self, app: Quart, title: str, version: str) -> None:
        self.app = app
        self.title = title
        self.version = version

    async def openapi(self) -> Response:
        # Built per request: documents are read rarely, and functions may be added at any time.
        from pydantic_core import to_json
        from quart_schema import QuartSchema

        extension = QuartSchema(info={"title": self.title, "version": self.version})
        self.app.config.setdefault("QUART_SCHEMA_CONVERSION_PREFERENCE", None)
        self.app.config.setdefault("QUART_SCHEMA_CONVERT_CASING", False)
        provider = _provider_class()(self.app, extension)
        return json_response(to_json(provider.schema()))

    async def swagger_ui(self) -> str:
        from quart_schema.extension import SWAGGER_TEMPLATE

        if swagger_ui_directory() is not None:
            js = url_for("swagger_ui_asset", asset="swagger-ui-bundle.js")
            css = url_for("swagger_ui_asset", asset="swagger-ui.css")
        else:
            js, css = _SWAGGER_JS, _SWAGGER_CSS
        return await render_template_string(
            SWAGGER_TEMPLATE,
            title=self.title,
            swagger_js_url=self.app.config.get("QUART_SCHEMA_SWAGGER_JS_URL", js),
            swagger_css_url=self.app.config.get("QUART_SCHEMA_SWAGGER_CSS_URL", css),
        )

    async def asset(self, asset: str) -> Response:
        directory = swagger_ui_directory()
        content_type = _ASSETS.get(asset)
        if directory is None or content_type is None:
            raise NotFound()
        # Read per request (a page load, rarely): nothing held in memory by a server in production.
        body = await asyncio.to_thread((directory / asset).read_bytes)
        response = Response(body, content_type=content_type)
        response.cache_control.public = True
        response.cache_control.max_age = 86400
        return response


def enable_docs(
    app: Quart,
    *,
    title: str = "MetaTwin functions",
    version: str = "1",
    protect: bool = False,
) -> None:
    """Serve ``/openapi.json`` and ``/docs`` (Swagger UI, its files from the package) for ``app``.

    The document covers every route of the app, and each function's arguments on ``/exec``.
    With ``protect`` (``CRBR_AUTH_PROTECT_DOCS``) both need the credentials ``/exec`` needs.
    """
    docs = _Docs(app, title, version)

    async def openapi() -> Response:
        refused = await _refused(app) if protect else None
        return refused if refused is not None else await docs.openapi()

    async def swagger_ui() -> Response | str:
        refused = await _refused(app) if protect else None
        return refused if refused is not None else await docs.swagger_ui()

    async def swagger_ui_asset(asset: str) -> Response:
        # Swagger UI's own code: public, like the files of any web page.
        return await docs.asset(asset)

    # The docs pages are not part of the documented API.
    swagger_ui_asset._quart_schema_hidden = True  # type: ignore[attr-defined]
    openapi._quart_schema_hidden = True  # type: ignore[attr-defined]
    swagger_ui._quart_schema_hidden = True  # type: ignore[attr-defined]
    app.add_url_rule("/openapi.json", "openapi", openapi)
    app.add_url_rule("/docs", "swagger_ui", swagger_ui)
    app.add_url_rule("/docs/<asset>", "swagger_ui_asset", swagger_ui_asset)
