"""One websocket viewer: a bounded queue of encoded frames and the writer task that drains it.

The room never awaits a socket. It puts the same already-encoded frame on every viewer's queue
(`send`, synchronous); each connection's own writer sends it at the pace that viewer can take. A viewer
whose queue is full is too slow to keep up: it is closed with 4008 rather than letting its backlog grow
the server's memory or hold up anyone else.
"""

import asyncio
import contextlib
import logging
from uuid import UUID

from aiohttp import web

log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4001
CLOSE_BANNED = 4003
CLOSE_NOT_FOUND = 4004
CLOSE_TOO_SLOW = 4008
CLOSE_GOING_AWAY = 1001
# The room cannot be opened right now (Redis or the database is away): reconnect after a pause.
CLOSE_TRY_AGAIN = 1013
# How long a closing handshake may take before the socket is dropped (a slow viewer never answers).
CLOSE_TIMEOUT_S = 2.0


class Connection:
    __slots__ = (
        "ws",
        "transport",
        "user_id",
        "name",
        "role",
        "viewer_key",
        "_queue",
        "_writer",
        "closing",
        "in_flight",
        "is_admin",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        *,
        user_id: UUID | None,
        name: str | None,
        viewer_key: str,
        queue_frames: int,
        is_admin: bool = False,
    ):
        self.ws = ws
        self.transport = transport
        self.user_id = user_id
        self.name = name
        self.role = "anonymous" if user_id is None else "viewer"
        self.is_admin = is_admin
        self.viewer_key = viewer_key
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(queue_frames)
        self._writer: asyncio.Task | None = None
        self.closing = False
        # Buys of this connection waiting for their reply.
        self.in_flight = 0

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write())

    def send(self, frame: str) -> None:
        """Queue an encoded frame; never waits. A full queue closes the connection with 4008."""
        if self.closing:
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.info("closing a viewer that is %d frames behind", self._queue.qsize())
            self.close_soon(CLOSE_TOO_SLOW, "too slow to keep up")

    def close_soon(self, code: int, message: str) -> None:
        """Close from synchronous code (a fan-out loop, a broker handler)."""
        if self.closing:
            return
        self.closing = True
        task = asyncio.create_task(self.close(code, message))
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def close(self, code: int, message: str) -> None:
        self.closing = True
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=message.encode()), CLOSE_TIMEOUT_S)
        except (TimeoutError, ConnectionError, RuntimeError):
            # The close frame is already on its way if it could be written; a peer that never answers
            # (or never reads) is cut off rather than held open.
            if self.transport is not None:
                self.transport.abort()

    async def stop(self) -> None:
        """The socket is done: stop the writer (the handler is leaving)."""
        self.closing = True
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _write(self) -> None:
        queue = self._queue
        ws = self.ws
        try:
            while (frame := await queue.get()) is not None:
                await ws.send_str(frame)
        except (ConnectionError, RuntimeError):
            # The peer went away while we wrote; the reading side sees the close and cleans up.
            pass


_background: set[asyncio.Task] = set()
