-- The job state machine's invariants, whatever code writes to jobs.job
-- (src/invariants.rs says why they are one function, and lists them):
-- queue and job type of 1 to 128 characters; 0 <= attempts <= max_attempts,
-- max_attempts >= 1; finished_at set exactly in the terminal states;
-- lease_token and lease_until set exactly while running; a running job is an
-- attempt (attempts >= 1, started_at and worker_id set).
CREATE FUNCTION jobs._job_row_valid(state jobs.job_state, queue text, job_type text, attempts int, max_attempts int,
                                    lease_token uuid, lease_until timestamptz, worker_id text,
                                    started_at timestamptz, finished_at timestamptz) RETURNS boolean
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'job_row_valid';

ALTER TABLE jobs.job ADD CONSTRAINT job_valid
    CHECK (jobs._job_row_valid(state, queue, job_type, attempts, max_attempts, lease_token, lease_until, worker_id,
                               started_at, finished_at));
