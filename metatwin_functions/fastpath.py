"""``POST /exec`` served by a raw-ASGI endpoint in front of Quart: the same pipeline, less CPU.

Quart's request machinery (request and context objects, URL matching, hooks, signals, response
conversion) costs more CPU per call than everything ``/exec`` itself does (about 110 µs of the
call's 370 µs, measured). `ExecFastPath` is an explicit endpoint, not a guess: it wraps the app's
``asgi_app`` (Quart's documented middleware point) and answers every ``POST`` to the functions
blueprint's ``/exec`` path through the call pipeline, the same one the Quart view feeds, with the
same body reader, guards and answers. Everything else goes to Quart.

`create_app` installs it (``CRBR_FUNCTIONS_FAST_EXEC=false`` or ``create_app(fast_exec=False)``
turns it off); a host app that mounts the blueprint chooses with `ExecFastPath.install`. What
Quart adds does not apply to ``/exec`` served this way: ``before_request``/``after_request``
hooks, URL value preprocessors, request signals and ``quart.request``. Functions run inside an
app context, so ``current_app`` and ``g`` work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .answers import Answer, internal_error_body
from .body import ClientGoneError, NextChunk
from .cors import CORS_KEY, CorsPolicy
from .pipeline import CallMeta
from .runtime import FunctionRuntime, runtimes_of

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope
    from quart import Quart

__all__ = ["ExecFastPath"]

logger = logging.getLogger("metatwin_functions.http")

_FAST_EXEC_KEY = "metatwin_functions.fast_exec"
_JSON = (b"content-type", b"application/json")
_WANTED = {
    b"content-length": "content_length",
    b"authorization": "authorization",
    b"x-api-key": "api_key",
    b"traceparent": "traceparent",
    b"tracestate": "tracestate",
    b"origin": "origin",
}


class ExecFastPath:
    """ASGI middleware answering a functions blueprint's ``POST /exec`` through the pipeline.

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
        """Serve ``blueprint``'s ``POST /exec`` on ``app`` by this endpoint instead of Quart."""
        fast = cls(app, app.asgi_app, blueprint)
        app.asgi_app = fast  # type: ignore[method-assign]
        app.extensions.setdefault(_FAST_EXEC_KEY, set()).add(blueprint)
        return fast

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            runtime = self._runtime_for(scope["path"], scope.get("root_path", ""))
            if runtime is not None:
                await self._serve(runtime, scope, receive, send)
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
        return runtimes_of(self.app).get(self.blueprint)

    def _path(self) -> str | None:
        if not self._exec_path_known:
            endpoint = f"{self.blueprint}.exec"
            for rule in self.app.url_map.iter_rules():
                if rule.endpoint == endpoint and not rule.arguments:
                    self._exec_path = rule.rule
            self._exec_path_known = True
        return self._exec_path

    async def _serve(
        self,
        runtime: FunctionRuntime,
        scope: Scope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
    ) -> None:
        found: dict[str, str] = {}
        for name, value in scope["headers"]:  # type: ignore[typeddict-item]
            key = _WANTED.get(name)  # ASGI servers give header names in lower case
            if key is not None and key not in found:  # the first one counts, as in Quart
                found[key] = value.decode("latin-1")
        origin = found.pop("origin", None)
        declared: int | None = None
        length = found.pop("content_length", None)
        if length is not None and length.isdigit():
            declared = int(length)
        meta = CallMeta(**found) if found else _PLAIN  # type: ignore[arg-type]
        try:
            async with self.app.app_context():
                answer = await runtime.pipeline.serve_http(declared, _body_of(receive), meta)
        except Exception:
            # The pipeline turns everything a call does into an answer; this is our bug.
            logger.exception("Unexpected error while serving POST /exec")
            answer = Answer(500, internal_error_body())
        if answer is not None:
            # CORS (CRBR_CORS_ORIGINS): the headers quart-cors puts on Quart's answers.
            policy: CorsPolicy | None = self.app.extensions.get(CORS_KEY)
            await _respond(send, answer, policy.headers(origin) if policy is not None else ())


_PLAIN = CallMeta()


def _body_of(receive: ASGIReceiveCallable) -> NextChunk:
    async def next_chunk() -> tuple[bytes, bool]:
        message: Any = await receive()
        if message["type"] != "http.request":
            raise ClientGoneError
        return message.get("body", b""), message.get("more_body", False)

    return next_chunk


async def _respond(
    send: ASGISendCallable, answer: Answer, extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = answer.body
    headers = [_JSON, (b"content-length", str(len(body)).encode())]
    for name, value in answer.headers.items():
        headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    headers.extend(extra)
    try:
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
    except (Exception, asyncio.CancelledError) as exc:  # the client went away
        logger.debug("Could not send the /exec response: %r", exc)
