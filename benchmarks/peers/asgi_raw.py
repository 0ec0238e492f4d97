"""asgi-raw: a raw ASGI callable with the `/exec` contract on Hypercorn: the server's ceiling.

Run: ``python benchmarks/peers/asgi_raw.py`` (binds to CRBR_FUNCTIONS_HOST:CRBR_FUNCTIONS_PORT).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from bench_functions import (
    MAX_BODY_BYTES,
    EnvelopeError,
    build_targets,
    invoke,
    parse_envelope,
    ready_body,
    serve_hypercorn,
)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TARGETS = build_targets()


async def _respond(send: Send, status: int, body: Any) -> None:
    payload = json.dumps(body, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None when it is over the limit."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The whole application."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if path == "/exec":
        if method != "POST":
            await _respond(send, 405, {"detail": "Method Not Allowed"})
            return
        raw = await _read_body(receive)
        if raw is None:
            await _respond(send, 413, {"detail": "Request body too large"})
            return
        try:
            execution_id, name, args = parse_envelope(raw)
        except EnvelopeError as exc:
            await _respond(send, 422, {"detail": str(exc)})
            return
        await _respond(send, 200, await invoke(TARGETS, execution_id, name, args))
    elif path == "/ready" and method in ("GET", "HEAD"):
        await _respond(send, 200, ready_body(TARGETS))
    else:
        await _respond(send, 404, {"detail": "Not Found"})


if __name__ == "__main__":
    asyncio.run(serve_hypercorn(app))
