-- Cron schedules: jobs.schedule, jobs.unschedule, jobs.pause_schedule,
-- jobs.resume_schedule. The cron engine itself is jobs.next_run (Rust,
-- src/cron/); it raises 22023 for a bad expression or time zone.

CREATE FUNCTION jobs._raise_no_schedule(name text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'no_data_found',
        MESSAGE = format('schedule %s does not exist', jobs._quote(name));
END
$$;

-- Creates or replaces the schedule `name`, already checked, and wakes the
-- worker: jobs.schedule and jobs.schedule_sql (src/executor/api.rs) store
-- schedules through this one upsert.
CREATE FUNCTION jobs._save_schedule(name text, cron text, timezone text, job_type text, payload jsonb, queue text,
                                    priority int, max_attempts int, enabled boolean, overlap boolean)
RETURNS jobs.schedule
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    next_at timestamptz := jobs.next_run(_save_schedule.cron, _save_schedule.timezone, now());
    saved jobs.schedule;
BEGIN
    INSERT INTO jobs.schedule AS s (name, cron, timezone, job_type, payload, queue, priority,
                                    max_attempts, enabled, next_run_at, overlap)
    VALUES (_save_schedule.name, _save_schedule.cron, _save_schedule.timezone, _save_schedule.job_type,
            _save_schedule.payload, _save_schedule.queue, _save_schedule.priority, _save_schedule.max_attempts,
            _save_schedule.enabled, CASE WHEN _save_schedule.enabled THEN next_at END, _save_schedule.overlap)
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
BEGIN
    PERFORM jobs._check_name('name', schedule.name);
    PERFORM jobs._check_not_null('cron', schedule.cron);
    PERFORM jobs._check_not_null('timezone', schedule.timezone);
    PERFORM jobs._check_not_null('enabled', schedule.enabled);
    PERFORM jobs._check_not_null('overlap', schedule.overlap);
    PERFORM jobs._check_enqueue(schedule.job_type, schedule.queue, NULL, schedule.priority, schedule.max_attempts);
    PERFORM jobs._check_not_null('payload', schedule.payload);
    -- _save_schedule validates the expression and zone, even for a disabled schedule.
    RETURN jobs._save_schedule(schedule.name, schedule.cron, schedule.timezone, schedule.job_type,
                               schedule.payload, schedule.queue, schedule.priority, schedule.max_attempts,
                               schedule.enabled, schedule.overlap);
END
$$;

CREATE FUNCTION jobs.unschedule(name text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM jobs._check_not_null('name', unschedule.name);
    DELETE FROM jobs.schedule s WHERE s.name = unschedule.name;
    RETURN FOUND;
END
$$;

CREATE FUNCTION jobs.pause_schedule(name text) RETURNS jobs.schedule
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    paused jobs.schedule;
BEGIN
    PERFORM jobs._check_not_null('name', pause_schedule.name);
    UPDATE jobs.schedule s
    SET enabled = false, next_run_at = NULL, updated_at = now()
    WHERE s.name = pause_schedule.name
    RETURNING * INTO paused;
    IF NOT FOUND THEN
        PERFORM jobs._raise_no_schedule(pause_schedule.name);
    END IF;
    RETURN paused;
END
$$;

-- Runs missed while paused are skipped: the next run is computed from now.
CREATE FUNCTION jobs.resume_schedule(name text) RETURNS jobs.schedule
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    resumed jobs.schedule;
BEGIN
    PERFORM jobs._check_not_null('name', resume_schedule.name);
    UPDATE jobs.schedule s
    SET enabled = true, next_run_at = jobs.next_run(s.cron, s.timezone, now()), updated_at = now()
    WHERE s.name = resume_schedule.name
    RETURNING * INTO resumed;
    IF NOT FOUND THEN
        PERFORM jobs._raise_no_schedule(resume_schedule.name);
    END IF;
    PERFORM jobs._wake_worker();
    RETURN resumed;
END
$$;
