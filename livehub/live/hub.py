"""The hub: this node's live rooms, and the doorway the rest of the app uses to reach them.

A room exists on a node while it has viewers there (plus a short grace period, so a phone that drops
and reconnects does not make the node unsubscribe and subscribe again); only then is the node
subscribed to the room's events.
"""

import asyncio
import collections
import logging
from uuid import UUID

import asyncpg

from livehub import metrics
from livehub.broker import Backplane, BrokerUnavailable
from livehub.live.chatlog import FLUSH_INTERVAL_S, ChatLog
from livehub.live.connection import CLOSE_GOING_AWAY, Connection, frame_of
from livehub.live.room import Room
from livehub.settings import Settings
from livehub.shop import streams
from livehub.tasks import Supervisor, cancel

log = logging.getLogger(__name__)

# How long an empty room stays subscribed on this node.
ROOM_GRACE_S = 10.0


class Hub:
    def __init__(self, backplane: Backplane, pool: asyncpg.Pool, settings: Settings, tasks: Supervisor):
        self.backplane = backplane
        self.tasks = tasks
        self.broker = backplane.broker
        self._pool = pool
        self._settings = settings
        self.rooms: dict[UUID, Room] = {}
        self._loading: dict[UUID, asyncio.Task] = {}
        self._releasing: dict[UUID, asyncio.Task] = {}
        self.users: dict[UUID, set[Connection]] = {}
        # Anonymous stream sockets per client address on this node.
        self._anonymous: collections.Counter[str] = collections.Counter()
        self.chatlog = ChatLog(pool, max_buffered=settings.chat_buffer_max)
        self._loops: list[asyncio.Task] = []

    async def start(self) -> None:
        self.backplane.notifier.on_notice(self._on_notice)
        self._loops = [
            self.tasks.every(FLUSH_INTERVAL_S, self.chatlog.flush, name="chat-archive"),
            self.tasks.every(self._settings.presence_interval_s, self._report_presence, name="presence"),
        ]

    async def close_connections(self) -> None:
        """Server going away: tell every viewer (1001), so clients reconnect to another node."""
        conns = {c for room in self.rooms.values() for c in room.connections} | {
            c for cs in self.users.values() for c in cs
        }
        await asyncio.gather(*(c.close(CLOSE_GOING_AWAY, "server going away") for c in conns))

    async def close(self) -> None:
        for loop in self._loops:
            await cancel(loop)
        for task in [*self._loading.values(), *self._releasing.values()]:
            task.cancel()
        await asyncio.gather(*self._loading.values(), *self._releasing.values(), return_exceptions=True)
        await asyncio.gather(*(room.stop() for room in self.rooms.values()), return_exceptions=True)
        self.rooms.clear()
        await self.chatlog.flush()  # what is left, before the pool closes

    # -- rooms -------------------------------------------------------------------------------------

    async def room(self, stream_id: UUID) -> Room | None:
        """This node's room for the stream, loaded on first use; None if there is no such stream."""
        if (room := self.rooms.get(stream_id)) is not None:
            return room
        if (releasing := self._releasing.get(stream_id)) is not None:
            await asyncio.shield(releasing)
        task = self._loading.get(stream_id)
        if task is None:
            task = self._loading[stream_id] = self.tasks.spawn(self._load(stream_id), name=f"room-load-{stream_id}")
            task.add_done_callback(lambda _: self._loading.pop(stream_id, None))
        # Thousands may arrive together for a cold room: they all wait on one load.
        return await asyncio.shield(task)

    async def _load(self, stream_id: UUID) -> Room | None:
        room = Room(
            stream_id,
            backplane=self.backplane,
            pool=self._pool,
            settings=self._settings,
            chatlog=self.chatlog,
            tasks=self.tasks,
        )
        if not await room.load():
            return None
        self.rooms[stream_id] = room
        return room

    async def admit(self, stream_id: UUID, user_id: UUID) -> tuple[str | None, bool]:
        """A signed-in viewer's display name, and whether the stream's seller has banned them."""
        name = await self._pool.fetchval("SELECT display_name FROM users WHERE id = $1", user_id)
        return name, await streams.is_banned(self._pool, stream_id, user_id)

    def take_anonymous(self, address: str) -> bool:
        """Count an anonymous socket from this address; False (and not counted) when the address is at
        `anonymous_sockets_per_address` on this node. Pair each True with `release_anonymous`."""
        if self._anonymous[address] >= self._settings.anonymous_sockets_per_address:
            return False
        self._anonymous[address] += 1
        return True

    def release_anonymous(self, address: str) -> None:
        self._anonymous[address] -= 1
        if self._anonymous[address] <= 0:
            del self._anonymous[address]

    def joined(self, room: Room | None, conn: Connection) -> None:
        (metrics.ME_SOCKETS if room is None else metrics.ROOM_SOCKETS).inc()
        if conn.user_id is not None:
            self.users.setdefault(conn.user_id, set()).add(conn)

    def left(self, room: Room | None, conn: Connection) -> None:
        (metrics.ME_SOCKETS if room is None else metrics.ROOM_SOCKETS).dec()
        if conn.user_id is not None and (conns := self.users.get(conn.user_id)) is not None:
            conns.discard(conn)
            if not conns:
                del self.users[conn.user_id]
        if room is None:
            return
        room.leave(conn)
        if not room.connections and room.id not in self._releasing and self.rooms.get(room.id) is room:
            task = self._releasing[room.id] = self.tasks.spawn(
                self._release_later(room), name=f"room-release-{room.id}"
            )
            task.add_done_callback(lambda _: self._releasing.pop(room.id, None))

    async def _release_later(self, room: Room) -> None:
        await asyncio.sleep(ROOM_GRACE_S)
        if room.connections:
            return
        del self.rooms[room.id]
        await room.stop()

    # -- for the REST side -------------------------------------------------------------------------

    async def stream_changed(self, stream_id: UUID, stream: dict) -> None:
        """Tell every viewer of the stream, on every node, that its status changed (live, ended)."""
        try:
            await self.broker.publish(str(stream_id), {"type": "stream_status", "stream": stream})
        except BrokerUnavailable:
            log.warning("stream %s changed while the broker is away; viewers see it on reconnect", stream_id)

    async def moderator_changed(self, stream_id: UUID, user_id: UUID, *, added: bool) -> None:
        """A host named or removed a moderator: rooms on every node update that user's role."""
        event = {"type": "moderation", "action": "moderator" if added else "unmoderator", "user_id": str(user_id)}
        try:
            await self.broker.publish(str(stream_id), event)
        except BrokerUnavailable:
            log.warning("moderators of %s changed while the broker is away; rooms see it on reload", stream_id)

    async def notify(self, user_ids: list[UUID], payload: dict) -> None:
        """Push a notification to those users wherever they are connected."""
        await self.backplane.notifier.notify([str(u) for u in user_ids], payload)

    async def viewer_counts(self, stream_ids: list[UUID]) -> dict[UUID, int]:
        """Viewers of each stream over all nodes."""
        return {sid: await self.backplane.presence.viewers(str(sid)) for sid in stream_ids}

    def _on_notice(self, user_ids: list[str], payload: dict) -> None:
        frame = None
        for uid in user_ids:
            for conn in self.users.get(UUID(uid), ()):
                frame = frame or frame_of(payload)
                conn.send_frame(frame)

    async def _report_presence(self) -> None:
        for room in list(self.rooms.values()):
            try:
                await room.report_presence()
            except Exception:  # one room's failure must not skip the others
                log.exception("room %s: presence failed", room.key)
