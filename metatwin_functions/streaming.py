"""Partial output of a call: the sink a call writes to and the bounded channel a transport reads.

Sans-IO: a stream transport (NDJSON over HTTP, a WebSocket) owns a `LineChannel`; each call it
serves gets a `StreamSink` on that channel, passed to the pipeline in `CallMeta.sink`. The invoker
writes the call's ``item`` objects into the sink (waiting while the channel is full, so a slow
reader slows its own calls, never the server's memory) and the function writes ``progress``
objects through `current_execution().progress` (never waiting: dropped when the channel is full).
Every object is one JSON line, ready for an NDJSON body or a WebSocket text frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque

from pydantic_core import to_json

from .answers import Answer

__all__ = ["ChannelClosedError", "LineChannel", "StreamSink", "error_line", "result_line"]


class ChannelClosedError(Exception):
    """The transport is gone (client disconnected): nothing more can be written."""


class LineChannel:
    """A bounded FIFO of JSON lines from calls to the one task that writes them out.

    Args:
        maxsize: Lines held before `put` waits (the reader takes them all at once, so at most
            twice this many are in memory).
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._lines: deque[bytes] = deque()
        self._getter: asyncio.Future[None] | None = None
        self._putters: deque[asyncio.Future[None]] = deque()
        self._finished = False
        self._closed = False

    def __len__(self) -> int:
        return len(self._lines)

    async def put(self, line: bytes) -> None:
        """Queue ``line``, waiting while the channel is full; `ChannelClosedError` once closed."""
        while len(self._lines) >= self.maxsize and not self._closed:
            waiter = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            finally:
                if waiter.cancelled() or not waiter.done():  # this writer was cancelled
                    waiter.cancel()
                    with contextlib.suppress(ValueError):
                        self._putters.remove(waiter)
        if self._closed:
            raise ChannelClosedError
        self._lines.append(line)
        self._wake_getter()

    def offer(self, line: bytes) -> bool:
        """Queue ``line`` if there is room now; False (dropped) when full or closed."""
        if self._closed or len(self._lines) >= self.maxsize:
            return False
        self._lines.append(line)
        self._wake_getter()
        return True

    def finish(self) -> None:
        """No more lines will come: `take` returns ``[]`` once the queued ones are taken."""
        self._finished = True
        self._wake_getter()

    def close(self) -> None:
        """The reader is gone: writers waiting or to come get `ChannelClosedError`."""
        self._closed = True
        self._lines.clear()
        while self._putters:
            waiter = self._putters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        self.finish()

    async def take(self) -> list[bytes]:
        """Every line queued, waiting for at least one; ``[]`` when finished (or closed)."""
        while not self._lines:
            if self._finished:
                return []
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        lines = list(self._lines)
        self._lines.clear()
        putters = self._putters
        for _ in range(min(len(putters), self.maxsize)):
            waiter = putters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        return lines

    def _wake_getter(self) -> None:
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)


class StreamSink:
    """Where one streamed call's ``item`` and ``progress`` objects go.

    Made by the transport on the event loop's thread; `progress` may be called from any thread.
    ``cancelled`` is set by the transport before it cancels the call, so that the invoker
    reports the call as cancelled by its caller (rather than by a server stopping).
    """

    __slots__ = ("_loop", "_prefix", "_thread", "cancelled", "channel", "execution_id", "started")

    def __init__(self, channel: LineChannel) -> None:
        self.channel = channel
        self.cancelled = False
        self.execution_id: str | None = None
        self.started = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._prefix = b'{"executionId":null,'

    def start(self, execution_id: str) -> None:
        """The pipeline is past its refusals and the call begins (a 200 answer follows)."""
        self.execution_id = execution_id
        self._prefix = b'{"executionId":' + to_json(execution_id) + b","
        self.started.set()

    async def item(self, data_json: bytes) -> None:
        """Write one item (its data already JSON), waiting while the reader is behind."""
        await self.channel.put(self._prefix + b'"type":"item","data":' + data_json + b"}")

    def progress(self, fraction: float, message: str | None) -> None:
        """Write one progress object; thread-safe and never waits (dropped when full)."""
        line = (
            self._prefix
            + to_json({"type": "progress", "fraction": fraction, "message": message})[1:]
        )
        if threading.get_ident() == self._thread:
            self.channel.offer(line)
            return
        # RuntimeError: the loop is closed (a thread left running after the server stopped).
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self.channel.offer, line)

    def cancel(self) -> None:
        """Mark the call as cancelled by its caller (the transport then cancels its task)."""
        self.cancelled = True


def result_line(execution_id: str | None, answer: Answer) -> bytes:
    """The final ``result`` object of a streamed call: the ``/exec`` body plus its id and type.

    A refusal (an answer other than 200) also carries its HTTP ``status``.
    """
    head = b'{"executionId":' + to_json(execution_id) + b',"type":"result",'
    if answer.status != 200:
        head += b'"status":' + str(answer.status).encode() + b","
    return head + answer.body[1:]


def error_line(execution_id: str | None, error: str, kind: str) -> bytes:
    """An ``error`` object: a WebSocket frame that could not be served (the socket stays open)."""
    return to_json(
        {"type": "error", "executionId": execution_id, "error": error, "errorKind": kind}
    )
