-- SQL jobs: the jobs of queue 'sql', whose work is a SQL command that the
-- extension's own executors run (src/executor/). jobs.enqueue_sql and
-- jobs.schedule_sql (Rust, src/executor/api.rs) check the caller's rights as
-- the caller, then store the job through the functions below as the
-- extension's owner. The background worker takes, holds and finishes these
-- jobs through the rest. None of them is granted to anyone.

-- Argument checks of jobs.enqueue_sql (22023), before its privilege checks.
CREATE FUNCTION jobs._check_sql_job(command text, timeout interval, run_at timestamptz, max_attempts int,
                                    priority int, idempotency_key text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM jobs._check_not_null('command', command);
    IF command = '' THEN
        PERFORM jobs._invalid('command must not be empty');
    END IF;
    IF timeout <= interval '0' THEN
        PERFORM jobs._invalid(format('timeout must be positive, not %s', jobs._quote(timeout::text)));
    ELSIF timeout > interval '100 years' THEN
        PERFORM jobs._invalid(format('timeout %s is longer than 100 years', jobs._quote(timeout::text)));
    END IF;
    PERFORM jobs._check_not_null('max_attempts', max_attempts);
    PERFORM jobs._check_enqueue('sql', 'default', run_at, priority, max_attempts);
    IF idempotency_key = '' THEN
        PERFORM jobs._invalid('idempotency_key must not be empty');
    ELSIF length(idempotency_key) > 255 THEN
        PERFORM jobs._invalid(format('idempotency_key %s is longer than 255 characters', jobs._quote(idempotency_key)));
    END IF;
END
$$;

-- The rest of jobs.schedule_sql's argument checks, the cron expression and
-- time zone included.
CREATE FUNCTION jobs._check_sql_schedule(name text, cron text, timezone text, overlap boolean, enabled boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM jobs._check_name('name', name);
    PERFORM jobs._check_not_null('cron', cron);
    PERFORM jobs._check_not_null('timezone', timezone);
    PERFORM jobs._check_not_null('overlap', overlap);
    PERFORM jobs._check_not_null('enabled', enabled);
    PERFORM jobs.next_run(cron, timezone, now());
END
$$;

-- The payload of a SQL job and of a SQL schedule; timeout in seconds.
CREATE FUNCTION jobs._sql_payload(command text, database text, run_as text, timeout interval) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('command', command, 'database', database, 'run_as', run_as,
                              'timeout', extract(epoch FROM coalesce(timeout, jobs._sql_timeout()))::float8)
$$;

CREATE FUNCTION jobs._insert_sql_job(
    payload jsonb,
    run_at timestamptz,
    max_attempts int,
    priority int,
    idempotency_key text
) RETURNS jobs.job
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    inserted jobs.job;
BEGIN
    IF _insert_sql_job.idempotency_key IS NOT NULL THEN
        INSERT INTO jobs.job (queue, job_type, payload, priority, run_at, max_attempts, idempotency_key)
        VALUES ('sql', 'sql', _insert_sql_job.payload, _insert_sql_job.priority,
                coalesce(_insert_sql_job.run_at, now()), _insert_sql_job.max_attempts,
                _insert_sql_job.idempotency_key)
        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING * INTO inserted;
        IF NOT FOUND THEN
            -- ON CONFLICT waited for a concurrent enqueuer of the key; its job is visible now.
            SELECT * INTO inserted FROM jobs.job j WHERE j.idempotency_key = _insert_sql_job.idempotency_key;
            RETURN inserted;
        END IF;
    ELSE
        INSERT INTO jobs.job (queue, job_type, payload, priority, run_at, max_attempts)
        VALUES ('sql', 'sql', _insert_sql_job.payload, _insert_sql_job.priority,
                coalesce(_insert_sql_job.run_at, now()), _insert_sql_job.max_attempts)
        RETURNING * INTO inserted;
    END IF;
    PERFORM jobs._wake_worker();
    RETURN inserted;
END
$$;

-- Why a SQL job cannot start now, in the job's error format, or NULL: the
-- background worker asks before starting an executor, so that what
-- changed since the job was created (a dropped role or database, a revoked
-- CONNECT) fails the job with PostgreSQL's own words rather than an
-- executor that dies while connecting.
CREATE FUNCTION jobs._sql_job_refusal(database text, run_as text, login_required boolean) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN r.oid IS NULL THEN format('42704: role "%s" does not exist', run_as)
        WHEN login_required AND NOT r.rolcanlogin THEN format('28000: role "%s" is not permitted to log in', run_as)
        WHEN d.oid IS NULL THEN format('3D000: database "%s" does not exist', database)
        WHEN NOT d.datallowconn THEN format('55000: database "%s" is not currently accepting connections', database)
        WHEN NOT has_database_privilege(r.oid, d.oid, 'CONNECT')
            THEN format('42501: permission denied for database "%s"', database)
    END
    FROM (SELECT) AS one
    LEFT JOIN pg_roles r ON r.rolname = run_as
    LEFT JOIN pg_database d ON d.datname = database
$$;

-- The background worker takes due SQL jobs for its free executors: jobs.claim
-- without its refusal of queue 'sql'.
CREATE FUNCTION jobs._claim_sql(max_jobs int, lease interval) RETURNS SETOF jobs.job
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE jobs.job j
    SET state = 'running',
        attempts = j.attempts + 1,
        lease_token = gen_random_uuid(),
        lease_until = now() + lease,
        worker_id = 'jobs sql executor',
        started_at = now(),
        updated_at = now()
    WHERE j.id = ANY (ARRAY(
        SELECT p.id
        FROM jobs.job p
        WHERE p.state = 'queued' AND p.queue = 'sql' AND p.run_at <= now()
        ORDER BY p.priority, p.run_at, p.id
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED))
    RETURNING j.*
$$;

-- Extends the leases of the SQL jobs whose commands are running; returns the
-- ids still held. A job missing from the answer was canceled (or its lease
-- was lost): its command must stop.
CREATE FUNCTION jobs._hold_sql(job_ids bigint[], lease_tokens uuid[], lease interval) RETURNS SETOF bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE jobs.job j
    SET lease_until = now() + lease
    WHERE j.id = ANY (job_ids) AND j.state = 'running'
      AND (j.id, j.lease_token) IN (SELECT * FROM unnest(job_ids, lease_tokens))
    RETURNING j.id
$$;

-- Ends the attempt of a SQL job with its command's outcome: completed with
-- `result`, or failed with `error` (retried while attempts remain and
-- `retryable`). False when the job is no longer held under this token
-- (canceled while its command ran): nothing changes then.
CREATE FUNCTION jobs._finish_sql(job_id bigint, lease_token uuid, result jsonb, error text, retryable boolean)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF error IS NULL THEN
        PERFORM jobs.complete(job_id, lease_token, result);
    ELSE
        PERFORM jobs.fail(job_id, lease_token, error, retryable => retryable);
    END IF;
    RETURN true;
EXCEPTION WHEN object_not_in_prerequisite_state OR no_data_found THEN
    RETURN false;
END
$$;

-- No executor could be started for a claimed SQL job (max_worker_processes
-- reached): it goes back to the queue as it was, no attempt made.
CREATE FUNCTION jobs._release_sql(job_id bigint, lease_token uuid) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE jobs.job j
    SET state = 'queued', attempts = j.attempts - 1, lease_token = NULL, lease_until = NULL,
        updated_at = now()
    WHERE j.id = _release_sql.job_id AND j.state = 'running' AND j.lease_token = _release_sql.lease_token
$$;

-- Called once when the background worker starts: SQL jobs still running
-- belonged to executors of an earlier worker, which were stopped. Each ends
-- its attempt now, as a failure with that reason, instead of waiting out its lease.
CREATE FUNCTION jobs._fail_orphaned_sql(error text) RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) FILTER (WHERE jobs._finish_sql(j.id, j.lease_token, NULL, error, true))
    FROM jobs.job j
    WHERE j.state = 'running' AND j.queue = 'sql'
$$;
