-- Workers, part two, and operators: ending attempts (jobs.complete, jobs.fail)
-- and moving jobs by hand (jobs.cancel, jobs.retry_now).
--
-- complete and fail are one guarded UPDATE each: the row changes only while
-- it is running under the presented token, so a stale or duplicate call
-- changes nothing, and the attempt's history row is written in the same
-- transaction (for a completion, the completed row itself: see jobs.job_run).

-- Compiled (src/complete.rs says why): the same guarded UPDATE, through a
-- plan kept for the session. Not STRICT: a null argument gets the
-- contract's error, not a null row.
CREATE FUNCTION jobs.complete(
    job_id bigint,
    lease_token uuid,
    result jsonb DEFAULT NULL
) RETURNS jobs.job
LANGUAGE c VOLATILE SECURITY DEFINER
AS 'MODULE_PATHNAME', 'complete';

CREATE FUNCTION jobs.fail(
    job_id bigint,
    lease_token uuid,
    error text,
    retry_in interval DEFAULT NULL,
    retryable boolean DEFAULT true
) RETURNS jobs.job
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off  -- plans outlive the statistics they were made with: see src/claim.rs
AS $$
#variable_conflict use_column
DECLARE
    failed_job jobs.job;
BEGIN
    IF NOT coalesce(fail.job_id IS NOT NULL AND fail.lease_token IS NOT NULL AND fail.error IS NOT NULL
            AND fail.retryable IS NOT NULL
            AND coalesce(fail.retry_in >= interval '0' AND fail.retry_in <= interval '100 years', true), false)
    THEN
        PERFORM jobs._check_not_null('job_id', fail.job_id);
        PERFORM jobs._check_not_null('lease_token', fail.lease_token);
        PERFORM jobs._check_not_null('error', fail.error);
        PERFORM jobs._check_not_null('retryable', fail.retryable);
        IF fail.retry_in < interval '0' THEN
            PERFORM jobs._invalid(format('retry_in must not be negative, not %s', jobs._quote(fail.retry_in::text)));
        END IF;
        PERFORM jobs._invalid(format('retry_in %s is longer than 100 years', jobs._quote(fail.retry_in::text)));
    END IF;

    -- One statement for the job and its history row: each statement a
    -- function runs costs an executor start and a snapshot.
    WITH ended AS (
        UPDATE jobs.job j
        SET state = CASE WHEN fail.retryable AND j.attempts < j.max_attempts
                         THEN 'queued' ELSE 'failed' END::jobs.job_state,
            run_at = CASE WHEN fail.retryable AND j.attempts < j.max_attempts
                          THEN now() + coalesce(fail.retry_in, jobs._backoff(j.attempts))
                          ELSE j.run_at END,
            finished_at = CASE WHEN fail.retryable AND j.attempts < j.max_attempts
                               THEN NULL ELSE now() END,
            last_error = fail.error,
            lease_token = NULL,
            lease_until = NULL,
            updated_at = now()
        WHERE j.id = fail.job_id
          AND j.state = 'running'
          AND j.lease_token = fail.lease_token
        RETURNING j.*
    ), history AS (
        INSERT INTO jobs.job_attempt (job_id, attempt, worker_id, outcome, started_at, finished_at, error)
        SELECT e.id, e.attempts, e.worker_id, 'failed', e.started_at, e.updated_at, fail.error FROM ended e
    )
    SELECT * INTO failed_job FROM ended;
    IF NOT FOUND THEN
        PERFORM jobs._raise_not_held(fail.job_id);
    END IF;
    IF failed_job.state = 'queued' THEN
        PERFORM jobs._queued('jobs.job', failed_job.queue, failed_job.priority, failed_job.run_at, failed_job.id);
    END IF;
    RETURN failed_job;
END
$$;

CREATE FUNCTION jobs.cancel(job_id bigint) RETURNS jobs.job
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job jobs.job;
BEGIN
    job := jobs._lock_job(cancel.job_id, '{queued,running}', 'queued or running');

    -- A running attempt ends here: record it. Its worker's token stops
    -- working because lease_token is cleared.
    IF job.state = 'running' THEN
        INSERT INTO jobs.job_attempt (job_id, attempt, worker_id, outcome, started_at, finished_at)
        VALUES (job.id, job.attempts, job.worker_id, 'canceled', job.started_at, now());
        -- The command of a running SQL job stops as soon as the worker sees this.
        IF job.queue = 'sql' THEN
            PERFORM jobs._wake_worker();
        END IF;
    END IF;
    UPDATE jobs.job j
    SET state = 'canceled', lease_token = NULL, lease_until = NULL,
        finished_at = now(), updated_at = now()
    WHERE j.id = cancel.job_id
    RETURNING * INTO job;
    RETURN job;
END
$$;

CREATE FUNCTION jobs.retry_now(job_id bigint) RETURNS jobs.job
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job jobs.job;
BEGIN
    job := jobs._lock_job(retry_now.job_id, '{failed,canceled,queued}', 'failed, canceled or queued');

    -- A finished job starts over with all its attempts; a queued one only
    -- stops waiting.
    UPDATE jobs.job j
    SET state = 'queued',
        attempts = CASE WHEN job.state = 'queued' THEN j.attempts ELSE 0 END,
        run_at = CASE WHEN job.state = 'queued' THEN least(j.run_at, now()) ELSE now() END,
        finished_at = NULL,
        updated_at = now()
    WHERE j.id = retry_now.job_id
    RETURNING * INTO job;
    PERFORM jobs._queued('jobs.job', job.queue, job.priority, job.run_at, job.id);
    IF job.queue = 'sql' THEN
        PERFORM jobs._wake_worker();  -- its executor starts at once
    END IF;
    RETURN job;
END
$$;

-- Why complete_batch's arguments are refused, in the order of the checks;
-- called only when jobs.complete_batch found them invalid. Never returns.
CREATE FUNCTION jobs._refuse_complete_batch(job_ids bigint[], lease_tokens uuid[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM jobs._check_not_null('job_ids', job_ids);
    PERFORM jobs._check_not_null('lease_tokens', lease_tokens);
    IF cardinality(job_ids) <> cardinality(lease_tokens) THEN
        PERFORM jobs._invalid(format('job_ids and lease_tokens must have the same length, not %s and %s',
                                     cardinality(job_ids), cardinality(lease_tokens)));
    ELSIF array_position(job_ids, NULL) IS NOT NULL OR array_position(lease_tokens, NULL) IS NOT NULL THEN
        PERFORM jobs._invalid('job_ids and lease_tokens must not contain null');
    END IF;
    PERFORM jobs._invalid('job_ids must not repeat');
END
$$;

-- Many completions in one statement and one commit: for workers that claim
-- in batches. All or nothing: if any job is not running under its token,
-- the call raises P0002 or 55000 for the first such job and completes none.
-- Compiled (src/complete.rs): one guarded UPDATE through a plan kept for the
-- session. Not STRICT: a null argument gets the contract's error.
CREATE FUNCTION jobs.complete_batch(job_ids bigint[], lease_tokens uuid[]) RETURNS SETOF jobs.job
LANGUAGE c VOLATILE SECURITY DEFINER
AS 'MODULE_PATHNAME', 'complete_batch';
