"""The Hypercorn runner (the default): in-process, one worker, HTTP/1.1 and HTTP/2 (h2c)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from .shutdown import CallGuard

if TYPE_CHECKING:
    from quart import Quart

    from ..registry import FunctionRegistry
    from ..settings import Settings
    from .shutdown import Shutdown

__all__ = ["hypercorn_config", "serve"]

logger = logging.getLogger("metatwin_functions.server")

# Once calls in flight are done, connections only need to say goodbye.
_CONNECTION_CLOSE_GRACE = 5.0
#: Seconds between the server's WebSocket pings (uvicorn; Hypercorn sends none, see below).
WEBSOCKET_PING_INTERVAL = 20.0
#: Bytes a WebSocket frame may exceed the body limit by and still get our too_large answer.
WEBSOCKET_FRAME_SLACK = 1024 * 1024


def hypercorn_config(settings: Settings) -> Config:
    """Hypercorn settings from ours: bind address, backlog, loggers and shutdown grace."""
    config = Config()
    host = settings.functions_host
    config.bind = [
        f"[{host}]:{settings.functions_port}"
        if ":" in host
        else f"{host}:{settings.functions_port}"
    ]
    # The default backlog (100) overflows in a burst of calls, and those wait for a TCP retry.
    config.backlog = settings.functions_backlog
    config.errorlog = logging.getLogger("hypercorn.error")
    config.accesslog = None
    config.loglevel = settings.uvicorn_log_level
    config.graceful_timeout = _CONNECTION_CLOSE_GRACE
    # WebSockets (/ws): no server pings on Hypercorn. Its ping task outlives a closed socket by
    # up to one interval and holds the connection, so every drain and shutdown after a socket
    # closed would wait for the grace period; clients keep their sockets alive with their own
    # pings (answered by Hypercorn) or ``{"type": "ping"}`` frames. A frame a little over the
    # body limit still reaches us, to be answered with an error object rather than a close.
    config.websocket_ping_interval = None
    config.websocket_max_message_size = settings.functions_max_body_size + WEBSOCKET_FRAME_SLACK
    return config


async def serve(
    app: Quart, settings: Settings, registry: FunctionRegistry, shutdown: Shutdown
) -> None:
    """Serve ``app`` on Hypercorn until ``shutdown`` is requested and the drain is over."""
    config = hypercorn_config(settings)
    guard = CallGuard(app)

    async def shutdown_trigger() -> None:
        if await shutdown.drain(app, settings, registry):
            # Answered, their connections close at once: Hypercorn's grace only waits for the
            # rest. (Cancelling Hypercorn's connection tasks instead makes asyncio log errors.)
            await guard.cancel_calls()
        logger.info("Shutting down")

    await hypercorn_serve(guard, config, shutdown_trigger=shutdown_trigger, mode="asgi")
