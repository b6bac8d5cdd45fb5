"""Interactive show formats: each one module that plugs into a live room.

A format declares the client frames it takes (its commands), the durable events it publishes, its part
of the welcome snapshot, and keeps its own timers. The room core dispatches to it by frame and event type
and never names it. Anything that decides who wins or pays is a storage function, so that every node
agrees and the database settles a sale exactly once; a format's in-memory state is only what every node
learns from the room's events.

To add a format: write a module with a `ShowFormat` subclass, add it to `FORMATS`, and extend
`room_snapshot()` in storage/functions/streams.sql with its running state under the format's `key`.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from livehub.live.protocol import Event, Frame

if TYPE_CHECKING:
    from livehub.live.connection import Connection
    from livehub.live.room import Room

# A command: (connection, frame) -> the reply frame for that connection, or None.
Handler = Callable[["Connection", Any], Awaitable[dict | None]]


class ShowFormat(abc.ABC):
    key: ClassVar[str]  # its part of the welcome frame's `state`, and of room_snapshot()
    frames: ClassVar[tuple[type[Frame], ...]]
    events: ClassVar[tuple[type[Event], ...]]

    def __init__(self, room: Room):
        self.room = room

    @abc.abstractmethod
    def handlers(self) -> dict[type[Frame], Handler]:
        """Its commands: frame class -> handler."""

    @abc.abstractmethod
    def load(self, snapshot: dict) -> None:
        """Take its state from the room's snapshot (`snapshot[self.key]`) when the room loads."""

    @abc.abstractmethod
    def snapshot(self) -> Any:
        """Its part of the welcome frame's `state`."""

    @abc.abstractmethod
    def apply(self, event: dict) -> None:
        """One of its durable events, on every node with viewers, in the room's order."""

    def on_state(self, event: dict) -> None:  # noqa: B027 (an optional hook)
        """A state event of the room (`stock`, ...), after the room applied it."""

    def settled(self, variant_id: UUID, result: dict, stock: dict) -> None:  # noqa: B027
        """A purchase batch of the variant settled on this node: `result` is buy_batch's answer; `stock` is
        the state event about to be published, which the format may amend."""

    def stream_ended(self) -> None:  # noqa: B027 (an optional hook)
        """The stream is no longer live."""

    def stop(self) -> None:  # noqa: B027 (an optional hook)
        """The room is going away on this node: cancel timers."""


def all_formats() -> tuple[type[ShowFormat], ...]:
    """Every show format a room runs."""
    from livehub.live.formats.auction import Auctions
    from livehub.live.formats.flash_sale import FlashSales
    from livehub.live.formats.giveaway import Giveaways

    return (FlashSales, Giveaways, Auctions)
