"""A small asyncio client for streamed calls: ``POST /exec/stream`` (NDJSON) and ``GET /ws``.

For tests, examples and scripts; it needs nothing beyond h11 and wsproto, which Hypercorn
already installs. ``http://`` and ``ws://`` only (put TLS in front with a proxy or use your own
client: the wire format is plain JSON lines and JSON text frames).

>>> async for event in stream_call("http://127.0.0.1:8000", "count_to", {"n": 3}):
...     print(event["type"], event.get("data"))
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import h11
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from .errors import MetaTwinFunctionsError

__all__ = ["StreamRefusedError", "WebSocketClient", "stream_call"]

_READ = 65536
_CLOSE_WAIT = 2.0


class StreamRefusedError(MetaTwinFunctionsError):
    """The server answered without a stream (a refusal such as 401, 422, 429), or closed it."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body!r}")
        self.status = status
        self.body = body


def _credentials(api_key: str | None, token: str | None) -> list[tuple[str, str]]:
    headers = []
    if api_key is not None:
        headers.append(("X-API-Key", api_key))
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    return headers


def _address(url: str, schemes: tuple[str, ...]) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme not in schemes or parts.hostname is None:
        raise ValueError(f"expected a {' or '.join(schemes)} URL, got {url!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


async def stream_call(
    base_url: str,
    function_name: str,
    args: Mapping[str, Any] | None = None,
    *,
    execution_id: str = "",
    api_key: str | None = None,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Call ``function_name`` over ``POST {base_url}/exec/stream``; yield each object as it comes.

    The objects are ``item``, ``progress`` and, last, ``result``. Leaving the loop early (or
    ``aclose()``) closes the connection, which cancels the call on the server.

    Raises:
        StreamRefusedError: The call was refused before it started (its status and JSON body).
    """
    host, port, path = _address(base_url, ("http",))
    envelope = {
        "executionId": execution_id,
        "functionName": function_name,
        "args": dict(args or {}),
    }
    body = json.dumps(envelope).encode()
    request_headers = [
        ("Host", f"{host}:{port}"),
        ("Content-Type", "application/json"),
        ("Accept", "application/x-ndjson"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        *_credentials(api_key, token),
        *(headers or {}).items(),
    ]
    reader, writer = await asyncio.open_connection(host, port)
    connection = h11.Connection(h11.CLIENT)
    try:
        writer.write(
            connection.send(
                h11.Request(method="POST", target=f"{path}/exec/stream", headers=request_headers)
            )
            + connection.send(h11.Data(data=body))
            + connection.send(h11.EndOfMessage())
        )
        status = 0
        streaming = False
        pending = b""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await reader.read(_READ))
            elif isinstance(event, h11.Response):
                status = event.status_code
                content_type = dict(event.headers).get(b"content-type", b"")
                streaming = status == 200 and content_type.startswith(b"application/x-ndjson")
            elif isinstance(event, h11.Data):
                pending += bytes(event.data)
                if streaming:
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line:
                            yield json.loads(line)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        if not streaming:
            raise StreamRefusedError(status, json.loads(pending) if pending else None)
    finally:
        writer.close()


class WebSocketClient:
    """One WebSocket to ``/ws``; reads only when asked, so a test can play a slow reader.

    Use ``async with WebSocketClient.connect(url) as ws:``, then `send`, `receive`, `call`.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._messages: deque[str | bytes] = deque()
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        self.close_code: int | None = None
        #: Protocol pings from the server answered so far (keep-alive).
        self.pings_answered = 0
        #: Protocol pongs received (answers to `ping`).
        self.pongs_received = 0
        self._closing = False
        #: The URL it was opened with.
        self.url = ""

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> WebSocketClient:
        """Open ``url`` (``ws://host:port/ws``); `StreamRefusedError` if it is refused."""
        host, port, path = _address(url, ("ws",))
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer)
        client.url = url
        extra = [
            (k.encode(), v.encode())
            for k, v in [*_credentials(api_key, token), *(headers or {}).items()]
        ]
        writer.write(
            client._ws.send(Request(host=f"{host}:{port}", target=path or "/", extra_headers=extra))
        )
        status, body = 0, b""
        while True:
            data = await reader.read(_READ)
            client._ws.receive_data(data or None)
            for event in client._ws.events():
                if isinstance(event, AcceptConnection):
                    return client
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise StreamRefusedError(status, None)
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        writer.close()
                        raise StreamRefusedError(status, json.loads(body) if body else None)
            if not data:
                raise StreamRefusedError(status, None)

    async def __aenter__(self) -> WebSocketClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def server_closed(self) -> bool:
        """Whether the server has closed the connection (as far as was read or written)."""
        return self.close_code is not None or self._writer.is_closing()

    async def send(self, message: Mapping[str, Any] | str | bytes) -> None:
        """Send a JSON object (as a text frame), or a raw text or binary frame."""
        if isinstance(message, bytes):
            data = self._ws.send(BytesMessage(data=message))
        else:
            text = message if isinstance(message, str) else json.dumps(message)
            data = self._ws.send(TextMessage(data=text))
        self._writer.write(data)
        await self._writer.drain()

    async def receive_raw(self) -> str | bytes | None:
        """The next frame as sent, or None once the server closed the socket."""
        while not self._messages:
            if self.close_code is not None or not await self.wait_for_data():
                return None
        return self._messages.popleft()

    async def wait_for_data(self) -> bool:
        """Read from the socket once (answering pings); False once it is closed."""
        data = await self._reader.read(_READ)
        if not data:
            self.close_code = self.close_code or 1006
            return False
        self._ws.receive_data(data)
        self._absorb()
        return True

    async def receive(self) -> dict[str, Any] | None:
        """The next object the server sent, or None once it closed the socket."""
        frame = await self.receive_raw()
        if frame is None:
            return None
        parsed: dict[str, Any] = json.loads(frame)
        return parsed

    async def call(
        self, function_name: str, args: Mapping[str, Any] | None = None, *, execution_id: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Send one call and yield its objects up to its ``result`` (others are kept for later)."""
        await self.send(
            {"executionId": execution_id, "functionName": function_name, "args": dict(args or {})}
        )
        others: list[str | bytes] = []
        try:
            while True:
                frame = await self.receive_raw()
                if frame is None:
                    raise StreamRefusedError(self.close_code or 1006, "socket closed")
                event = json.loads(frame)
                if event.get("executionId") != execution_id:
                    others.append(frame)
                    continue
                yield event
                if event.get("type") == "result":
                    return
        finally:
            self._messages.extendleft(reversed(others))

    async def ping(self) -> None:
        """Send a protocol ping (keep-alive) and wait for its pong."""
        expected = self.pongs_received + 1
        self._writer.write(self._ws.send(Ping(payload=b"keep-alive")))
        await self._writer.drain()
        while self.pongs_received < expected:
            if not await self.wait_for_data():
                raise StreamRefusedError(self.close_code or 1006, "socket closed")

    def _absorb(self) -> None:
        for event in self._ws.events():
            if isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self._messages.append("".join(self._text))
                    self._text.clear()
            elif isinstance(event, BytesMessage):
                self._bytes.append(bytes(event.data))
                if event.message_finished:
                    self._messages.append(b"".join(self._bytes))
                    self._bytes.clear()
            elif isinstance(event, Ping):
                self._writer.write(self._ws.send(event.response()))
                self.pings_answered += 1
            elif isinstance(event, Pong):
                self.pongs_received += 1
            elif isinstance(event, CloseConnection):
                if not self._closing:  # the server closes: answer its close frame
                    self._writer.write(self._ws.send(event.response()))
                self.close_code = event.code

    async def close(self, code: int = 1000) -> None:
        """Close the socket (the server cancels the calls still running on it)."""
        try:
            if self.close_code is None:
                self._closing = True
                self._writer.write(self._ws.send(CloseConnection(code=code)))
                await self._writer.drain()
                # The closing handshake: wait (briefly) for the server's close frame.
                async with asyncio.timeout(_CLOSE_WAIT):
                    while await self.receive_raw() is not None:
                        pass
        except Exception:  # already gone, or not answering: nothing more to do
            pass
        finally:
            self.close_code = self.close_code or code
            self._writer.close()
