"""One websocket viewer, fed without a task or a wake-up of its own.

A room frame is encoded once, websocket header included: server-to-client frames are not masked, so the
bytes are the same for every viewer. Fan-out is then one synchronous `transport.write` per viewer; the
transport's buffer is the viewer's queue, drained by the event loop at the pace that viewer's network
takes. A viewer whose buffer passes `viewer_buffer_kib` is too slow to keep up: it is closed with 4008
rather than letting its backlog grow the server's memory or hold up anyone else.

aiohttp keeps writing the control frames (pings, close) to the same transport; every write is a whole
frame and the loop is single-threaded, so frames never interleave.
"""

import asyncio
import logging
import struct
from uuid import UUID

from aiohttp import web

from livehub.jsonx import dumps
from livehub.metrics import SLOW_CLOSES
from livehub.tasks import Supervisor

log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4001
CLOSE_BANNED = 4003
CLOSE_NOT_FOUND = 4004
CLOSE_TOO_SLOW = 4008
# Too many anonymous sockets from the client's address (`anonymous_sockets_per_address`): reconnect later.
CLOSE_TOO_MANY = 4029
CLOSE_GOING_AWAY = 1001
# The room cannot be opened right now (Redis or the database is away): reconnect after a pause.
CLOSE_TRY_AGAIN = 1013
# How long a closing handshake may take before the socket is dropped (a slow viewer never answers).
CLOSE_TIMEOUT_S = 2.0


def text_frame(payload: bytes) -> bytes:
    """A complete unmasked, unfragmented websocket text frame (RFC 6455 section 5.2) around UTF-8 bytes."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def frame_of(message: dict) -> bytes:
    """A JSON message as a ready-to-write websocket frame."""
    return text_frame(dumps(message))


class Connection:
    __slots__ = (
        "ws",
        "transport",
        "user_id",
        "name",
        "role",
        "viewer_key",
        "closing",
        "in_flight",
        "is_admin",
        "_limit",
        "_tasks",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        *,
        user_id: UUID | None,
        name: str | None,
        viewer_key: str,
        buffer_bytes: int,
        tasks: Supervisor,
        is_admin: bool = False,
    ):
        self.ws = ws
        self.transport = transport
        self.user_id = user_id
        self.name = name
        self.role = "anonymous" if user_id is None else "viewer"
        self.viewer_key = viewer_key
        self.is_admin = is_admin
        self.closing = False
        # Buys of this connection waiting for their reply.
        self.in_flight = 0
        self._limit = buffer_bytes
        self._tasks = tasks

    def send(self, message: dict) -> None:
        """Send a message to this viewer alone (a reply, a welcome)."""
        self.send_frame(frame_of(message))

    def send_frame(self, frame: bytes) -> None:
        """Queue an encoded frame; never waits. A viewer this far behind is closed with 4008."""
        transport = self.transport
        if self.closing or transport is None or transport.is_closing() or self.ws.closed:
            return
        if transport.get_write_buffer_size() > self._limit:
            log.info("closing a viewer %d bytes behind", transport.get_write_buffer_size())
            SLOW_CLOSES.inc()
            self.close_soon(CLOSE_TOO_SLOW, "too slow to keep up")
            return
        transport.write(frame)

    def close_soon(self, code: int, message: str) -> None:
        """Close from synchronous code (a fan-out loop, a broker handler)."""
        if self.closing:
            return
        self.closing = True
        self._tasks.spawn(self.close(code, message), name="close-viewer")

    async def close(self, code: int, message: str) -> None:
        self.closing = True
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=message.encode()), CLOSE_TIMEOUT_S)
        except (TimeoutError, ConnectionError, RuntimeError):
            # The close frame is already on its way if it could be written; a peer that never answers
            # (or never reads) is cut off rather than held open.
            if self.transport is not None:
                self.transport.abort()
