"""Property test of the money and stock rules: random sequences of operations over a small shop, run
against the real SQL functions, with the books, every balance and every variant's stock checked after
each one.

The world, built afresh for every example inside one transaction that is rolled back at its end: three
buyers (one with a default address in the US, one in France, one with none); seller A with one product of
two physical variants (a1, a2); seller B with a physical variant (b1) and a digital one (d1, its stock = its
imported codes); each seller with an optional shipping profile (a flat rate, an optional free-shipping
threshold, the countries it ships to); an admin; a live stream of A's, hosted by someone else for a
commission, featuring A's product at an optional live price with an optional per-buyer limit and an
optional flash sale on a1; and an ended stream of A's.

Operations: top-ups, admin wallet adjustments (+/-), seller stock adjustments (+/-, by the wrong seller,
of the digital variant), code imports (with duplicates), place_order (1-3 items, quantities past the
stock, outside, in the live or in the ended stream), buy_batch (several requests: duplicate request ids,
poor buyers, a seller buying its own), cancel, ship, deliver, refunds (full, partial, in several parts,
out of range), release_earnings, request_payout and decide_payout (approve / reject), each by an allowed
or a refused actor. An LH… SQLSTATE is an expected outcome; any other exception fails the test.

A Python model of the shop follows what each function is documented to do for the calls the database
accepted (shipping charged per seller's order and earned by the seller, fees and commission on the items
only, digital orders delivered at once, earnings released by the buyer's or an admin's delivery or by the
hold), and after every step:

- check_books() is balanced (every order's total, items and shipping, agreeing with its ledger entries),
  and no wallet or payouts account is negative;
- every user account's balance (wallet, pending and available earnings, requested payouts) and the
  platform's equal the model's: wallets = top-ups + adjustments - order totals + refunds;
- each variant's stock = the sum of its stock movements, every movement's stock_after continues the
  chain, and stock = initial + imported + seller adjustments - sold + returned by cancellations, where
  sold and returned also agree with the order items; physical stock equals the model's; digital stock
  equals the available codes and the model's, and every code sold belongs to an order;
- each order's status, total, shipping, refunded amount, fee, host, commission and earnings rows, each payout's
  status and the flash sale's sold count and end equal the model's.

`test_outcomes_follow_the_rules` runs the same machine strictly: the model also predicts from the
documented rules whether each call is accepted (with which SQLSTATE, or which status for each request
of a batch: stock, funds, per-buyer limits, featured products, who may do what), and two rules about
shares are checked: a host earns commission only on orders in a live stream of what it features, and a
partially refunded order leaves each earner its proportional share of what was not refunded (rounded
either way, but never drifting with the number of refunds).
"""

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conftest import empty_tables
from storage.db import init_connection

SETTINGS = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the repository
    # No explain phase: it traces every line (asyncio and asyncpg included) and makes shrinking take minutes.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

PRICES = {"a1": 1234, "a2": 999, "b1": 2501, "d1": 450}
LIVE_PRICE = 1111
FLASH_PRICE = 777
HOLDS = (0, 3600)  # 0: release_earnings() may release at once; 3600: only delivery does
ADJUSTMENT = "seller adjustment"
KNOWN_REASONS = {"initial stock", "digital codes imported", ADJUSTMENT, "sale", "order cancelled"}
VARIANTS = tuple(PRICES)
CODE_POOL = tuple(f"CODE-{i}" for i in range(8))
REQUEST_IDS = ("r0", "r1", "r2", None)
COUNTRIES = ("US", "FR", None)  # the three buyers' default addresses
TRACKING = {"carrier": "Parcel Co", "tracking_number": "PC1"}
# A seller's shipping profile: none (free everywhere), or (flat rate, free from, countries shipped to).
PROFILES = st.one_of(
    st.none(),
    st.tuples(
        st.sampled_from([0, 350]), st.sampled_from([None, 2000]), st.sampled_from([(), ("US",), ("US", "FR"), ("DE",)])
    ),
)
ACTORS = ("buyer", "seller", "admin", "other")
STREAMS = ("none", "live", "none", "live", "ended")
# Mostly what a shop sees, sometimes more than any stock, sometimes nothing at all.
QUANTITIES = st.sampled_from((1, 1, 2, 1, 2, 3, 5, 9, 0))
# Which order (or payout) an operation is about: mostly one it applies to, sometimes one it does not.
PICK = st.integers(0, 3)


@dataclass
class Variant:
    key: str
    id: str
    seller: str  # "A" or "B"
    product: str
    price: int
    digital: bool


@dataclass
class Line:
    key: str
    qty: int
    unit: int
    flash: str | None


@dataclass
class Earning:
    role: str
    user: str
    amount: int
    reversed: int = 0
    status: str = "pending"


@dataclass
class Order:
    id: str
    buyer: str
    seller: str
    seller_user: str
    stream: str | None
    lines: list[Line]
    total: int
    shipping: int
    fee: int
    host: str | None
    commission: int
    hold: int
    earnings: list[Earning]
    status: str = "paid"
    refunded: int = 0
    shipped: bool = False
    delivered: bool = False


@dataclass
class Flash:
    id: str
    variant: str
    price: int
    quantity: int
    limit: int | None
    sold: int = 0
    ended: bool = False


@dataclass
class Payout:
    id: str
    user: str
    amount: int
    status: str = "requested"


@dataclass
class Model:
    wallet: defaultdict = field(default_factory=lambda: defaultdict(int))
    pending: defaultdict = field(default_factory=lambda: defaultdict(int))
    available: defaultdict = field(default_factory=lambda: defaultdict(int))
    held: defaultdict = field(default_factory=lambda: defaultdict(int))
    platform: int = 0
    stock: dict = field(default_factory=dict)
    codes: set = field(default_factory=set)
    orders: list[Order] = field(default_factory=list)
    by_id: dict = field(default_factory=dict)
    request_ids: dict = field(default_factory=dict)  # (buyer, variant key, request id) -> order id
    payouts: list[Payout] = field(default_factory=list)
    flash: Flash | None = None


class ShopMachine(RuleBasedStateMachine):
    strict = False

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: asyncpg.Connection):
        super().__init__()
        self.loop = loop
        self.conn = conn
        self.ready = False
        self.tx = None  # each example runs in one transaction, rolled back at its end

    # -- plumbing ---------------------------------------------------------------------------------------

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    async def _call(self, sql, *args):
        try:
            async with self.conn.transaction():  # a savepoint: a refused call undoes only itself
                return await self.conn.fetchval(sql, *args), None
        except asyncpg.PostgresError as exc:
            if (exc.sqlstate or "").startswith("LH"):
                return None, exc.sqlstate
            raise

    def call(self, sql, *args):
        """(result, None) or (None, the LH… SQLSTATE); any other error propagates and fails the test."""
        return self.run(self._call(sql, *args))

    def expect(self, what: str, got: str | None, expected: str | set | None) -> None:
        if not self.strict:
            return
        if isinstance(expected, set):
            assert got in expected, f"{what}: expected one of {sorted(expected)}, got {got or 'success'}"
        else:
            assert got == expected, f"{what}: expected {expected or 'success'}, got {got or 'success'}"

    # -- the world --------------------------------------------------------------------------------------

    @initialize(
        stocks=st.tuples(st.integers(0, 10), st.integers(0, 10), st.integers(0, 10)),
        codes=st.lists(st.sampled_from(CODE_POOL), max_size=5),
        funds=st.tuples(*[st.sampled_from([0, 500, 20_000, 50_000])] * 3),
        fee_bps=st.sampled_from([0, 250, 500]),
        commission_bps=st.sampled_from([0, 1000, 1500]),
        live_price=st.sampled_from([None, LIVE_PRICE]),
        product_limit=st.sampled_from([None, 2, 3]),
        flash=st.one_of(st.none(), st.tuples(st.integers(1, 4), st.sampled_from([None, 1, 2]))),
        profiles=st.tuples(PROFILES, PROFILES),
    )
    def world(self, stocks, codes, funds, fee_bps, commission_bps, live_price, product_limit, flash, profiles):
        self.run(self._build(stocks, codes, fee_bps, commission_bps, live_price, product_limit, flash, profiles))
        self.ready = True
        for buyer, amount in zip(self.buyers, funds, strict=True):
            if amount:
                self._top_up(buyer, amount)

    def teardown(self):
        if self.tx is not None:
            self.run(self.tx.rollback())
            self.tx = None

    async def _build(self, stocks, codes, fee_bps, commission_bps, live_price, product_limit, flash, profiles):
        c = self.conn
        self.tx = c.transaction()
        await self.tx.start()

        async def user(name: str, roles=("viewer",)) -> str:
            return str(
                await c.fetchval(
                    "INSERT INTO users (email, display_name, password_hash, roles) VALUES ($1, $2, 'x', $3) "
                    "RETURNING id",
                    f"{name}@example.test",
                    name,
                    list(roles),
                )
            )

        self.buyers = [await user(f"buyer{i}") for i in range(3)]
        self.seller_user = {"A": await user("seller-a"), "B": await user("seller-b")}
        self.host = await user("host")
        self.admin = await user("admin", ("viewer", "admin"))
        # Every earner has a payout destination (its sealing is livehub's; the rules here only need one).
        for earner in (*self.seller_user.values(), self.host):
            await c.execute(
                """INSERT INTO payout_destinations (user_id, holder_name, country, kind, last4, sealed)
                   VALUES ($1, 'Earner', 'DE', 'iban', '3000', 'fernet:test:sealed')""",
                earner,
            )
        self.country = {}
        for buyer, country in zip(self.buyers, COUNTRIES, strict=True):
            self.country[buyer] = country
            if country is not None:
                await c.execute(
                    """INSERT INTO addresses (user_id, name, line1, city, country, is_default)
                       VALUES ($1, 'Buyer', '1 Main St', 'Town', $2, true)""",
                    buyer,
                    country,
                )
        self.seller_id = {}
        self.profile = {}
        for (key, uid), profile in zip(self.seller_user.items(), profiles, strict=True):
            self.seller_id[key] = str(
                await c.fetchval(
                    "INSERT INTO sellers (user_id, shop_name, status) VALUES ($1, $2, 'approved') RETURNING id",
                    uid,
                    f"Shop {key}",
                )
            )
            self.profile[key] = profile
            if profile is not None:
                await c.execute(
                    """INSERT INTO shipping_profiles (seller_id, flat_rate_cents, free_over_cents, countries)
                       VALUES ($1, $2, $3, $4)""",
                    self.seller_id[key],
                    profile[0],
                    profile[1],
                    list(profile[2]),
                )
        create = "SELECT create_product($1, $2, '', NULL, '{}'::jsonb, $3)"
        pa = await c.fetchval(
            create,
            self.seller_user["A"],
            "Jacket",
            [
                {"sku": "a1", "price_cents": PRICES["a1"], "stock": stocks[0], "options": {"size": "M"}},
                {"sku": "a2", "price_cents": PRICES["a2"], "stock": stocks[1], "options": {"size": "L"}},
            ],
        )
        pb = await c.fetchval(
            create, self.seller_user["B"], "Boots", [{"sku": "b1", "price_cents": PRICES["b1"], "stock": stocks[2]}]
        )
        pd = await c.fetchval(
            create,
            self.seller_user["B"],
            "E-book",
            [{"sku": "d1", "price_cents": PRICES["d1"], "digital": True}],
        )
        ids = {r["sku"]: str(r["id"]) for r in await c.fetch("SELECT sku, id FROM variants")}
        products = {"a1": pa, "a2": pa, "b1": pb, "d1": pd}
        self.v = {
            k: Variant(k, ids[k], "A" if k.startswith("a") else "B", str(products[k]), PRICES[k], k == "d1")
            for k in VARIANTS
        }
        self.key_of = {v.id: k for k, v in self.v.items()}

        self.stream = str(
            await c.fetchval(
                """INSERT INTO streams (seller_id, host_id, title, status, host_commission_bps, started_at)
                   VALUES ($1, $2, 'Live', 'live', $3, now()) RETURNING id""",
                self.seller_id["A"],
                self.host,
                commission_bps,
            )
        )
        # An earlier stream of A's, over now: its prices, limits and commission no longer apply.
        self.ended_stream = str(
            await c.fetchval(
                """INSERT INTO streams (seller_id, host_id, title, status, host_commission_bps, ended_at)
                   VALUES ($1, $2, 'Yesterday', 'ended', 2000, now()) RETURNING id""",
                self.seller_id["A"],
                self.host,
            )
        )
        for stream, price in ((self.stream, live_price), (self.ended_stream, 555)):
            await c.execute(
                "INSERT INTO stream_products (stream_id, product_id, live_price_cents, per_buyer_limit) "
                "VALUES ($1, $2, $3, $4)",
                stream,
                pa,
                price,
                product_limit,
            )
        self.m = Model()
        if flash is not None:
            quantity, limit = flash
            fid = await c.fetchval(
                """INSERT INTO flash_sales (stream_id, variant_id, price_cents, quantity, per_buyer_limit, ends_at)
                   VALUES ($1, $2, $3, $4, $5, now() + interval '1 hour') RETURNING id""",
                self.stream,
                self.v["a1"].id,
                FLASH_PRICE,
                quantity,
                limit,
            )
            self.m.flash = Flash(str(fid), "a1", FLASH_PRICE, quantity, limit)
        self.fee_bps = fee_bps
        self.commission_bps = commission_bps
        self.live_price = live_price
        self.product_limit = product_limit
        self.stream_product = str(pa)
        self.m.stock = {"a1": stocks[0], "a2": stocks[1], "b1": stocks[2], "d1": 0}
        if codes:
            await c.fetchval("SELECT count(*) FROM import_units($1, $2, $3)", ids["d1"], codes, self.seller_user["B"])
            self.m.codes = set(codes)
            self.m.stock["d1"] = len(self.m.codes)

    # -- the model's rules ------------------------------------------------------------------------------

    def price_of(self, v: Variant, stream: str | None):
        """(unit price, flash sale or None, per-buyer limit or None, flash units left or None): variant_price."""
        if stream != self.stream:  # no stream, or one that is not live: the list price
            return v.price, None, None, None
        price, limit, flash, left = v.price, None, None, None
        if v.product == self.stream_product:
            price = self.live_price if self.live_price is not None else v.price
            limit = self.product_limit
        f = self.m.flash
        if f is not None and f.variant == v.key and not f.ended:
            price, flash, left = f.price, f, f.quantity - f.sold
            limit = f.limit if f.limit is not None else limit
        return price, flash, limit, left

    def units_bought(self, buyer: str, v: Variant, stream: str | None, flash: Flash | None) -> int:
        """Units counted against a limit: of this flash sale, else of this product in this stream."""
        n = 0
        for o in self.m.orders:
            if o.buyer != buyer or o.status == "cancelled":
                continue
            for line in o.lines:
                if flash is not None:
                    n += line.qty if line.flash == flash.id else 0
                elif o.stream == stream and stream is not None and self.v[line.key].product == v.product:
                    n += line.qty
        return n

    def shipping(self, seller: str, lines, buyer: str) -> int | str:
        """What an order of these lines costs to ship (shipping_for), or why it cannot be placed: "missing" (no
        address) or "not_shipped" (the seller does not ship to the buyer's country). Digital goods never ship."""
        if all(self.v[key].digital for key, _, _ in lines):
            return 0
        country = self.country.get(buyer)
        if country is None:
            return "missing"
        profile = self.profile[seller]
        if profile is None:
            return 0
        flat, free_over, countries = profile
        if countries and country not in countries:
            return "not_shipped"
        subtotal = sum(unit * qty for _, unit, qty in lines)
        return 0 if free_over is not None and subtotal >= free_over else flat

    def create_order(self, oid, buyer, seller, stream, lines, hold, request_id=None) -> None:
        m = self.m
        seller_user = self.seller_user[seller]
        items = sum(line.unit * line.qty for line in lines)
        shipping = self.shipping(seller, [(line.key, line.unit, line.qty) for line in lines], buyer)
        assert isinstance(shipping, int), f"an order the model says cannot ship ({shipping}) was placed"
        total = items + shipping
        # The platform's fee and the host's commission are on the items; the seller earns the shipping.
        fee = items * self.fee_bps // 10000
        host, commission = None, 0
        # The host earns on orders placed in the live stream for products it features (A's jacket).
        if stream == self.stream and all(self.v[line.key].product == self.stream_product for line in lines):
            host = self.host
            commission = min(items * self.commission_bps // 10000, items - fee)
        for line in lines:
            m.stock[line.key] -= line.qty
            if line.flash is not None:
                m.flash.sold += line.qty
        m.wallet[buyer] -= total
        m.platform += fee
        m.pending[seller_user] += total - fee - commission
        earnings = [Earning("seller", seller_user, total - fee - commission)]
        if host is not None:
            m.pending[host] += commission
            earnings.append(Earning("host", host, commission))
        o = Order(
            oid, buyer, seller, seller_user, stream, lines, total, shipping, fee, host, commission, hold, earnings
        )
        if all(self.v[line.key].digital for line in lines):
            o.status, o.delivered = "delivered", True  # the codes are the delivery
        m.orders.append(o)
        m.by_id[oid] = o
        if request_id is not None:
            m.request_ids[(buyer, *request_id)] = oid  # (buyer, variant key, request id)

    def reverse(self, o: Order, amount: int) -> None:
        """reverse_payment: the buyer gets `amount`; earners give back their shares, the platform the rest."""
        m = self.m
        final = o.refunded + amount == o.total
        m.wallet[o.buyer] += amount
        taken = 0
        for e in sorted(o.earnings, key=lambda e: e.role):
            # Rounded on the running total (what has been refunded so far), as reverse_payment does.
            share = e.amount - e.reversed if final else ((o.refunded + amount) * e.amount // o.total - e.reversed)
            (m.pending if e.status == "pending" else m.available)[e.user] -= share
            e.reversed += share
            taken += share
        m.platform -= amount - taken
        o.refunded += amount

    def release(self, e: Earning) -> None:
        amount = e.amount - e.reversed
        self.m.pending[e.user] -= amount
        self.m.available[e.user] += amount
        e.status = "available"

    def actor(self, o: Order, who: str) -> tuple[str, bool]:
        return {
            "buyer": (o.buyer, False),
            "seller": (o.seller_user, False),
            "admin": (self.admin, True),
            "other": (self.host, False),  # neither the buyer nor the seller of any order
        }[who]

    def stream_of(self, which: str) -> str | None:
        return {"none": None, "live": self.stream, "ended": self.ended_stream}[which]

    def where(self, stream: str | None) -> str:
        return {None: "outside any stream", self.stream: "in the live stream"}.get(stream, "in the ended stream")

    def pick(self, items: list, i: int, likely=lambda x: True):
        """The i-th of `items`, counting first those `likely` to be accepted, then the rest."""
        ordered = [x for x in items if likely(x)] + [x for x in items if not likely(x)]
        return ordered[i % len(ordered)]

    # -- money in and out of wallets --------------------------------------------------------------------

    def _top_up(self, buyer: str, amount: int) -> None:
        _, err = self.call("SELECT top_up($1, $2, 'test top-up')", buyer, amount)
        self.expect("top_up", err, None if amount > 0 else "LH422")
        if err is None:
            self.m.wallet[buyer] += amount

    @rule(buyer=st.integers(0, 2), amount=st.integers(-20, 5000))
    def top_up(self, buyer, amount):
        self._top_up(self.buyers[buyer], amount)

    @rule(buyer=st.integers(0, 2), amount=st.integers(-4000, 3000))
    def adjust_wallet(self, buyer, amount):
        b = self.buyers[buyer]
        _, err = self.call("SELECT adjust_wallet($1, $2, 'goodwill', $3)", b, amount, self.admin)
        if amount == 0:
            expected = "LH422"
        elif self.m.wallet[b] + amount < 0:
            expected = "LHNSF"
        else:
            expected = None
        self.expect("adjust_wallet", err, expected)
        if err is None:
            self.m.wallet[b] += amount

    # -- stock ------------------------------------------------------------------------------------------

    @rule(seller=st.sampled_from(("A", "B")), key=st.sampled_from(VARIANTS), delta=st.integers(-6, 6))
    def adjust_stock(self, seller, key, delta):
        v = self.v[key]
        _, err = self.call("SELECT adjust_stock($1, $2, $3, $4)", v.id, delta, ADJUSTMENT, self.seller_user[seller])
        if v.seller != seller:
            expected = "LH403"
        elif v.digital or self.m.stock[key] + delta < 0:
            expected = "LH409"
        else:
            expected = None
        self.expect("adjust_stock", err, expected)
        if err is None:
            self.m.stock[key] += delta

    @rule(codes=st.lists(st.sampled_from(CODE_POOL), min_size=1, max_size=4))
    def import_codes(self, codes):
        _, err = self.call(
            "SELECT count(*) FROM import_units($1, $2, $3)", self.v["d1"].id, codes, self.seller_user["B"]
        )
        self.expect("import_units", err, None)
        if err is None:
            new = set(codes) - self.m.codes
            self.m.codes |= new
            self.m.stock["d1"] += len(new)

    # -- buying -----------------------------------------------------------------------------------------

    @rule(
        buyer=st.integers(0, 2),
        items=st.lists(st.tuples(st.sampled_from(VARIANTS), QUANTITIES), min_size=1, max_size=2),
        where=st.sampled_from(STREAMS),
        hold=st.sampled_from(HOLDS),
    )
    def place_order(self, buyer, items, where, hold):
        self._place_order(self.buyers[buyer], items, self.stream_of(where), hold)

    @rule(
        buyer=st.integers(0, 2),
        items=st.lists(st.tuples(st.sampled_from(("a1", "a2")), QUANTITIES), min_size=1, max_size=3),
        hold=st.sampled_from(HOLDS),
    )
    def place_order_in_the_live_stream(self, buyer, items, hold):
        """A checkout of what the live stream features: live and flash prices, per-buyer limits, commission."""
        self._place_order(self.buyers[buyer], items, self.stream, hold)

    def _place_order(self, b, items, stream, hold):
        wanted: dict[str, int] = {}
        for key, qty in items:
            wanted[key] = wanted.get(key, 0) + qty
        priced = {key: self.price_of(self.v[key], stream) for key in wanted}

        # What the documented rules say: each line is checked (quantity, stock, the per-buyer limit counting
        # every unit of the product in this order too), then the wallet against the total.
        per_product: dict[str, int] = defaultdict(int)
        for key, qty in wanted.items():
            if qty >= 1:
                per_product[self.v[key].product] += qty
        line_errors, total = set(), 0
        for key, qty in wanted.items():
            v = self.v[key]
            price, flash, limit, left = priced[key]
            if qty < 1:
                line_errors.add("LH422")
            elif self.m.stock[key] < qty or (flash is not None and left < qty):
                line_errors.add("LHOOS")
            elif (
                limit is not None
                and stream is not None
                and (
                    self.units_bought(b, v, stream, flash) + (qty if flash is not None else per_product[v.product])
                    > limit
                )
            ):
                line_errors.add("LH409")
            total += price * qty
        if stream == self.ended_stream:
            expected = "LH409"  # not live
        elif stream is not None and any(self.v[key].product != self.stream_product for key, _ in items):
            expected = "LH422"  # not featured in the stream
        elif line_errors:
            expected = line_errors
        else:
            # One order per seller, each with its shipping to the buyer's default address.
            per_seller = defaultdict(list)
            for key, qty in wanted.items():
                per_seller[self.v[key].seller].append((key, priced[key][0], qty))
            shipping = [self.shipping(seller, lines, b) for seller, lines in sorted(per_seller.items())]
            if any(isinstance(charge, str) for charge in shipping):
                expected = "LH422"  # no address, or one the seller does not ship to
            elif self.m.wallet[b] < total + sum(shipping):
                expected = "LHNSF"
            else:
                expected = None

        payload = [{"variant_id": self.v[key].id, "quantity": qty} for key, qty in items]
        ids, err = self.call("SELECT place_order($1, $2, $3, NULL, $4, $5)", b, payload, stream, self.fee_bps, hold)
        self.expect(f"place_order {items} {self.where(stream)}", err, expected)
        if err is not None:
            return
        rows = self.run(self.conn.fetch("SELECT id, seller_id FROM orders WHERE id = ANY ($1::uuid[])", ids))
        order_of = {str(r["seller_id"]): str(r["id"]) for r in rows}
        assert len(order_of) == len(ids), "place_order returned ids of orders that do not exist"
        for seller in ("A", "B"):
            lines = [
                Line(key, qty, priced[key][0], priced[key][1].id if priced[key][1] is not None else None)
                for key, qty in wanted.items()
                if self.v[key].seller == seller
            ]
            if lines:
                assert self.seller_id[seller] in order_of, f"no order for seller {seller}'s items"
                self.create_order(order_of[self.seller_id[seller]], b, seller, stream, lines, hold)
        assert len(order_of) == len({self.v[k].seller for k in wanted}), "one order per seller"

    @rule(
        key=st.sampled_from(VARIANTS),
        where=st.sampled_from(STREAMS),
        requests=st.lists(
            st.tuples(st.integers(0, 3), st.sampled_from(REQUEST_IDS), QUANTITIES), min_size=1, max_size=5
        ),
        hold=st.sampled_from(HOLDS),
    )
    def buy_batch(self, key, where, requests, hold):
        v = self.v[key]
        stream = self.stream_of(where)
        requesters = [*self.buyers, self.seller_user["B"]]  # seller B buying its own variant is an error
        reqs = [{"request_id": rid, "buyer_id": requesters[who], "quantity": qty} for who, rid, qty in requests]

        # The documented rules, request by request in arrival order.
        price, flash, limit, left = self.price_of(v, stream)
        remaining = self.m.stock[key] if flash is None else min(self.m.stock[key], left)
        # In a stream, only what the live stream features is for sale.
        for_sale = stream is None or (stream == self.stream and v.product == self.stream_product)
        seen, bought, spent, expected = set(), defaultdict(int), defaultdict(int), []
        for r in reqs:
            buyer, rid, qty = r["buyer_id"], r["request_id"], r["quantity"]
            # Request ids are remembered per variant: a retry is a buy of the same variant.
            if rid is not None and ((buyer, key, rid) in self.m.request_ids or (buyer, rid) in seen):
                status = "duplicate"
            elif qty < 1 or buyer == self.seller_user[v.seller] or not for_sale:
                status = "error"
            elif limit is not None and self.units_bought(buyer, v, stream, flash) + bought[buyer] + qty > limit:
                status = "limit_reached"
            elif remaining < qty:
                status = "sold_out"
            elif isinstance(shipping := self.shipping(v.seller, [(key, price, qty)], buyer), str):
                status = "address_required"
            elif self.m.wallet[buyer] - spent[buyer] < price * qty + shipping:
                status = "insufficient_funds"
            else:
                status = "ok"
                remaining -= qty
                bought[buyer] += qty
                spent[buyer] += price * qty + shipping
            if rid is not None:
                seen.add((buyer, rid))
            expected.append(status)

        out, err = self.call("SELECT buy_batch($1, $2, $3, $4, $5)", v.id, stream, reqs, self.fee_bps, hold)
        assert err is None, f"buy_batch raised {err}"
        got = [r["status"] for r in out["results"]]
        if self.strict:
            assert got == expected, f"buy_batch {key} {where} {requests}: expected {expected}, got {got}"
        assert [(r["buyer_id"], r["request_id"]) for r in out["results"]] == [
            (r["buyer_id"], r["request_id"]) for r in reqs
        ], "results in arrival order"
        for r, res in zip(reqs, out["results"], strict=True):
            if res["status"] == "ok":
                line = Line(key, r["quantity"], price, flash.id if flash is not None else None)
                request = None if r["request_id"] is None else (key, r["request_id"])
                self.create_order(res["order_id"], r["buyer_id"], v.seller, stream, [line], hold, request)
            elif res["status"] == "duplicate" and (r["buyer_id"], key, r["request_id"]) in self.m.request_ids:
                assert res["order_id"] == self.m.request_ids[(r["buyer_id"], key, r["request_id"])]
        if flash is not None and (flash.sold >= flash.quantity or self.m.stock[key] == 0):
            flash.ended = True
        assert out["available"] == self.m.stock[key], (out["available"], self.m.stock[key])

    # -- the order's life -------------------------------------------------------------------------------

    @precondition(lambda self: self.ready and self.m.orders)
    @rule(i=PICK, who=st.sampled_from(ACTORS))
    def cancel(self, i, who):
        o = self.pick(self.m.orders, i, lambda o: o.status in ("paid", "partially_refunded") and not o.shipped)
        actor, admin = self.actor(o, who)
        _, err = self.call("SELECT cancel_order($1, $2, $3, 'changed my mind')", o.id, actor, admin)
        if who == "other":
            expected = "LH404"
        elif o.status not in ("paid", "partially_refunded") or o.shipped:
            expected = "LH409"
        elif who == "buyer" and any(self.v[line.key].digital for line in o.lines):
            expected = "LH409"  # the buyer may have seen the codes
        else:
            expected = None
        self.expect(f"cancel {o.status} by {who}", err, expected)
        if err is not None:
            return
        for line in o.lines:
            if not self.v[line.key].digital:
                self.m.stock[line.key] += line.qty
            if line.flash is not None and not self.m.flash.ended:
                self.m.flash.sold -= line.qty
        if o.total > o.refunded:
            self.reverse(o, o.total - o.refunded)
        o.status = "cancelled"

    @precondition(lambda self: self.ready and self.m.orders)
    @rule(i=PICK, who=st.sampled_from(ACTORS))
    def ship(self, i, who):
        o = self.pick(self.m.orders, i, lambda o: o.status in ("paid", "partially_refunded") and not o.shipped)
        actor, admin = self.actor(o, who)
        _, err = self.call("SELECT ship_order($1, $2, $3, $4)", o.id, actor, admin, TRACKING)
        if who == "other":
            expected = "LH404"
        elif who == "buyer":
            expected = "LH403"
        elif o.status not in ("paid", "partially_refunded") or o.shipped:
            expected = "LH409"
        else:
            expected = None
        self.expect(f"ship {o.status} by {who}", err, expected)
        if err is None:
            o.shipped = True
            o.status = "shipped"

    @precondition(lambda self: self.ready and self.m.orders)
    @rule(i=PICK, who=st.sampled_from(ACTORS))
    def deliver(self, i, who):
        o = self.pick(self.m.orders, i, lambda o: o.shipped and not o.delivered)
        actor, admin = self.actor(o, who)
        _, err = self.call("SELECT deliver_order($1, $2, $3)", o.id, actor, admin)
        if who == "other":
            expected = "LH404"
        elif not o.shipped or o.delivered or o.status not in ("shipped", "partially_refunded"):
            expected = "LH409"
        else:
            expected = None
        self.expect(f"deliver {o.status} by {who}", err, expected)
        if err is None:
            o.delivered = True
            o.status = "delivered"
            if who in ("buyer", "admin"):  # the seller's word alone leaves the earnings to the hold
                for e in o.earnings:
                    if e.status == "pending":
                        self.release(e)

    @precondition(lambda self: self.ready and self.m.orders)
    @rule(
        i=PICK,
        who=st.sampled_from(ACTORS),
        amount=st.one_of(st.none(), st.integers(1, 60), st.integers(-5, 3000)),
    )
    def refund(self, i, who, amount):
        self._refund(self.pick(self.m.orders, i, self.refundable), who, amount)

    @precondition(lambda self: self.ready and self.m.orders)
    @rule(i=PICK, parts=st.lists(st.integers(1, 400), min_size=2, max_size=4))
    def refund_in_parts(self, i, parts):
        """The seller refunds an order a part at a time."""
        o = self.pick(self.m.orders, i, self.refundable)
        for amount in parts:
            self._refund(o, "seller", amount)

    @staticmethod
    def refundable(o: Order) -> bool:
        return o.status in ("paid", "shipped", "delivered", "partially_refunded")

    def _refund(self, o: Order, who: str, amount: int | None) -> None:
        actor, admin = self.actor(o, who)
        _, err = self.call("SELECT refund_order($1, $2, $3, $4, 'damaged')", o.id, actor, admin, amount)
        left = o.total - o.refunded
        effective = left if amount is None else amount
        if who == "other":
            expected = "LH404"
        elif who == "buyer":
            expected = "LH403"
        elif o.status not in ("paid", "shipped", "delivered", "partially_refunded"):
            expected = "LH409"
        elif effective <= 0 or effective > left:
            expected = "LH422"
        else:
            expected = None
        self.expect(f"refund {amount} of {o.status} order ({left} left) by {who}", err, expected)
        if err is None:
            self.reverse(o, effective)
            o.status = "refunded" if o.refunded == o.total else "partially_refunded"

    @rule()
    def release_earnings(self):
        """The periodic task: earnings whose hold has passed (delivery confirmed by the buyer released its own)."""
        released, err = self.call("SELECT release_earnings()")
        self.expect("release_earnings", err, None)
        due = [e for o in self.m.orders if o.hold == 0 for e in o.earnings if e.status == "pending"]
        if err is None:
            if self.strict:
                assert released == len(due), f"release_earnings released {released}, expected {len(due)}"
            for e in due:
                self.release(e)

    # -- payouts ----------------------------------------------------------------------------------------

    @precondition(lambda self: self.ready and self.m.orders)
    @rule(
        rank=st.integers(0, 2),
        amount=st.one_of(st.none(), st.integers(1, 300), st.integers(-1, 3000)),
        released_first=st.booleans(),
        then=st.sampled_from((None, "approve", "reject")),
    )
    def request_payout(self, rank, amount, released_first, then):
        """Seller A, seller B or the host, by how much they have available (rank 0: the most); often just
        after the periodic release has run, sometimes decided by an admin at once."""
        if released_first:
            self.release_earnings()
        earners = [self.seller_user["A"], self.seller_user["B"], self.host]
        user = sorted(earners, key=lambda u: (-self.m.available[u], earners.index(u)))[rank]
        if amount is None:  # everything available
            amount = self.m.available[user]
        pid, err = self.call("SELECT id FROM request_payout($1, $2)", user, amount)
        ok = 0 < amount <= self.m.available[user]
        self.expect(f"request_payout {amount} of {self.m.available[user]}", err, None if ok else "LHNSF")
        if err is None:
            self.m.available[user] -= amount
            self.m.held[user] += amount
            self.m.payouts.append(Payout(str(pid), user, amount))
            if then is not None:
                self._decide(self.m.payouts[-1], then == "approve")

    @precondition(lambda self: self.ready and self.m.payouts)
    @rule(i=PICK, approve=st.booleans())
    def decide_payout(self, i, approve):
        self._decide(self.pick(self.m.payouts, i, lambda p: p.status == "requested"), approve)

    def _decide(self, p: Payout, approve: bool) -> None:
        _, err = self.call(
            "SELECT status FROM decide_payout($1, $2, $3, $4, $5)",
            p.id,
            self.admin,
            approve,
            "provider-ref" if approve else None,
            None if approve else "details do not match",
        )
        self.expect(f"decide_payout of a {p.status} payout", err, None if p.status == "requested" else "LH409")
        if err is not None:
            return
        self.m.held[p.user] -= p.amount
        if approve:
            p.status = "paid"
        else:
            p.status = "rejected"
            self.m.available[p.user] += p.amount

    # -- invariants, after every step -------------------------------------------------------------------

    @invariant()
    def everything_reconciles(self):
        if not self.ready:
            return
        s = self.run(self.conn.fetchval(SNAPSHOT))
        self.check_books(s)
        self.check_balances(s)
        self.check_stock(s)
        self.check_orders(s)
        if self.strict:
            self.check_shares(s)

    def check_books(self, s):
        books = s["books"]
        assert books["balanced"] is True, books
        assert books["mismatched_accounts"] == 0 and books["unbalanced_transactions"] == 0, books
        assert books["mismatched_orders"] == 0, books
        assert books["shipping_cents"] == sum(o.shipping for o in self.m.orders), books

    def check_balances(self, s):
        got = {(user, kind): cents for user, kind, cents in s["accounts"]}
        negative = {k: b for k, b in got.items() if k[1] in ("wallet", "payouts") and b < 0}
        assert not negative, f"negative wallet or payouts balance: {negative}"
        m = self.m
        expected = {}
        for kind, book in (
            ("wallet", m.wallet),
            ("earnings_pending", m.pending),
            ("earnings_available", m.available),
            ("payouts", m.held),
        ):
            for user, cents in book.items():
                expected[(user, kind)] = cents
        both = {k: (got.get(k, 0), expected.get(k, 0)) for k in set(got) | set(expected)}
        differ = {k: pair for k, pair in both.items() if pair[0] != pair[1]}
        wallets = {k: v for k, v in differ.items() if k[1] == "wallet"}
        assert not wallets, f"wallets (database, model): {wallets}"
        assert not differ, f"earnings/payouts accounts (database, model): {differ}"
        assert s["platform"] == m.platform, f"platform: database {s['platform']}, model {m.platform}"

    def check_stock(self, s):
        items = {vid: (sold, returned) for vid, sold, returned in s["items"]}
        units = {vid: (available, sold, odd) for vid, available, sold, odd in s["units"]}
        chain: dict[str, int] = defaultdict(int)
        by_reason: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for vid, delta, stock_after, reason in s["moves"]:
            assert reason in KNOWN_REASONS, f"unknown stock movement reason {reason!r}"
            chain[vid] += delta
            assert stock_after == chain[vid], f"{self.key_of[vid]}: a movement's stock_after breaks the chain"
            by_reason[vid][reason] += delta
        for vid, stock, digital in s["variants"]:
            key, r = self.key_of[vid], by_reason[vid]
            assert stock == chain[vid], f"{key}: stock {stock} != sum of its movements {chain[vid]}"
            sold, returned = -r["sale"], r["order cancelled"]
            assert stock == r["initial stock"] + r["digital codes imported"] + r[ADJUSTMENT] - sold + returned, (
                f"{key}: stock {stock}, movements {dict(r)}"
            )
            sold_items, cancelled_items = items.get(vid, (0, 0))
            assert sold == sold_items, f"{key}: sale movements {sold}, order items {sold_items}"
            if digital:
                available, sold_units, odd = units.get(vid, (0, 0, 0))
                assert returned == 0 and r["initial stock"] == 0 and r[ADJUSTMENT] == 0, f"{key}: {dict(r)}"
                assert stock == available, f"{key}: stock {stock}, available codes {available}"
                assert sold_units == sold_items and odd == 0, f"{key}: codes sold {sold_units}, items {sold_items}"
            else:
                assert returned == cancelled_items, f"{key}: returned {returned}, cancelled items {cancelled_items}"
                assert r["digital codes imported"] == 0
            assert stock == self.m.stock[key], f"{key}: stock {stock}, model {self.m.stock[key]}"

    def check_orders(self, s):
        orders = {o[0]: tuple(o[1:]) for o in s["orders"]}
        want = {
            o.id: (o.status, o.total, o.refunded, o.fee, o.host, o.commission, o.shipped, o.delivered, o.shipping)
            for o in self.m.orders
        }
        assert orders == want, (
            f"orders (status, total, refunded, fee, host, commission, shipped, delivered, shipping): "
            f"database {orders}, model {want}"
        )
        earnings = {(oid, role): (amount, rev, status) for oid, role, amount, rev, status in s["earnings"]}
        want = {(o.id, e.role): (e.amount, e.reversed, e.status) for o in self.m.orders for e in o.earnings}
        assert earnings == want, f"earnings: database {earnings}, model {want}"
        assert dict(s["payouts"]) == {p.id: p.status for p in self.m.payouts}, s["payouts"]
        if self.m.flash is not None:
            sold, ended = s["flash"]
            assert (sold, ended) == (self.m.flash.sold, self.m.flash.ended), (
                f"flash sale (sold, ended): database {(sold, ended)}, model {self.m.flash}"
            )

    def check_shares(self, s):
        assert not s["foreign"], f"a stream's host earned commission on an order it did not feature: {s['foreign']}"
        for number, total, refunded, role, amount, rev in s["shares"]:
            left, kept = total - refunded, amount - rev
            low, high = amount * left // total, -(-amount * left // total)
            assert low <= kept <= high, (
                f"order {number}: the {role} keeps {kept} of its {amount} after {refunded} of {total} was "
                f"refunded; its share of what is left is {low}..{high}"
            )


# Everything the invariants compare, in one round trip.
SNAPSHOT = """
SELECT jsonb_build_object(
    'books', check_books(),
    'accounts', (SELECT coalesce(jsonb_agg(jsonb_build_array(user_id, kind, balance_cents)), '[]')
                   FROM accounts WHERE user_id IS NOT NULL),
    'platform', (SELECT coalesce(sum(e.amount_cents), 0) FROM ledger_entries e
                   JOIN accounts a ON a.id = e.account_id WHERE a.kind = 'platform'),
    'variants', (SELECT jsonb_agg(jsonb_build_array(id, stock, digital)) FROM variants),
    'moves', (SELECT coalesce(jsonb_agg(jsonb_build_array(variant_id, delta, stock_after, reason) ORDER BY id), '[]')
                FROM stock_movements),
    'items', (SELECT coalesce(jsonb_agg(jsonb_build_array(variant_id, sold, returned)), '[]') FROM (
                SELECT oi.variant_id, sum(oi.quantity) AS sold,
                       coalesce(sum(oi.quantity) FILTER (WHERE o.status = 'cancelled'), 0) AS returned
                  FROM order_items oi JOIN orders o ON o.id = oi.order_id GROUP BY 1) t),
    'units', (SELECT coalesce(jsonb_agg(jsonb_build_array(variant_id, available, sold, odd)), '[]') FROM (
                SELECT variant_id, count(*) FILTER (WHERE status = 'available') AS available,
                       count(*) FILTER (WHERE status = 'sold' AND order_id IS NOT NULL) AS sold,
                       count(*) FILTER (WHERE status <> 'available' AND (status <> 'sold' OR order_id IS NULL)) AS odd
                  FROM digital_units GROUP BY 1) t),
    'orders', (SELECT coalesce(jsonb_agg(jsonb_build_array(id, status, total_cents, refunded_cents, fee_cents, host_id,
                                                          host_commission_cents, shipped_at IS NOT NULL,
                                                          delivered_at IS NOT NULL, shipping_cents)), '[]')
                 FROM orders),
    'earnings', (SELECT coalesce(jsonb_agg(jsonb_build_array(order_id, role, amount_cents, reversed_cents,
                                                            status)), '[]')
                   FROM earnings),
    'payouts', (SELECT coalesce(jsonb_agg(jsonb_build_array(id, status)), '[]') FROM payouts),
    'flash', (SELECT jsonb_build_array(sold, ended_at IS NOT NULL) FROM flash_sales),
    -- Commission is for orders placed in a live stream for products it features.
    'foreign', (SELECT coalesce(jsonb_agg(o.number), '[]') FROM orders o
                 WHERE o.host_id IS NOT NULL AND NOT EXISTS (
                       SELECT 1 FROM streams s WHERE s.id = o.stream_id AND s.seller_id = o.seller_id)
                    OR o.host_id IS NOT NULL AND EXISTS (
                       SELECT 1 FROM order_items oi WHERE oi.order_id = o.id AND NOT EXISTS (
                              SELECT 1 FROM stream_products sp
                               WHERE sp.stream_id = o.stream_id AND sp.product_id = oi.product_id))),
    'shares', (SELECT coalesce(jsonb_agg(jsonb_build_array(o.number, o.total_cents, o.refunded_cents, e.role,
                                                          e.amount_cents, e.reversed_cents)), '[]')
                 FROM earnings e JOIN orders o ON o.id = e.order_id WHERE o.total_cents > 0)
)
"""


class StrictShopMachine(ShopMachine):
    strict = True


async def _connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    # Empty once (TRUNCATE costs a third of a second); each example then rolls its own transaction back.
    await empty_tables(conn)
    return conn


def _run(machine: type[ShopMachine], database_url: str) -> None:
    loop = asyncio.new_event_loop()
    try:
        conn = loop.run_until_complete(_connect(database_url))
        try:
            run_state_machine_as_test(lambda: machine(loop, conn), settings=SETTINGS)
        finally:
            loop.run_until_complete(conn.close())
    finally:
        loop.close()


# A passing run takes seconds; a failing one replays a few hundred examples while it shrinks them.
@pytest.mark.timeout(300)
def test_books_and_stock_hold_after_every_operation(database_url):
    """Whatever the database accepts, the books balance and every balance and stock figure agrees with the
    movements and with the model."""
    _run(ShopMachine, database_url)


@pytest.mark.timeout(300)
def test_outcomes_follow_the_rules(database_url):
    """The same sequences, with every accept/refuse decision and the share rules checked as documented."""
    _run(StrictShopMachine, database_url)
