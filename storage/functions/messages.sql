-- Messages: the transactional outbox. A job queued here is a row of pgqueuer's queue table written in the
-- caller's transaction, so it exists exactly when what caused it commits (a rolled-back order queues
-- nothing). The queue's schema is pgqueuer's (installed by storage/schema.py); these functions write the
-- same rows pgqueuer's own enqueue writes (its queue and log tables), with its default object names.
-- (plpgsql, not sql: checked when called, so these files load before the queue's tables exist.)

-- Queue job p_entrypoint with p_payload (JSON, handed to the handler as bytes) to run after p_delay.
-- p_dedupe: while a job with that key is queued or running, another with the same key is not queued
-- (silently: the first one will do the work).
CREATE OR REPLACE FUNCTION enqueue_job(p_entrypoint text, p_payload jsonb, p_delay interval DEFAULT '0 s',
                                       p_dedupe text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WITH queued AS (
        INSERT INTO pgqueuer (priority, entrypoint, payload, execute_after, dedupe_key, status)
        VALUES (0, p_entrypoint, convert_to(p_payload::text, 'UTF8'), now() + p_delay, p_dedupe, 'queued')
        ON CONFLICT (dedupe_key)
            WHERE ((status = ANY (ARRAY['queued'::pgqueuer_status, 'picked'::pgqueuer_status]))
                   AND (dedupe_key IS NOT NULL))
            DO NOTHING
        RETURNING id, entrypoint, priority
    )
    INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority)
    SELECT id, 'queued', entrypoint, priority FROM queued;
END $$;

-- The same for many payloads at once (one statement, set-based callers).
CREATE OR REPLACE FUNCTION enqueue_jobs(p_entrypoint text, p_payloads jsonb[], p_delay interval DEFAULT '0 s')
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WITH queued AS (
        INSERT INTO pgqueuer (priority, entrypoint, payload, execute_after, status)
        SELECT 0, p_entrypoint, convert_to(p::text, 'UTF8'), now() + p_delay, 'queued'
          FROM unnest(p_payloads) p
        RETURNING id, entrypoint, priority
    )
    INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority)
    SELECT id, 'queued', entrypoint, priority FROM queued;
END $$;

-- A notification for p_user: stored, and its delivery (push to the user's sockets, email unless turned off
-- for the kind) queued as job deliver_notification, both in the caller's transaction. Returns its id.
CREATE OR REPLACE FUNCTION notify_user(p_user uuid, p_kind text, p_payload jsonb) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    new_id uuid;
BEGIN
    INSERT INTO notifications (user_id, kind, payload) VALUES (p_user, p_kind, coalesce(p_payload, '{}'))
    RETURNING id INTO new_id;
    PERFORM enqueue_job('deliver_notification', jsonb_build_object('notification_id', new_id));
    RETURN new_id;
END $$;

-- The same notification for many users (a shop's followers): one INSERT for the rows, one for the jobs.
-- Returns the users notified.
CREATE OR REPLACE FUNCTION notify_users(p_users uuid[], p_kind text, p_payload jsonb) RETURNS uuid[]
LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[];
    users uuid[];
BEGIN
    WITH sent AS (
        INSERT INTO notifications (user_id, kind, payload)
        SELECT DISTINCT u, p_kind, coalesce(p_payload, '{}') FROM unnest(p_users) u
        RETURNING id, user_id
    )
    SELECT coalesce(array_agg(id), '{}'), coalesce(array_agg(user_id), '{}') INTO ids, users FROM sent;
    PERFORM enqueue_jobs('deliver_notification',
                         ARRAY(SELECT jsonb_build_object('notification_id', i) FROM unnest(ids) i));
    RETURN users;
END $$;
