"""Running generator functions: collected into a list, or streamed item by item into a sink.

An ``async def`` generator runs on the event loop; it is closed (``aclose``) however the call
ends, so its ``finally`` blocks run when the caller cancels or the deadline passes. A plain
generator runs on the invoker's thread pool; a thread cannot be interrupted, so when the call is
cancelled or times out the generator is closed at its next ``yield`` (code between two yields
runs to its end, as a plain ``def`` past its deadline does).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

from .envelope import serialize_result
from .errors import ResultSerializationError, ResultTooLargeError
from .streaming import StreamSink

__all__ = ["ItemWriter", "ThreadedGenerator", "drive_async_generator"]

logger = logging.getLogger("metatwin_functions.calls")

#: Items a plain generator's thread may run ahead of the reader.
THREAD_WINDOW = 64


class ItemWriter:
    """Turns each item of one call into JSON, numbered for error messages, within the size limit."""

    __slots__ = ("count", "function_name", "limit")

    def __init__(self, function_name: str, limit: int) -> None:
        self.function_name = function_name
        self.limit = limit
        self.count = 0

    def __call__(self, item: Any) -> bytes:
        self.count += 1
        try:
            data = serialize_result(item)
        except ValueError as exc:
            raise ResultSerializationError(self.function_name, str(exc), item=self.count) from None
        if len(data) > self.limit:
            raise ResultTooLargeError(self.function_name, len(data), self.limit, item=self.count)
        return data


async def drive_async_generator(
    func: Callable[..., AsyncGenerator[Any, None]],
    kwargs: dict[str, Any],
    sink: StreamSink | None,
    writer: ItemWriter,
) -> list[Any] | None:
    """Run an ``async def`` generator: its items as a list (no sink), or written to ``sink``."""
    generator = func(**kwargs)
    try:
        if sink is None:
            return [item async for item in generator]
        async for item in generator:
            await sink.item(writer(item))
        return None
    finally:
        try:
            await generator.aclose()
        except Exception:
            # E.g. it yielded again when closed: the call's outcome is already decided.
            logger.warning(
                "Generator '%s' did not close cleanly", writer.function_name, exc_info=True
            )


_END = object()


class ThreadedGenerator:
    """A plain generator on a pool thread, handing its items to the event loop in order.

    The thread side (`collect`, `produce`) runs on the pool; `deliver` runs on the loop and
    writes to the sink. The thread waits when it is `THREAD_WINDOW` items ahead, and `stop`
    makes it close the generator at its next ``yield``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._stopped = threading.Event()
        self._space = threading.Semaphore(THREAD_WINDOW)
        self._lock = threading.Lock()
        self._ready: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def stop(self) -> None:
        """Close the generator at its next ``yield`` (the caller gave up on it)."""
        self._stopped.set()

    # -- on the pool thread ----------------------------------------------------------------

    def collect(
        self, func: Callable[..., Generator[Any, None, None]], kwargs: dict[str, Any]
    ) -> list[Any]:
        """Every item, as plain ``/exec`` answers them."""
        items: list[Any] = []
        generator = func(**kwargs)
        try:
            for item in generator:
                if self._stopped.is_set():
                    break
                items.append(item)
        finally:
            generator.close()
        return items

    def produce(
        self,
        func: Callable[..., Generator[Any, None, None]],
        kwargs: dict[str, Any],
        writer: ItemWriter,
    ) -> None:
        """Hand each item, as JSON, to `deliver`; the end is always handed over too."""
        try:
            generator = func(**kwargs)
            try:
                for item in generator:
                    data = writer(item)
                    while not self._space.acquire(timeout=0.05):
                        if self._stopped.is_set():
                            return
                    if self._stopped.is_set():
                        return
                    self._push(data)
            finally:
                generator.close()
        finally:
            self._push(_END)

    def _push(self, data: Any) -> None:
        with self._lock:
            self._ready.append(data)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_wake, waiter)

    # -- on the event loop -----------------------------------------------------------------

    async def deliver(self, sink: StreamSink, thread_call: asyncio.Future[Any]) -> None:
        """Write the items to ``sink`` as they come; raises what the generator raised."""
        while True:
            with self._lock:
                batch = list(self._ready)
                self._ready.clear()
                if not batch:
                    waiter = self._waiter = self._loop.create_future()
            if not batch:
                await waiter
                continue
            for data in batch:
                if data is _END:
                    await thread_call  # its result is None, or it raises the generator's error
                    return
                await sink.item(data)
                self._space.release()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
