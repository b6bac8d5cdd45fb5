"""Chat rules a room applies before publishing a message: rate limits, slow mode, timeouts, blocked words.

Bans, timeouts, slow mode and blocked words are stored by storage/functions/streams.sql (the host and
moderators change them); every node's room keeps a copy in memory, refreshed by `moderation` events, so
checking a message never waits on the database.
"""

import re
import time
from dataclasses import dataclass, field
from datetime import datetime

from livehub.errors import Forbidden, RateLimited, ValidationFailed


class TokenBucket:
    """`rate` per second sustained, `burst` at once."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float):
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class UserLimits:
    """One user's budget in one room on this node, shared by all of that user's tabs."""

    chat: TokenBucket
    reactions: TokenBucket
    last_chat: float = 0.0
    connections: int = 0


@dataclass
class ChatRules:
    max_chars: int
    slow_mode_s: int = 0
    timeouts: dict[str, datetime] = field(default_factory=dict)
    _blocked: re.Pattern | None = None

    def block_words(self, words: list[str]) -> None:
        self._blocked = (
            re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE)
            if words
            else None
        )

    def check(self, text: str, user_id: str, limits: UserLimits, *, exempt: bool, now: datetime) -> None:
        """Raise Forbidden, RateLimited or ValidationFailed when this message may not be sent now."""
        if len(text) > self.max_chars:
            raise ValidationFailed(f"a message is at most {self.max_chars} characters")
        if not text.strip():
            raise ValidationFailed("a message needs some text")
        until = self.timeouts.get(user_id)
        if until is not None and until > now:
            raise Forbidden("you are timed out", {"until": until.isoformat()})
        if self._blocked is not None and self._blocked.search(text):
            raise ValidationFailed("the message contains a word the host has blocked")
        if not exempt and self.slow_mode_s:
            wait = limits.last_chat + self.slow_mode_s - time.monotonic()
            if wait > 0:
                raise RateLimited(
                    f"slow mode: one message every {self.slow_mode_s} s",
                    {"retry_after_s": round(wait, 1)},
                )
        if not limits.chat.take():
            raise RateLimited("too many messages, slow down")
        limits.last_chat = time.monotonic()
