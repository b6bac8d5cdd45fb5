"""Websocket transport: adapt a socket into a Connection, turn frames into room calls and errors into
`error` frames. No rules live here.

`GET /ws/streams/{id}`: a stream's room (anonymous viewers may watch). `GET /ws/me`: a signed-in user's
notifications, for pages that are not in a stream. docs/PROTOCOL.md describes every frame.
"""

import hashlib
import logging
import re
from uuid import UUID

import asyncpg
from aiohttp import WSMsgType, web

from livehub import keys, logs
from livehub.auth import Principal, principal_for_token
from livehub.broker.base import BrokerUnavailable
from livehub.errors import Forbidden, Internal, RateLimited, to_error
from livehub.http import check_origin, client_address, request_token
from livehub.live import protocol
from livehub.live.connection import (
    CLOSE_BANNED,
    CLOSE_NOT_FOUND,
    CLOSE_TOO_MANY,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHORIZED,
    Connection,
)
from livehub.live.room import FRAMES, Room
from livehub.tasks import Supervisor

log = logging.getLogger(__name__)

# Pings keep NAT mappings open and find phones that vanished without closing.
HEARTBEAT_S = 25.0
# Buys of one connection waiting for their reply at once.
MAX_BUYS_IN_FLIGHT = 4
# An anonymous page's id for itself; anything else is ignored (the client counts by its address alone).
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


async def stream_socket(request: web.Request) -> web.WebSocketResponse:
    settings = request.app[keys.SETTINGS]
    hub = request.app[keys.HUB]
    ws = web.WebSocketResponse(max_msg_size=settings.max_ws_frame_bytes, heartbeat=HEARTBEAT_S, compress=False)
    await ws.prepare(request)
    try:
        stream_id = UUID(request.match_info["id"])
    except ValueError:
        await ws.close(code=CLOSE_NOT_FOUND, message=b"no such stream")
        return ws
    principal, refused = await _principal(request)
    if refused is not None:
        await ws.close(code=refused[0], message=refused[1].encode())
        return ws
    if principal is not None:
        return await _serve(request, ws, stream_id, principal)
    address = client_address(request)
    if not hub.take_anonymous(address):
        await ws.close(code=CLOSE_TOO_MANY, message=b"too many connections from this address, reconnect later")
        return ws
    try:
        return await _serve(request, ws, stream_id, None)
    finally:
        hub.release_anonymous(address)


async def _serve(
    request: web.Request, ws: web.WebSocketResponse, stream_id: UUID, principal: Principal | None
) -> web.WebSocketResponse:
    """An admitted socket: open the stream's room, join it, and run its frames until it closes."""
    settings = request.app[keys.SETTINGS]
    hub = request.app[keys.HUB]
    try:
        name, banned = await hub.admit(stream_id, principal.user_id) if principal else (None, False)
        room = await hub.room(stream_id)
    except (BrokerUnavailable, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        log.warning("cannot open room %s now: %r", stream_id, exc)
        await ws.close(code=CLOSE_TRY_AGAIN, message=b"the room cannot be opened right now, reconnect")
        return ws
    if banned:
        await ws.close(code=CLOSE_BANNED, message=b"banned from this seller's streams")
        return ws
    if room is None:
        await ws.close(code=CLOSE_NOT_FOUND, message=b"no such stream")
        return ws
    conn = Connection(
        ws,
        request.transport,
        user_id=principal.user_id if principal else None,
        name=name,
        viewer_key=str(principal.user_id) if principal else _anonymous_key(request),
        buffer_bytes=settings.viewer_buffer_kib * 1024,
        tasks=hub.tasks,
        is_admin=bool(principal and principal.is_admin),
    )
    since, epoch = _since(request)
    room.join(conn, since=since, epoch=epoch)
    hub.joined(room, conn)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await _handle(room, conn, msg.data, hub.tasks)
            elif msg.type == WSMsgType.BINARY:
                conn.send(protocol.error("validation_error", "frames are JSON text"))
    finally:
        hub.left(room, conn)
        conn.closing = True
    return ws


async def user_socket(request: web.Request) -> web.WebSocketResponse:
    """Notifications for a signed-in user (a followed seller went live), wherever the user is."""
    settings = request.app[keys.SETTINGS]
    hub = request.app[keys.HUB]
    ws = web.WebSocketResponse(max_msg_size=settings.max_ws_frame_bytes, heartbeat=HEARTBEAT_S, compress=False)
    await ws.prepare(request)
    principal, refused = await _principal(request)
    if principal is None:
        code, message = refused or (CLOSE_UNAUTHORIZED, "sign in first")
        await ws.close(code=code, message=message.encode())
        return ws
    conn = Connection(
        ws,
        request.transport,
        user_id=principal.user_id,
        name=None,
        viewer_key=str(principal.user_id),
        buffer_bytes=settings.viewer_buffer_kib * 1024,
        tasks=hub.tasks,
    )
    hub.joined(None, conn)
    conn.send({"type": "welcome", "you": {"user_id": principal.user_id}})
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    frame = FRAMES.parse(msg.data)
                    reply = (
                        {"type": "pong", "request_id": frame.request_id}
                        if isinstance(frame, protocol.Ping)
                        else protocol.error("validation_error", "this socket only takes ping", frame.request_id)
                    )
                except protocol.BadFrame as exc:
                    reply = error_reply(exc, None)
                conn.send(reply)
    finally:
        hub.left(None, conn)
        conn.closing = True
    return ws


async def _principal(request: web.Request) -> tuple[Principal | None, tuple[int, str] | None]:
    """The signed-in user (by `?token=`, bearer header or cookie), or the close code and reason refusing
    the attempt. A sign-in that cannot be checked now (the database is busy or away) is not a bad one: the
    client is told to reconnect (1013), not to sign in again (4001)."""
    token, via_cookie = request_token(request)
    if query_token := request.query.get("token"):
        token, via_cookie = query_token, False
    if not token:
        return None, None
    if via_cookie:
        # Browsers send cookies on cross-site websocket handshakes too: only our own pages may use them.
        try:
            check_origin(request)
        except Forbidden as exc:
            return None, (CLOSE_UNAUTHORIZED, exc.message)
    try:
        principal = await principal_for_token(request.app[keys.POOL], token)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return None, (CLOSE_TRY_AGAIN, "sign-in cannot be checked right now, reconnect")
    if principal is None:
        return None, (CLOSE_UNAUTHORIZED, "the session has expired or is not valid")
    logs.bind_user(principal.user_id)  # the connection's log lines name its user
    return principal, None


def _since(request: web.Request) -> tuple[int | None, str | None]:
    try:
        since = int(request.query["since"]) if "since" in request.query else None
    except ValueError:
        since = None
    return since, request.query.get("epoch")


def _anonymous_key(request: web.Request) -> str:
    # One anonymous client is its address plus the id its page keeps (`?client_id=`), so browsers behind
    # one NAT count apart while a script's thousand sockets without an id count once. Only a hash is
    # kept: the address is not stored.
    client_id = request.query.get("client_id", "")
    if not CLIENT_ID.fullmatch(client_id):
        client_id = ""
    return "anon:" + hashlib.sha256(f"{client_address(request)} {client_id}".encode()).hexdigest()[:24]


async def _handle(room: Room, conn: Connection, raw: str, tasks: Supervisor) -> None:
    request_id = None
    try:
        frame = FRAMES.parse(raw)
        request_id = frame.request_id
        if frame.answered_later:
            if conn.in_flight >= MAX_BUYS_IN_FLIGHT:
                raise RateLimited("wait for your earlier purchases to finish")
            # Answered when its batch settles; the socket keeps reading meanwhile.
            conn.in_flight += 1
            tasks.spawn(_answer_later(room, conn, frame), name="buy")
            return
        reply = await room.command(conn, frame)
    except Exception as exc:
        reply = error_reply(exc, request_id)
    if reply is not None:
        conn.send(reply)


async def _answer_later(room: Room, conn: Connection, frame: protocol.Frame) -> None:
    try:
        reply = await room.command(conn, frame)
    except Exception as exc:
        reply = error_reply(exc, frame.request_id)
    finally:
        conn.in_flight -= 1
    if reply is not None:
        conn.send(reply)


def error_reply(exc: Exception, request_id: str | None) -> dict:
    """The `error` frame for a failed frame; the connection stays open."""
    if (err := to_error(exc)) is None:
        log.exception("handling a frame failed", exc_info=exc)
        err = Internal("that failed on our side")
    request_id = getattr(exc, "request_id", None) or request_id
    return protocol.error(err.code.value, err.message, request_id, err.details)
