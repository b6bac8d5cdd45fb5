"""A room's audience on this node: reactions on their way to the shared totals, and the figures for the
stream's stats (unique viewers, product clicks, reactions, peak viewers) until they are written.

Reactions are counted here and leave once per tick as one increment per kind, never one message per tap.
Stats are written every `presence_interval_s` only when something changed; a failed write keeps them
for the next round.

Figures count people, not sockets or frames: a viewer key is a user id, or one anonymous client (see
livehub/live/ws.py), and a product click counts once per viewer key and product per `click_window_s`.
"""

import collections
import logging
import time
from uuid import UUID

import asyncpg

from livehub.shop import streams

log = logging.getLogger(__name__)


class Audience:
    def __init__(self, stream_id: UUID, pool: asyncpg.Pool, *, click_window_s: float = 60.0):
        self._stream_id = stream_id
        self._pool = pool
        self._seen: set[str] = set()
        self._new_viewer_keys: set[str] = set()
        self._clicks: collections.Counter[str] = collections.Counter()
        self._click_window_s = click_window_s
        # (viewer key, product id) -> when its click last counted; entries older than the window are pruned.
        self._counted: dict[tuple[str, str], float] = {}
        self._pruned_at = time.monotonic()
        self._reactions: collections.Counter[str] = collections.Counter()  # for the stats, not yet written
        self._reaction_delta: collections.Counter[str] = collections.Counter()  # for the totals, this tick
        self._recorded_peak = 0

    def saw(self, viewer_key: str) -> None:
        """A viewer joined (a user id, or a hash of an anonymous viewer's address)."""
        if viewer_key not in self._seen:
            self._seen.add(viewer_key)
            self._new_viewer_keys.add(viewer_key)

    def click(self, viewer_key: str, product_id: str) -> bool:
        """A viewer opened a product's card; whether it counted (once per person and product per window)."""
        now = time.monotonic()
        if now - self._pruned_at > self._click_window_s:
            # Dicts keep insertion order and a counted click is re-inserted, so the oldest come first.
            self._pruned_at = now
            while self._counted:
                key, at = next(iter(self._counted.items()))
                if now - at <= self._click_window_s:
                    break
                del self._counted[key]
        key = (viewer_key, product_id)
        if (at := self._counted.get(key)) is not None and now - at <= self._click_window_s:
            return False
        self._counted.pop(key, None)
        self._counted[key] = now
        self._clicks[product_id] += 1
        return True

    def react(self, kind: str) -> None:
        self._reaction_delta[kind] += 1

    def take_reactions(self) -> dict[str, int] | None:
        """This tick's reactions, to add to the room's totals (and counted for the stats)."""
        if not self._reaction_delta:
            return None
        delta, self._reaction_delta = dict(self._reaction_delta), collections.Counter()
        self._reactions.update(delta)
        return delta

    async def record(self, viewers: int) -> None:
        """Write what is new since the last call: the viewer count (a new peak is kept), viewer keys, clicks
        and reactions."""
        if not (self._new_viewer_keys or self._clicks or self._reactions or viewers > self._recorded_peak):
            return  # nothing new: no write
        keys, self._new_viewer_keys = self._new_viewer_keys, set()
        clicks, self._clicks = self._clicks, collections.Counter()
        reactions, self._reactions = self._reactions, collections.Counter()
        try:
            await streams.record_presence(
                self._pool,
                self._stream_id,
                viewers=viewers,
                viewer_keys=list(keys),
                clicks={UUID(k): n for k, n in clicks.items()},
                reactions=dict(reactions),
            )
            self._recorded_peak = max(self._recorded_peak, viewers)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("stream %s: writing stats failed, kept for the next round: %r", self._stream_id, exc)
            self._new_viewer_keys |= keys
            self._clicks.update(clicks)
            self._reactions.update(reactions)
