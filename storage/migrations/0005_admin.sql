-- The audit log (who did what, from where), and accounts an admin can deactivate.

ALTER TABLE users ADD COLUMN deactivated_at timestamptz;

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    uuid REFERENCES users ON DELETE SET NULL,
    -- 'sign_in', 'sign_in_failed', 'sign_out', 'seller.approve', 'wallet.adjust', ... (docs/OPERATIONS.md)
    action      text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)*$'),
    target_type text,
    target_id   text,
    address     text,
    user_agent  text,
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON audit_log (id DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, id DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, id DESC);
CREATE INDEX audit_log_target_idx ON audit_log (target_id, id DESC);

-- What happened stays what happened: rows are never changed or removed by the application.
CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'LH409';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
