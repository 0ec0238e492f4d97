"""``POST /exec`` served at the ASGI level, beside Quart, when Quart would add nothing to it.

Quart's request machinery (request and context objects, URL matching, hooks, signals, response
conversion) costs more CPU per call than everything ``/exec`` itself does. `ExecFastPath` wraps
the app's ``asgi_app`` (Quart's documented middleware point) and answers ``POST .../exec`` of a
functions blueprint directly, through the same sans-IO core and the same body builders as the
blueprint's view, so the status, headers and JSON are the view's.

It hands the request to Quart unchanged whenever Quart could answer differently: the runtime is
not ready (the view answers 503), the app or blueprint has request hooks, URL value preprocessors
or receivers of Quart's request signals, the app matches hosts, subdomains or a ``SERVER_NAME``,
its ``MAX_CONTENT_LENGTH`` is below the blueprint's limit, or the path is not plainly the rule's.

Two things differ by design, and are documented: functions run inside an app context
(``current_app`` and ``g`` work) but not a request context (``quart.request`` does not), and a
call goes on to its end when the client disconnects, as a plain ``def`` does on either path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from quart import signals
from werkzeug.exceptions import RequestTimeout

from .envelope import EnvelopeError, envelope_error_body, parse_exec_request
from .http import http_error_body, internal_error_body, too_large_body
from .runtime import FunctionRuntime, runtimes_of

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope
    from quart import Quart

__all__ = ["ExecFastPath"]

logger = logging.getLogger("metatwin_functions.http")

_JSON = (b"content-type", b"application/json")
_SIGNALS = (
    signals.request_started,
    signals.request_finished,
    signals.request_tearing_down,
    signals.got_request_exception,
)


class ExecFastPath:
    """ASGI middleware answering a functions blueprint's ``POST /exec`` without Quart's overhead.

    Args:
        app: The Quart app the blueprint is registered on.
        asgi_app: The ASGI callable to wrap (``app.asgi_app``).
        blueprint: The name the functions blueprint was registered under.
    """

    def __init__(self, app: Quart, asgi_app: ASGIFramework, blueprint: str) -> None:
        self.app = app
        self.asgi_app = asgi_app
        self.blueprint = blueprint
        self._exec_path: str | None = None
        self._exec_path_known = False

    @classmethod
    def install(cls, app: Quart, blueprint: str = "metatwin_functions") -> ExecFastPath:
        """Wrap ``app.asgi_app``, for an app the functions blueprint is registered on."""
        fast = cls(app, app.asgi_app, blueprint)
        app.asgi_app = fast  # type: ignore[method-assign]
        return fast

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            runtime = self._runtime_for(scope["path"], scope.get("root_path", ""))
            if runtime is not None:
                await self._serve(runtime, receive, send)
                return
        await self.asgi_app(scope, receive, send)

    def _runtime_for(self, path: str, root: str) -> FunctionRuntime | None:
        if root:
            # As Quart does: a path outside the root path matches no rule.
            if path == root or not path.startswith(root):
                return None
            path = path[len(root) :]
        if path != self._path():
            return None
        runtime = runtimes_of(self.app).get(self.blueprint)
        if (
            runtime is None
            or runtime.state != "ready"
            or not self._quart_would_add_nothing(runtime)
        ):
            return None
        return runtime

    def _path(self) -> str | None:
        if not self._exec_path_known:
            endpoint = f"{self.blueprint}.exec"
            for rule in self.app.url_map.iter_rules():
                if (
                    rule.endpoint == endpoint
                    and rule.host is None
                    and not rule.subdomain
                    and not rule.arguments
                ):
                    self._exec_path = rule.rule
            self._exec_path_known = True
        return self._exec_path

    def _quart_would_add_nothing(self, runtime: FunctionRuntime) -> bool:
        app = self.app
        config = app.config
        app_limit = config["MAX_CONTENT_LENGTH"]
        if (
            config["SERVER_NAME"]
            or app.url_map.host_matching
            or app.subdomain_matching
            or (app_limit is not None and app_limit < runtime.settings.functions_max_body_size)
        ):
            return False
        hooks = (
            app.before_request_funcs,
            app.after_request_funcs,
            app.teardown_request_funcs,
            app.url_value_preprocessors,
        )
        if any(functions for registry in hooks for functions in registry.values()):
            return False
        return not any(signal.receivers for signal in _SIGNALS)

    async def _serve(
        self, runtime: FunctionRuntime, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        limit = runtime.settings.functions_max_body_size
        with runtime.invoker.admitted():
            try:
                body = await self._read_body(receive, limit)
            except _BodyTooLargeError:
                await _respond(send, 413, too_large_body(limit))
                return
            except TimeoutError:
                await _respond(send, 408, http_error_body(RequestTimeout()))
                return
            if body is None:
                return  # the client went away before its body arrived
            try:
                call = parse_exec_request(body)
            except EnvelopeError as error:
                await _respond(send, 422, envelope_error_body(error))
                return
            try:
                async with self.app.app_context():
                    outcome = await runtime.invoker.invoke(call)
            except Exception:
                # invoke() turns everything a function does into a response; this is our bug.
                logger.exception("Unexpected error while serving POST /exec")
                await _respond(send, 500, internal_error_body())
                return
            await _respond(send, 200, outcome.body)

    async def _read_body(self, receive: ASGIReceiveCallable, limit: int) -> bytes | None:
        received = bytearray()
        async with asyncio.timeout(self.app.config["BODY_TIMEOUT"]):
            while True:
                message: Any = await receive()
                if message["type"] != "http.request":
                    return None
                received += message.get("body", b"")
                if len(received) > limit:
                    raise _BodyTooLargeError
                if not message.get("more_body", False):
                    return bytes(received)


class _BodyTooLargeError(Exception):
    pass


async def _respond(send: ASGISendCallable, status: int, body: bytes) -> None:
    headers = [_JSON, (b"content-length", str(len(body)).encode())]
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
    except Exception as exc:  # the client went away; servers differ in how they say so
        logger.debug("Could not send the /exec response: %r", exc)
