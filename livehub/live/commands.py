"""What viewers and hosts do in a room (the core commands): chat, react, click, buy, pin, moderate, ping.

Each command is `async (room, conn, frame) -> reply | None`: it checks who may do it, calls the storage
function that decides (for anything stored), publishes the event every node applies, and returns the
reply frame for the sender (an `ack` carrying the event's offset, a `purchase`, a `pong`). Show formats
bring their own commands (livehub/live/formats/).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

from livehub.errors import Conflict, Forbidden, NotFound, RateLimited, Unauthorized
from livehub.live import protocol
from livehub.live.connection import Connection
from livehub.live.protocol import ack
from livehub.shop import streams

if TYPE_CHECKING:
    from livehub.live.formats import Handler
    from livehub.live.room import Room

STAFF = ("host", "moderator")


def signed_in(conn: Connection) -> UUID:
    if conn.user_id is None:
        raise Unauthorized("sign in to do that")
    return conn.user_id


def staff(conn: Connection) -> UUID:
    """The signed-in host or moderator; Forbidden for anyone else."""
    user_id = signed_in(conn)
    if conn.role not in STAFF:
        raise Forbidden("only the host and moderators can do that")
    return user_id


async def chat(room: Room, conn: Connection, frame: protocol.Chat) -> dict | None:
    user_id = signed_in(conn)
    # Viewers stay in an ended show's room to read it back; nobody is there to answer any more.
    if room.state.stream.get("status") == "ended":
        raise Conflict("the show has ended: chat is closed")
    now = datetime.now(UTC)
    room.state.rules.check(frame.text, str(user_id), room.limits_of(user_id), exempt=conn.role in STAFF, now=now)
    event = await room.publish(
        {
            "type": "chat",
            "id": str(uuid4()),
            "user": {"id": str(user_id), "name": conn.name, "role": conn.role},
            "text": frame.text,
            "at": now.isoformat(),
        }
    )
    room.chatlog.add(room.id, event)
    return ack(frame, event)


async def react(room: Room, conn: Connection, frame: protocol.React) -> dict | None:
    user_id = signed_in(conn)
    if not room.limits_of(user_id).reactions.take():
        raise RateLimited("too many reactions, slow down")
    room.audience.react(frame.kind)
    return ack(frame)


async def click(room: Room, conn: Connection, frame: protocol.Click) -> dict | None:
    if room.state.product(frame.product_id) is not None:
        # A click that does not count (the same person and product within the window) is acked all the same:
        # the page has nothing to do about it.
        room.audience.click(conn.viewer_key, str(frame.product_id))
    return ack(frame)


async def buy(room: Room, conn: Connection, frame: protocol.Buy) -> dict:
    """Answered when the purchase's batch settles (livehub/live/checkout.py)."""
    user_id = signed_in(conn)
    if str(frame.variant_id) not in room.state.variants:
        raise NotFound("this variant is not featured in the stream")
    if not room.state.live:
        raise Conflict("the stream is not live")
    checkout = room.checkout(frame.variant_id)
    result = await checkout.buy(user_id, frame.quantity, frame.request_id, frame.flash_sale_id, frame.address_id)
    return {"type": "purchase", "request_id": frame.request_id, **result}


def settled(room: Room, variant_id: UUID, result: dict) -> None:
    """After a purchase batch: one stock update for the room, however many bought."""
    stock = {"type": "stock", "variant_id": str(variant_id), "stock": result["available"]}
    stock["available"] = stock["stock"]
    for show_format in room.formats:
        show_format.settled(variant_id, result, stock)
    room.spawn(room.publish_state(stock), name="stock-update")


async def pin(room: Room, conn: Connection, frame: protocol.Pin) -> dict | None:
    product = await streams.pin_product(room.pool, room.id, staff(conn), frame.product_id)
    return ack(frame, await room.publish({"type": "pin", "product": product}))


async def unpin(room: Room, conn: Connection, frame: protocol.Unpin) -> dict | None:
    await streams.pin_product(room.pool, room.id, staff(conn), None)
    return ack(frame, await room.publish({"type": "unpin"}))


async def delete_message(room: Room, conn: Connection, frame: protocol.DeleteMessage) -> dict | None:
    actor = staff(conn)
    event = await room.publish({"type": "chat_deleted", "message_id": str(frame.message_id)})
    room.chatlog.delete(frame.message_id, actor)
    return ack(frame, event)


async def ban(room: Room, conn: Connection, frame: protocol.Ban) -> dict | None:
    await streams.ban_user(room.pool, room.id, staff(conn), frame.user_id, frame.reason)
    return ack(frame, await room.publish({"type": "moderation", "action": "ban", "user_id": str(frame.user_id)}))


async def unban(room: Room, conn: Connection, frame: protocol.Unban) -> dict | None:
    await streams.unban_user(room.pool, room.id, staff(conn), frame.user_id)
    return ack(frame, await room.publish({"type": "moderation", "action": "unban", "user_id": str(frame.user_id)}))


async def timeout(room: Room, conn: Connection, frame: protocol.Timeout) -> dict | None:
    until = await streams.timeout_user(room.pool, room.id, staff(conn), frame.user_id, frame.seconds)
    event = {"type": "moderation", "action": "timeout", "user_id": str(frame.user_id), "until": until.isoformat()}
    return ack(frame, await room.publish(event))


async def slow_mode(room: Room, conn: Connection, frame: protocol.SlowMode) -> dict | None:
    await streams.set_slow_mode(room.pool, room.id, staff(conn), frame.seconds)
    return ack(frame, await room.publish({"type": "moderation", "action": "slow_mode", "seconds": frame.seconds}))


async def block_words(room: Room, conn: Connection, frame: protocol.BlockWords) -> dict | None:
    words = await streams.set_blocked_words(room.pool, room.id, staff(conn), frame.words)
    # In force on this node before the ack; other nodes reload the list when the event reaches them (it
    # carries only the count: viewers never see the list).
    room.state.rules.block_words(words)
    return ack(frame, await room.publish({"type": "moderation", "action": "block_words", "count": len(words)}))


async def ping(room: Room, conn: Connection, frame: protocol.Ping) -> dict:
    return {"type": "pong", "request_id": frame.request_id}


CORE: dict[type[protocol.Frame], object] = {
    protocol.Chat: chat,
    protocol.React: react,
    protocol.Click: click,
    protocol.Buy: buy,
    protocol.Pin: pin,
    protocol.Unpin: unpin,
    protocol.DeleteMessage: delete_message,
    protocol.Ban: ban,
    protocol.Unban: unban,
    protocol.Timeout: timeout,
    protocol.SlowMode: slow_mode,
    protocol.BlockWords: block_words,
    protocol.Ping: ping,
}


def core_handlers(room: Room) -> dict[type[protocol.Frame], Handler]:
    """The core commands bound to a room."""
    return {frame: partial(command, room) for frame, command in CORE.items()}
