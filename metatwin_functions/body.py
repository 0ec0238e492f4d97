"""The one request-body reader, fed by every HTTP transport (the Quart view and raw ASGI).

Sans-IO in spirit: it takes the declared ``Content-Length`` and an async iterator of chunks, so
the Quart view (``request.body``) and the raw-ASGI endpoint (``receive()`` messages) share the
limit, the timeout and their answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

__all__ = ["BodyTimeoutError", "BodyTooLargeError", "ClientGoneError", "read_body"]


class BodyTooLargeError(Exception):
    """The body is (or is declared to be) larger than the limit: HTTP 413."""


class BodyTimeoutError(Exception):
    """The body did not arrive in full within the body timeout: HTTP 408."""


class ClientGoneError(Exception):
    """The client disconnected before its body arrived: nobody to answer."""


async def read_body(
    chunks: AsyncIterator[bytes], declared: int | None, limit: int, timeout: float
) -> bytes:
    """Read a whole body of at most ``limit`` bytes within ``timeout`` seconds.

    A declared length above the limit is refused before a byte is read; a body that grows past
    the limit (chunked, or longer than declared) is refused as soon as it does.
    """
    if declared is not None and declared > limit:
        raise BodyTooLargeError
    received = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in chunks:
                received += chunk
                if len(received) > limit:
                    raise BodyTooLargeError
    except TimeoutError:
        raise BodyTimeoutError from None
    return bytes(received)
