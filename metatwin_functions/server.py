"""Serving in-process: one worker, no reloader, SIGTERM drains the calls in flight.

No supervisor process: a container runs exactly one process that starts fast, and on SIGTERM it
marks itself draining (``/ready`` 503, new calls refused with 503), lets calls in flight finish
up to their deadline, closes the listener and exits 0. ``CRBR_FUNCTIONS_SERVER`` picks the
server: Hypercorn (default) or uvicorn (extra ``[uvicorn]``); see `runners`.
"""

from __future__ import annotations

import asyncio
import logging

from quart import Quart

from .registry import FunctionRegistry, default_registry
from .runners import ServeFunction, load_runner
from .runners.hypercorn import hypercorn_config
from .runners.shutdown import Shutdown
from .runtime import runtimes_of
from .settings import Settings

# hypercorn_config lived here before the runners: still importable from here.
__all__ = ["hypercorn_config", "serve", "serve_async"]

logger = logging.getLogger("metatwin_functions.server")


async def serve_async(
    app: Quart,
    settings: Settings,
    registry: FunctionRegistry | None = None,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``app`` until ``stop`` is set (default: SIGTERM or SIGINT), then drain and return.

    The server is ``settings.functions_server``. A second signal during the drain cancels the
    calls still in flight and stops at once.

    Raises:
        ConfigurationError: uvicorn was asked for without the ``[uvicorn]`` extra.
    """
    runner = load_runner(settings.functions_server)
    await _serve_with(runner.serve, app, settings, registry, stop)


def serve(app: Quart, settings: Settings, registry: FunctionRegistry | None = None) -> None:
    """Run `serve_async` in a new event loop (uvloop's on uvicorn); returns after a clean stop.

    Plain ``def`` calls still running past their deadline cannot be stopped; their threads are
    daemons, so they do not keep the process alive once this returns.

    Raises:
        ConfigurationError: uvicorn was asked for without the ``[uvicorn]`` extra.
    """
    runner = load_runner(settings.functions_server)
    with asyncio.Runner(loop_factory=runner.loop_factory) as loop:
        loop.run(_serve_with(runner.serve, app, settings, registry, None))
    busy = sum(runtime.invoker.threads_busy for runtime in runtimes_of(app).values())
    if busy:
        logger.warning("%d plain def call(s) still running past their deadline are abandoned", busy)


async def _serve_with(
    serve_app: ServeFunction,
    app: Quart,
    settings: Settings,
    registry: FunctionRegistry | None,
    stop: asyncio.Event | None,
) -> None:
    functions = default_registry if registry is None else registry
    shutdown = Shutdown(stop)
    if stop is None:
        shutdown.install_signals()
    try:
        await serve_app(app, settings, functions, shutdown)
    finally:
        if stop is None:
            shutdown.remove_signals()
    logger.info("Stopped")
