-- jobs 0.2.0 to 0.3.0: ALTER EXTENSION jobs UPDATE TO '0.3.0'.
-- Hand-written. tests/upgrade.rs checks that a database updated by this
-- script has exactly the schema of a fresh 0.3.0 (pg_dump of both, compared,
-- and the tables pg_dump keeps) and keeps its jobs and schedules.
\echo Use "ALTER EXTENSION jobs UPDATE TO '0.3.0'" to load this file. \quit

-- Dumps keep the jobs, their history and the schedules (sql/schema.sql says
-- why): before 0.3.0 a pg_dump held none of their rows.
SELECT pg_catalog.pg_extension_config_dump('jobs.job', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_run', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.schedule', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.schedule_id_seq', '');

-- Schedules may skip an occurrence while their previous job is still queued
-- or running: overlap false (jobs.schedule's new last parameter).
ALTER TABLE jobs.schedule ADD COLUMN overlap boolean NOT NULL DEFAULT true;

DROP FUNCTION jobs.schedule(text, text, text, jsonb, text, text, int, int, boolean);
CREATE FUNCTION jobs.schedule(
    name text,
    cron text,
    job_type text,
    payload jsonb DEFAULT '{}',
    timezone text DEFAULT 'UTC',
    queue text DEFAULT 'default',
    priority int DEFAULT 0,
    max_attempts int DEFAULT NULL,
    enabled boolean DEFAULT true,
    overlap boolean DEFAULT true
) RETURNS jobs.schedule
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    next_at timestamptz;
    saved jobs.schedule;
BEGIN
    PERFORM jobs._check_name('name', schedule.name);
    PERFORM jobs._check_not_null('cron', schedule.cron);
    PERFORM jobs._check_not_null('timezone', schedule.timezone);
    PERFORM jobs._check_not_null('enabled', schedule.enabled);
    PERFORM jobs._check_not_null('overlap', schedule.overlap);
    PERFORM jobs._check_enqueue(schedule.job_type, schedule.queue, NULL, schedule.priority, schedule.max_attempts);
    PERFORM jobs._check_not_null('payload', schedule.payload);
    -- Validates the expression and zone even for a disabled schedule.
    next_at := jobs.next_run(schedule.cron, schedule.timezone, now());

    INSERT INTO jobs.schedule AS s (name, cron, timezone, job_type, payload, queue, priority,
                                    max_attempts, enabled, next_run_at, overlap)
    VALUES (schedule.name, schedule.cron, schedule.timezone, schedule.job_type, schedule.payload,
            schedule.queue, schedule.priority, schedule.max_attempts, schedule.enabled,
            CASE WHEN schedule.enabled THEN next_at END, schedule.overlap)
    ON CONFLICT (name) DO UPDATE
    SET cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, job_type = EXCLUDED.job_type,
        payload = EXCLUDED.payload, queue = EXCLUDED.queue, priority = EXCLUDED.priority,
        max_attempts = EXCLUDED.max_attempts, enabled = EXCLUDED.enabled,
        next_run_at = EXCLUDED.next_run_at, overlap = EXCLUDED.overlap, updated_at = now()
    RETURNING * INTO saved;
    PERFORM jobs._wake_worker();
    RETURN saved;
END
$$;
REVOKE ALL ON FUNCTION jobs.schedule(text, text, text, jsonb, text, text, int, int, boolean, boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION jobs._fire_schedules() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    due jobs.schedule;
    fired bigint := 0;
    skipped boolean;
BEGIN
    FOR due IN
        SELECT * FROM jobs.schedule s
        WHERE s.enabled AND s.next_run_at <= now()
        ORDER BY s.next_run_at
        FOR UPDATE SKIP LOCKED
    LOOP
        skipped := NOT due.overlap AND (SELECT j.state IN ('queued', 'running') FROM jobs.job j
                                        WHERE j.schedule_id = due.id
                                        ORDER BY j.scheduled_for DESC LIMIT 1) IS TRUE;
        -- One schedule that cannot enqueue (a user trigger, a full disk
        -- quota) must not stop the others: each gets its own subtransaction.
        BEGIN
            IF NOT skipped THEN
                INSERT INTO jobs.job (queue, job_type, payload, priority, run_at, max_attempts,
                                      schedule_id, scheduled_for)
                VALUES (due.queue, due.job_type, due.payload, due.priority, due.next_run_at,
                        coalesce(due.max_attempts, jobs._default_max_attempts()), due.id, due.next_run_at)
                ON CONFLICT (schedule_id, scheduled_for) WHERE schedule_id IS NOT NULL DO NOTHING;
                IF FOUND THEN
                    fired := fired + 1;
                    PERFORM pg_notify('jobs', due.queue);
                END IF;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'schedule % could not enqueue its job for %: %',
                jobs._quote(due.name), due.next_run_at, SQLERRM;
        END;
        BEGIN
            UPDATE jobs.schedule s
            SET last_run_at = CASE WHEN skipped THEN s.last_run_at ELSE due.next_run_at END,
                next_run_at = jobs.next_run(due.cron, due.timezone, greatest(now(), due.next_run_at)),
                updated_at = now()
            WHERE s.id = due.id;
        EXCEPTION WHEN OTHERS THEN
            -- No next occurrence can be computed: stop rather than refire.
            RAISE WARNING 'schedule % paused: %', jobs._quote(due.name), SQLERRM;
            UPDATE jobs.schedule s
            SET enabled = false, next_run_at = NULL, last_run_at = due.next_run_at, updated_at = now()
            WHERE s.id = due.id;
        END;
    END LOOP;
    RETURN fired;
END
$$;
