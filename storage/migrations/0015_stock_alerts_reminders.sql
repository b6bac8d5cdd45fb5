-- Low-stock alerts and show reminders. The rules live in functions/stock_alerts.sql and
-- functions/reminders.sql.

-- A variant is low on stock at or under its threshold: its own when set, else its shop's default.
ALTER TABLE sellers ADD COLUMN low_stock_threshold integer NOT NULL DEFAULT 5
    CHECK (low_stock_threshold BETWEEN 0 AND 1000000);
ALTER TABLE variants ADD COLUMN low_stock_threshold integer
    CHECK (low_stock_threshold BETWEEN 0 AND 1000000);

-- Every fall of a variant's stock, whatever lowered it (a batch of in-stream buys, a checkout, a write-off,
-- codes), is checked against the threshold once per statement and row: buy_batch updates its variant once
-- per batch, so this runs once per batch, not once per purchase. The trigger function only hands the row's
-- before and after to low_stock_crossing() (functions/stock_alerts.sql, rebuilt at every start), which
-- queues one low_stock job when the stock crosses the threshold downward. (A trigger cannot call into the
-- functions schema by dependency: that schema is dropped and rebuilt, so the name is resolved at run time.)
CREATE FUNCTION variants_stock_fell() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM low_stock_crossing(NEW.id, NEW.product_id, NEW.low_stock_threshold, OLD.stock, NEW.stock);
    RETURN NULL;
END $$;
CREATE TRIGGER variants_low_stock AFTER UPDATE OF stock ON variants
    FOR EACH ROW WHEN (NEW.stock < OLD.stock) EXECUTE FUNCTION variants_stock_fell();

-- A viewer's "remind me" for a scheduled stream; sent_at is when show_reminder went out (once).
CREATE TABLE stream_reminders (
    stream_id   uuid NOT NULL REFERENCES streams ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    PRIMARY KEY (stream_id, user_id)
);
CREATE INDEX stream_reminders_user_idx ON stream_reminders (user_id);
CREATE INDEX stream_reminders_unsent_idx ON stream_reminders (stream_id) WHERE sent_at IS NULL;
