-- Replays (docs/REPLAYS.md): a show's recording, what was pinned when, and practice (unlisted) shows.

ALTER TABLE streams
    -- Practice mode: only people with the link watch; never listed, followers are not told.
    ADD COLUMN unlisted boolean NOT NULL DEFAULT false,
    -- The host's per-stream opt-out of recording (LIVEHUB_RECORD_SHOWS=false turns it off node-wide).
    ADD COLUMN record boolean NOT NULL DEFAULT true;

-- A show's finished recording in the media store. started_at is the wall-clock time of the video's
-- offset 0: something that happened at time t is (t - started_at) seconds into the video.
CREATE TABLE stream_replays (
    stream_id     uuid PRIMARY KEY REFERENCES streams ON DELETE CASCADE,
    media_key     text NOT NULL,
    content_type  text NOT NULL CHECK (content_type IN ('video/webm', 'video/mp4')),
    duration_s    double precision NOT NULL CHECK (duration_s >= 0),
    size_bytes    bigint NOT NULL CHECK (size_bytes >= 0),
    started_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- The retention job deletes the oldest first; the replay lists show the newest first.
CREATE INDEX stream_replays_created_idx ON stream_replays (created_at);

-- Pin history: every pin and unpin (product_id NULL) of a stream, for the replay's timeline. The stream's
-- pinned_product_id stays the current pin.
CREATE TABLE stream_pins (
    id          bigserial PRIMARY KEY,
    stream_id   uuid NOT NULL REFERENCES streams ON DELETE CASCADE,
    product_id  uuid REFERENCES products,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX stream_pins_stream_idx ON stream_pins (stream_id, at);
