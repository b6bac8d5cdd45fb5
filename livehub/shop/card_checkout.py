"""Paying the difference by card at checkout: a checkout (cart or "Buy now") the wallet does not cover,
when the buyer asks for it, opens a card payment for the shortfall that carries the order request.

Nothing is placed here. The order is placed by the storage function that credits the card money
(apply_card_payment -> apply_card_order, functions/card_checkout.sql), in the same transaction, with
place_order's rules as they stand then; so a webhook, its replays and the reconciliation place it once, and
a refusal then (stock ran out) leaves the money in the wallet and tells the buyer.
"""

from typing import Any
from uuid import UUID

import asyncpg
from orjson import loads

from livehub.errors import ErrorCode, ValidationFailed
from livehub.settings import Settings
from livehub.shop import card_payments
from livehub.shop.orders import Pricing
from storage.db import DB

# The SQLSTATE place_order refuses a checkout with when the wallet is short, and the error code of each
# SQLSTATE a refused order records (shown by GET /api/payments/{id}).
_SHORT = ErrorCode.INSUFFICIENT_FUNDS.sqlstate
_CODE_OF = {code.sqlstate: code.value for code in ErrorCode if code.sqlstate}


def shortfall(exc: BaseException) -> dict | None:
    """{balance_cents, total_cents} when `exc` is place_order saying the wallet does not cover the order."""
    if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate == _SHORT and getattr(exc, "detail", None):
        return loads(exc.detail)
    return None


async def pay_difference(
    db: DB,
    cards: card_payments.StripeCards,
    settings: Settings,
    pricing: Pricing,
    buyer_id: UUID,
    order: dict[str, Any],
    short: dict,
    idempotency_key: str | None,
) -> dict:
    """Open the card payment for what the wallet lacks (at least the card minimum; anything above the
    order stays in the wallet). `order` is place_order's request: items, stream_id, address, address_id,
    and from_cart when the items are the cart's (they leave it once placed)."""
    missing = short["total_cents"] - short["balance_cents"]
    amount = max(missing, settings.card_min_top_up_cents)
    if amount > settings.max_top_up_cents:
        raise ValidationFailed(f"at most {settings.max_top_up_cents} cents per card payment")
    request = {key: value for key, value in order.items() if value is not None} | {
        "fee_bps": pricing.fee_bps,
        "hold_s": pricing.hold_s,
        "idempotency_key": idempotency_key,
    }
    opened = await card_payments.top_up(db, cards, settings, buyer_id, amount, "order", request)
    return opened | {"total_cents": short["total_cents"], "balance_cents": short["balance_cents"]}


def outcome_code(sqlstate: str | None) -> str | None:
    """A refused order's error code (out_of_stock, insufficient_funds...) from the SQLSTATE recorded."""
    return None if sqlstate is None else _CODE_OF.get(sqlstate, "conflict")
