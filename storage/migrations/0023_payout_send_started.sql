-- When the node started sending a payout through a provider that moves the money itself (Stripe Connect),
-- committed before the call: a payout with it set may have been sent even though it is still `requested`
-- (the answer was lost), so decide_payout (functions/orders.sql) refuses to reject it; only approving it
-- again (the same idempotency key) settles it. docs/MONEY.md, "Payout providers".
ALTER TABLE payouts ADD COLUMN send_started_at timestamptz;
