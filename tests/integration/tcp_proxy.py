"""A small asyncio TCP proxy the tests control, to simulate a broker that is down or restarting.

The shared broker is never stopped: the code under test connects to the proxy, and the proxy
forwards to the broker, refuses connections (nothing listens), swallows them (accepts and never
answers, like a black-holed host), or partitions them: every open connection stays open but no
byte crosses in either direction (held, not lost) and no RST is sent, as when a network path
between client and broker fails; new connections hang the same way. Back to FORWARD, the held
bytes flow again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum

__all__ = ["ProxyMode", "TcpProxy"]


class ProxyMode(enum.Enum):
    """What the proxy does with connections."""

    FORWARD = "forward"
    REFUSE = "refuse"
    BLACKHOLE = "blackhole"
    PARTITION = "partition"


class TcpProxy:
    """Listens on ``127.0.0.1:<port>`` and forwards to ``target_host:target_port``."""

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5672) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.mode = ProxyMode.REFUSE
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self, mode: ProxyMode = ProxyMode.FORWARD) -> None:
        """Pick a free port (kept for the proxy's life) and apply ``mode``."""
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        self.mode = ProxyMode.FORWARD
        await self.set_mode(mode)

    async def set_mode(self, mode: ProxyMode) -> None:
        """Switch mode; leaving FORWARD cuts every open connection, except for a PARTITION."""
        if mode is ProxyMode.PARTITION:
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode not in (ProxyMode.FORWARD, ProxyMode.PARTITION):
            self.cut()
        if mode is ProxyMode.REFUSE:
            await self._stop_listening()
        elif self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.mode = mode

    def cut(self) -> None:
        """Drop every open connection, as a broker restart does."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        """Stop listening and drop everything."""
        self.cut()
        await self._stop_listening()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.mode is ProxyMode.PARTITION:
            await self._flowing.wait()  # held until the partition ends (or the test closes)
        if self.mode is not ProxyMode.FORWARD:
            return  # black hole: keep the socket open, never answer
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink, writer, up_writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        *pair: asyncio.StreamWriter,
    ) -> None:
        try:
            while data := await source.read(65536):
                await self._flowing.wait()  # a partition holds bytes; TCP back-pressure the rest
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        try:
            await self._flowing.wait()  # across a partition, even a close does not get through
        finally:
            for writer in pair:
                writer.transport.abort()
                self._writers.discard(writer)
