-- The backups log (migration 0021_backups.sql; livehub/backups.py makes the files). Each step of a backup
-- is one call, so a failure and the admins' notification about it commit together.

-- Rows left 'running' that never will finish: those of a node that stopped mid-backup (older than a
-- day: no LiveHub dump takes that long), or, in a restored database, every one (p_all): the dump was
-- taken while they ran, and this database will never hear of them again.
CREATE OR REPLACE FUNCTION backups_abandoned(p_all boolean) RETURNS integer
LANGUAGE sql AS $$
    WITH gone AS (
        UPDATE backups SET status = 'failed', finished_at = now(),
                           error = CASE WHEN p_all
                                        THEN 'still running when the backup this database was restored from was taken'
                                        ELSE 'never finished (its node stopped)' END
         WHERE status = 'running' AND (p_all OR started_at < now() - interval '1 day') RETURNING 1)
    SELECT count(*)::integer FROM gone;
$$;

-- A backup starts: its row, 'running'.
CREATE OR REPLACE FUNCTION backup_started(p_trigger text, p_requested_by uuid) RETURNS backups
LANGUAGE plpgsql AS $$
DECLARE
    b backups;
BEGIN
    PERFORM backups_abandoned(false);
    INSERT INTO backups (trigger, requested_by) VALUES (p_trigger, p_requested_by) RETURNING * INTO b;
    RETURN b;
END $$;

-- The file is written and renamed into place.
CREATE OR REPLACE FUNCTION backup_succeeded(p_id bigint, p_path text, p_size bigint, p_sha256 text) RETURNS backups
LANGUAGE sql AS $$
    UPDATE backups SET status = 'succeeded', finished_at = now(), path = p_path, size_bytes = p_size,
                       sha256 = p_sha256, error = NULL
     WHERE id = p_id RETURNING *;
$$;

-- It failed: the row says why, and every active admin is told (notification backup_failed).
CREATE OR REPLACE FUNCTION backup_failed(p_id bigint, p_error text) RETURNS backups
LANGUAGE plpgsql AS $$
DECLARE
    b backups;
BEGIN
    UPDATE backups SET status = 'failed', finished_at = now(), error = left(p_error, 2000)
     WHERE id = p_id RETURNING * INTO b;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM notify_users(
        ARRAY(SELECT id FROM users WHERE 'admin' = ANY (roles) AND deactivated_at IS NULL),
        'backup_failed',
        jsonb_build_object('backup_id', b.id, 'trigger', b.trigger, 'started_at', b.started_at,
                           'error', left(p_error, 500), 'path', '/admin#backups'));
    RETURN b;
END $$;

-- Retention deleted these files: their rows stay, marked.
CREATE OR REPLACE FUNCTION backups_deleted(p_ids bigint[]) RETURNS integer
LANGUAGE sql AS $$
    WITH gone AS (
        UPDATE backups SET status = 'deleted', deleted_at = now()
         WHERE id = ANY (p_ids) AND status = 'succeeded' RETURNING 1)
    SELECT count(*)::integer FROM gone;
$$;
