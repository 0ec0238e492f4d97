"""What every runner shares: the signals, the drain, and the calls a second signal cancels.

The first SIGTERM (or Ctrl-C) drains: ``/ready`` and new calls answer 503 while calls in flight
run to their end. A second signal stops waiting: the calls still running are cancelled and
answered 503, and the server closes at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

from ..runtime import FunctionRuntime, runtimes_of

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope
    from quart import Quart

    from ..registry import FunctionRegistry
    from ..settings import Settings

__all__ = ["CallGuard", "Shutdown", "drain_timeout"]

logger = logging.getLogger("metatwin_functions.server")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How long cancelled calls get to send their answer before the server closes their connections.
_CANCELLED_ANSWER_GRACE = 1.0
_STOPPED_BODY = to_json(
    {
        "success": False,
        "result": None,
        "error": "Server stopped before the call finished; retry on another instance",
        "metadata": {"executionId": None, "errorKind": "unavailable"},
    }
)


def drain_timeout(settings: Settings, registry: FunctionRegistry) -> float:
    """How long a drain may wait: the longest deadline any call can have, plus a second."""
    deadlines = [settings.effective_timeout(spec.timeout) for spec in registry.specs()]
    return max([settings.effective_timeout(None), *deadlines]) + 1.0


class Shutdown:
    """A stop in two steps: ``requested`` (drain), then optionally ``forced`` (stop waiting).

    Args:
        stop: An event that requests the stop; default: a new one, set by `install_signals`.
    """

    def __init__(self, stop: asyncio.Event | None = None) -> None:
        self.requested = asyncio.Event() if stop is None else stop
        self.forced = asyncio.Event()
        self._installed: list[signal.Signals] = []

    def install_signals(self) -> None:
        """SIGTERM and SIGINT request the stop; a second one forces it."""
        loop = asyncio.get_running_loop()
        for signum in _SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
            self._installed.append(signum)

    def remove_signals(self) -> None:
        """Give the signals back to their default handling."""
        loop = asyncio.get_running_loop()
        while self._installed:
            loop.remove_signal_handler(self._installed.pop())

    def _on_signal(self, signum: signal.Signals) -> None:
        if self.requested.is_set():
            self.forced.set()
            return
        logger.info("Received %s, draining", signal.Signals(signum).name)
        self.requested.set()

    async def drain(self, app: Quart, settings: Settings, registry: FunctionRegistry) -> bool:
        """Wait for the stop request, then for the calls in flight; True if the stop was forced."""
        await self.requested.wait()
        runtimes = list(runtimes_of(app).values())
        drained = asyncio.create_task(_drain_all(runtimes, drain_timeout(settings, registry)))
        forced = asyncio.create_task(self.forced.wait())
        try:
            await asyncio.wait({drained, forced}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (drained, forced):
                task.cancel()
            # Awaited, so that no cancelled future is left for asyncio to report as an error.
            await asyncio.wait({drained, forced})
        if not drained.cancelled():
            drained.result()  # a bug in a drain surfaces here, not as "never retrieved"
            return False
        logger.warning("Second signal: stopping without waiting for calls in flight")
        # The pipelines answer their calls in flight with a 503 of their own first; what is left
        # (other routes) is cancelled by the runner's CallGuard after this returns.
        for runtime in runtimes:
            runtime.abort()
        await asyncio.gather(
            *(runtime.pipeline.wait_idle(_CANCELLED_ANSWER_GRACE) for runtime in runtimes)
        )
        return True


async def _drain_all(runtimes: list[FunctionRuntime], timeout: float) -> None:
    await asyncio.gather(*(runtime.drain(timeout) for runtime in runtimes))


class CallGuard:
    """ASGI middleware that knows the HTTP calls in flight, so a forced stop can cancel them.

    A cancelled call that has not answered yet gets a 503 in the ``/exec`` shape, and no
    exception leaves the app: servers would log one as an application error (uvicorn does, with
    a traceback) or answer an empty 500 (Hypercorn does).
    """

    def __init__(self, app: ASGIFramework) -> None:
        self.app = app
        self.stopping = False
        self._calls: set[asyncio.Task[Any]] = set()

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None  # an ASGI app always runs in a task
        self._calls.add(task)
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if not self.stopping:
                raise
            await _answer_stopped(send)
        finally:
            self._calls.discard(task)

    async def cancel_calls(self) -> None:
        """Cancel every call in flight and give them a moment to send their answers."""
        self.stopping = True
        calls = set(self._calls)
        for call in calls:
            call.cancel()
        if calls:
            await asyncio.wait(calls, timeout=_CANCELLED_ANSWER_GRACE)


async def _answer_stopped(send: ASGISendCallable) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_STOPPED_BODY)).encode()),
        (b"retry-after", b"1"),
    ]
    try:
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": _STOPPED_BODY, "more_body": False})
    except Exception as exc:  # the call had begun its answer: servers refuse a second one
        logger.debug("No 503 for a cancelled call: %r", exc)
