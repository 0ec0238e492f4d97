"""A real Hypercorn server on 127.0.0.1 in the test's event loop, on a port the OS picked."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from hypercorn.asyncio import serve
from quart import Quart

from metatwin_functions.runners.hypercorn import hypercorn_config
from metatwin_functions.runtime import runtimes_of
from metatwin_functions.settings import Settings


@contextlib.asynccontextmanager
async def live_server(app: Quart, settings: Settings) -> AsyncIterator[str]:
    """Serve ``app`` with our Hypercorn settings; yields ``127.0.0.1:PORT`` once it is ready."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = hypercorn_config(settings)
    config.bind = [f"fd://{listener.detach()}"]  # Hypercorn owns (and closes) it now
    stop = asyncio.Event()
    server = asyncio.ensure_future(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(10):
            while not any(r.state == "ready" for r in runtimes_of(app).values()):
                if server.done():
                    server.result()
                await asyncio.sleep(0.01)
        yield f"127.0.0.1:{port}"
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await server
