-- Card payment reconciliation (functions/card_payments.sql, card_payments_to_reconcile): when the job last
-- asked the provider about a pending payment. The job takes the least recently checked first, so payments
-- nobody paid cannot keep it from reaching the rest.
ALTER TABLE card_payments ADD COLUMN checked_at timestamptz;

DROP INDEX card_payments_pending_idx;
CREATE INDEX card_payments_pending_idx ON card_payments ((coalesce(checked_at, created_at))) WHERE status = 'pending';
