-- Backups (livehub/backups.py, docs/OPERATIONS.md "Backups"): one row per backup started, by the schedule,
-- the `livehub backup` command or an admin. The file itself lives on disk (or wherever it was copied); this
-- log says what was made, when, and what became of it. Rows are kept when retention deletes a file
-- (status 'deleted'), so the history stays readable.
CREATE TABLE backups (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed', 'deleted')),
    trigger text NOT NULL CHECK (trigger IN ('schedule', 'cli', 'admin')),
    -- The admin who asked for it (trigger 'admin').
    requested_by uuid REFERENCES users (id) ON DELETE SET NULL,
    -- Where the file was written (absolute), its size and sha256 once written; error when it failed.
    path text,
    size_bytes bigint,
    sha256 text,
    error text,
    deleted_at timestamptz,
    CHECK (status <> 'succeeded' OR (path IS NOT NULL AND size_bytes IS NOT NULL AND sha256 IS NOT NULL))
);
-- Retention walks the succeeded ones by time; the admin list pages by id.
CREATE INDEX backups_status_idx ON backups (status, started_at);
