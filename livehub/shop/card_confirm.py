"""A page paying a card payment: the buyer's card, tokenized by Stripe.js, confirms the payment's intent.

Why the node confirms and not the page: Stripe.js's confirmCardPayment(clientSecret, {payment_method:
{card}}) would do it all in the browser, but the Stripe.js stand-in of the test server (localstripe) only
performs the 3-D Secure step of an intent already confirmed. So the page asks Stripe.js for a token of the
card Element (createToken, in both), the node puts the token's card on the intent and confirms it with the
secret key, and if Stripe then asks for 3-D Secure the page lets Stripe.js run it (confirmCardPayment with
the client secret alone). The card number never reaches the node, only Stripe's token. Either way the
wallet is credited by the webhook or the reconciliation, never here.
"""

from uuid import UUID

import stripe

from livehub.errors import Conflict, NotFound, PaymentProviderError
from livehub.shop.card_payments import StripeCards
from storage.db import DB


async def confirm_with_token(db: DB, cards: StripeCards, payment_id: UUID, user_id: UUID, token: str) -> dict:
    """Confirm the user's pending card payment with a Stripe.js card token; returns the intent's status
    (succeeded, processing, requires_action: run 3-D Secure in the page) and, for Stripe.js, its secret."""
    row = await db.fetchrow(
        "SELECT intent_id, status FROM card_payments WHERE id = $1 AND user_id = $2", payment_id, user_id
    )
    if row is None or row["intent_id"] is None:
        raise NotFound("payment not found")
    if row["status"] != "pending":
        raise Conflict(f"this payment is {row['status']} already", {"status": row["status"]})
    try:
        card = (await cards.client.v1.tokens.retrieve_async(token)).to_dict()["card"]["id"]
        await cards.client.v1.payment_intents.update_async(row["intent_id"], {"payment_method": card})
        intent = (await cards.client.v1.payment_intents.confirm_async(row["intent_id"])).to_dict()
    except stripe.CardError as exc:
        # The card was declined: the buyer may try another one on the same payment.
        raise Conflict(exc.user_message or "the card was declined", {"reason": "card_declined"}) from exc
    except stripe.InvalidRequestError as exc:
        raise Conflict(exc.user_message or "Stripe refused this card", {"reason": "card_refused"}) from exc
    except stripe.StripeError as exc:
        raise PaymentProviderError("Stripe could not take the card, try again") from exc
    return {"status": intent["status"], "client_secret": intent["client_secret"]}
