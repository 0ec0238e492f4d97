"""The uvicorn runner (extra ``[uvicorn]``): httptools parsing on uvloop, about 3.5x less CPU.

``uvicorn.Server`` is driven programmatically: it installs no signal handlers of its own (the
runner's `Shutdown` owns SIGTERM and SIGINT, as on Hypercorn), writes no access log, and sends
its own lines through the SDK's log handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

import uvicorn

from .hypercorn import WEBSOCKET_FRAME_SLACK, WEBSOCKET_PING_INTERVAL
from .shutdown import CallGuard

if TYPE_CHECKING:
    from quart import Quart

    from ..registry import FunctionRegistry
    from ..settings import Settings
    from .shutdown import Shutdown

__all__ = ["loop_factory", "serve", "uvicorn_config"]

# Once calls in flight are done, connections only need to say goodbye (as on Hypercorn).
_CONNECTION_CLOSE_GRACE = 5


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where uvloop exists (not on Windows), else asyncio's own."""
    if sys.platform == "win32":
        return None
    import uvloop

    return uvloop.new_event_loop


def uvicorn_config(app: CallGuard, settings: Settings) -> uvicorn.Config:
    """uvicorn settings from ours: bind address, backlog, httptools, no log set-up of its own."""
    return uvicorn.Config(
        app,
        host=settings.functions_host,
        port=settings.functions_port,
        backlog=settings.functions_backlog,
        http="httptools",
        interface="asgi3",
        lifespan="on",
        # Logging is configured by the SDK: uvicorn's loggers propagate to its handler.
        log_config=None,
        log_level=None,
        access_log=False,
        # Hypercorn trusts no X-Forwarded-* header either; the same app behaves the same.
        proxy_headers=False,
        timeout_graceful_shutdown=_CONNECTION_CLOSE_GRACE,
        # WebSockets (/ws), as on Hypercorn: pings, and frames a little over the body limit.
        ws_ping_interval=WEBSOCKET_PING_INTERVAL,
        ws_max_size=settings.functions_max_body_size + WEBSOCKET_FRAME_SLACK,
    )


class _Server(uvicorn.Server):
    """uvicorn's server without its signal capture: it would re-raise SIGTERM once stopped."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve(
    app: Quart, settings: Settings, registry: FunctionRegistry, shutdown: Shutdown
) -> None:
    """Serve ``app`` on uvicorn until ``shutdown`` is requested and the drain is over."""
    guard = CallGuard(app)
    server = _Server(uvicorn_config(guard, settings))

    async def stop_when_drained() -> None:
        if await shutdown.drain(app, settings, registry):
            await guard.cancel_calls()
        server.should_exit = True

    stopping = asyncio.create_task(stop_when_drained(), name="metatwin-functions-shutdown")
    try:
        await server.serve()
    finally:
        stopping.cancel()
        await asyncio.wait({stopping})
    if not stopping.cancelled():
        stopping.result()  # a bug in the drain surfaces here
