"""The programmatic Hypercorn runner: in-process, one worker, SIGTERM drains calls in flight.

No reloader and no supervisor process: a container runs exactly one process that starts fast,
and on SIGTERM it marks itself draining (``/ready`` 503, new calls refused with 503), lets calls
in flight finish up to their deadline, closes the listener and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from quart import Quart

from .registry import FunctionRegistry, default_registry
from .runtime import runtimes_of
from .settings import Settings

__all__ = ["hypercorn_config", "serve", "serve_async"]

logger = logging.getLogger("metatwin_functions.server")

# Once calls in flight are done, connections only need to say goodbye.
_CONNECTION_CLOSE_GRACE = 5.0
_WEBSOCKET_PING_INTERVAL = 20.0
_WEBSOCKET_FRAME_SLACK = 1024 * 1024


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
    # WebSockets (/ws): protocol pings keep idle sockets alive through proxies and find dead
    # peers (Hypercorn ends a closed socket's ping task at its next tick, so a closed socket's
    # connection lingers up to one interval); a frame a little over the body limit still reaches
    # us, to be answered with an error object rather than a close.
    config.websocket_ping_interval = _WEBSOCKET_PING_INTERVAL
    config.websocket_max_message_size = settings.functions_max_body_size + _WEBSOCKET_FRAME_SLACK
    return config


def drain_timeout(settings: Settings, registry: FunctionRegistry) -> float:
    """How long a drain may wait: the longest deadline any call can have, plus a second."""
    deadlines = [settings.effective_timeout(spec.timeout) for spec in registry]
    return max([settings.effective_timeout(None), *deadlines]) + 1.0


async def serve_async(
    app: Quart,
    settings: Settings,
    registry: FunctionRegistry | None = None,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``app`` until ``stop`` is set (default: SIGTERM or SIGINT), then drain and return.

    A second signal during the drain stops waiting for calls in flight.
    """
    functions = default_registry if registry is None else registry
    stop_requested = asyncio.Event() if stop is None else stop
    force = asyncio.Event()
    if stop is None:
        _install_signal_handlers(stop_requested, force)

    async def shutdown_trigger() -> None:
        await stop_requested.wait()
        timeout = drain_timeout(settings, functions)
        drains = [runtime.drain(timeout) for runtime in runtimes_of(app).values()]
        drained: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*drains))
        forced: asyncio.Future[Any] = asyncio.ensure_future(force.wait())
        await asyncio.wait({drained, forced}, return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        if not drained.done():
            drained.cancel()
            logger.warning("Second signal: stopping without waiting for calls in flight")
        logger.info("Shutting down")

    await hypercorn_serve(app, hypercorn_config(settings), shutdown_trigger=shutdown_trigger)
    logger.info("Stopped")


def serve(app: Quart, settings: Settings, registry: FunctionRegistry | None = None) -> None:
    """Run `serve_async` in a new event loop; returns after a clean shutdown.

    Plain ``def`` calls still running past their deadline cannot be stopped; their threads are
    daemons, so they do not keep the process alive once this returns.
    """
    asyncio.run(serve_async(app, settings, registry))
    busy = sum(runtime.invoker.threads_busy for runtime in runtimes_of(app).values())
    if busy:
        logger.warning("%d plain def call(s) still running past their deadline are abandoned", busy)


def _install_signal_handlers(stop: asyncio.Event, force: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            force.set()
            return
        logger.info("Received %s, draining", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
