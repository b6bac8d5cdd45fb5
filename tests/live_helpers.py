"""Live-room test helpers: a live stream set up through the REST API, and a websocket viewer that
collects what the server sends."""

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any, Union

import aiohttp
import pydantic

from conftest import Account, Factory
from livehub.jsonx import loads
from livehub.live import protocol
from livehub.live.connection import CLOSE_TRY_AGAIN
from livehub.live.room import EVENTS

WAIT_S = 10.0
RECONNECTS = 5


@dataclass
class Show:
    seller: Account
    stream: dict
    products: list[dict]

    @property
    def id(self) -> str:
        return self.stream["id"]

    def variant(self, product: int = 0, variant: int = 0) -> str:
        return self.products[product]["variants"][variant]["id"]


async def live_show(
    make: Factory, *, products: int = 2, stock: int = 50, price: int = 1000, start: bool = True
) -> Show:
    """An approved seller with `products` products, one stream featuring them all, started."""
    seller = await make.seller()
    items = [
        await make.product(seller, variants=[{"sku": f"S{make._next()}", "price_cents": price, "stock": stock}])
        for _ in range(products)
    ]
    res = await make.client.post(
        "/api/streams",
        json={"title": "Live now", "products": [{"product_id": p["id"]} for p in items]},
        headers=seller.headers,
    )
    assert res.status == 201, await res.text()
    stream = (await res.json())["stream"]
    if start:
        res = await make.client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers)
        assert res.status == 200, await res.text()
        stream = (await res.json())["stream"]
    return Show(seller, stream, items)


# What the server may send: every frame and event must match its model in livehub/live/protocol.py.
SERVER_FRAME = pydantic.TypeAdapter(
    Annotated[Union[protocol.SERVER_FRAMES], pydantic.Field(discriminator="type")]  # noqa: UP007
)
EVENT = pydantic.TypeAdapter(Annotated[Union[EVENTS], pydantic.Field(discriminator="type")])  # noqa: UP007


class ProtocolBroken(AssertionError):
    """The server sent something the protocol does not allow."""


class Viewer:
    """A websocket client in a room: every frame is kept and checked against the protocol's models, and
    durable events are checked for gap-free order (each offset the previous plus one)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, since: int | None = None):
        self.ws = ws
        self.frames: list[dict] = []
        self.events: list[dict] = []
        self.welcome: dict | None = None
        self.close_code: int | None = None
        self.broken: ProtocolBroken | None = None
        self._since = since
        self._last_offset: int | None = None
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, client, stream_id: str, account: Account | None = None, **query: Any) -> "Viewer":
        params = {k: str(v) for k, v in query.items()}
        headers = account.headers if account is not None else {}
        # Told to reconnect (1013: the node's database pool was busy for a second), it does, as room.js does.
        for attempt in range(RECONNECTS):
            ws = await client.ws_connect(f"/ws/streams/{stream_id}", headers=headers, params=params)
            viewer = cls(ws, since=int(query["since"]) if "since" in query else None)
            await viewer.wait_for(lambda v: v.welcome is not None or v.close_code is not None)
            if viewer.close_code != CLOSE_TRY_AGAIN:
                break
            await asyncio.sleep(0.2 * (attempt + 1))
        return viewer

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frame = loads(msg.data)
            self.frames.append(frame)
            try:
                self._check(frame)
            except (pydantic.ValidationError, ProtocolBroken) as exc:
                self.broken = self.broken or ProtocolBroken(f"{exc} in {frame}")
            if frame["type"] == "welcome":
                self.welcome = frame
            elif frame["type"] == "events":
                self.events.extend(frame["events"])
            self._changed.set()
        self.close_code = self.ws.close_code
        self._changed.set()

    def _check(self, frame: dict) -> None:
        SERVER_FRAME.validate_python(frame)
        if frame["type"] == "welcome":
            # Recovered: the missed events follow, from the offset asked for; else the welcome is the start.
            recovered = frame["recovered"] and self._since is not None and self._last_offset is None
            self._last_offset = self._since if recovered else frame["offset"]
        elif frame["type"] == "events":
            for event in frame["events"]:
                EVENT.validate_python(event)
                if "offset" in event:
                    if event["offset"] != self._last_offset + 1:
                        raise ProtocolBroken(f"offset {event['offset']} after {self._last_offset}: a gap")
                    self._last_offset = event["offset"]

    @property
    def durable(self) -> list[dict]:
        return [e for e in self.events if "offset" in e]

    def of_type(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def replies(self, kind: str) -> list[dict]:
        return [f for f in self.frames if f["type"] == kind]

    async def wait_for(self, predicate, timeout: float = WAIT_S):
        """Wait until predicate(self) is truthy and return its value; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not (value := predicate(self)):
            if self.broken:
                raise self.broken
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; last frames: {self.frames[-5:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass
        return value

    async def send(self, **frame: Any) -> None:
        await self.ws.send_json(frame)

    async def request(self, kind: str, **frame: Any) -> dict:
        """Send a frame with a fresh request_id and wait for the frame that answers it."""
        rid = frame.setdefault("request_id", f"r{time.monotonic_ns()}")
        await self.send(type=kind, **frame)
        return await self.wait_for(lambda v: next((f for f in v.frames if f.get("request_id") == rid), None))

    async def close(self) -> None:
        await self.ws.close()
        await self._reader
        if self.broken:
            raise self.broken
