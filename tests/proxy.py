"""A TCP proxy in front of a real teacher server whose failure mode a test switches at run time: forward
("up"), refuse connections ("down"), drop each connection after reading the request ("drop", a teacher
dying mid-request), or answer `503 Retry-After` ("busy"); and `pause`/`resume` hold every answer (a
teacher that is slow for as long as the test needs, on any machine). The faults are real socket behaviour;
the teacher behind it is the real server."""

from __future__ import annotations

import asyncio
import contextlib
import threading

BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
)


class FaultyProxy:
    def __init__(self, target_port: int):
        self.target_port = target_port
        self.mode = "up"
        self.connections = 0  # accepted while up, drop or busy
        self.port = 0  # the kernel picks it at the first "up"; later ones listen on it again
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()  # live connections, cut when the mode changes
        self._flowing = asyncio.Event()  # cleared: the teacher's answers are held (pause)
        self._flowing.set()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self.set("up")
        self.url = f"http://127.0.0.1:{self.port}"

    def set(self, mode: str) -> None:
        """Switch the failure mode; "down" closes the listening socket (connections are refused)."""
        asyncio.run_coroutine_threadsafe(self._set(mode), self._loop).result()

    def pause(self) -> None:
        """Hold the teacher's answers (requests still reach it) until `resume`: connections stay open."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    async def _set(self, mode: str) -> None:
        self.mode = mode
        for writer in list(self._open):  # a dying teacher takes its keep-alive connections with it
            writer.close()
        if mode == "down" and self._server:
            self._server.close()
            self._server = None
        elif mode != "down" and self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )
            self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.add(writer)
        try:
            if self.mode == "drop":
                await reader.read(65536)
                return
            if self.mode == "busy":
                await reader.read(65536)
                writer.write(BUSY)
                await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._open.add(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer, held=True))
        except OSError:
            pass
        finally:
            self._open.discard(writer)
            writer.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, held: bool = False
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if held:
                    await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        self._open.discard(writer)
        writer.close()

    def close(self) -> None:
        self.set("down")
        self._loop.call_soon_threadsafe(self._loop.stop)
