"""A room's state and how events change it: a reducer with no sockets, no database and no clock of its own.

Every node applies the same events in the same order (the broker's offsets), so every node's state is the
same. `apply` takes a durable event and returns what the room must then do beyond its own state (close a
banned user's sockets, update someone's role, reload the blocked words, tell the show formats that the
stream ended): effects as data, carried out by the room.
"""

import collections
from dataclasses import dataclass
from datetime import datetime

from livehub.live.moderation import ChatRules


@dataclass(frozen=True)
class Kick:
    """Close this user's connections: banned."""

    user_id: str


@dataclass(frozen=True)
class RoleChanged:
    """This user's role in the room changed (named or removed as a moderator)."""

    user_id: str


@dataclass(frozen=True)
class ReloadBlockedWords:
    """The blocked words changed; events carry only their count, the list is in the database."""


@dataclass(frozen=True)
class StreamEnded:
    """The stream is no longer live: whatever runs in it stops."""


Effect = Kick | RoleChanged | ReloadBlockedWords | StreamEnded


class RoomState:
    def __init__(self, *, history_size: int, recent_chat: int, max_chat_chars: int):
        self.stream: dict = {}
        self.host_id = ""
        self.moderators: set[str] = set()
        self.pinned: dict | None = None
        self.variants: dict[str, dict] = {}  # variant id -> its dict inside stream's products
        self.rules = ChatRules(max_chars=max_chat_chars)
        self.offset = 0
        self.epoch = ""
        self.history: collections.deque[dict] = collections.deque(maxlen=history_size)
        self.recent_chat: collections.deque[dict] = collections.deque(maxlen=recent_chat)
        self.reactions: dict[str, int] = {}
        self.viewers = 0

    def load(self, snapshot: dict, *, offset: int, epoch: str, history: list[dict], reactions: dict) -> None:
        """The state from the database's room snapshot and the broker's position and history."""
        self.stream = snapshot["stream"]
        self.host_id = _host_of(self.stream)
        self.variants = {str(v["id"]): v for p in self.stream["products"] for v in p["variants"]}
        self.pinned = self.product(self.stream.get("pinned_product_id"))
        self.moderators = {str(m) for m in snapshot["moderators"]}
        self.rules.slow_mode_s = snapshot["slow_mode_s"]
        self.rules.block_words(snapshot["blocked_words"])
        self.rules.timeouts = {str(u): as_datetime(t) for u, t in snapshot["timeouts"].items()}
        self.offset, self.epoch = offset, epoch
        self.reactions = dict(reactions)
        self.history.clear()
        self.recent_chat.clear()
        for event in history:
            self.remember(for_client(event))

    @property
    def live(self) -> bool:
        return self.stream.get("status") == "live"

    def product(self, product_id) -> dict | None:
        return next((p for p in self.stream["products"] if str(p["id"]) == str(product_id)), None)

    def role_of(self, user_id, *, is_admin: bool = False) -> str:
        if user_id is None:
            return "anonymous"
        uid = str(user_id)
        if uid == self.host_id:
            return "host"
        if uid in self.moderators or is_admin:
            return "moderator"
        return "viewer"

    # -- durable events ----------------------------------------------------------------------------

    def is_new(self, event: dict) -> bool:
        """False for an event the snapshot already holds (published between subscribe and snapshot)."""
        return not (event["offset"] <= self.offset and event.get("epoch") == self.epoch)

    def apply(self, event: dict) -> list[Effect]:
        """A durable event (offset set, epoch stripped): move the offset, keep it for recovery, change
        the state. Returns the effects for the room."""
        self.offset = event["offset"]
        self.remember(event)
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
                if (mine := self.variants.get(str(variant["id"]))) is not None:
                    mine["available"] = variant["available"]
            self.pinned = self.product(pinned["id"]) or pinned
            # Pictures added since the show started come with the pin (later joiners see them too).
            if "images" in pinned:
                self.pinned["images"] = pinned["images"]
        elif kind == "unpin":
            self.pinned = None
        elif kind == "stream_status":
            was_live = self.live
            self.stream = {**self.stream, **{k: v for k, v in event["stream"].items() if k != "products"}}
            # A guest host (re)invited, accepted or replaced: both users' roles change (api/hosts.py).
            host, self.host_id = self.host_id, _host_of(self.stream)
            effects: list[Effect] = [RoleChanged(u) for u in {host, self.host_id} - {""} if host != self.host_id]
            if not self.live:
                self.pinned = None
                # (A scheduled stream's host changing ends nothing: nothing runs before it is live.)
                return [*effects, StreamEnded()] if was_live or self.stream.get("status") == "ended" else effects
            return effects
        elif kind == "moderation":
            return self._moderate(event)
        return []

    def _moderate(self, event: dict) -> list[Effect]:
        action = event["action"]
        if action == "ban":
            return [Kick(event["user_id"])]
        if action == "timeout":
            self.rules.timeouts[event["user_id"]] = as_datetime(event["until"])
        elif action == "slow_mode":
            self.rules.slow_mode_s = event["seconds"]
        elif action == "block_words":
            return [ReloadBlockedWords()]
        elif action in ("moderator", "unmoderator"):
            (self.moderators.add if action == "moderator" else self.moderators.discard)(event["user_id"])
            return [RoleChanged(event["user_id"])]
        return []

    def remember(self, event: dict) -> None:
        self.history.append(event)
        if event["type"] == "chat":
            self.recent_chat.append(event)

    def reset(self, offset: int, epoch: str) -> None:
        """The broker lost continuity: a new history starts here."""
        self.offset, self.epoch = offset, epoch
        self.history.clear()

    def missed(self, since: int | None, epoch: str | None) -> list[dict] | None:
        """The durable events after `since`, or None when they cannot all be given (another epoch, or
        older than the kept history)."""
        if since is None or epoch != self.epoch or since > self.offset:
            return None
        first = self.history[0]["offset"] if self.history else self.offset + 1
        if since < first - 1:
            return None
        return [e for e in self.history if e["offset"] > since]

    # -- state events ------------------------------------------------------------------------------

    def apply_state(self, event: dict) -> dict | None:
        """A state event (latest value wins). Returns what viewers get of it, if anything."""
        kind = event["type"]
        if kind == "reactions":
            self.reactions = event["counts"]
            return event
        if kind == "stock":
            if (variant := self.variants.get(str(event["variant_id"]))) is not None:
                variant["available"] = event["stock"]
            return {"type": "stock", "variant_id": event["variant_id"], "available": event["available"]}
        if kind == "viewers":
            self.viewers = event["count"]
            return event
        return None


def for_client(event: dict) -> dict:
    # Every event of a room shares the epoch; the welcome frame carries it once.
    return {k: v for k, v in event.items() if k != "epoch"}


def as_datetime(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _host_of(stream: dict) -> str:
    """Who hosts the room: its host_id once the host accepted (a guest host invited, or who declined, is
    nobody's host yet: storage/functions/hosts.sql); "" for nobody."""
    return str(stream["host_id"]) if stream.get("host_status", "accepted") == "accepted" else ""
