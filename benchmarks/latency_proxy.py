"""A TCP proxy that adds a fixed delay each way, to measure a server as if it were remote.

Loopback round trips take tens of microseconds; a database in another availability
zone takes about a millisecond, and one reached from a laptop over a VPN tens of
milliseconds. The proxy holds every chunk it forwards for ``one_way_s`` before passing
it on, in order, without waiting for the previous chunk's delay to end: it adds
latency, not a bandwidth limit, as a longer wire would::

    with LatencyProxy(("127.0.0.1", server_port), one_way_s=0.0005) as proxy:
        client = MongoClient(f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true")

It runs an asyncio loop in a thread of its own.
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import TracebackType


class LatencyProxy:
    """Forward ``127.0.0.1:<port>`` to ``target``, each direction delayed by ``one_way_s``."""

    def __init__(self, target: tuple[str, int], one_way_s: float) -> None:
        self.target = target
        self.one_way_s = one_way_s
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    def __enter__(self) -> LatencyProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in self._connections:
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _listen(self) -> asyncio.base_events.Server:
        return await asyncio.start_server(self._connect, "127.0.0.1", 0)

    def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback: the proxy owns the connection's task and cancels it on exit.
        task = asyncio.ensure_future(self._forward(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        try:
            await asyncio.gather(
                self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
            )
        except (ConnectionError, asyncio.CancelledError):
            pass  # either side hung up, or the proxy is closing
        finally:
            writer.close()
            upstream_writer.close()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Copy ``source`` to ``sink``, each chunk ``one_way_s`` after it arrived."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                arrived, data = await queue.get()
                if not data:
                    break
                wait = arrived + self.one_way_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                sink.write(data)
                await sink.drain()
            sink.close()

        delivering = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await source.read(1 << 16)
                await queue.put((time.monotonic(), data))
                if not data:
                    break
            await delivering
        finally:
            delivering.cancel()  # a no-op once delivered; stops it when the proxy closes
