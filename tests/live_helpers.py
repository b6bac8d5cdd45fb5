"""Live-room test helpers: a live stream set up through the REST API, and a websocket viewer that
collects what the server sends."""

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from conftest import Account, Factory
from livehub.jsonx import loads

WAIT_S = 10.0


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


class Viewer:
    """A websocket client in a room: every frame is kept, durable events are checked for gap-free order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.frames: list[dict] = []
        self.events: list[dict] = []
        self.welcome: dict | None = None
        self.close_code: int | None = None
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, client, stream_id: str, account: Account | None = None, **query: Any) -> "Viewer":
        params = {k: str(v) for k, v in query.items()}
        headers = account.headers if account is not None else {}
        ws = await client.ws_connect(f"/ws/streams/{stream_id}", headers=headers, params=params)
        viewer = cls(ws)
        await viewer.wait_for(lambda v: v.welcome is not None or v.close_code is not None)
        return viewer

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frame = loads(msg.data)
            self.frames.append(frame)
            if frame["type"] == "welcome":
                self.welcome = frame
            elif frame["type"] == "events":
                self.events.extend(frame["events"])
            self._changed.set()
        self.close_code = self.ws.close_code
        self._changed.set()

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
