"""The backplane's interfaces: how what happens in a room reaches every node that has viewers in it.

Four small interfaces, each with an in-process implementation (local.py) and a Redis one (redis*.py);
`livehub.broker.open_backplane` builds the four of one kind together. tests/test_broker.py runs each
interface's contract suite against both implementations.

- `Broker`: a room's event stream: durable events with offsets and history, state events, subscriptions.
- `Presence`: how many viewers a room has over all nodes.
- `Counters`: a room's reaction totals, delivered through the room's event stream.
- `Notifier`: notifications to users wherever they are connected.

Handlers are plain functions called on the event loop; they must not block or await.
"""

import abc
from collections.abc import Callable
from dataclasses import dataclass

from livehub.errors import RateLimited, Unavailable

RoomHandler = Callable[[dict], None]
NoticeHandler = Callable[[list[str], dict], None]


class BrokerUnavailable(Unavailable):
    """The broker cannot take a durable event right now (Redis is away or too busy). Clients are told
    `unavailable` with a message of their own; `str()` keeps the cause for the log."""

    def __init__(self, reason: str = ""):
        super().__init__("the room cannot take that right now, try again")
        self.reason = reason

    def __str__(self) -> str:
        return self.reason or self.message


class BrokerBusy(RateLimited):
    """Redis is answering, but more durable events wait to go out on this node than its publish pipeline
    holds, and one waited past the busy bound for a place: the node is over its rate, not cut off. Clients
    are told `rate_limited`, never `unavailable`."""

    def __init__(self, reason: str = ""):
        super().__init__("the room is too busy right now, try again in a moment", retry_after_s=1)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason or self.message


@dataclass(frozen=True)
class Position:
    """Where a room stands: the offset of its last durable event (0 before any) and its epoch."""

    offset: int
    epoch: str


@dataclass(frozen=True)
class Subscription:
    """What a node needs to start serving a room: the kept history (oldest first), the position it ends
    at, and the room's reaction totals (from the Counters riding on the broker). The handler then receives
    exactly the events after `position`."""

    history: list[dict]
    position: Position
    reactions: dict[str, int]


class Broker(abc.ABC):
    """A room's event stream. Guarantees, for both implementations:

    - Durable events (`publish`) get a per-room offset that is gap-free (1, 2, 3, ...) and the room's
      epoch, the same on every node. A subscriber's handler sees each durable event of the room exactly
      once, in offset order. If continuity is lost (Redis lost its data, so the room has a new epoch; or
      a node was cut off longer than the history window), the handler first receives a `{"type": "reset",
      "offset", "epoch"}` marker: everything before it is unrecoverable, and the room must start again
      from there.
    - State events (`publish_state`, and the reaction totals of `Counters.add_reactions`) carry no offset
      and only matter as the latest value. They are delivered at most once, in order with the durable
      events of the same room; while Redis is away they reach this node's subscribers only.
    - History: the last `room_history_size` durable events of each room, for `?since=` recovery.
    - A node receives a room's events only while it is subscribed to it (it has viewers there).
    - Losing Redis never raises out of the broker's own tasks: `publish` raises `BrokerUnavailable`, the
      rest degrade to this node, and the broker reconnects with backoff, resubscribes, and fills any gap
      from the history (or sends `reset`). A node publishing faster than Redis takes it waits, and past a
      bound gets `BrokerBusy`, never `BrokerUnavailable`.
    - Publishing is idempotent for a while: publishing again under the same `publish_id` (a retry after a
      timeout or an `unavailable`) returns the first publish's event (same offset and epoch) and delivers
      nothing more, as long as the broker still remembers the id (Redis: `publish_id_ttl_s`, unless Redis
      lost its data meanwhile; in process: the last `PUBLISH_IDS_KEPT` ids).
    """

    node_id: str

    async def start(self) -> None:  # noqa: B027 (an optional hook)
        """Connect (Redis) and start background tasks."""

    async def close(self) -> None:  # noqa: B027 (an optional hook)
        """Stop background tasks and disconnect."""

    @abc.abstractmethod
    async def publish(self, room: str, event: dict, *, publish_id: str | None = None) -> dict:
        """Append a durable event to the room and deliver it to every subscribed node.
        Returns the event as delivered, with `offset` and `epoch` set. A `publish_id` (any short string
        unique to this event; by default a fresh one) makes a retry safe: see the guarantees above.
        Raises BrokerUnavailable (Redis away) or BrokerBusy (this node over its publish rate)."""

    @abc.abstractmethod
    async def publish_state(self, room: str, event: dict) -> None:
        """Deliver a state event (latest value wins, no offset) to every subscribed node. Never raises."""

    @abc.abstractmethod
    async def subscribe(self, room: str, handler: RoomHandler) -> Subscription:
        """Start receiving the room's events on this node. One handler per room and node."""

    @abc.abstractmethod
    async def unsubscribe(self, room: str) -> None:
        """Stop receiving the room's events here. Presence is separate: the room withdraws its viewer
        count itself (`Presence.withdraw`)."""

    @abc.abstractmethod
    async def history(self, room: str, since: int, epoch: str) -> list[dict] | None:
        """The durable events after offset `since`, or None when they cannot all be given: another
        epoch, or `since` older than the kept window."""


class Presence(abc.ABC):
    """Viewer counts over all nodes. Each node reports its own count per room; a count that is not
    reported again within the presence TTL (a crashed or cut-off node) drops out of the total. Nothing
    here raises: while Redis is away, a node answers from what it knew last."""

    @abc.abstractmethod
    async def set_viewers(self, room: str, local: int) -> int:
        """Report this node's viewers in the room; returns the total over all live nodes.
        While Redis is away, returns the last total it knew, at least `local`."""

    @abc.abstractmethod
    async def viewers(self, room: str) -> int:
        """The room's viewers over all live nodes, without reporting any."""

    @abc.abstractmethod
    async def withdraw(self, room: str) -> None:
        """This node no longer serves the room: its count leaves the total now rather than after the
        TTL. A room calls it when it unsubscribes (stops) on this node."""

    async def close(self) -> None:  # noqa: B027 (an optional hook)
        """Withdraw every count this node still reports (the node is shutting down)."""


class Counters(abc.ABC):
    """A room's reaction totals, summed over all nodes. They ride on the room's event stream: after each
    `add_reactions`, every node subscribed to the room receives `{"type": "reactions", "counts": totals}`
    through its room handler, as a state event (at most once, in order with the room's other events), and
    `Broker.subscribe` returns the totals of the moment in `Subscription.reactions`."""

    @abc.abstractmethod
    async def add_reactions(self, room: str, counts: dict[str, int]) -> None:
        """Add to the room's reaction totals and announce the new totals. Never raises: while Redis is
        away, the totals are this node's last known ones plus what it adds, announced on this node only."""


class Notifier(abc.ABC):
    """Notifications to users, wherever they are connected: every node's handler receives each notice
    (at most once; while Redis is away, this node's only) and delivers it to its own connections."""

    @abc.abstractmethod
    async def notify(self, user_ids: list[str], payload: dict) -> None:
        """Deliver a notification to those users wherever they are connected. Never raises."""

    @abc.abstractmethod
    def on_notice(self, handler: NoticeHandler) -> None:
        """Register the function that receives notifications on this node: (user_ids, payload)."""
