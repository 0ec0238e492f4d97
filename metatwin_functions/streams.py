"""``POST /exec/stream``: one call's items, progress and result as NDJSON, written as produced.

A thin transport on the call pipeline: the body, auth, limits, deadline, metrics, tracing and
logs are the pipeline's. The call runs in a task of its own; the response starts (``200``,
``application/x-ndjson``) once the pipeline is past its refusals, so a call refused before its
function starts (422, 401, 403, 409, 429, 503, 413, 408) answers exactly as ``/exec`` does. Lines
are written as soon as they are produced (those ready together go out in one write), and a client
that goes away cancels its call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

from quart import Response

from .answers import Answer, internal_error_body
from .body import NextChunk
from .pipeline import CallMeta, CallPipeline
from .streaming import LineChannel, StreamSink, result_line

__all__ = ["NDJSON", "STREAM_BUFFER_LINES", "serve_ndjson"]

NDJSON = "application/x-ndjson"
#: Lines held for a slow reader before the call waits for it.
STREAM_BUFFER_LINES = 256

logger = logging.getLogger("metatwin_functions.http")

#: Seconds a cancelled call may take to wind down (close its generator) before we stop waiting.
_CANCEL_WAIT = 5.0


async def serve_ndjson(
    pipeline: CallPipeline,
    declared: int | None,
    next_chunk: NextChunk,
    meta: CallMeta,
) -> Response | Answer | None:
    """Serve one ``/exec/stream`` request.

    Returns the streaming `Response`, or the pipeline's `Answer` when the call was refused
    before it started (the caller writes it as ``/exec`` would), or None when the client went
    away before its body arrived.
    """
    channel = LineChannel(STREAM_BUFFER_LINES)
    sink = StreamSink(channel)
    call = asyncio.ensure_future(
        pipeline.serve_http(declared, next_chunk, replace(meta, sink=sink))
    )
    call.add_done_callback(lambda _: channel.finish())
    started = asyncio.ensure_future(sink.started.wait())
    try:
        await asyncio.wait({call, started}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        await _cancel(call, sink, channel)
        raise
    finally:
        started.cancel()
    if not sink.started.is_set():
        return call.result()  # refused before the function started (or None: client gone)
    response = Response(_lines(call, sink, channel), status=200, content_type=NDJSON)
    response.timeout = None  # the deadline bounds the call; RESPONSE_TIMEOUT must not cut it
    # Proxies (nginx) must pass each line on as it comes.
    response.headers["X-Accel-Buffering"] = "no"
    response.headers["Cache-Control"] = "no-cache"
    return response


async def _lines(
    call: asyncio.Future[Answer | None], sink: StreamSink, channel: LineChannel
) -> AsyncIterator[bytes]:
    try:
        while True:
            lines = await channel.take()
            if not lines:
                break
            lines.append(b"")
            yield b"\n".join(lines)
        try:
            answer = call.result()
        except Exception:
            logger.exception("Unexpected error while serving POST /exec/stream")
            answer = Answer(500, internal_error_body())
        if answer is not None:
            yield result_line(sink.execution_id, answer) + b"\n"
    finally:
        # The client went away (or the server is stopping): its call is cancelled.
        await _cancel(call, sink, channel)


async def _cancel(
    call: asyncio.Future[Answer | None], sink: StreamSink, channel: LineChannel
) -> None:
    channel.close()
    if call.done():
        return
    sink.cancel()
    call.cancel()
    # Bounded: an async def that ignores its cancellation must not hold the connection.
    await asyncio.wait({call}, timeout=_CANCEL_WAIT)
    if call.done() and not call.cancelled():
        call.exception()  # retrieved: an error here was logged by the pipeline
