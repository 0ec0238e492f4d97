"""The one request-body reader, fed by every HTTP transport (the Quart view and raw ASGI).

Sans-IO in spirit: it takes the declared ``Content-Length`` and a way to get the next chunk, so
the Quart view (``request.body``) and the raw-ASGI endpoint (``receive()`` messages) share the
limit, the timeout and their answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from .deadline import Deadline

__all__ = [
    "BodyTimeoutError",
    "BodyTooLargeError",
    "ClientGoneError",
    "NextChunk",
    "chunks_reader",
    "read_body",
]

NextChunk = Callable[[], Awaitable[tuple[bytes, bool]]]
"""Returns the next piece of the body and whether more follows; raises `ClientGoneError`."""


class BodyTooLargeError(Exception):
    """The body is (or is declared to be) larger than the limit: HTTP 413."""


class BodyTimeoutError(Exception):
    """The body did not arrive in full within the body timeout: HTTP 408."""


class ClientGoneError(Exception):
    """The client disconnected before its body arrived: nobody to answer."""


async def read_body(
    next_chunk: NextChunk, declared: int | None, limit: int, timeout: float
) -> bytes:
    """Read a whole body of at most ``limit`` bytes within ``timeout`` seconds.

    A declared length above the limit is refused before a byte is read; a body that grows past
    the limit (chunked, or longer than declared) is refused as soon as it does.
    """
    if declared is not None and declared > limit:
        raise BodyTooLargeError
    try:
        with Deadline(asyncio.get_running_loop().time() + timeout):
            chunk, more = await next_chunk()
            if len(chunk) > limit:
                raise BodyTooLargeError
            if not more:  # the common case: the whole body in one piece
                return chunk
            received = bytearray(chunk)
            while more:
                chunk, more = await next_chunk()
                received += chunk
                if len(received) > limit:
                    raise BodyTooLargeError
    except TimeoutError:
        raise BodyTimeoutError from None
    return bytes(received)


def chunks_reader(chunks: AsyncIterator[bytes]) -> NextChunk:
    """A `NextChunk` over an async iterator of chunks (e.g. Quart's ``request.body``)."""
    iterator = aiter(chunks)

    async def next_chunk() -> tuple[bytes, bool]:
        try:
            return await anext(iterator), True
        except StopAsyncIteration:
            return b"", False

    return next_chunk
