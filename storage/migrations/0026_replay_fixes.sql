-- Replays (docs/REPLAYS.md), after review: a discarded replay is remembered apart from the host's choice to
-- record, and the timeline reads a page of a long show's chat through an index.

-- When the replay was discarded (by the host, the shop or an admin) or expired by retention: from then on the
-- stream has no replay, whatever the recorder or the LiveKit URL template would give. streams.record stays
-- what the host chose (whether the show was to be recorded).
ALTER TABLE streams ADD COLUMN replay_discarded_at timestamptz;

-- The replay timeline's chat, in (created_at, id) order from a cursor: a page reads its own rows only, not a
-- long show's whole chat.
CREATE INDEX chat_messages_stream_time_idx ON chat_messages (stream_id, created_at, id);
