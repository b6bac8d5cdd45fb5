-- Messages: who wants which notifications emailed, and which notifications were emailed.
-- The job queue's own tables (pgqueuer, pgqueuer_log, pgqueuer_statistics, pgqueuer_schedules) are not
-- here: storage/schema.py installs and upgrades them from the installed pgqueuer release, in migrate()'s
-- transaction (docs/MESSAGES.md). Rules live in functions/messages.sql.

-- Email on or off per notification kind; no row means on. Kinds are checked in Python (livehub/shop/messages.py
-- KINDS), so a new kind needs no migration.
CREATE TABLE notification_settings (
    user_id  uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    kind     text NOT NULL,
    email    boolean NOT NULL,
    PRIMARY KEY (user_id, kind)
);

-- Set by the delivery job when the email went out (or was not wanted): a retry of the job never mails again.
ALTER TABLE notifications ADD COLUMN emailed_at timestamptz;
