-- Guest hosts: a seller's stream may be hosted by another user, who earns host_commission_bps of its
-- sales (orders.host_commission_cents, paid by functions/money.sql) and must accept first. The rules live
-- in functions/hosts.sql.

-- 'accepted' for every stream so far (its host was its seller's own user); 'invited' until the invited
-- host answers; 'declined' when they said no (the seller may then invite someone else or take it back).
ALTER TABLE streams ADD COLUMN host_status text NOT NULL DEFAULT 'accepted'
    CHECK (host_status IN ('invited', 'accepted', 'declined'));
-- The back office's list of a user's invitations and hosted shows.
CREATE INDEX streams_host_idx ON streams (host_id, created_at DESC);
