"""The Quart blueprint: ``POST /exec`` and ``GET /ready``, with the runtime's lifecycle.

Mount it into any Quart app; its serving hooks start and stop the runtime, and its JSON error
handlers cover only its own routes, so the host app's pages and JSON provider stay untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn

from pydantic_core import to_json
from quart import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, RequestTimeout

from .envelope import EnvelopeError, envelope_error_body, failure_body, parse_exec_request
from .registry import FunctionRegistry, default_registry
from .runtime import FunctionRuntime, runtimes_of
from .settings import Settings, load_settings

__all__ = [
    "functions_blueprint",
    "http_error_body",
    "http_error_response",
    "internal_error_body",
    "json_response",
    "read_body",
    "too_large_body",
]

JSON = "application/json"
_UNAVAILABLE_READ_TIMEOUT = 1.0
logger = logging.getLogger("metatwin_functions.http")


def json_response(body: bytes, status: int = 200) -> Response:
    """A response with a ready-made JSON body."""
    response = Response(body, status=status, content_type=JSON)
    # A complete bytes body needs no send timeout; without one Quart skips a task per response.
    response.timeout = None
    return response


async def read_body(limit: int) -> bytes:
    """The request body, raising `RequestEntityTooLarge` past ``limit`` bytes.

    The blueprint enforces its own limit: the app's ``MAX_CONTENT_LENGTH`` belongs to the host.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise RequestEntityTooLarge()
    try:
        async with asyncio.timeout(current_app.config["BODY_TIMEOUT"]):
            if declared is not None:
                data: bytes = await request.body
                return data if len(data) <= limit else _too_large_body()
            received = bytearray()
            async for chunk in request.body:
                received += chunk
                if len(received) > limit:
                    _too_large_body()
            return bytes(received)
    except TimeoutError:
        raise RequestTimeout() from None


def _too_large_body() -> NoReturn:
    raise RequestEntityTooLarge()


def functions_blueprint(
    registry: FunctionRegistry | None = None,
    settings: Settings | None = None,
    *,
    name: str = "metatwin_functions",
) -> Blueprint:
    """A blueprint serving ``registry`` (default: the ``@Function`` registry).

    ``settings`` default to the ``CRBR_*`` environment, read now so that bad configuration fails
    at start-up. Register it with ``app.register_blueprint(bp, url_prefix=...)``.
    """
    functions = default_registry if registry is None else registry
    config = load_settings() if settings is None else settings
    blueprint = Blueprint(name, __name__)

    def runtime() -> FunctionRuntime:
        runtimes = runtimes_of(current_app)
        found = runtimes.get(name)
        if found is None:
            # Served without the serving hooks (e.g. ``app.test_client()``): start bare.
            found = runtimes[name] = FunctionRuntime(functions, config)
            found.state = "ready"
        return found

    @blueprint.before_app_serving
    async def start_runtime() -> None:
        started = FunctionRuntime(functions, config)
        runtimes_of(current_app)[name] = started
        await started.start()

    @blueprint.after_app_serving
    async def stop_runtime() -> None:
        stopping = runtimes_of(current_app).get(name)
        if stopping is not None:
            await stopping.stop()

    async def execute() -> Response:
        """Call a function: ``{"executionId", "functionName", "args"}``."""
        serving = runtime()
        if serving.state != "ready":
            return await _unavailable(serving, config.functions_max_body_size)
        # Counted from admission, so a drain also waits for a body still on its way.
        with serving.invoker.admitted():
            body = await read_body(config.functions_max_body_size)
            try:
                call = parse_exec_request(body)
            except EnvelopeError as error:
                return json_response(envelope_error_body(error), 422)
            outcome = await serving.invoker.invoke(call)
            return json_response(outcome.body)

    async def ready() -> Response:
        """Readiness: 200 once started, 503 while starting or draining."""
        serving = runtime()
        status = 200 if serving.state == "ready" else 503
        return json_response(to_json(serving.ready_payload()), status)

    execute.__metatwin_registry__ = functions  # type: ignore[attr-defined]
    ready.__metatwin_ready__ = True  # type: ignore[attr-defined]
    blueprint.add_url_rule("/exec", "exec", execute, methods=["POST"])
    blueprint.add_url_rule("/ready", "ready", ready, methods=["GET"])
    blueprint.register_error_handler(RequestEntityTooLarge, _too_large(config))
    blueprint.register_error_handler(HTTPException, http_error_response)
    blueprint.register_error_handler(Exception, _unexpected_error)
    return blueprint


async def _unavailable(serving: FunctionRuntime, limit: int) -> Response:
    # Not admitted, so it never holds up a drain; the body is read briefly, to echo its id.
    execution_id = None
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_UNAVAILABLE_READ_TIMEOUT):
            execution_id = parse_exec_request(await read_body(limit)).execution_id
    body = failure_body(
        f"Server is {serving.state}; retry on another instance",
        {"executionId": execution_id, "errorKind": "unavailable"},
    )
    response = json_response(body, 503)
    response.headers["Retry-After"] = "1"
    return response


def too_large_body(limit: int) -> bytes:
    """The 413 body: an invalid envelope that says what the limit is."""
    problem = f"body is larger than the limit of {limit} bytes"
    return envelope_error_body(EnvelopeError([problem]))


def http_error_body(error: HTTPException) -> bytes:
    """The JSON body for an HTTP error (404, 405, 408, ...) instead of an HTML page."""
    return failure_body(
        error.description or error.name, {"executionId": None, "errorKind": "http_error"}
    )


def internal_error_body() -> bytes:
    """The JSON body of a 500: no detail, the logs have the stack trace."""
    return failure_body("Internal server error", {"executionId": None, "errorKind": "internal"})


def _too_large(config: Settings) -> Callable[[RequestEntityTooLarge], Awaitable[Response]]:
    async def handle(_: RequestEntityTooLarge) -> Response:
        return json_response(too_large_body(config.functions_max_body_size), 413)

    return handle


async def http_error_response(error: HTTPException) -> Response:
    """Error handler answering an HTTP error in JSON."""
    return json_response(http_error_body(error), error.code or 500)


async def _unexpected_error(error: Exception) -> Response:
    logger.error(
        "Unexpected error while serving %s %s", request.method, request.path, exc_info=error
    )
    return json_response(internal_error_body(), 500)
