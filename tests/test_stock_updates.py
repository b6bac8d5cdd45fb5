"""A variant's coalescer tells the room of settled batches at most once per `stock_update_ms`: the latest
result, the one that ended a flash sale at once, and the last one always (livehub/live/checkout.py)."""

import asyncio
import uuid

from livehub.live.checkout import Checkout
from livehub.settings import Settings
from livehub.tasks import Supervisor


def result(available: int, *, ended: bool = False) -> dict:
    sale = {"id": str(uuid.uuid4()), "ended": ended, "remaining": 0 if ended else available}
    return {"results": [], "available": available, "flash_sale": sale}


def checkout(stock_update_ms: int, heard: list[int]) -> Checkout:
    return Checkout(
        None,
        Settings(stock_update_ms=stock_update_ms),
        uuid.uuid4(),
        uuid.uuid4(),
        lambda _variant, r: heard.append(r["available"]),
        Supervisor(),
    )


async def test_batches_within_the_interval_reach_the_room_once_with_the_latest_stock():
    heard: list[int] = []
    c = checkout(200, heard)
    c._report(result(90), now=False)
    assert heard == [90]  # the first of a burst at once
    for available in (80, 70, 60):
        c._report(result(available), now=False)
    assert heard == [90]
    assert c.idle_for() == 0.0  # a report is due: not idle
    await asyncio.sleep(0.3)
    assert heard == [90, 60]  # one report for three batches, the latest
    await asyncio.sleep(0.3)
    assert heard == [90, 60]
    assert c.idle_for() > 0


async def test_the_batch_that_ends_a_flash_sale_is_reported_at_once_and_replaces_a_waiting_one():
    heard: list[int] = []
    c = checkout(10_000, heard)
    c._report(result(50), now=False)
    c._report(result(20), now=False)
    c._report(result(0, ended=True), now=True)
    assert heard == [50, 0]
    await asyncio.sleep(0.05)
    assert heard == [50, 0]
    assert c._report_timer is None


async def test_zero_reports_every_batch():
    heard: list[int] = []
    c = checkout(0, heard)
    for available in (3, 2, 1):
        c._report(result(available), now=False)
    assert heard == [3, 2, 1]


class FakePool:
    """Answers the late buys' lookup with no orders, and counts the reads."""

    def __init__(self):
        self.reads: list[int] = []

    async def fetch(self, _query, _variant, buyers, _request_ids):
        self.reads.append(len(buyers))
        return []


async def late_buys(batch_max: int, n: int) -> tuple[list[int], list[dict]]:
    pool = FakePool()
    sale = uuid.uuid4()
    c = Checkout(pool, Settings(buy_batch_max=batch_max), uuid.uuid4(), uuid.uuid4(), lambda *_: None, Supervisor())
    c._ended.add(sale)  # a batch of this variant ended the sale
    replies = await asyncio.gather(*(c.buy(uuid.uuid4(), 1, f"r{i}", sale) for i in range(n)))
    return pool.reads, replies


async def test_buys_in_an_ended_sale_are_answered_by_few_reads():
    reads, replies = await late_buys(50, 1200)
    assert {r["status"] for r in replies} == {"sold_out"}
    assert reads == [1000, 200]  # not 24 reads of 50 one after another
    reads, _ = await late_buys(1, 3)
    assert reads == [1, 1, 1]  # the one-call-per-buy baseline stays that
