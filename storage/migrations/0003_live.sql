-- Live rooms: what a stream shows and who runs it, moderation, chat history, audience stats and
-- notifications. Rules live in functions/streams.sql.

ALTER TABLE streams
    ADD COLUMN pinned_product_id uuid REFERENCES products,
    ADD COLUMN slow_mode_s integer NOT NULL DEFAULT 0 CHECK (slow_mode_s >= 0),
    -- Lower-case words a chat message may not contain (normalised by set_blocked_words()).
    ADD COLUMN blocked_words text[] NOT NULL DEFAULT '{}',
    ADD COLUMN peak_viewers integer NOT NULL DEFAULT 0;
-- What GET /api/streams?status=live|scheduled reads.
CREATE INDEX streams_live_idx ON streams (started_at DESC, id) WHERE status = 'live';
CREATE INDEX streams_scheduled_idx ON streams (scheduled_at, id) WHERE status = 'scheduled';
CREATE INDEX streams_seller_idx ON streams (seller_id, created_at DESC);
-- A shop is live in one stream at a time; two hosts starting at once cannot both win.
CREATE UNIQUE INDEX streams_one_live_per_seller ON streams (seller_id) WHERE status = 'live';

ALTER TABLE flash_sales
    ADD COLUMN ended_reason text CHECK (ended_reason IN ('sold_out', 'time', 'host', 'stream_ended'));
-- One flash sale runs at a time in a stream (until its ended_at is set, also past its ends_at).
CREATE UNIQUE INDEX flash_sales_one_running_per_stream ON flash_sales (stream_id) WHERE ended_at IS NULL;

CREATE TABLE stream_moderators (
    stream_id   uuid NOT NULL REFERENCES streams ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, user_id)
);

-- A ban is the shop's: it keeps the user out of every stream of that seller.
CREATE TABLE seller_bans (
    seller_id   uuid NOT NULL REFERENCES sellers ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    banned_by   uuid REFERENCES users,
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (seller_id, user_id)
);

CREATE TABLE stream_timeouts (
    stream_id  uuid NOT NULL REFERENCES streams ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    until      timestamptz NOT NULL,
    PRIMARY KEY (stream_id, user_id)
);

-- Chat history, written by the rooms in background batches; "offset" is the room's durable event
-- offset (not unique: a room that lost its broker history starts a new epoch).
CREATE TABLE chat_messages (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    stream_id   uuid NOT NULL REFERENCES streams ON DELETE CASCADE,
    "offset"    bigint NOT NULL,
    user_id     uuid NOT NULL REFERENCES users,
    text        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    deleted_by  uuid REFERENCES users
);
CREATE INDEX chat_messages_stream_idx ON chat_messages (stream_id, "offset");

-- Audience stats, added to by the rooms (record_presence()).
CREATE TABLE stream_viewers (
    stream_id      uuid NOT NULL REFERENCES streams ON DELETE CASCADE,
    -- A user id, or a hash of an anonymous viewer's address and client: one per person, not per tab.
    viewer_key     text NOT NULL,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, viewer_key)
);

CREATE TABLE stream_product_clicks (
    stream_id   uuid NOT NULL REFERENCES streams ON DELETE CASCADE,
    product_id  uuid NOT NULL REFERENCES products,
    clicks      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (stream_id, product_id)
);

CREATE TABLE stream_reactions (
    stream_id  uuid NOT NULL REFERENCES streams ON DELETE CASCADE,
    kind       text NOT NULL,
    count      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (stream_id, kind)
);

CREATE TABLE notifications (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    kind        text NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    read_at     timestamptz
);
CREATE INDEX notifications_user_idx ON notifications (user_id, created_at DESC, id DESC);
