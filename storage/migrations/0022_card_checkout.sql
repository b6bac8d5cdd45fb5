-- Paying the difference by card at checkout (functions/card_checkout.sql; docs/MONEY.md, "Paying the
-- difference by card"): a card payment with purpose 'order' keeps the order request in purpose_data and,
-- once the card money is credited, places the order in the same transaction. What came of it is recorded
-- here for the buyer's page to show.

ALTER TABLE card_payments DROP CONSTRAINT card_payments_purpose_check;
ALTER TABLE card_payments ADD CONSTRAINT card_payments_purpose_check CHECK (purpose IN ('top_up', 'order'));

-- 'ordered' (order_ids set) or 'not_ordered' (outcome_message says why; the money stayed in the wallet);
-- NULL until the card money arrives, and always for a top-up.
ALTER TABLE card_payments ADD COLUMN outcome text CHECK (outcome IN ('ordered', 'not_ordered'));
ALTER TABLE card_payments ADD COLUMN outcome_code text;
ALTER TABLE card_payments ADD COLUMN outcome_message text;
ALTER TABLE card_payments ADD COLUMN order_ids uuid[];

-- One payment per checkout request: the buyer's Idempotency-Key, when the request had one.
CREATE UNIQUE INDEX card_payments_order_request_idx ON card_payments (user_id, (purpose_data->>'idempotency_key'))
    WHERE purpose = 'order';
