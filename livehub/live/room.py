"""A live room on this node: its viewers, its recent history and state, and the tick that feeds them.

Every change reaches the room as a broker event, whichever node it came from, so all nodes apply the
same events in the same order. Durable events (chat, pins, flash sales, moderation, status) carry the
room's gap-free offset and are kept for reconnect recovery; state events (viewers, reaction counts,
stock) keep only their latest value. Nothing is sent as it happens: every `tick_ms` the room encodes
one `events` frame with everything since the last tick and puts the same string on every viewer's queue.
"""

import asyncio
import collections
import logging
from datetime import UTC, datetime
from uuid import UUID, uuid4

import asyncpg

from livehub.broker import Backplane, Subscription
from livehub.errors import Conflict, Forbidden, NotFound, RateLimited, Unauthorized, ValidationFailed
from livehub.live import protocol
from livehub.live.chatlog import ChatLog
from livehub.live.checkout import Checkout
from livehub.live.connection import CLOSE_BANNED, Connection, frame_of
from livehub.live.moderation import ChatRules, TokenBucket, UserLimits
from livehub.settings import Settings
from livehub.shop import streams

log = logging.getLogger(__name__)

STAFF = ("host", "moderator")


class Room:
    def __init__(
        self, stream_id: UUID, *, backplane: Backplane, pool: asyncpg.Pool, settings: Settings, chatlog: ChatLog
    ):
        self.id = stream_id
        self.key = str(stream_id)
        self._broker = backplane.broker
        self._presence = backplane.presence
        self._counters = backplane.counters
        self._pool = pool
        self._settings = settings
        self._chatlog = chatlog
        self.connections: set[Connection] = set()
        self.offset = 0
        self.epoch = ""
        self.history: collections.deque[dict] = collections.deque(maxlen=settings.room_history_size)
        self.recent_chat: collections.deque[dict] = collections.deque(maxlen=settings.recent_chat)
        self.stream: dict = {}
        self.host_id = ""
        self.moderators: set[str] = set()
        self.pinned: dict | None = None
        self.flash_sale: dict | None = None
        self.viewers = 0
        self.reactions: dict[str, int] = {}
        self.rules = ChatRules(max_chars=settings.chat_max_chars)
        self._variants: dict[str, dict] = {}  # variant id -> its dict inside self.stream's products
        self._loaded = False
        self._early: list[dict] = []
        self._pending: list[dict] = []
        self._state: dict[str, dict] = {}
        self._joined: dict[Connection, int] = {}
        self._limits: dict[UUID, UserLimits] = {}
        self._checkouts: dict[UUID, Checkout] = {}
        self._reaction_delta: collections.Counter[str] = collections.Counter()
        # Stats not yet written: new viewer keys, product clicks, reactions counted on this node.
        self._seen: set[str] = set()
        self._new_viewer_keys: set[str] = set()
        self._clicks: collections.Counter[str] = collections.Counter()
        self._stat_reactions: collections.Counter[str] = collections.Counter()
        self._recorded_peak = 0
        self._flash_timer: asyncio.TimerHandle | None = None
        self._tick_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def load(self) -> bool:
        """Subscribe, then read the stream: an event published in between is applied on top of the
        snapshot rather than lost. False when there is no such stream."""
        subscription = await self._broker.subscribe(self.key, self._on_event)
        snapshot = await streams.room_snapshot(self._pool, self.id)
        if snapshot is None:
            await self._broker.unsubscribe(self.key)
            return False
        self._apply_snapshot(snapshot, subscription)
        self._loaded = True
        early, self._early = self._early, []
        for event in early:
            self._on_event(event)
        self._tick_task = asyncio.create_task(self._tick())
        return True

    async def stop(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
        if self._flash_timer is not None:
            self._flash_timer.cancel()
        await self._broker.unsubscribe(self.key)
        await self._presence.withdraw(self.key)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _apply_snapshot(self, snapshot: dict, subscription: Subscription) -> None:
        self.stream = snapshot["stream"]
        self.host_id = str(self.stream["host_id"])
        self._variants = {str(v["id"]): v for p in self.stream["products"] for v in p["variants"]}
        pinned = self.stream.get("pinned_product_id")
        self.pinned = next((p for p in self.stream["products"] if str(p["id"]) == str(pinned)), None)
        self.moderators = {str(m) for m in snapshot["moderators"]}
        self.rules.slow_mode_s = snapshot["slow_mode_s"]
        self.rules.block_words(snapshot["blocked_words"])
        self.rules.timeouts = {str(u): _as_datetime(t) for u, t in snapshot["timeouts"].items()}
        self._set_flash_sale(snapshot["flash_sale"])
        self.offset = subscription.position.offset
        self.epoch = subscription.position.epoch
        self.reactions = dict(subscription.reactions)
        self.history.clear()
        self.recent_chat.clear()
        for event in subscription.history:
            self._remember(_for_client(event))

    # -- viewers -----------------------------------------------------------------------------------

    def join(self, conn: Connection, *, since: int | None, epoch: str | None) -> None:
        """Send the welcome (and what the viewer missed, when recoverable), then start feeding it."""
        missed = self._missed(since, epoch)
        conn.role = self.role_of(conn)
        conn.send(self.welcome(conn, recovered=missed is not None))
        if missed:
            conn.send({"type": "events", "events": missed})
        self.connections.add(conn)
        if self._pending:
            # The welcome already reflects the events waiting for the next tick; this viewer skips them.
            self._joined[conn] = self.offset
        if conn.user_id is not None:
            limits = self._limits.get(conn.user_id)
            if limits is None:
                s = self._settings
                limits = self._limits[conn.user_id] = UserLimits(
                    TokenBucket(s.chat_rate_per_s, s.chat_burst),
                    TokenBucket(s.reactions_per_s, 2 * s.reactions_per_s),
                )
            limits.connections += 1
        if conn.viewer_key not in self._seen:
            self._seen.add(conn.viewer_key)
            self._new_viewer_keys.add(conn.viewer_key)

    def leave(self, conn: Connection) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        self._joined.pop(conn, None)
        if conn.user_id is not None and (limits := self._limits.get(conn.user_id)) is not None:
            limits.connections -= 1
            if limits.connections <= 0:
                del self._limits[conn.user_id]

    def role_of(self, conn: Connection) -> str:
        if conn.user_id is None:
            return "anonymous"
        uid = str(conn.user_id)
        if uid == self.host_id:
            return "host"
        if uid in self.moderators or conn.is_admin:
            return "moderator"
        return "viewer"

    def welcome(self, conn: Connection, *, recovered: bool) -> dict:
        return {
            "type": "welcome",
            "stream": self.stream,
            "you": {"user_id": conn.user_id, "role": conn.role},
            "state": {
                "pinned": self.pinned,
                "flash_sale": self.flash_sale,
                "viewers": self.viewers,
                "reactions": self.reactions,
                "slow_mode_s": self.rules.slow_mode_s,
            },
            "recent": list(self.recent_chat),
            "offset": self.offset,
            "epoch": self.epoch,
            "recovered": recovered,
        }

    def _missed(self, since: int | None, epoch: str | None) -> list[dict] | None:
        if since is None or epoch != self.epoch or since > self.offset:
            return None
        first = self.history[0]["offset"] if self.history else self.offset + 1
        if since < first - 1:
            return None
        return [e for e in self.history if e["offset"] > since]

    # -- events from the broker --------------------------------------------------------------------

    def _on_event(self, event: dict) -> None:
        if not self._loaded:
            self._early.append(event)
            return
        kind = event["type"]
        if kind == "reset":
            self._reset(event)
        elif "offset" in event:
            if event["offset"] <= self.offset and event.get("epoch") == self.epoch:
                return  # already in the snapshot this room loaded
            self.offset = event["offset"]
            event = _for_client(event)
            self._apply(event)
            self._remember(event)
            self._pending.append(event)
        else:
            self._apply_state(event)

    def _remember(self, event: dict) -> None:
        self.history.append(event)
        if event["type"] == "chat":
            self.recent_chat.append(event)

    def _apply(self, event: dict) -> None:
        kind = event["type"]
        if kind == "chat_deleted":
            gone = event["message_id"]
            self.recent_chat = collections.deque(
                (m for m in self.recent_chat if m["id"] != gone), maxlen=self.recent_chat.maxlen
            )
        elif kind == "pin":
            # Keep the room's own copy of the product, which stock events keep current.
            pinned = event["product"]
            for variant in pinned["variants"]:
                if (mine := self._variants.get(str(variant["id"]))) is not None:
                    mine["available"] = variant["available"]
            self.pinned = next((p for p in self.stream["products"] if str(p["id"]) == str(pinned["id"])), pinned)
        elif kind == "unpin":
            self.pinned = None
        elif kind == "flash_sale":
            self._set_flash_sale(event["flash_sale"])
        elif kind == "stream_status":
            self.stream = {**self.stream, **{k: v for k, v in event["stream"].items() if k != "products"}}
            if self.stream["status"] != "live":
                self.pinned = None
                self._set_flash_sale(None)
        elif kind == "moderation":
            self._apply_moderation(event)

    def _apply_state(self, event: dict) -> None:
        kind = event["type"]
        if kind == "reactions":
            self.reactions = event["counts"]
            self._state["reactions"] = event
        elif kind == "stock":
            if (variant := self._variants.get(str(event["variant_id"]))) is not None:
                variant["available"] = event["stock"]
            if self.flash_sale is not None and str(self.flash_sale["variant_id"]) == str(event["variant_id"]):
                if event.get("flash_remaining") is not None:
                    self.flash_sale["remaining"] = event["flash_remaining"]
            self._state[f"stock:{event['variant_id']}"] = {
                "type": "stock",
                "variant_id": event["variant_id"],
                "available": event["available"],
            }

    def _apply_moderation(self, event: dict) -> None:
        action = event["action"]
        if action == "ban":
            for conn in list(self.connections):
                if str(conn.user_id) == event["user_id"]:
                    conn.close_soon(CLOSE_BANNED, "banned by the host")
        elif action == "timeout":
            self.rules.timeouts[event["user_id"]] = _as_datetime(event["until"])
        elif action == "slow_mode":
            self.rules.slow_mode_s = event["seconds"]
        elif action == "block_words":
            self._spawn(self._reload_blocked_words())
        elif action in ("moderator", "unmoderator"):
            (self.moderators.add if action == "moderator" else self.moderators.discard)(event["user_id"])
            for conn in self.connections:
                if str(conn.user_id) == event["user_id"]:
                    conn.role = self.role_of(conn)

    async def _reload_blocked_words(self) -> None:
        snapshot = await streams.room_snapshot(self._pool, self.id)
        if snapshot is not None:
            self.rules.block_words(snapshot["blocked_words"])

    def _reset(self, event: dict) -> None:
        """The broker lost continuity (Redis lost its data, or this node was cut off too long): start a
        new history from here and give every viewer a fresh welcome."""
        log.warning("room %s: event history reset (epoch %s -> %s)", self.key, self.epoch, event["epoch"])
        self.offset = event["offset"]
        self.epoch = event["epoch"]
        self.history.clear()
        self._pending = []
        self._joined.clear()
        for conn in self.connections:
            conn.send(self.welcome(conn, recovered=False))

    def _set_flash_sale(self, sale: dict | None) -> None:
        if self._flash_timer is not None:
            self._flash_timer.cancel()
            self._flash_timer = None
        if sale is None or sale.get("ended"):
            self.flash_sale = None
            return
        self.flash_sale = dict(sale)
        delay = (_as_datetime(sale["ends_at"]) - datetime.now(UTC)).total_seconds()
        self._flash_timer = asyncio.get_running_loop().call_later(
            max(0.0, delay), lambda: self._spawn(self._end_flash_sale(UUID(str(sale["id"])), "time"))
        )

    async def _end_flash_sale(self, sale_id: UUID, reason: str) -> None:
        # Every node with viewers runs this timer; the database lets exactly one of them end the sale.
        sale = await streams.end_flash_sale(self._pool, sale_id, reason)
        if sale is not None:
            await self._publish({"type": "flash_sale", "flash_sale": sale})

    # -- the tick ----------------------------------------------------------------------------------

    async def _tick(self) -> None:
        interval = self._settings.tick_ms / 1000
        while True:
            # A whole tick after each flush, however long the flush took: under load the period stretches
            # and each frame carries more, which keeps the per-viewer writes per second down. (Keeping a
            # fixed beat instead was measured: worse p99 at 5,000 and 10,000 viewers; docs/BENCHMARKS.md.)
            await asyncio.sleep(interval)
            try:
                self.flush()
            except Exception:  # a bug in one tick must not silence the room for good
                log.exception("room %s: tick failed", self.key)

    def flush(self) -> None:
        """Send every viewer one frame with everything since the last one."""
        if self._reaction_delta:
            delta, self._reaction_delta = dict(self._reaction_delta), collections.Counter()
            self._stat_reactions.update(delta)
            self._spawn(self._counters.add_reactions(self.key, delta))
        if not self._pending and not self._state:
            return
        events = self._pending + list(self._state.values())
        self._pending = []
        self._state = {}
        frame = frame_of({"type": "events", "events": events})
        joined, self._joined = self._joined, {}
        for conn in self.connections:
            if joined and conn in joined:
                seen = joined[conn]
                own = [e for e in events if e.get("offset", seen + 1) > seen]
                conn.send({"type": "events", "events": own})
            else:
                conn.send_frame(frame)

    async def report_presence(self) -> None:
        """Aggregate viewers over the nodes; write this node's new stats. Called by the hub every
        `presence_interval_s`."""
        total = await self._presence.set_viewers(self.key, len(self.connections))
        if total != self.viewers:
            self.viewers = total
            self._state["viewers"] = {"type": "viewers", "count": total}
        if self.stream.get("status") != "live":
            return
        if not (self._new_viewer_keys or self._clicks or self._stat_reactions or total > self._recorded_peak):
            return  # nothing new: no write
        keys, self._new_viewer_keys = self._new_viewer_keys, set()
        clicks, self._clicks = self._clicks, collections.Counter()
        reactions, self._stat_reactions = self._stat_reactions, collections.Counter()
        try:
            await streams.record_presence(
                self._pool,
                self.id,
                viewers=total,
                viewer_keys=list(keys),
                clicks={UUID(k): n for k, n in clicks.items()},
                reactions=dict(reactions),
            )
            self._recorded_peak = max(self._recorded_peak, total)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("room %s: writing stats failed, kept for the next round: %r", self.key, exc)
            self._new_viewer_keys |= keys
            self._clicks.update(clicks)
            self._stat_reactions.update(reactions)

    # -- what viewers do ---------------------------------------------------------------------------

    async def chat(self, conn: Connection, text: str) -> dict:
        user_id = _signed_in(conn)
        limits = self._limits[user_id]
        self.rules.check(text, str(user_id), limits, exempt=conn.role in STAFF, now=datetime.now(UTC))
        event = await self._publish(
            {
                "type": "chat",
                "id": str(uuid4()),
                "user": {"id": str(user_id), "name": conn.name, "role": conn.role},
                "text": text,
                "at": datetime.now(UTC).isoformat(),
            }
        )
        self._chatlog.add(self.id, event)
        return event

    def react(self, conn: Connection, kind: str) -> None:
        user_id = _signed_in(conn)
        if not self._limits[user_id].reactions.take():
            raise RateLimited("too many reactions, slow down")
        self._reaction_delta[kind] += 1

    def click(self, conn: Connection, product_id: UUID) -> None:
        if any(str(p["id"]) == str(product_id) for p in self.stream["products"]):
            self._clicks[str(product_id)] += 1

    async def buy(self, conn: Connection, frame: protocol.Buy) -> dict:
        user_id = _signed_in(conn)
        if str(frame.variant_id) not in self._variants:
            raise NotFound("this variant is not featured in the stream")
        if self.stream["status"] != "live":
            raise Conflict("the stream is not live")
        checkout = self._checkouts.get(frame.variant_id)
        if checkout is None:
            checkout = self._checkouts[frame.variant_id] = Checkout(
                self._pool, self._settings, self.id, frame.variant_id, self._settled
            )
        return await checkout.buy(user_id, frame.quantity, frame.request_id, frame.flash_sale_id)

    def _settled(self, variant_id: UUID, result: dict) -> None:
        """After a batch: one stock update for the room, and the end of a flash sale it sold out."""
        sale = result.get("flash_sale")
        stock = result["available"]
        remaining = sale["remaining"] if sale is not None and not sale["ended"] else None
        event = {
            "type": "stock",
            "variant_id": str(variant_id),
            "stock": stock,
            "flash_remaining": remaining,
            # What a buyer can get now: the flash sale's units while it runs, else the stock.
            "available": stock if remaining is None else min(stock, remaining),
        }
        self._spawn(self._broker.publish_state(self.key, event))
        if sale is not None and sale["ended"]:
            # This batch ended the sale (later batches no longer see it), so this node announces it.
            known = self.flash_sale if self.flash_sale and str(self.flash_sale["id"]) == str(sale["id"]) else {}
            ended = {
                **known,
                "id": sale["id"],
                "variant_id": str(variant_id),
                "remaining": 0,
                "ended": True,
                "ended_reason": "sold_out",
            }
            self._spawn(self._publish({"type": "flash_sale", "flash_sale": ended}))

    async def pin(self, conn: Connection, product_id: UUID | None) -> dict:
        actor = _staff(conn)
        product = await streams.pin_product(self._pool, self.id, actor, product_id)
        if product is None:
            return await self._publish({"type": "unpin"})
        return await self._publish({"type": "pin", "product": product})

    async def start_flash_sale(self, conn: Connection, frame: protocol.FlashSale) -> dict:
        actor = _staff(conn)
        limit = frame.per_buyer_limit or self._settings.flash_sale_per_buyer_limit
        sale = await streams.start_flash_sale(
            self._pool,
            self.id,
            actor,
            variant_id=frame.variant_id,
            price_cents=frame.price_cents,
            quantity=frame.quantity,
            duration_s=frame.duration_s,
            per_buyer_limit=limit,
        )
        return await self._publish({"type": "flash_sale", "flash_sale": sale})

    async def end_flash_sale(self, conn: Connection) -> dict:
        actor = _staff(conn)
        sale = await streams.end_flash_sale_by_host(self._pool, self.id, actor)
        if sale is None:
            raise Conflict("no flash sale is running")
        return await self._publish({"type": "flash_sale", "flash_sale": sale})

    async def moderate(self, conn: Connection, frame: protocol.Moderate) -> dict:
        actor = _staff(conn)
        action = frame.action
        if action == "delete":
            message_id = _required(frame.message_id, "message_id")
            event = await self._publish({"type": "chat_deleted", "message_id": str(message_id)})
            self._chatlog.delete(message_id, actor)
            return event
        if action == "slow_mode":
            seconds = _required(frame.seconds, "seconds")
            await streams.set_slow_mode(self._pool, self.id, actor, seconds)
            return await self._publish({"type": "moderation", "action": "slow_mode", "seconds": seconds})
        if action == "block_words":
            words = await streams.set_blocked_words(self._pool, self.id, actor, _required(frame.words, "words"))
            return await self._publish({"type": "moderation", "action": "block_words", "count": len(words)})
        user_id = _required(frame.user_id, "user_id")
        event = {"type": "moderation", "action": action, "user_id": str(user_id)}
        if action == "ban":
            await streams.ban_user(self._pool, self.id, actor, user_id, frame.reason)
        elif action == "unban":
            await streams.unban_user(self._pool, self.id, actor, user_id)
        elif action == "timeout":
            until = await streams.timeout_user(self._pool, self.id, actor, user_id, _required(frame.seconds, "seconds"))
            event["until"] = _as_datetime(until).isoformat()
        return await self._publish(event)

    async def _publish(self, event: dict) -> dict:
        return await self._broker.publish(self.key, event)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("room %s: background step failed: %r", self.key, exc)


def _signed_in(conn: Connection) -> UUID:
    if conn.user_id is None:
        raise Unauthorized("sign in to do that")
    return conn.user_id


def _staff(conn: Connection) -> UUID:
    user_id = _signed_in(conn)
    if conn.role not in STAFF:
        raise Forbidden("only the host and moderators can do that")
    return user_id


def _required(value, name: str):
    if value is None:
        raise ValidationFailed(f"{name} is required for this action")
    return value


def _for_client(event: dict) -> dict:
    # Every event of a room shares the epoch; the welcome frame carries it once.
    return {k: v for k, v in event.items() if k != "epoch"}


def _as_datetime(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
