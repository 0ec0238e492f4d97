"""Names the ``async def`` function that blocks the event loop.

An ``async def`` that calls ``time.sleep`` (or any blocking code) stops every other call of the
process, and its own deadline cannot even fire. A daemon thread watches a heartbeat the loop
updates; when the loop has not come round for more than ``threshold`` seconds, it looks at which
task the loop is running and logs one WARNING naming that call's function.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["LoopWatchdog"]

logger = logging.getLogger("metatwin_functions.calls")

_current_tasks: dict[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = getattr(
    asyncio.tasks, "_current_tasks", None
)


class LoopWatchdog:
    """Warns when the event loop is blocked for longer than ``threshold`` seconds.

    Args:
        calls: The ``async def`` calls running now, by task (the invoker's ``async_calls``).
        threshold: Seconds of blocking that earn a WARNING.
    """

    def __init__(
        self, calls: dict[asyncio.Task[Any], str], threshold: float = 1.0, *, tick: float = 0.25
    ) -> None:
        self._calls = calls
        self.threshold = threshold
        self._tick = tick
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_blocked: Callable[[str | None, float], None] | None = None

    def start(self) -> None:
        """Start the heartbeat task on the running loop and the watching thread."""
        self._loop = asyncio.get_running_loop()
        self._beat = time.monotonic()
        self._stop.clear()
        self._task = asyncio.create_task(self._heartbeat(), name="metatwin-functions-watchdog")
        self._thread = threading.Thread(
            target=self._watch, name="metatwin-functions-watchdog", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """Stop both; safe to call twice."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _heartbeat(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(self._tick)

    def _watch(self) -> None:
        reported: object = None
        while not self._stop.wait(self._tick):
            blocked = time.monotonic() - self._beat - self._tick
            if blocked <= self.threshold:
                reported = None
                continue
            task = _current_tasks.get(self._loop) if _current_tasks and self._loop else None
            if task is reported:
                continue  # one warning per blocking episode
            reported = task
            name = self._calls.get(task) if task is not None else None
            self._report(name, blocked)

    def _report(self, name: str | None, blocked: float) -> None:
        if self.on_blocked is not None:
            self.on_blocked(name, blocked)
        if name is None:
            logger.warning("The event loop has been blocked for %.1f s", blocked)
            return
        logger.warning(
            "Function '%s' has blocked the event loop for %.1f s: every other call waits. "
            "Use a plain def, or await blocking work in asyncio.to_thread()",
            name,
            blocked,
            extra={"function_name": name},
        )
