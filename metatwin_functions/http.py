"""The Quart blueprint: ``POST /exec`` and ``GET /ready``, with the runtime's lifecycle.

Mount it into any Quart app; its serving hooks start and stop the runtime, and its JSON error
handlers cover only its own routes, so the host app's pages and JSON provider stay untouched.
The view is a thin transport: it hands the body and headers to the call pipeline and writes the
answer, exactly as the raw-ASGI endpoint (`fastpath`) does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from pydantic_core import to_json
from quart import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from .answers import (
    Answer,
    http_error_body,
    internal_error_body,
    rejection_answer,
    too_large_answer,
)
from .body import BodyTooLargeError, chunks_reader
from .errors import CallRejectedError
from .guards import check_guard_settings
from .idempotency import IdempotencyStore
from .pipeline import CallMeta
from .registry import FunctionRegistry, default_registry
from .runtime import BROKER_KEY, FunctionRuntime, runtimes_of
from .settings import Settings, load_settings
from .streams import serve_ndjson
from .websocket import serve_websocket

__all__ = ["functions_blueprint", "http_error_response"]

JSON = "application/json"
FAST_EXEC_KEY = "metatwin_functions.fast_exec"
logger = logging.getLogger("metatwin_functions.http")
#: Longest request path written in a log line: a client must not fill the logs with one.
_LOGGED_PATH = 200


def answer_response(answer: Answer) -> Response:
    """A Quart response for a pipeline answer."""
    response = Response(answer.body, status=answer.status, content_type=JSON)
    # A complete bytes body needs no send timeout; without one Quart skips a task per response.
    response.timeout = None
    if answer.headers:
        response.headers.update(answer.headers)
    return response


def json_response(body: bytes, status: int = 200) -> Response:
    """A response with a ready-made JSON body."""
    return answer_response(Answer(status, body))


async def _request_chunks() -> AsyncIterator[bytes]:
    try:
        async for chunk in request.body:
            yield chunk
    except RequestEntityTooLarge:
        # The host app's own MAX_CONTENT_LENGTH, if lower than ours.
        raise BodyTooLargeError from None


def functions_blueprint(
    registry: FunctionRegistry | None = None,
    settings: Settings | None = None,
    *,
    name: str = "metatwin_functions",
    idempotency_store: IdempotencyStore | None = None,
) -> Blueprint:
    """A blueprint serving ``registry`` (default: the ``@Function`` registry).

    ``settings`` default to the ``CRBR_*`` environment, read now so that bad configuration fails
    at start-up. Register it with ``app.register_blueprint(bp, url_prefix=...)``.
    ``idempotency_store`` replaces the per-process store (e.g. by one shared by every replica).
    """
    functions = default_registry if registry is None else registry
    config = load_settings() if settings is None else settings
    check_guard_settings(config, functions)  # bad auth or limit settings fail here, not later
    blueprint = Blueprint(name, __name__)

    def runtime() -> FunctionRuntime:
        runtimes = runtimes_of(current_app)
        found = runtimes.get(name)
        if found is None:
            # Served without the serving hooks (e.g. ``app.test_client()``): start bare.
            found = runtimes[name] = FunctionRuntime(
                functions, config, idempotency_store=idempotency_store
            )
            found.state = "ready"
        return found

    @blueprint.before_app_serving
    async def start_runtime() -> None:
        started = FunctionRuntime(
            functions,
            config,
            idempotency_store=idempotency_store,
            broker=current_app.extensions.get(BROKER_KEY),
        )
        runtimes_of(current_app)[name] = started
        await started.start()
        fast = name in current_app.extensions.get(FAST_EXEC_KEY, ())
        logger.info(
            "POST /exec is served by %s",
            "the raw-ASGI endpoint in front of Quart (Quart's request hooks, signals and "
            "quart.request do not apply to it)"
            if fast
            else "the Quart view",
        )

    @blueprint.after_app_serving
    async def stop_runtime() -> None:
        stopping = runtimes_of(current_app).get(name)
        if stopping is not None:
            await stopping.stop()

    async def execute() -> Response:
        """Call a function: ``{"executionId", "functionName", "args"}``."""
        headers = request.headers
        meta = CallMeta(
            authorization=headers.get("Authorization"),
            api_key=headers.get("X-API-Key"),
            traceparent=headers.get("traceparent"),
            tracestate=headers.get("tracestate"),
            detach_on_cancel=True,  # Quart cancels the view when the client goes away
        )
        answer = await runtime().pipeline.serve_http(
            request.content_length, chunks_reader(_request_chunks()), meta
        )
        if answer is None:  # the client went away: nobody to answer
            return Response(b"", status=499)
        return answer_response(answer)

    async def execute_stream() -> Response:
        """Call a function and stream its items, progress and result as NDJSON."""
        headers = request.headers
        meta = CallMeta(
            trigger="stream",
            authorization=headers.get("Authorization"),
            api_key=headers.get("X-API-Key"),
            traceparent=headers.get("traceparent"),
            tracestate=headers.get("tracestate"),
        )
        served = await serve_ndjson(
            runtime().pipeline, request.content_length, chunks_reader(_request_chunks()), meta
        )
        if served is None:  # the client went away before its body arrived
            return Response(b"", status=499)
        if isinstance(served, Answer):  # refused before the function started: as /exec
            return answer_response(served)
        return served

    async def socket() -> Response | None:
        """Calls over a WebSocket: JSON envelopes in; item, progress and result objects out."""
        return await serve_websocket(runtime())

    async def ready() -> Response:
        """Readiness: 200 once started, 503 while starting or draining."""
        serving = runtime()
        status = 200 if serving.state == "ready" else 503
        return json_response(to_json(serving.ready_payload()), status)

    async def metrics() -> Response:
        """Prometheus metrics: text format, or OpenMetrics when the scraper asks for it."""
        serving = runtime()
        exported = serving.metrics
        if exported is None:
            return json_response(http_error_body("Metrics are turned off"), 404)
        if config.auth_protect_metrics:
            refused = await authenticate_request(serving)
            if refused is not None:
                return refused
        body, content_type = exported.exposition(request.headers.get("Accept"))
        response = Response(body, status=200, content_type=content_type)
        response.timeout = None
        return response

    metrics._quart_schema_hidden = True  # type: ignore[attr-defined]
    execute_stream._quart_schema_hidden = True  # type: ignore[attr-defined]
    execute.__metatwin_registry__ = functions  # type: ignore[attr-defined]
    ready.__metatwin_ready__ = True  # type: ignore[attr-defined]
    blueprint.add_url_rule("/exec", "exec", execute, methods=["POST"])
    blueprint.add_url_rule("/ready", "ready", ready, methods=["GET"])
    blueprint.add_url_rule("/exec/stream", "exec_stream", execute_stream, methods=["POST"])
    blueprint.add_websocket("/ws", "ws", socket)
    if config.metrics_enabled:
        blueprint.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])

    async def too_large(_: RequestEntityTooLarge) -> Response:
        return answer_response(too_large_answer(config.functions_max_body_size))

    blueprint.register_error_handler(RequestEntityTooLarge, too_large)
    blueprint.register_error_handler(HTTPException, http_error_response)
    blueprint.register_error_handler(Exception, _unexpected_error)
    return blueprint


async def authenticate_request(serving: FunctionRuntime) -> Response | None:
    """None when the request's credentials are good (or auth is off), else the 401 answer."""
    authenticator = serving.guards.authenticator
    if authenticator is None:
        return None
    try:
        await authenticator.authenticate(
            request.headers.get("Authorization"), request.headers.get("X-API-Key")
        )
    except CallRejectedError as error:
        serving.guards.rejected(error.kind)
        return answer_response(rejection_answer(error, None))
    return None


async def http_error_response(error: HTTPException) -> Response:
    """Error handler answering an HTTP error (404, 405, ...) in JSON, with its headers.

    Each one logs one INFO line (method, path, status; never the body or the query string), as
    the pipeline does for the calls it refuses, so a client knocking on the wrong door shows up.
    """
    status = error.code or 500
    path = request.path
    logger.info(
        "Refused a request: HTTP %d %s %s",
        status,
        request.method,
        path if len(path) <= _LOGGED_PATH else f"{path[:_LOGGED_PATH]}...",
        extra={"status": "rejected", "error_kind": "http_error", "http_status": status},
    )
    response = json_response(http_error_body(error.description or error.name), status)
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response.headers["Allow"] = ", ".join(sorted(error.valid_methods))
    return response


async def _unexpected_error(error: Exception) -> Response:
    logger.error(
        "Unexpected error while serving %s %s", request.method, request.path, exc_info=error
    )
    return json_response(internal_error_body(), 500)
