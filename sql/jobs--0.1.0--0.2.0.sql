-- jobs 0.1.0 to 0.2.0: ALTER EXTENSION jobs UPDATE TO '0.2.0'.
-- Hand-written. tests/upgrade.rs checks that a 0.1.0 database updated by this
-- script has exactly the schema of a fresh 0.2.0 (pg_dump of both, compared)
-- and keeps its jobs and schedules.
\echo Use "ALTER EXTENSION jobs UPDATE TO '0.2.0'" to load this file. \quit

-- The state machine's invariants: one CHECK calling a compiled function
-- instead of seven CHECK expressions rebuilt for every statement
-- (sql/invariants.sql, src/invariants.rs).
ALTER TABLE jobs.job
    DROP CONSTRAINT job_queue_valid,
    DROP CONSTRAINT job_type_valid,
    DROP CONSTRAINT job_attempts_valid,
    DROP CONSTRAINT job_max_attempts_valid,
    DROP CONSTRAINT job_finished_iff_terminal,
    DROP CONSTRAINT job_lease_iff_running,
    DROP CONSTRAINT job_running_is_attempt;

CREATE FUNCTION jobs._job_row_valid(
    state text, queue_length int, job_type_length int, attempts int, max_attempts int, lease_token uuid,
    lease_until timestamptz, has_worker boolean, started_at timestamptz, finished_at timestamptz
) RETURNS bool
IMMUTABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'job_row_valid_wrapper';
REVOKE ALL ON FUNCTION jobs._job_row_valid FROM PUBLIC;

ALTER TABLE jobs.job ADD CONSTRAINT job_valid
    CHECK (jobs._job_row_valid(state::text, pg_catalog.length(queue), pg_catalog.length(job_type),
                               attempts, max_attempts, lease_token, lease_until,
                               worker_id IS NOT NULL, started_at, finished_at));

-- The lease index's predicate no longer matches complete, fail and
-- extend_lease, which must find their job by primary key.
DROP INDEX jobs.job_lease_idx;
CREATE INDEX job_lease_idx ON jobs.job (lease_until) WHERE lease_until IS NOT NULL;

-- Claim keeps one generic plan instead of replanning on every call, and that
-- plan walks the claim index whatever the statistics said when it was made.
ALTER FUNCTION jobs.claim(text, text, int, interval, text[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION jobs.claim(text, text, int, interval, text[]) SET enable_seqscan = off;
-- The same for every function that finds jobs by id or by lease expiry: their
-- plans are kept as long as the session and must not be table scans made
-- while the table was nearly empty.
ALTER FUNCTION jobs.extend_lease(bigint, uuid, interval) SET enable_seqscan = off;
ALTER FUNCTION jobs.complete(bigint, uuid, jsonb) SET enable_seqscan = off;
ALTER FUNCTION jobs.fail(bigint, uuid, text, interval, boolean) SET enable_seqscan = off;
ALTER FUNCTION jobs.complete_batch(bigint[], uuid[]) SET enable_seqscan = off;
ALTER FUNCTION jobs._lock_job(bigint, jobs.job_state[], text) SET enable_seqscan = off;
ALTER FUNCTION jobs._recover_leases(int) SET enable_seqscan = off;
ALTER FUNCTION jobs._prune(interval, int) SET enable_seqscan = off;

-- Operators' views (sql/views.sql); jobs.stats() now reads jobs.queue_stats.
-- One row per queue that has jobs: what jobs.stats() returns.
CREATE VIEW jobs.queue_stats AS
SELECT j.queue,
       count(*) FILTER (WHERE j.state = 'queued') AS queued,
       count(*) FILTER (WHERE j.state = 'running') AS running,
       count(*) FILTER (WHERE j.state = 'completed') AS completed,
       count(*) FILTER (WHERE j.state = 'failed') AS failed,
       count(*) FILTER (WHERE j.state = 'canceled') AS canceled,
       now() - min(j.run_at) FILTER (WHERE j.state = 'queued' AND j.run_at <= now()) AS oldest_queued_age
FROM jobs.job j
GROUP BY j.queue
ORDER BY j.queue;

-- Jobs whose latest failed attempt (an error from the worker, or a lease that
-- expired) is still in the history, latest first, with every attempt of the
-- job. Pruning bounds it to jobs.retention after the job finished. It reads
-- jobs.job_run in full: for people and dashboards, not for hot paths.
CREATE VIEW jobs.recent_failures AS
SELECT j.id AS job_id,
       j.queue,
       j.job_type,
       j.state,
       j.attempts,
       j.max_attempts,
       f.finished_at AS failed_at,
       f.outcome,
       f.error,
       (SELECT jsonb_agg(jsonb_build_object('attempt', r.attempt, 'outcome', r.outcome,
                                            'worker_id', r.worker_id, 'started_at', r.started_at,
                                            'finished_at', r.finished_at, 'error', r.error)
                         ORDER BY r.attempt, r.id)
        FROM jobs.job_run r
        WHERE r.job_id = j.id) AS history
FROM (SELECT DISTINCT ON (r.job_id) r.job_id, r.finished_at, r.outcome, r.error
      FROM jobs.job_run r
      WHERE r.outcome IN ('failed', 'lease_expired')
      ORDER BY r.job_id, r.finished_at DESC, r.id DESC) f
JOIN jobs.job j ON j.id = f.job_id
ORDER BY f.finished_at DESC, j.id DESC;
REVOKE ALL ON jobs.queue_stats, jobs.recent_failures FROM PUBLIC;

CREATE OR REPLACE FUNCTION jobs.stats(queue text DEFAULT NULL)
RETURNS TABLE (
    queue text,
    queued bigint,
    running bigint,
    completed bigint,
    failed bigint,
    canceled bigint,
    oldest_queued_age interval
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.* FROM jobs.queue_stats s WHERE $1 IS NULL
    UNION ALL
    -- A queue asked for by name gets its row even when it has no jobs.
    SELECT $1, coalesce(s.queued, 0), coalesce(s.running, 0), coalesce(s.completed, 0),
           coalesce(s.failed, 0), coalesce(s.canceled, 0), s.oldest_queued_age
    FROM (SELECT) one
    LEFT JOIN jobs.queue_stats s ON s.queue = $1
    WHERE $1 IS NOT NULL
    ORDER BY 1
$$;
