"""Notifications over Redis: one node-wide channel, read over the broker's pub/sub connection."""

from livehub import jsonx
from livehub.broker.base import NoticeHandler, Notifier
from livehub.broker.redis import RedisBroker
from livehub.broker.redis_link import DOWN, RedisLink


class RedisNotifier(Notifier):
    """Every node listens on `{prefix}:notices` (`RedisBroker.listen`); a notice published there reaches
    each node's handler from its broker's dispatcher."""

    def __init__(self, link: RedisLink, broker: RedisBroker):
        self._link, self._broker = link, broker
        self._channel = link.channel("notices")
        self._handler: NoticeHandler | None = None
        broker.listen(self._channel, self._received)

    async def notify(self, user_ids: list[str], payload: dict) -> None:
        body = jsonx.dumps({"u": user_ids, "p": payload})
        try:
            await self._link.client.publish(self._channel, body)
            if self._broker.live:
                return  # this node gets it back from the channel
        except DOWN as exc:
            self._link.down(exc, "notify")
        self._broker.loop_back(self._channel, body)

    def on_notice(self, handler: NoticeHandler) -> None:
        self._handler = handler

    def _received(self, data: bytes) -> None:
        if self._handler is not None:
            body = jsonx.loads(data)
            self._handler(body["u"], body["p"])
